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
