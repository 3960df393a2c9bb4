//! Standalone mode through a real proxy: a folder of manifests is compiled, served, and reloaded
//! on change; a broken file or object is left out (a broken file's last good version serves)
//! and every other change applies.

use std::future::ready;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::*;

/// The log lines of everything polled on this test's thread (`#[tokio::test]` runs one thread,
/// so the standalone watcher's own), to see a refused change being handled.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// Captures until the guard is dropped.
    fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(self.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn count(&self, needle: &str) -> usize {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .matches(needle)
            .count()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

/// What the watcher logs (once) when a manifest file cannot be decoded.
const BROKEN: &str = "manifest file not applied";

const PLUGIN: &str = "apiVersion: hookway.dev/v1alpha1
kind: GatewayPlugin
metadata: {name: hello, namespace: hookway-system}
spec:
  plugin: mock
  status: enable
  config: {status: 200, body: BODY}
";

const ROUTES: &str = "apiVersion: hookway.dev/v1alpha1
kind: Route
metadata: {name: hello, namespace: default}
spec:
  rules: [{path: {type: Exact, value: /hello}}]
  service: echo
  plugins: {hello: {}}
---
apiVersion: hookway.dev/v1alpha1
kind: Route
metadata: {name: rest, namespace: default}
spec:
  service: echo
";

async fn wait_body(c: &reqwest::Client, url: &str, want: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let body = c.get(url).send().await.unwrap().text().await.unwrap();
        if body == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {body:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn body(c: &reqwest::Client, url: &str) -> String {
    c.get(url).send().await.unwrap().text().await.unwrap()
}

#[tokio::test]
async fn a_folder_is_served_and_a_broken_file_or_object_freezes_nothing_else() {
    let echo = EchoServer::start("echo").await;
    let logs = Logs::default();
    let _capture = logs.capture();
    let dir = ManifestDir::new();
    dir.write("service.yaml", &service_yaml("echo", &[echo.addr]));
    dir.write("plugin.yaml", &PLUGIN.replace("BODY", "one"));
    dir.write("routes.yaml", ROUTES);
    let proxy = standalone_proxy(&dir).await;
    let c = client();

    assert_eq!(body(&c, &proxy.url("/hello")).await, "one");
    let upstream = json(c.get(proxy.url("/other")).send().await.unwrap()).await;
    assert_eq!(upstream["path"], "/other");

    // A good change is applied.
    dir.write("plugin.yaml", &PLUGIN.replace("BODY", "two"));
    wait_body(&c, &proxy.url("/hello"), "two").await;

    // plugin.yaml stops being YAML: its last good version keeps serving, and a change to
    // another file still applies.
    dir.write("plugin.yaml", "kind: [unclosed");
    let added = ROUTES.to_string()
        + "---
apiVersion: hookway.dev/v1alpha1
kind: Route
metadata: {name: added, namespace: default}
spec:
  rules: [{path: {type: Exact, value: /added}}]
  service: echo
  plugins: {hello: {}}
";
    dir.write("routes.yaml", &added);
    wait_body(&c, &proxy.url("/added"), "two").await;
    assert_eq!(body(&c, &proxy.url("/hello")).await, "two");
    wait_until("the broken file is reported", || {
        ready(logs.count(BROKEN) == 1)
    })
    .await;

    // An object the compiler rejects (unknown plugin kind) is left out with the Route that
    // needs it; fixing plugin.yaml in the same breath applies.
    dir.write(
        "bad.yaml",
        &(plugin_yaml("broken", "nope", "{}")
            + "---\n"
            + &route_yaml("needs-broken", "/needs", "broken: {}")),
    );
    dir.write("plugin.yaml", &PLUGIN.replace("BODY", "three"));
    wait_body(&c, &proxy.url("/hello"), "three").await;
    let fallback = json(c.get(proxy.url("/needs")).send().await.unwrap()).await;
    assert_eq!(
        fallback["path"], "/needs",
        "the rejected Route is not served: the catch-all Route answers"
    );

    // A file that never loaded is left out (and reported); the next change applies all the same.
    dir.write("broken.yaml", "kind: [unclosed");
    dir.write("plugin.yaml", &PLUGIN.replace("BODY", "four"));
    wait_body(&c, &proxy.url("/hello"), "four").await;

    // A file removed is forgotten, its last good version too.
    std::fs::remove_file(dir.path.join("routes.yaml")).unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while c.get(proxy.url("/added")).send().await.unwrap().status() != 404 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "routes.yaml still served"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn reloads_under_load_fail_no_request() {
    let echo = EchoServer::start("echo").await;
    let dir = ManifestDir::new();
    dir.write("service.yaml", &service_yaml("echo", &[echo.addr]));
    dir.write("plugin.yaml", &PLUGIN.replace("BODY", "v0"));
    dir.write("routes.yaml", ROUTES);
    let proxy = standalone_proxy(&dir).await;
    let url = proxy.url("/hello");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let c = client();
            let (mut ok, mut failed) = (0u32, 0u32);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match c.get(&url).send().await {
                    Ok(r) if r.status() == 200 => ok += 1,
                    _ => failed += 1,
                }
            }
            (ok, failed)
        })
    };
    let c = client();
    // Each reload waits out the watcher's 150 ms debounce: 20 of them take about 4 s.
    for i in 1..=20 {
        let body = format!("v{i}");
        dir.write("plugin.yaml", &PLUGIN.replace("BODY", &body));
        wait_body(&c, &proxy.url("/hello"), &body).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = load.await.unwrap();
    assert_eq!(
        failed, 0,
        "{failed} requests failed during 20 reloads ({ok} ok)"
    );
    assert!(ok > 0);
    assert!(proxy.version().unwrap() >= 21);
}
