//! Ingress v1 served by the standalone proxy: core Services with EndpointSlices as backends,
//! an IngressClass of controller `hookway.dev/ingress-controller`, and real traffic for every
//! path type, host rule, TLS, the `hookway.dev/plugins` annotation and each translated
//! ingress-nginx annotation family.

mod annotations;
mod auth_and_limits;
mod routing;

use std::net::SocketAddr;

use crate::support::*;

/// hookway's IngressClass (the default class) and another controller's.
pub const CLASSES: &str = "apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: hookway
  annotations: {ingressclass.kubernetes.io/is-default-class: \"true\"}
spec: {controller: hookway.dev/ingress-controller}
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: nginx}
spec: {controller: k8s.io/ingress-nginx}
";

/// A PlatformPolicy granting namespace `default` network-reaching plugins (`forward_auth`, for
/// `auth-url`) and `insecureSkipVerify` (for `backend-protocol: HTTPS`).
pub const GRANTS: &str = "apiVersion: hookway.dev/v1alpha1
kind: PlatformPolicy
metadata: {name: grants, namespace: hookway-system}
spec:
  namespaces:
  - names: [default]
    insecureSkipVerify: true
    networkPlugins: [forward_auth]
";

/// Core Service `name` (port 80, named `http`) whose EndpointSlice points at `addr`.
pub fn backend_yaml(name: &str, addr: SocketAddr) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec:
  ports: [{{name: http, port: 80, targetPort: {port}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-abc
  namespace: default
  labels: {{kubernetes.io/service-name: {name}}}
addressType: IPv4
ports: [{{name: http, port: {port}}}]
endpoints: [{{addresses: [\"{ip}\"], conditions: {{ready: true}}}}]
",
        port = addr.port(),
        ip = addr.ip(),
    )
}

/// An Ingress `name` (class `hookway`) with `annotations` and `spec` (YAML indented by two).
pub fn ingress_yaml(name: &str, annotations: &[(&str, &str)], spec: &str) -> String {
    let annotations: String = annotations
        .iter()
        .map(|(k, v)| {
            let k = if k.contains('/') {
                k.to_string()
            } else {
                format!("nginx.ingress.kubernetes.io/{k}")
            };
            format!("    {k}: {v:?}\n")
        })
        .collect();
    format!(
        "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {name}
  namespace: default
  annotations:
{annotations}    x: \"\"
spec:
  ingressClassName: hookway
{spec}"
    )
}

/// A rule for `host` sending `path` (pathType `kind`) to core Service `service` port 80.
pub fn rule(host: &str, path: &str, kind: &str, service: &str) -> String {
    format!(
        "  - host: {host:?}
    http:
      paths:
      - path: {path:?}
        pathType: {kind}
        backend: {{service: {{name: {service}, port: {{number: 80}}}}}}
"
    )
}

/// `spec` with `rules`.
pub fn rules(rules: &[String]) -> String {
    format!("  rules:\n{}", rules.concat())
}

/// A standalone proxy serving the classes, backend `web` (and `api` when given) and `files`.
pub async fn serve(
    web: SocketAddr,
    api: Option<SocketAddr>,
    files: &[(&str, String)],
) -> (ManifestDir, Proxy) {
    let dir = ManifestDir::new();
    dir.write("classes.yaml", CLASSES);
    dir.write("web.yaml", &backend_yaml("web", web));
    if let Some(api) = api {
        dir.write("api.yaml", &backend_yaml("api", api));
    }
    for (name, text) in files {
        dir.write(name, text);
    }
    // What the compiler says about the folder, shown when a test fails.
    let (compiled, _) = hookway_proxy::standalone::compile_dir(
        &dir.path,
        &hookway_proxy::standalone::StandaloneOptions::default(),
        hookway_proxy::plugins::builtin().catalogue(),
    )
    .unwrap();
    for (id, report) in compiled.rejected() {
        eprintln!("{id:?}: {report:?}");
    }
    let proxy = standalone_proxy(&dir).await;
    (dir, proxy)
}

/// A client that does not follow redirects.
pub fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(WAIT)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `GET path` with `Host: host`: status and the response.
pub async fn get(proxy: &Proxy, host: &str, path: &str) -> reqwest::Response {
    no_redirects()
        .get(proxy.url(path))
        .header("host", host)
        .send()
        .await
        .unwrap()
}

/// `(status, echoing server or body text)` of `GET path` on `host`.
pub async fn server(proxy: &Proxy, host: &str, path: &str) -> (u16, String) {
    get_server(&no_redirects(), &proxy.url(path), Some(host)).await
}
