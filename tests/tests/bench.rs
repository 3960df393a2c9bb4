//! Benchmark (ignored by default; run with
//! `cargo test --profile dist -p hookway-tests --test bench -- --ignored --nocapture`, or
//! `bench/controller.sh`): 10,000 Routes through the fake API server, the real controller and
//! two real proxies (the data plane, in-process) in front of a real upstream.
//!
//! Reports the time from one Route change (a `replace` on the API server) until **both proxies
//! serve it** — measured by traffic: each proxy is polled with the Route's new host until it
//! answers from the upstream instead of 404 — as p50/p99/max over `ROUNDS` changes; the
//! snapshot's size on the wire; and resident memory (the controller's share measured before the
//! proxies start).

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use hookway_controller::compile_loop::Debounce;
use hookway_controller::run::{Config, Controller};
use hookway_controller::stream::{tls, Token};
use hookway_crds::{Route, Service, Snapshot};
use hookway_tests::{fake_api::FakeApi, pki::Pki, proxy, upstream};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::PostParams;
use kube::Api;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};

const ROUTES: usize = 10_000;
const ROUNDS: i32 = 30;

/// Counts live heap bytes, so the controller's and the proxies' shares can be told apart from
/// the fake API server's in this one process (RSS alone cannot: the allocator keeps freed pages).
struct Counting;

/// Per-thread-ish shards of the live byte count, each on its own cache line, so that counting
/// does not make the two cores fight over one line on every allocation (which would slow down
/// what the benchmark times).
#[repr(align(64))]
struct Shard(AtomicIsize);

const SHARDS: usize = 16;
static LIVE: [Shard; SHARDS] = [const { Shard(AtomicIsize::new(0)) }; SHARDS];

thread_local! {
    static MARK: u8 = const { 0 };
}

/// This thread's shard (by the address of a thread-local: distinct per live thread).
fn shard() -> &'static AtomicIsize {
    let i = MARK
        .try_with(|m| (m as *const u8 as usize >> 6) % SHARDS)
        .unwrap_or(0);
    &LIVE[i].0
}

fn count(delta: isize) {
    shard().fetch_add(delta, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to `System` unchanged; only a counter is updated beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        count(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Live heap in MiB after the fake API server forgot its watch history (30,000 events with
/// whole objects, which would otherwise be counted against whoever runs at the time).
fn live_mib(fake: &FakeApi) -> f64 {
    fake.compact();
    let live: isize = LIVE.iter().map(|s| s.0.load(Ordering::Relaxed)).sum();
    live as f64 / (1024.0 * 1024.0)
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The status a proxy answers for `GET /` with `host` (0 when the connection failed).
async fn status(proxy: SocketAddr, host: &str) -> u16 {
    let Ok(stream) = TcpStream::connect(proxy).await else {
        return 0;
    };
    let Ok((mut send, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    else {
        return 0;
    };
    tokio::spawn(conn);
    let req = http::Request::get("/")
        .header(http::header::HOST, host)
        .body(Empty::<Bytes>::new())
        .unwrap();
    match send.send_request(req).await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let _ = resp.into_body().collect().await;
            status
        }
        Err(_) => 0,
    }
}

/// Polls every proxy (every 2 ms) until each answers 200 for `host`.
async fn until_served(proxies: &[SocketAddr], host: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    for &p in proxies {
        while status(p, host).await != 200 {
            assert!(
                Instant::now() < deadline,
                "{host} not served by {p} within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// Waits until the controller's status patches stop (no new one for a second; at most 2 min).
async fn settle_status_writes(fake: &FakeApi, what: &str) {
    let settle = Instant::now();
    let mut last = u32::MAX;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = fake.total_status_patches();
        if now == last || settle.elapsed() > Duration::from_secs(120) {
            break;
        }
        last = now;
    }
    eprintln!(
        "{what} settled after {:?} ({last} patches in all)",
        settle.elapsed()
    );
}

/// Route `r{i}` as `kubectl apply` would create it: with the last-applied annotation (a copy of
/// the object) that kubectl's client-side apply keeps on every object.
fn route(i: usize, host: &str) -> Route {
    let applied = json!({"apiVersion": "hookway.dev/v1alpha1", "kind": "Route",
        "metadata": {"name": format!("r{i}"), "namespace": "bench"},
        "spec": {"hosts": [host], "service": "web"}});
    let mut route: Route = serde_json::from_value(applied.clone()).unwrap();
    route.metadata.annotations = Some(
        [(
            "kubectl.kubernetes.io/last-applied-configuration".to_string(),
            applied.to_string(),
        )]
        .into(),
    );
    route
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly"]
async fn ten_thousand_routes() {
    let fake = FakeApi::start().await;
    let client = fake.client().await;
    let pki = Pki::new("bench");
    let ns = "bench";
    let up = upstream::start().await;
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .unwrap();
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    services
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"apiVersion": "hookway.dev/v1alpha1", "kind": "Service",
                "metadata": {"name": "web"},
                "spec": {"nodes": [{"address": "127.0.0.1", "port": up.port(), "weight": 1}]}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let routes: Api<Route> = Api::namespaced(client.clone(), ns);
    let started = Instant::now();
    futures::stream::iter(0..ROUTES)
        .map(|i| {
            let routes = routes.clone();
            async move {
                let r = route(i, &format!("h{i}.example.com"));
                routes.create(&PostParams::default(), &r).await.unwrap();
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    eprintln!("created {ROUTES} routes in {:?}", started.elapsed());
    let rss_api = rss_mib();
    let live_api = live_mib(&fake);

    let started = Instant::now();
    let controller = Controller::start(
        client.clone(),
        Config {
            namespaces: vec![ns.into()],
            root_namespace: ns.into(),
            stream_listener: TcpListener::bind("127.0.0.1:0").await.unwrap(),
            admin_listener: TcpListener::bind("127.0.0.1:0").await.unwrap(),
            token: Token::new(&pki.token).unwrap(),
            tls: tls::server_config(pki.cert_pem.as_bytes(), pki.key_pem.as_bytes()).unwrap(),
            identity: "bench".into(),
            lease_duration: Duration::from_secs(15),
            debounce: Debounce::default(),
            gateway_api_recheck: Duration::from_secs(1),
            fetch: Default::default(),
            proxy_service: None,
            compile: hookway_controller::run::default_compile(ns),
        },
    )
    .await
    .unwrap();
    let mut compiled = controller.snapshots.clone();
    tokio::time::timeout(
        Duration::from_secs(120),
        compiled.wait_for(|s| s.as_ref().is_some_and(|s| s.routes.len() == ROUTES)),
    )
    .await
    .expect("first snapshot")
    .unwrap();
    eprintln!(
        "controller: first snapshot of {ROUTES} routes after {:?}",
        started.elapsed()
    );

    // Let the initial status writes (10,000 patches) finish: they compete for the same 2 cores.
    settle_status_writes(&fake, "initial status writes").await;
    let rss_controller = rss_mib();
    let live_before_proxies = live_mib(&fake);

    let started = Instant::now();
    let mut proxies = Vec::new();
    let mut running = Vec::new();
    for id in ["p1", "p2"] {
        let proxy = proxy::start(&pki, controller.stream_addr, id).await;
        proxies.push(proxy.http);
        running.push(proxy);
    }
    until_served(
        &proxies,
        &format!("h{}.example.com", ROUTES - 1),
        Duration::from_secs(120),
    )
    .await;
    eprintln!(
        "2 proxies started and serving {ROUTES} routes after {:?}",
        started.elapsed()
    );
    let rss_all = rss_mib();
    // Every Route goes from `NoProxies` to `Programmed` when the first proxy acks (10,000
    // patches); the second proxy joining adds none.
    settle_status_writes(&fake, "status writes for the proxies' acks").await;
    let live_proxies = live_mib(&fake) - live_before_proxies;

    let mut samples = Vec::new();
    let mut published = Vec::new();
    for round in 1..=ROUNDS {
        let i = round as usize * 7;
        let host = format!("h{i}-v{round}.example.com");
        let mut r = routes.get(&format!("r{i}")).await.unwrap();
        r.spec.hosts = vec![host.clone()];
        let t = Instant::now();
        routes
            .replace(&format!("r{i}"), &PostParams::default(), &r)
            .await
            .unwrap();
        let has_host = |s: &Option<Arc<Snapshot>>| {
            s.as_ref()
                .is_some_and(|s| s.routes.iter().any(|e| e.hosts.contains(&host)))
        };
        let watched = tokio::time::timeout(Duration::from_secs(30), compiled.wait_for(has_host));
        watched.await.expect("change compiled").unwrap();
        published.push(t.elapsed());
        until_served(&proxies, &host, Duration::from_secs(30)).await;
        samples.push(t.elapsed());
    }
    samples.sort();
    published.sort();
    let pct = |p: usize| samples[(samples.len() * p / 100).min(samples.len() - 1)];
    let metrics = controller.metrics.render();
    let bytes = metrics
        .lines()
        .find(|l| l.starts_with("hookway_controller_snapshot_bytes "))
        .unwrap_or("?");
    eprintln!(
        "change -> served by both proxies ({ROUNDS} changes): p50 {:?}, p90 {:?}, p99 {:?}, max {:?}",
        pct(50),
        pct(90),
        pct(99),
        samples[samples.len() - 1]
    );
    eprintln!(
        "change -> published by the controller (watch event, debounce, compile, hash): p50 {:?}, p99 {:?}",
        published[published.len() / 2],
        published[published.len() - 1]
    );
    eprintln!("{bytes}");
    for l in metrics.lines().filter(|l| {
        l.starts_with("hookway_controller_compile_duration_seconds_sum")
            || l.starts_with("hookway_controller_compile_duration_seconds_count")
            || l.starts_with("hookway_controller_reconciles_total")
            || l.starts_with("hookway_controller_status_patches_total")
            || l.starts_with("hookway_controller_frames_sent_total")
            || l.starts_with("hookway_controller_frame_bytes_sent_total")
    }) {
        eprintln!("{l}");
    }
    let sent = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name}{{kind=\"delta\"}}")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let (frames, bytes) = (
        sent("hookway_controller_frames_sent_total"),
        sent("hookway_controller_frame_bytes_sent_total"),
    );
    if frames > 0.0 {
        eprintln!(
            "bytes sent per Route change per proxy (delta frames): {:.0}",
            bytes / frames
        );
    }
    let live_all = live_mib(&fake);
    drop(compiled);
    controller.shutdown().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let live_controller = live_all - live_mib(&fake);
    eprintln!(
        "RSS (one process): {rss_api:.0} MiB with the fake API server holding {ROUTES} routes; \
         {rss_controller:.0} MiB with the controller; {rss_all:.0} MiB with 2 proxies"
    );
    eprintln!(
        "live heap: controller {live_controller:.1} MiB (freed by its shutdown; {:.1} MiB added \
         by its start, which also counts the 10,000 statuses the fake API server now stores), \
         2 proxies {live_proxies:.1} MiB (added when they started)",
        live_before_proxies - live_api
    );
    assert_eq!(samples.len(), ROUNDS as usize);
    drop(running);
}
