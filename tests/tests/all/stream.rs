//! The stream protocol end to end over real TLS sockets: the controller's server and the
//! proxy's client (`hookway_proxy::source::controller`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hookway_controller::metrics::Metrics;
use hookway_controller::proxies::{Count, Proxies};
use hookway_controller::stream::{tls, StreamServer, Token};
use hookway_crds::snapshot::{ObjectKey, RouteEntry};
use hookway_crds::Snapshot;
use hookway_proxy::source::controller::{self as source, Applied, Backoff, ControllerSourceConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;

struct Pki {
    dir: PathBuf,
    ca: PathBuf,
    cert_pem: String,
    key_pem: String,
}

fn pki(name: &str) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let dir = std::env::temp_dir().join(format!("hookway-stream-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, ca_cert.pem()).unwrap();
    std::fs::write(dir.join("token"), "t0ken\n").unwrap();
    Pki {
        dir,
        ca,
        cert_pem: leaf.pem(),
        key_pem: leaf_key.serialize_pem(),
    }
}

fn snapshot(version: u64, priority: i32) -> Arc<Snapshot> {
    let mut s = Snapshot {
        routes: vec![Arc::new(RouteEntry {
            key: ObjectKey::new("ns", "r"),
            hosts: vec!["a.example.com".into()],
            rules: vec![],
            priority,
            created: 0,
            upstream: ObjectKey::new("ns", "s"),
            chain: vec![],
        })],
        ..Default::default()
    }
    .seal();
    s.version = version;
    Arc::new(s)
}

struct Server {
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

async fn serve(
    pki: &Pki,
    listener: TcpListener,
    snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
    proxies: Proxies,
) -> Server {
    let addr = listener.local_addr().unwrap();
    let server = StreamServer::new(
        snapshots,
        proxies,
        Token::new("t0ken").unwrap(),
        tls::server_config(pki.cert_pem.as_bytes(), pki.key_pem.as_bytes()).unwrap(),
        Metrics::new().unwrap(),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(server.serve(listener, async move {
        let _ = stopped.await;
    }));
    Server {
        addr,
        stop: Some(stop),
        task,
    }
}

impl Server {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

fn client_config(pki: &Pki, addr: std::net::SocketAddr, id: &str) -> ControllerSourceConfig {
    let mut c = ControllerSourceConfig::new(
        format!("https://127.0.0.1:{}", addr.port()),
        pki.ca.clone(),
        pki.dir.join("token"),
        id,
    );
    c.backoff = Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(300),
    };
    c.apply_timeout = Duration::from_secs(2);
    c
}

async fn wait_version(
    rx: &mut watch::Receiver<Option<Arc<Snapshot>>>,
    version: u64,
) -> Arc<Snapshot> {
    let got = tokio::time::timeout(
        Duration::from_secs(5),
        rx.wait_for(|s| s.as_ref().is_some_and(|s| s.version == version)),
    )
    .await
    .map(|r| r.map(|s| s.clone()));
    match got {
        Ok(Ok(Some(s))) => s,
        _ => panic!(
            "version {version} not received; have {:?}",
            rx.borrow().as_ref().map(|s| s.version)
        ),
    }
}

async fn wait_count(proxies: &Proxies, version: u64, want: Count) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while proxies.count(version) != want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "count for {version}: {:?}, want {want:?}",
            proxies.count(version)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn snapshots_stream_and_acks_count_as_programmed() {
    let pki = pki("roundtrip");
    let (snap_tx, snap_rx) = watch::channel(Some(snapshot(1, 0)));
    let proxies = Proxies::new(Metrics::new().unwrap());
    let server = serve(
        &pki,
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        snap_rx,
        proxies.clone(),
    )
    .await;

    let (tx, mut rx) = watch::channel(None);
    let (applied_tx, applied_rx) = watch::channel(None);
    let client = tokio::spawn(source::run(
        client_config(&pki, server.addr, "p1"),
        tx,
        Some(applied_rx),
    ));

    let first = wait_version(&mut rx, 1).await;
    assert_eq!(first.routes[0].hosts, ["a.example.com"]);
    // Not applied yet: not programmed.
    wait_count(
        &proxies,
        1,
        Count {
            applied: 0,
            ready: 1,
        },
    )
    .await;
    applied_tx.send_replace(Some(Applied {
        version: 1,
        hash: first.hash.clone(),
        error: None,
        failed: vec![],
    }));
    wait_count(
        &proxies,
        1,
        Count {
            applied: 1,
            ready: 1,
        },
    )
    .await;

    // A newer snapshot arrives on the same stream; a rejection is not counted.
    snap_tx.send_replace(Some(snapshot(2, 5)));
    let second = wait_version(&mut rx, 2).await;
    assert_eq!(second.routes[0].priority, 5);
    let mut recorded = proxies.subscribe();
    recorded.mark_unchanged();
    applied_tx.send_replace(Some(Applied {
        version: 2,
        hash: second.hash.clone(),
        error: Some("bad certificate".into()),
        failed: vec![],
    }));
    tokio::time::timeout(Duration::from_secs(5), recorded.changed())
        .await
        .expect("the rejection reaches the registry")
        .unwrap();
    assert_eq!(
        proxies.count(2),
        Count {
            applied: 0,
            ready: 1
        }
    );

    client.abort();
    let _ = client.await;
    wait_count(
        &proxies,
        1,
        Count {
            applied: 0,
            ready: 0,
        },
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn wrong_or_missing_token_gets_401() {
    let pki = pki("auth");
    let (_snap_tx, snap_rx) = watch::channel(Some(snapshot(1, 0)));
    let proxies = Proxies::new(Metrics::new().unwrap());
    let server = serve(
        &pki,
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        snap_rx,
        proxies.clone(),
    )
    .await;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&pki.ca).unwrap()).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(ca)
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let url = format!("https://127.0.0.1:{}/v1/stream", server.addr.port());
    let hello = r#"{"proxy_id":"intruder"}"#;
    for auth in [None, Some("Bearer wrong"), Some("t0ken")] {
        let mut req = http.post(&url).body(hello);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "auth {auth:?}");
    }
    assert_eq!(proxies.count(0).ready, 0, "no stream was registered");

    // The right token opens the stream.
    let resp = http
        .post(&url)
        .header("authorization", "Bearer t0ken")
        .body(hello)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn client_keeps_its_snapshot_and_resyncs_after_a_controller_restart() {
    let pki = pki("restart");
    let (snap_tx, snap_rx) = watch::channel(Some(snapshot(1, 0)));
    let proxies = Proxies::new(Metrics::new().unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = serve(&pki, listener, snap_rx.clone(), proxies.clone()).await;

    let cache = pki.dir.join("cache.json");
    let mut config = client_config(&pki, addr, "p1");
    config.snapshot_cache = Some(cache.clone());
    let (tx, mut rx) = watch::channel(None);
    let client = tokio::spawn(source::run(config.clone(), tx, None));
    wait_version(&mut rx, 1).await;

    server.stop().await;
    // The client has seen the controller go once it dials again: let it reach a listener that
    // is not a controller, then check what it serves.
    let stand_in = TcpListener::bind(addr).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), stand_in.accept())
        .await
        .expect("the client reconnects")
        .unwrap();
    drop(stand_in);
    assert_eq!(
        rx.borrow().as_ref().unwrap().version,
        1,
        "last snapshot kept while the controller is gone"
    );

    // A second proxy started while the controller is down serves the cached snapshot.
    let (tx2, rx2) = watch::channel(None);
    let client2 = tokio::spawn(source::run(client_config(&pki, addr, "p2"), tx2, None));
    let mut config3 = config.clone();
    config3.proxy_id = "p3".into();
    let (tx3, mut rx3) = watch::channel(None);
    let client3 = tokio::spawn(source::run(config3, tx3, None));
    wait_version(&mut rx3, 1).await;
    assert!(rx2.borrow().is_none(), "no cache: nothing to serve");

    // Restart on the same address with a newer snapshot: clients reconnect with backoff.
    snap_tx.send_replace(Some(snapshot(2, 9)));
    let listener = TcpListener::bind(addr).await.unwrap();
    let server = serve(&pki, listener, snap_rx, proxies.clone()).await;
    wait_version(&mut rx, 2).await;
    wait_version(&mut rx3, 2).await;
    wait_count(
        &proxies,
        2,
        Count {
            applied: 3,
            ready: 3,
        },
    )
    .await;
    for c in [client, client2, client3] {
        c.abort();
    }
    server.stop().await;
    std::fs::remove_dir_all(&pki.dir).ok();
}

/// 1,000 Routes; Route `i == changed` gets priority 1.
fn many_routes(version: u64, changed: Option<usize>) -> Arc<Snapshot> {
    let mut s = Snapshot {
        routes: (0..1000)
            .map(|i| RouteEntry {
                key: ObjectKey::new("ns", format!("r{i:04}")),
                hosts: vec![format!("h{i}.example.com")],
                rules: vec![],
                priority: i32::from(changed == Some(i)),
                created: 0,
                upstream: ObjectKey::new("ns", "s"),
                chain: vec![],
            })
            .map(Arc::new)
            .collect(),
        ..Default::default()
    }
    .seal();
    s.version = version;
    Arc::new(s)
}

fn sent(metrics: &Metrics, kind: &str) -> (u64, u64) {
    (
        metrics.frames_sent.with_label_values(&[kind]).get(),
        metrics.frame_bytes_sent.with_label_values(&[kind]).get(),
    )
}

#[tokio::test]
async fn a_change_travels_as_a_delta_and_a_reconnection_resends_nothing() {
    let pki = pki("deltas");
    let (snap_tx, snap_rx) = watch::channel(Some(many_routes(1, None)));
    let metrics = Metrics::new().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = StreamServer::new(
        snap_rx,
        Proxies::new(metrics.clone()),
        Token::new("t0ken").unwrap(),
        tls::server_config(pki.cert_pem.as_bytes(), pki.key_pem.as_bytes()).unwrap(),
        metrics.clone(),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(listener, async move {
        let _ = stopped.await;
    }));

    let (tx, mut rx) = watch::channel(None);
    let client = tokio::spawn(source::run(client_config(&pki, addr, "p1"), tx, None));
    wait_version(&mut rx, 1).await;
    let (whole_frames, whole_bytes) = sent(&metrics, "snapshot");
    assert_eq!(whole_frames, 1);

    // One Route of 1,000 changes: the proxy gets only that Route, and ends with exactly the
    // controller's snapshot.
    let v2 = many_routes(2, Some(7));
    snap_tx.send_replace(Some(v2.clone()));
    let got = wait_version(&mut rx, 2).await;
    assert_eq!(got.hash, v2.hash);
    assert_eq!(*got, *v2);
    let (delta_frames, delta_bytes) = sent(&metrics, "delta");
    assert_eq!((delta_frames, sent(&metrics, "snapshot").0), (1, 1));
    assert!(
        delta_bytes < 1024 && delta_bytes * 100 < whole_bytes,
        "a one-Route delta is {delta_bytes} bytes, the whole snapshot {whole_bytes}"
    );

    // A removal travels as a key.
    let mut v3 = Snapshot::clone(&v2);
    v3.routes.remove(500);
    let mut v3 = v3.seal();
    v3.version = 3;
    snap_tx.send_replace(Some(Arc::new(v3.clone())));
    let got = wait_version(&mut rx, 3).await;
    assert_eq!((got.routes.len(), &got.hash), (999, &v3.hash));
    assert_eq!(sent(&metrics, "delta").0, 2);

    // A proxy that reconnects holding the current content gets an empty delta, not the whole
    // snapshot again.
    client.abort();
    let _ = client.await;
    let (tx, mut rx) = watch::channel(Some(got.clone()));
    let client = tokio::spawn(source::run(client_config(&pki, addr, "p1"), tx, None));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while sent(&metrics, "delta").0 < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no frame after the reconnection"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(sent(&metrics, "snapshot").0, 1, "nothing whole was resent");
    assert_eq!(
        rx.borrow_and_update().as_ref().map(|s| s.hash.clone()),
        Some(v3.hash.clone())
    );

    client.abort();
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}
