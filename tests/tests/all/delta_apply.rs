//! A real proxy applying the controller's delta frames in place, end to end: the controller's
//! stream server, a proxy (`hookway_tests::proxy`) and a real upstream, checked by traffic and
//! by the proxy's `hookway_snapshot_apply_seconds{kind}` / `hookway_snapshot_rebuilt_total{part}`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hookway_controller::metrics::Metrics;
use hookway_controller::proxies::Proxies;
use hookway_controller::stream::{tls, StreamServer, Token};
use hookway_crds::snapshot::{
    Balance, Endpoint, ObjectKey, PathMatchType, RouteEntry, RuleEntry, Scheme, UpstreamEntry,
};
use hookway_crds::Snapshot;
use hookway_proxy::runtime::RuntimeState;
use hookway_tests::{pki::Pki, proxy, upstream};
use tokio::net::TcpListener;
use tokio::sync::watch;

const ROUTES: usize = 200;

fn key(name: &str) -> ObjectKey {
    ObjectKey::new("ns", name)
}

/// Route `r{i}` on `host`, to `upstream`.
fn route(i: usize, host: &str, upstream: &str) -> RouteEntry {
    RouteEntry {
        key: key(&format!("r{i:03}")),
        hosts: vec![host.into()],
        rules: vec![RuleEntry {
            path_type: PathMatchType::Prefix,
            path: "/".into(),
            methods: vec![],
            headers: vec![],
            query: vec![],
            tls: None,
            isolation: None,
        }],
        priority: 0,
        created: 0,
        upstream: key(upstream),
        chain: vec![],
    }
}

fn service(name: &str, nodes: &[SocketAddr]) -> UpstreamEntry {
    UpstreamEntry {
        key: key(name),
        scheme: Scheme::Http,
        protocol: Default::default(),
        balance: Balance::RoundRobin,
        hash_header: None,
        endpoints: nodes
            .iter()
            .map(|a| Endpoint {
                address: a.ip().to_string(),
                port: a.port(),
                weight: 1,
            })
            .collect(),
        connect_timeout_ms: 1000,
        request_timeout_ms: 5000,
        retries: 0,
        retry_on_status: vec![],
        tls_server_name: None,
        tls_insecure_skip_verify: false,
    }
}

/// `ROUTES` Routes `r{i}` on `h{i}.example.com` to Service `web`, except `r007`, which goes to
/// `spare`.
fn world(web: SocketAddr, spare: &[SocketAddr]) -> Snapshot {
    Snapshot {
        routes: (0..ROUTES)
            .map(|i| {
                let upstream = if i == 7 { "spare" } else { "web" };
                Arc::new(route(i, &format!("h{i}.example.com"), upstream))
            })
            .collect(),
        upstreams: vec![
            Arc::new(service("spare", spare)),
            Arc::new(service("web", &[web])),
        ],
        ..Snapshot::default()
    }
}

fn seal(s: Snapshot, version: u64) -> Arc<Snapshot> {
    let mut s = s.seal();
    s.version = version;
    Arc::new(s)
}

/// Waits (bounded) until the proxy answers `want` for `host`.
async fn until_status(proxy: SocketAddr, host: &str, want: u16) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = proxy::status(proxy, host).await;
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{host}: {got}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits (bounded) until the proxy's live runtime is `snapshot`'s content.
async fn until_applied(state: &RuntimeState, snapshot: &Snapshot) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while state.applied().map(|(_, hash)| hash) != Some(snapshot.hash.clone()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "version {} not applied",
            snapshot.version
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Applies by kind and parts built so far: `[full, delta, route, chain, upstream, router]`.
fn counts(state: &RuntimeState) -> [u64; 6] {
    let m = state.metrics();
    let applies = |k: &str| m.snapshot_apply.with_label_values(&[k]).get_sample_count();
    let part = |p: &str| m.snapshot_rebuilt.with_label_values(&[p]).get();
    [
        applies("full"),
        applies("delta"),
        part("route"),
        part("chain"),
        part("upstream"),
        part("router"),
    ]
}

fn grew(before: [u64; 6], after: [u64; 6]) -> [u64; 6] {
    std::array::from_fn(|i| after[i] - before[i])
}

async fn serve(
    pki: &Pki,
    listener: TcpListener,
    snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
    metrics: &Metrics,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let server = StreamServer::new(
        snapshots,
        Proxies::new(metrics.clone()),
        Token::new(&pki.token).unwrap(),
        tls::server_config(pki.cert_pem.as_bytes(), pki.key_pem.as_bytes()).unwrap(),
        metrics.clone(),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(listener, async move {
        let _ = stopped.await;
    }));
    (stop, task)
}

#[tokio::test]
async fn a_proxy_applies_changes_in_place_and_resyncs_after_a_gap() {
    let pki = Pki::new("delta-apply");
    let web = upstream::start().await;
    // An address nobody listens on: `spare` starts without a reachable endpoint.
    let dead = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let mut current = world(web, &[dead]);
    let (snap_tx, snap_rx) = watch::channel(Some(seal(current.clone(), 1)));
    let metrics = Metrics::new().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, task) = serve(&pki, listener, snap_rx.clone(), &metrics).await;
    let p = proxy::start(&pki, addr, "p1").await;
    until_status(p.http, "h0.example.com", 200).await;
    assert_eq!(
        proxy::status(p.http, "h7.example.com").await,
        502,
        "spare: refused"
    );
    let mut version = 1;
    let mut publish = |current: &Snapshot| {
        version += 1;
        let next = seal(current.clone(), version);
        snap_tx.send_replace(Some(next.clone()));
        next
    };

    // Endpoint churn: only the upstream is built, in place; no Route, chain or router.
    for nodes in [vec![web], vec![web, dead], vec![web]] {
        let before = counts(&p.state);
        current.upstreams[0] = Arc::new(service("spare", &nodes));
        let next = publish(&current);
        until_applied(&p.state, &next).await;
        assert_eq!(grew(before, counts(&p.state)), [0, 1, 0, 0, 1, 0]);
    }
    until_status(p.http, "h7.example.com", 200).await;

    // A Route's host changes: that Route and the router are built.
    let before = counts(&p.state);
    Arc::make_mut(&mut current.routes[7]).hosts = vec!["h7b.example.com".into()];
    let next = publish(&current);
    until_applied(&p.state, &next).await;
    until_status(p.http, "h7b.example.com", 200).await;
    assert_eq!(proxy::status(p.http, "h7.example.com").await, 404);
    assert_eq!(grew(before, counts(&p.state)), [0, 1, 1, 0, 0, 1]);

    // A Route removed: the router is built over the others.
    let before = counts(&p.state);
    current.routes.remove(8);
    let next = publish(&current);
    until_applied(&p.state, &next).await;
    assert_eq!(proxy::status(p.http, "h8.example.com").await, 404);
    assert_eq!(proxy::status(p.http, "h9.example.com").await, 200);
    assert_eq!(grew(before, counts(&p.state)), [0, 1, 0, 0, 0, 1]);
    let whole_frames = || metrics.frames_sent.with_label_values(&["snapshot"]).get();
    assert_eq!(
        whole_frames(),
        1,
        "every change so far travelled as a delta"
    );

    // A gap: the controller goes away, two versions pass, it comes back; the proxy gets a whole
    // snapshot and ends up serving exactly it.
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    Arc::make_mut(&mut current.routes[8]).hosts = vec!["h9b.example.com".into()]; // r009 (r008 is gone)
    publish(&current);
    current.routes.remove(9); // r010
    current.upstreams[0] = Arc::new(service("spare", &[dead]));
    let last = publish(&current);
    let listener = TcpListener::bind(addr).await.unwrap();
    let (stop, task) = serve(&pki, listener, snap_rx, &metrics).await;
    until_applied(&p.state, &last).await;
    assert_eq!(whole_frames(), 2, "the resync is whole");
    until_status(p.http, "h9b.example.com", 200).await;
    for (host, want) in [
        ("h9.example.com", 404),
        ("h10.example.com", 404),
        ("h7b.example.com", 502),
        ("h11.example.com", 200),
    ] {
        assert_eq!(proxy::status(p.http, host).await, want, "{host}");
    }
    let live = p.state.load().unwrap();
    assert_eq!(live.snapshot.hash, last.hash);
    assert_eq!(live.route_entries(), &last.routes[..]);

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}
