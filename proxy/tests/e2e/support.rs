//! Test support: echo upstreams, snapshot builders, certificates, proxies and clients.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

use hookway_crds::snapshot::{
    Balance, CertificateEntry, Endpoint, ObjectKey, PathMatchType, RouteEntry, RuleEntry, Scheme,
    Snapshot, UpstreamEntry,
};
use hookway_proxy::chain::ChainBuilder;
use hookway_proxy::runtime::RuntimeState;
use hookway_proxy::{Limits, ProxyConfig, ProxyServer};

/// Bounds every wait in the tests.
pub const WAIT: Duration = Duration::from_secs(10);

/// A hyper server echoing requests as JSON: `{"server","method","path","headers","body"}`.
/// `x-delay-ms: N` delays the answer, `x-status: N` sets the status; a server made with
/// `with_status` always answers that status. Upgrade requests get 101 and an echoed stream.
pub struct EchoServer {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl EchoServer {
    pub async fn start(name: &str) -> Self {
        Self::start_with(name, None).await
    }

    pub async fn with_status(name: &str, status: u16) -> Self {
        Self::start_with(name, Some(status)).await
    }

    /// An echo server speaking TLS with `cert_pem`/`key_pem`.
    pub async fn start_tls(name: &str, cert_pem: &str, key_pem: &str) -> Self {
        use rustls::pki_types::pem::PemObject;
        let certs = rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        Self::start_inner(
            name,
            None,
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
        )
        .await
    }

    async fn start_with(name: &str, status: Option<u16>) -> Self {
        Self::start_inner(name, status, None).await
    }

    async fn start_inner(
        name: &str,
        status: Option<u16>,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let (stop, mut stopped) = oneshot::channel();
        let name: Arc<str> = name.into();
        let counter = hits.clone();
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    _ = &mut stopped => return,
                    r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
                };
                let name = name.clone();
                let counter = counter.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        echo(name.clone(), status, req)
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        None => {
                            let _ = http
                                .serve_connection(TokioIo::new(stream), service)
                                .with_upgrades()
                                .await;
                        }
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = http.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                    }
                });
            }
        });
        Self {
            addr,
            hits,
            stop: Some(stop),
        }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn echo(
    name: Arc<str>,
    status: Option<u16>,
    mut req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    if req.headers().contains_key(http::header::UPGRADE) {
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = upgrade.await {
                let mut io = TokioIo::new(upgraded);
                let (mut r, mut w) = tokio::io::split(&mut io);
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
        return Ok(Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .body(Full::new(Bytes::new()))
            .unwrap());
    }
    if let Some(ms) = header("x-delay-ms").and_then(|v| v.parse().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let status = header("x-status")
        .and_then(|v| v.parse().ok())
        .or(status)
        .unwrap_or(200);
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in req.headers() {
        let v = v.to_str().unwrap_or("<binary>");
        headers
            .entry(k.as_str().to_owned())
            .and_modify(|prev| {
                prev.push_str(", ");
                prev.push_str(v);
            })
            .or_insert_with(|| v.to_owned());
    }
    let method = req.method().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let json = serde_json::json!({
        "server": &*name,
        "method": method,
        "path": path,
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    Ok(Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("connection", "keep-alive")
        .header("keep-alive", "timeout=5")
        .body(Full::new(Bytes::from(json.to_string())))
        .unwrap())
}

/// An address nothing listens on (connections are refused).
pub async fn dead_addr() -> SocketAddr {
    // Bound but not listening: connections are refused, and the port stays taken for the rest
    // of the test process, so a listener of a test running alongside cannot get it.
    static HELD: std::sync::Mutex<Vec<tokio::net::TcpSocket>> = std::sync::Mutex::new(Vec::new());
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    HELD.lock().unwrap().push(socket);
    addr
}

/// An upstream that holds every request until [`HeldServer::release`]: the test learns from
/// [`HeldServer::arrived`] that a request is in flight, instead of sleeping and hoping. Released
/// requests (and any later ones) are answered 200 `held ok`.
pub struct HeldServer {
    pub addr: SocketAddr,
    arrived: tokio::sync::mpsc::UnboundedReceiver<()>,
    release: Arc<watch::Sender<bool>>,
}

impl HeldServer {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (arrived_tx, arrived) = tokio::sync::mpsc::unbounded_channel();
        let release = Arc::new(watch::channel(false).0);
        let released = release.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (arrived_tx, released) = (arrived_tx.clone(), released.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |_req| {
                        let _ = arrived_tx.send(());
                        let mut released = released.subscribe();
                        async move {
                            let _ = released.wait_for(|r| *r).await;
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                                b"held ok",
                            ))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            arrived,
            release,
        }
    }

    /// Waits (bounded) until the next request reaches this upstream.
    pub async fn arrived(&mut self) {
        tokio::time::timeout(WAIT, self.arrived.recv())
            .await
            .expect("no request reached the held upstream")
            .unwrap();
    }

    /// Answers every held request, and every later one at once.
    pub fn release(&self) {
        self.release.send_replace(true);
    }
}

/// Polls `condition` every 2 ms until it holds; panics naming `what` after [`WAIT`].
pub async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Whether a TCP connection to `addr` is refused (the listener is gone).
pub async fn refuses_connections(addr: SocketAddr) -> bool {
    tokio::net::TcpStream::connect(addr).await.is_err()
}

// ---------------------------------------------------------------- snapshots

pub fn key(name: &str) -> ObjectKey {
    ObjectKey::new("default", name)
}

pub fn upstream(name: &str, addrs: &[SocketAddr]) -> UpstreamEntry {
    UpstreamEntry {
        key: key(name),
        scheme: Scheme::Http,
        protocol: Default::default(),
        balance: Balance::RoundRobin,
        hash_header: None,
        endpoints: addrs
            .iter()
            .map(|a| Endpoint {
                address: a.ip().to_string(),
                port: a.port(),
                weight: 1,
            })
            .collect(),
        connect_timeout_ms: 1000,
        request_timeout_ms: 3000,
        retries: 0,
        retry_on_status: vec![],
        tls_server_name: None,
        tls_insecure_skip_verify: false,
    }
}

pub fn rule(kind: PathMatchType, path: &str) -> RuleEntry {
    RuleEntry {
        path_type: kind,
        path: path.into(),
        methods: vec![],
        headers: vec![],
        query: vec![],
        tls: None,
        isolation: None,
    }
}

pub fn route(name: &str, hosts: &[&str], rules: Vec<RuleEntry>, upstream: &str) -> RouteEntry {
    RouteEntry {
        key: key(name),
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        rules: if rules.is_empty() {
            vec![rule(PathMatchType::Prefix, "/")]
        } else {
            rules
        },
        priority: 0,
        created: 1_700_000_000,
        upstream: key(upstream),
        chain: vec![],
    }
}

pub fn snapshot(
    version: u64,
    mut routes: Vec<RouteEntry>,
    mut upstreams: Vec<UpstreamEntry>,
    mut certificates: Vec<CertificateEntry>,
) -> Snapshot {
    routes.sort_by(|a, b| a.key.cmp(&b.key));
    upstreams.sort_by(|a, b| a.key.cmp(&b.key));
    certificates.sort_by(|a, b| a.key.cmp(&b.key));
    Snapshot {
        version,
        hash: String::new(),
        routes: hookway_crds::snapshot::shared(routes),
        upstreams: hookway_crds::snapshot::shared(upstreams),
        certificates: hookway_crds::snapshot::shared(certificates),
        secrets: vec![],
        default_chain: vec![],
        blobs: vec![],
    }
    .seal()
}

/// One route `/` to one upstream.
pub fn simple(version: u64, addrs: &[SocketAddr]) -> Snapshot {
    snapshot(
        version,
        vec![route("r", &[], vec![], "svc")],
        vec![upstream("svc", addrs)],
        vec![],
    )
}

// ---------------------------------------------------------------- certificates

/// A test CA issuing leaf certificates.
pub struct Ca {
    pub pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Ca {
    pub fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "hookway test CA");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self {
            pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// `(cert_pem, key_pem)` for `hosts`.
    pub fn leaf(&self, hosts: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A snapshot certificate entry for `hosts`.
    pub fn entry(&self, name: &str, hosts: &[&str]) -> CertificateEntry {
        let (cert_pem, key_pem) = self.leaf(hosts);
        CertificateEntry {
            key: key(name),
            cert_pem,
            key_pem,
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
        }
    }
}

// ---------------------------------------------------------------- the proxy

pub struct Proxy {
    pub http: SocketAddr,
    pub https: Option<SocketAddr>,
    pub admin: SocketAddr,
    pub tx: watch::Sender<Option<Arc<Snapshot>>>,
    pub state: Arc<RuntimeState>,
    stop: Option<oneshot::Sender<()>>,
    pub task: Option<tokio::task::JoinHandle<Result<(), hookway_proxy::ServerError>>>,
}

pub fn test_config() -> ProxyConfig {
    ProxyConfig {
        http_addr: Some("127.0.0.1:0".parse().unwrap()),
        https_addr: Some("127.0.0.1:0".parse().unwrap()),
        admin_addr: Some("127.0.0.1:0".parse().unwrap()),
        default_cert: None,
        limits: Limits::default(),
        rules: hookway_proxy::RequestRules::default(),
        grace: Duration::from_secs(5),
    }
}

impl Proxy {
    pub async fn start(snapshot: Option<Snapshot>) -> Self {
        Self::start_with(snapshot, test_config()).await
    }

    pub async fn start_with(snapshot: Option<Snapshot>, config: ProxyConfig) -> Self {
        let (tx, rx) = watch::channel(snapshot.map(Arc::new));
        let server = ProxyServer::bind(
            config,
            ChainBuilder::new(hookway_proxy::plugins::builtin()),
            rx,
        )
        .await
        .unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let (http, https, admin) = (
            server.http_addr().unwrap(),
            server.https_addr(),
            server.admin_addr().unwrap(),
        );
        let state = server.state().clone();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        Self {
            http,
            https,
            admin,
            state,
            tx,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    /// Publishes `snapshot` and waits until it is live.
    pub async fn apply(&self, snapshot: Snapshot) {
        let version = snapshot.version;
        self.tx.send_replace(Some(Arc::new(snapshot)));
        self.wait_version(version).await;
    }

    pub async fn wait_version(&self, version: u64) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.version() != Some(version) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "snapshot {version} never applied"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    pub fn version(&self) -> Option<u64> {
        self.state.load().map(|rt| rt.snapshot.version)
    }

    /// Signals shutdown and waits for the server to stop.
    pub async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task)
                .await
                .unwrap()
                .unwrap()
                .unwrap();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

// ---------------------------------------------------------------- clients

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(WAIT)
        .no_proxy()
        .build()
        .unwrap()
}

/// A TLS client trusting `ca_pem`, resolving `hosts` to `addr`.
pub fn tls_client(ca_pem: &str, hosts: &[&str], addr: SocketAddr) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .timeout(WAIT)
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap());
    for h in hosts {
        b = b.resolve(h, addr);
    }
    b.build().unwrap()
}

/// The echoed JSON of a response.
pub async fn json(resp: reqwest::Response) -> serde_json::Value {
    let text = resp.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not json: {text}"))
}

/// GET `url` with `host` and return (status, echoed server or body text).
pub async fn get_server(c: &reqwest::Client, url: &str, host: Option<&str>) -> (u16, String) {
    let mut req = c.get(url);
    if let Some(h) = host {
        req = req.header("host", h);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let server = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["server"].as_str().map(str::to_owned))
        .unwrap_or(text);
    (status, server)
}

// ---------------------------------------------------------------- standalone folders

/// A temporary manifest folder, removed on drop.
pub struct ManifestDir {
    pub path: std::path::PathBuf,
}

impl ManifestDir {
    pub fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "hookway-e2e-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        Self { path }
    }

    /// Writes (or replaces) one manifest file atomically, as editors and ConfigMaps do.
    pub fn write(&self, name: &str, text: &str) {
        let tmp = self.path.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.path.join(name)).unwrap();
    }
}

impl Drop for ManifestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A Service with static nodes, as YAML.
pub fn service_yaml(name: &str, addrs: &[SocketAddr]) -> String {
    let nodes: String = addrs
        .iter()
        .map(|a| format!("  - {{address: \"{}\", port: {}}}\n", a.ip(), a.port()))
        .collect();
    format!(
        "apiVersion: hookway.dev/v1alpha1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  nodes:\n{nodes}"
    )
}

/// A proxy fed by the standalone loader watching `dir`.
pub async fn standalone_proxy(dir: &ManifestDir) -> Proxy {
    let proxy = Proxy::start(None).await;
    let options = hookway_proxy::standalone::StandaloneOptions::default();
    let catalogue = hookway_proxy::plugins::builtin().catalogue().clone();
    tokio::spawn(hookway_proxy::standalone::watch(
        dir.path.clone(),
        options,
        catalogue,
        proxy.tx.clone(),
    ));
    proxy.wait_version(1).await;
    proxy
}

/// A GatewayPlugin `name` (namespace `hookway-system`, status `enable`) of `kind` with `config`
/// (YAML flow style), as YAML.
pub fn plugin_yaml(name: &str, kind: &str, config: &str) -> String {
    format!(
        "apiVersion: hookway.dev/v1alpha1\nkind: GatewayPlugin\nmetadata: {{name: {name}, namespace: hookway-system}}\nspec:\n  plugin: {kind}\n  status: enable\n  config: {config}\n"
    )
}

/// A Route `name` matching the path prefix `prefix`, to Service `echo`, with the plugin
/// references `refs` (the inside of a YAML flow map: `a: {}, b: {excludePaths: [/x]}`), as YAML.
pub fn route_yaml(name: &str, prefix: &str, refs: &str) -> String {
    format!(
        "apiVersion: hookway.dev/v1alpha1\nkind: Route\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  rules: [{{path: {{type: Prefix, value: {prefix}}}}}]\n  service: echo\n  plugins: {{{refs}}}\n"
    )
}

/// A manifest folder with Service `echo` on `upstream` and `manifests` (file name, YAML), and a
/// standalone proxy loading it.
pub async fn proxy_with(
    upstream: SocketAddr,
    manifests: &[(&str, String)],
) -> (ManifestDir, Proxy) {
    let dir = ManifestDir::new();
    dir.write("service.yaml", &service_yaml("echo", &[upstream]));
    for (name, text) in manifests {
        dir.write(name, text);
    }
    let proxy = standalone_proxy(&dir).await;
    (dir, proxy)
}

/// The text of the admin `/metrics`.
pub async fn metrics(proxy: &Proxy) -> String {
    client()
        .get(format!("http://{}/metrics", proxy.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}
