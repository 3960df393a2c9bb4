//! `--check` on real folders: the quickstart must compile clean; broken folders must fail with
//! the reason on the object.

use std::path::{Path, PathBuf};

use hookway_proxy::plugins::builtin;
use hookway_proxy::standalone::{check, compile_dir, OutputFormat, StandaloneOptions};

fn quickstart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart")
}

fn run_check(dir: &Path, format: OutputFormat) -> (bool, String) {
    let mut out = Vec::new();
    let ok = check(
        dir,
        &StandaloneOptions::default(),
        builtin().catalogue(),
        format,
        &mut out,
    )
    .unwrap();
    (ok, String::from_utf8(out).unwrap())
}

#[test]
fn quickstart_compiles_clean() {
    let (ok, text) = run_check(&quickstart(), OutputFormat::Text);
    assert!(ok, "{text}");
    assert!(text.contains("Route default/hello"), "{text}");
    let (compiled, _) = compile_dir(
        &quickstart(),
        &StandaloneOptions::default(),
        builtin().catalogue(),
    )
    .unwrap();
    let hello = compiled
        .snapshot
        .routes
        .iter()
        .find(|r| r.key.name == "hello")
        .unwrap();
    let aliases: Vec<_> = hello.chain.iter().map(|e| e.alias.as_str()).collect();
    assert_eq!(aliases, ["request-id", "served-by", "hello"]);
}

#[test]
fn json_output_has_the_documented_shape() {
    let (ok, json) = run_check(&quickstart(), OutputFormat::Json);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["snapshot"]["routes"], 2);
    let route = v["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == "Route" && o["name"] == "upstream")
        .unwrap();
    assert_eq!(route["accepted"]["status"], true);
    let served_by = route["chain"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["alias"] == "served-by")
        .unwrap();
    assert_eq!(served_by["tier"], "route");
    assert_eq!(served_by["plugin"], "headers");
}

fn temp_dir_with(files: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "hookway-check-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    dir
}

fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

#[test]
fn a_missing_plugin_fails_the_check_with_the_reason() {
    let dir = temp_dir_with(&[(
        "r.yaml",
        "apiVersion: hookway.dev/v1alpha1\nkind: Service\nmetadata: {name: s}\nspec: {nodes: [{address: 127.0.0.1, port: 1}]}\n---\napiVersion: hookway.dev/v1alpha1\nkind: Route\nmetadata: {name: r}\nspec:\n  service: s\n  plugins: {nope: {}}\n",
    )]);
    let (ok, json) = run_check(&dir, OutputFormat::Json);
    assert!(!ok);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let route = v["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == "Route")
        .unwrap();
    assert_eq!(route["resolvedRefs"]["reason"], "PluginNotFound");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_broken_manifest_is_reported_by_file_and_document() {
    let dir = temp_dir_with(&[("bad.yaml", "apiVersion: hookway.dev/v1alpha1\nkind: Route\nmetadata: {name: r}\nspec: {service: s, hostz: [a]}\n")]);
    let (ok, text) = run_check(&dir, OutputFormat::Text);
    assert!(!ok);
    assert!(text.contains("bad.yaml: document 1: spec"), "{text}");
    assert!(text.contains("hostz"), "{text}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn ingresses_are_reported_by_their_own_name_with_annotation_findings() {
    let class = "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: hookway}\nspec: {controller: hookway.dev/ingress-controller}\n";
    let ingress = |name: &str, annotations: &str| {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  annotations: {{{annotations}}}\nspec:\n  ingressClassName: hookway\n  rules:\n  - host: {name}.example.com\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}\n"
        )
    };
    let good = ingress(
        "good",
        "nginx.ingress.kubernetes.io/configuration-snippet: 'return 200;', nginx.ingress.kubernetes.io/proxy-buffering: 'off'",
    );
    let bad = ingress("bad", "nginx.ingress.kubernetes.io/limit-rps: 'ten'");
    let dir = temp_dir_with(&[
        ("class.yaml", class),
        ("good.yaml", &good),
        ("bad.yaml", &bad),
    ]);
    let (ok, text) = run_check(&dir, OutputFormat::Json);
    assert!(!ok, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let objects = v["objects"].as_array().unwrap();
    assert!(
        objects
            .iter()
            .all(|o| !o["name"].as_str().unwrap().contains('#')),
        "only real objects are reported: {text}"
    );
    let find = |name: &str| {
        objects
            .iter()
            .find(|o| o["kind"] == "Ingress" && o["name"] == name)
            .unwrap_or_else(|| panic!("no Ingress {name}: {text}"))
    };
    let good = find("good");
    assert_eq!(good["accepted"]["status"], true);
    let warnings: Vec<&str> = good["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("UnsupportedAnnotation: ")
                && w.contains("configuration-snippet: snippet annotations are never executed")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("proxy-buffering: not supported")),
        "{warnings:?}"
    );
    let bad = find("bad");
    assert_eq!(bad["accepted"]["status"], false);
    assert_eq!(bad["accepted"]["reason"], "InvalidAnnotation");
    assert!(
        bad["accepted"]["message"]
            .as_str()
            .unwrap()
            .contains("annotation nginx.ingress.kubernetes.io/limit-rps: \"ten\""),
        "{text}"
    );
    let (_, text) = run_check(&dir, OutputFormat::Text);
    assert!(text.contains("Ingress default/bad"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
