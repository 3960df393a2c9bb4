//! A real Prometheus server scrapes a standalone proxy and a controller, and its HTTP API answers
//! the questions an operator asks: request rate and latency quantiles by route, error ratio,
//! proxies connected; the chart's alerting rules load and evaluate; every query of the chart's
//! Grafana dashboard runs.
//!
//! ```text
//!  traffic ──► standalone proxy (in-process, manifests in a temp dir) ──► echo upstream
//!                 │ /metrics                       closed port (502s)
//!  prometheus ◄───┤ scrape every 1 s
//!  (child process)│ /metrics
//!                 └── controller (in-process, fake API server) ◄── stream client (1 proxy)
//! ```
//!
//! Needs Prometheus' server: `HOOKWAY_PROMETHEUS=/path/to/prometheus` (scripts/test.sh sets it
//! after scripts/ensure-prometheus.sh installs Debian's package), else `prometheus` on `PATH`;
//! without either the test prints one line saying it was skipped. Everything it starts is
//! stopped when it ends; every wait polls with a deadline.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hookway_controller::compile_loop::Debounce;
use hookway_controller::run::{default_compile, Config, Controller};
use hookway_controller::stream::{tls, Token};
use hookway_crds::{Route, Service};
use hookway_proxy::chain::ChainBuilder;
use hookway_proxy::source::controller::{self as source, Backoff, ControllerSourceConfig};
use hookway_proxy::standalone::{self, StandaloneOptions};
use hookway_proxy::{ProxyConfig, ProxyServer};
use hookway_tests::fake_api::FakeApi;
use hookway_tests::pki::Pki;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::PostParams;
use kube::Api;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

/// How long Prometheus may take to start, and the data to show up in its API.
const WAIT: Duration = Duration::from_secs(60);
/// The range of every `rate()`: five scrapes at the 1 s interval.
const RANGE: &str = "5s";
const ROOT: &str = "hookway-system";
const CHART_FILES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/hookway/files");

/// The routes the traffic goes to, and what each answers.
const ROUTES: [(&str, &str, u16); 3] = [
    ("default/hello", "/hello", 200),
    ("default/echo", "/echo/x", 200),
    ("default/broken", "/broken", 502),
];

/// Where Prometheus' server is, or `None` (the test is skipped) when it is not installed.
fn prometheus_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("HOOKWAY_PROMETHEUS") {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "HOOKWAY_PROMETHEUS={path:?} is not a file");
        return Some(path);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("prometheus"))
        .find(|p| p.is_file())
}

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let dir =
            std::env::temp_dir().join(format!("hookway-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The Prometheus child process: killed and reaped on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts `binary` on a free loopback port with `config`, storing its data under `dir`, and
    /// waits until `/-/ready` answers 200.
    async fn start(binary: &Path, config: &Path, dir: &Path) -> Self {
        let addr = {
            // The kernel picks the port; Prometheus binds it right after (a small race).
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap()
        };
        let log = dir.join("prometheus.log");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.join("prometheus.err")).unwrap())
            .spawn()
            .expect("prometheus starts");
        let mut prometheus = Self {
            child,
            addr,
            log: dir.join("prometheus.err"),
        };
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = prometheus.child.try_wait().unwrap() {
                panic!("prometheus exited ({status}):\n{}", prometheus.logs());
            }
            if let Ok((200, _)) = http_get(addr, "/-/ready", "HTTP/1.0").await {
                return prometheus;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready:\n{}",
                prometheus.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET /api/v1/{path}`: the `data` of a successful answer, or the error Prometheus gave.
    async fn api(&self, path: &str) -> Result<Value, String> {
        let (code, body) = http_get(self.addr, &format!("/api/v1/{path}"), "HTTP/1.0")
            .await
            .map_err(|e| e.to_string())?;
        let answer: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        match (code, answer["status"].as_str()) {
            (200, Some("success")) => Ok(answer["data"].clone()),
            _ => Err(format!("{code}: {body}")),
        }
    }

    /// An instant query's vector: `(labels, value)` per series.
    async fn query(&self, promql: &str) -> Result<Vec<(Value, f64)>, String> {
        let q: String = form_urlencoded::byte_serialize(promql.as_bytes()).collect();
        let data = self.api(&format!("query?query={q}")).await?;
        let result = data["result"].as_array().cloned().unwrap_or_default();
        if data["resultType"] == "scalar" {
            return Ok(vec![(json!({}), parse_value(&data["result"]))]);
        }
        Ok(result
            .into_iter()
            .map(|s| (s["metric"].clone(), parse_value(&s["value"])))
            .collect())
    }

    /// Polls `promql` until `done` accepts its result; panics with the last result at the
    /// deadline.
    async fn wait_for(
        &self,
        what: &str,
        promql: &str,
        done: impl Fn(&[(Value, f64)]) -> bool,
    ) -> Vec<(Value, f64)> {
        let deadline = Instant::now() + WAIT;
        loop {
            let got = self.query(promql).await;
            if let Ok(v) = &got {
                if done(v) {
                    return v.clone();
                }
            }
            assert!(
                Instant::now() < deadline,
                "{what}: `{promql}` gave {got:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// `[time, "value"]` → value.
fn parse_value(v: &Value) -> f64 {
    v[1].as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(f64::NAN)
}

/// The value of the series whose `label` is `value`.
fn by_label(v: &[(Value, f64)], label: &str, value: &str) -> Option<f64> {
    v.iter().find(|(m, _)| m[label] == value).map(|(_, x)| *x)
}

/// A one-shot HTTP GET on loopback: `(status, body)`. `HTTP/1.0` keeps Go servers from
/// chunking the answer.
async fn http_get(addr: SocketAddr, path: &str, version: &str) -> std::io::Result<(u16, String)> {
    let exchange = async {
        let mut tcp = TcpStream::connect(addr).await?;
        let req = format!("GET {path} {version}\r\nhost: test\r\nconnection: close\r\n\r\n");
        tcp.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        tcp.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&buf).into_owned())
    };
    let text = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| std::io::Error::other("timed out"))??;
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

/// The standalone proxy's manifests: the three [`ROUTES`] plus two global plugins (hook times).
fn manifests(upstream: SocketAddr) -> String {
    format!(
        r#"
apiVersion: hookway.dev/v1alpha1
kind: GatewayPlugin
metadata: {{name: request-id, namespace: {ROOT}}}
spec: {{plugin: request_id, status: global, order: 10, config: {{}}}}
---
apiVersion: hookway.dev/v1alpha1
kind: GatewayPlugin
metadata: {{name: served-by, namespace: {ROOT}}}
spec:
  plugin: headers
  status: global
  order: 20
  config: {{response: {{set: {{x-served-by: hookway}}}}}}
---
apiVersion: hookway.dev/v1alpha1
kind: GatewayPlugin
metadata: {{name: hello, namespace: {ROOT}}}
spec: {{plugin: mock, status: enable, order: 100, config: {{status: 200, body: "hello\n"}}}}
---
apiVersion: hookway.dev/v1alpha1
kind: Service
metadata: {{name: echo, namespace: default}}
spec: {{nodes: [{{address: 127.0.0.1, port: {port}}}]}}
---
apiVersion: hookway.dev/v1alpha1
kind: Service
metadata: {{name: closed, namespace: default}}
spec: {{nodes: [{{address: 127.0.0.1, port: 9}}], retries: {{attempts: 0}}}}
---
apiVersion: hookway.dev/v1alpha1
kind: Route
metadata: {{name: hello, namespace: default}}
spec: {{rules: [{{path: {{type: Exact, value: /hello}}}}], service: closed, plugins: {{hello: {{}}}}}}
---
apiVersion: hookway.dev/v1alpha1
kind: Route
metadata: {{name: echo, namespace: default}}
spec: {{rules: [{{path: {{type: Prefix, value: /echo}}}}], service: echo}}
---
apiVersion: hookway.dev/v1alpha1
kind: Route
metadata: {{name: broken, namespace: default}}
spec: {{rules: [{{path: {{type: Exact, value: /broken}}}}], service: closed}}
"#,
        port = upstream.port()
    )
}

/// A standalone proxy (the same library calls as `hookway-proxy --manifests DIR`) on ephemeral
/// loopback ports: `(http, admin, stop)`.
async fn standalone_proxy(dir: &Path) -> (SocketAddr, SocketAddr, oneshot::Sender<()>) {
    let registry = hookway_proxy::plugins::builtin();
    let (tx, mut rx) = watch::channel(None);
    let loader = tokio::spawn(standalone::watch(
        dir.to_path_buf(),
        StandaloneOptions::default(),
        registry.catalogue().clone(),
        tx,
    ));
    tokio::select! {
        published = rx.wait_for(Option::is_some) => if published.is_err() {
            panic!("the manifests do not load: {:?}", loader.await);
        },
        _ = tokio::time::sleep(WAIT) => panic!("the manifests did not load within {WAIT:?}"),
    }
    let config = ProxyConfig {
        http_addr: Some("127.0.0.1:0".parse().unwrap()),
        https_addr: None,
        admin_addr: Some("127.0.0.1:0".parse().unwrap()),
        ..ProxyConfig::default()
    };
    let server = ProxyServer::bind(config, ChainBuilder::new(registry), rx)
        .await
        .expect("proxy binds");
    let (http, admin) = (server.http_addr().unwrap(), server.admin_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    (http, admin, stop)
}

/// A controller on the fake API server, with one Service and one Route, and one proxy stream
/// client connected to it.
async fn controller(pki: &Pki) -> (FakeApi, Controller, tokio::task::JoinHandle<()>) {
    let fake = FakeApi::start().await;
    let client = fake.client().await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ROOT}})).unwrap(),
        )
        .await
        .unwrap();
    let services: Api<Service> = Api::namespaced(client.clone(), ROOT);
    let service = json!({"apiVersion": "hookway.dev/v1alpha1", "kind": "Service",
        "metadata": {"name": "web"}, "spec": {"nodes": [{"address": "10.0.0.1", "port": 80}]}});
    services
        .create(
            &PostParams::default(),
            &serde_json::from_value(service).unwrap(),
        )
        .await
        .unwrap();
    let routes: Api<Route> = Api::namespaced(client.clone(), ROOT);
    let route = json!({"apiVersion": "hookway.dev/v1alpha1", "kind": "Route",
        "metadata": {"name": "web"}, "spec": {"rules": [{"path": {"type": "Prefix", "value": "/"}}], "service": "web"}});
    routes
        .create(
            &PostParams::default(),
            &serde_json::from_value(route).unwrap(),
        )
        .await
        .unwrap();
    let config = Config {
        namespaces: vec![ROOT.into()],
        root_namespace: ROOT.into(),
        stream_listener: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        admin_listener: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        token: Token::new(&pki.token).unwrap(),
        tls: tls::server_config(pki.cert_pem.as_bytes(), pki.key_pem.as_bytes()).unwrap(),
        identity: "controller-0".into(),
        lease_duration: Duration::from_secs(3),
        debounce: Debounce::default(),
        gateway_api_recheck: Duration::from_secs(1),
        fetch: Default::default(),
        proxy_service: None,
        compile: default_compile(ROOT),
    };
    let controller = Controller::start(client, config)
        .await
        .expect("controller starts");
    let mut stream = ControllerSourceConfig::new(
        format!("https://127.0.0.1:{}", controller.stream_addr.port()),
        pki.ca_file.clone(),
        pki.token_file.clone(),
        "hookway-proxy-0",
    );
    stream.backoff = Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(300),
    };
    let (tx, rx) = watch::channel(None);
    let client = tokio::spawn(async move {
        // The client stops when nobody receives its snapshots: keep a receiver.
        let _snapshots = rx;
        let _ = source::run(stream, tx, None).await;
    });
    (fake, controller, client)
}

/// What the traffic got back.
#[derive(Default)]
struct Answers {
    /// Responses per route (index in [`ROUTES`]), whatever their status.
    per_route: [AtomicU64; 3],
    /// Responses whose status was not the route's.
    unexpected: AtomicU64,
}

/// Sends requests round-robin over [`ROUTES`] (one every 10 ms) until `stop` is set or twice
/// `WAIT` passes.
fn traffic(proxy: SocketAddr, stop: Arc<AtomicBool>) -> Arc<Answers> {
    let answers = Arc::new(Answers::default());
    let counts = answers.clone();
    tokio::spawn(async move {
        let deadline = Instant::now() + WAIT * 2;
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            let (_, path, want) = ROUTES[i % ROUTES.len()];
            if let Ok((code, _)) = http_get(proxy, path, "HTTP/1.1").await {
                counts.per_route[i % ROUTES.len()].fetch_add(1, Ordering::Relaxed);
                if code != want {
                    counts.unexpected.fetch_add(1, Ordering::Relaxed);
                }
            }
            i += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    answers
}

fn scrape_config(proxy_admin: SocketAddr, controller_admin: SocketAddr) -> String {
    format!(
        r#"global: {{scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}}
rule_files: ["{CHART_FILES}/prometheus-rules.yaml"]
scrape_configs:
- job_name: proxy
  static_configs: [{{targets: ["{proxy_admin}"]}}]
- job_name: controller
  static_configs: [{{targets: ["{controller_admin}"]}}]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_rates_and_latency_quantiles_by_route() {
    let Some(binary) = prometheus_binary() else {
        eprintln!("SKIPPED prometheus test: no `prometheus` on PATH and HOOKWAY_PROMETHEUS unset (scripts/test.sh installs it with scripts/ensure-prometheus.sh)");
        return;
    };
    let dir = TempDir::new("prometheus");
    let manifest_dir = dir.0.join("manifests");
    std::fs::create_dir(&manifest_dir).unwrap();
    let upstream = hookway_tests::upstream::start().await;
    std::fs::write(manifest_dir.join("routes.yaml"), manifests(upstream)).unwrap();
    let (proxy_http, proxy_admin, _stop_proxy) = standalone_proxy(&manifest_dir).await;
    let pki = Pki::new("prometheus");
    let (_fake, controller, stream_client) = controller(&pki).await;
    let config = dir.0.join("prometheus.yml");
    std::fs::write(&config, scrape_config(proxy_admin, controller.admin_addr)).unwrap();
    let prometheus = Prometheus::start(&binary, &config, &dir.0).await;

    let stop = Arc::new(AtomicBool::new(false));
    let answers = traffic(proxy_http, stop.clone());

    // Both targets are up.
    prometheus
        .wait_for("both targets scraped", "up", |v| {
            by_label(v, "job", "proxy") == Some(1.0)
                && by_label(v, "job", "controller") == Some(1.0)
        })
        .await;

    // Request rate by route: every route has a positive, finite rate.
    let rate = format!("sum by (route) (rate(hookway_requests_total[{RANGE}]))");
    let rates = prometheus
        .wait_for("a request rate for every route", &rate, |v| {
            ROUTES
                .iter()
                .all(|(r, _, _)| by_label(v, "route", r).is_some_and(|x| x > 0.0 && x.is_finite()))
        })
        .await;
    for (route, _, _) in ROUTES {
        // One request per route every ~30 ms at most: well under 100/s.
        let r = by_label(&rates, "route", route).unwrap();
        assert!(r < 100.0, "{route}: {r}/s");
    }

    // Latency quantiles by route: finite, within the histogram's range.
    let p90 = format!(
        "histogram_quantile(0.9, sum by (route, le) (rate(hookway_request_duration_seconds_bucket[{RANGE}])))"
    );
    let quantiles = prometheus
        .wait_for("a p90 latency for every route", &p90, |v| {
            ROUTES
                .iter()
                .all(|(r, _, _)| by_label(v, "route", r).is_some_and(f64::is_finite))
        })
        .await;
    for (route, _, _) in ROUTES {
        let q = by_label(&quantiles, "route", route).unwrap();
        assert!(q > 0.0 && q <= 30.0, "{route}: p90 {q}s");
    }

    // Error ratio by route (as the dashboard computes it: 0, not absent, without 5xx): the
    // broken route answers only 5xx, the others none.
    let total = format!("sum by (route) (rate(hookway_requests_total[{RANGE}]))");
    let ratio = format!(
        r#"(sum by (route) (rate(hookway_requests_total{{status=~"5.."}}[{RANGE}])) or 0 * {total}) / {total}"#
    );
    let ratios = prometheus
        .wait_for("an error ratio for every route", &ratio, |v| {
            ROUTES
                .iter()
                .all(|(r, _, _)| by_label(v, "route", r).is_some_and(f64::is_finite))
        })
        .await;
    assert_eq!(by_label(&ratios, "route", "default/broken"), Some(1.0));
    assert_eq!(by_label(&ratios, "route", "default/hello"), Some(0.0));
    assert_eq!(by_label(&ratios, "route", "default/echo"), Some(0.0));

    // Counters agree with the client: Prometheus never saw more than was answered (plus the
    // one request that may be in flight), and every answer had the route's status.
    let totals = prometheus
        .query("sum by (route) (hookway_requests_total)")
        .await
        .unwrap();
    for (i, (route, _, _)) in ROUTES.iter().enumerate() {
        let seen = by_label(&totals, "route", route).unwrap();
        let answered = answers.per_route[i].load(Ordering::Relaxed) as f64;
        assert!(
            seen >= 1.0 && seen <= answered + 1.0,
            "{route}: {seen} scraped, {answered} answered"
        );
    }
    assert_eq!(answers.unexpected.load(Ordering::Relaxed), 0);

    // The controller: one proxy connected, its objects accepted, a snapshot published.
    prometheus
        .wait_for(
            "the controller counts its proxy",
            "hookway_controller_connected_proxies",
            |v| v.len() == 1 && v[0].1 == 1.0,
        )
        .await;
    let accepted = prometheus
        .query(r#"hookway_controller_objects{condition="accepted"}"#)
        .await
        .unwrap();
    assert_eq!(
        by_label(&accepted, "kind", "Route"),
        Some(1.0),
        "{accepted:?}"
    );
    assert_eq!(
        by_label(&accepted, "kind", "Service"),
        Some(1.0),
        "{accepted:?}"
    );
    let version = prometheus
        .query("hookway_controller_snapshot_version")
        .await
        .unwrap();
    assert!(version.len() == 1 && version[0].1 > 0.0, "{version:?}");

    // The chart's alerting rules loaded, and every one evaluated without error.
    let alerts = std::fs::read_to_string(format!("{CHART_FILES}/prometheus-rules.yaml"))
        .unwrap()
        .matches("- alert:")
        .count();
    let deadline = Instant::now() + WAIT;
    loop {
        let data = prometheus.api("rules").await.unwrap();
        let rules: Vec<Value> = data["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap().clone())
            .collect();
        assert_eq!(rules.len(), alerts, "{data}");
        let bad: Vec<_> = rules.iter().filter(|r| r["health"] != "ok").collect();
        if bad.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "rules not healthy: {bad:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Every dashboard query runs; the panels an operator looks at first show numbers.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{CHART_FILES}/grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    let must_show = [
        "Requests/s",
        "5xx ratio",
        "Proxies connected",
        "Proxies scraped",
        "Controller leader",
        "Requests/s by route",
        "Error ratio by route",
        "Request latency p50 by route",
        "Request latency p90 by route",
        "Request latency p99 by route",
        "Upstream latency p99 by service",
        "Upstream connect errors/s by service",
        "Plugin hook time p99",
        "Plugin hook time per request",
        "Snapshot version",
        "Snapshot rejections and lag",
        "Snapshots applied/s",
    ];
    let mut shown = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap();
        let mut series = 0;
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", RANGE)
                .replace("$route", ".*");
            let result = prometheus.query(&expr).await;
            series += result
                .unwrap_or_else(|e| panic!("panel {title:?}: `{expr}`: {e}"))
                .len();
        }
        if series > 0 {
            shown.push(title);
        }
    }
    let missing: Vec<_> = must_show.iter().filter(|t| !shown.contains(t)).collect();
    assert!(missing.is_empty(), "panels without data: {missing:?}");

    stop.store(true, Ordering::Relaxed);
    stream_client.abort();
    drop(prometheus);
    controller.shutdown().await;
}
