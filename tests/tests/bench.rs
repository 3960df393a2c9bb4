//! Benchmark (ignored by default; run with
//! `cargo test --profile dist --workspace --test bench -- --ignored --nocapture`, or
//! `bench/controller.sh`): 10,000 Routes, 1,000 Services with 10 endpoints each (EndpointSlices
//! of core Services) through the fake API server, the real controller and two real proxies (the
//! data plane, in-process) in front of a real upstream.
//!
//! Reports the time from one Route change (a `replace` on the API server) until **both proxies
//! serve it** — measured by traffic: each proxy is polled with the Route's new host until it
//! answers from the upstream instead of 404 — as p50/p99/max over `ROUNDS` changes, first on a
//! quiet cluster, then with `CHURN_PER_SECOND` endpoint changes per second in the background
//! (EndpointSlice updates); the bytes sent per change per proxy; how long the proxies took to
//! apply each change (`hookway_snapshot_apply_seconds`) and what they rebuilt; the snapshot's
//! size on the wire; and live heap (controller, proxies per Route).

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use hookway_controller::compile_loop::Debounce;
use hookway_controller::run::{Config, Controller};
use hookway_controller::stream::{tls, Token};
use hookway_crds::{Route, Service, Snapshot};
use hookway_tests::{fake_api::FakeApi, pki::Pki, proxy, upstream};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::core::v1::Service as CoreService;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::PostParams;
use kube::Api;
use serde_json::json;
use tokio::net::TcpListener;

const ROUTES: usize = 10_000;
const ROUNDS: i32 = 30;
/// Services with EndpointSlices (Route `r{i}` goes to `svc{i % SERVICES}`, except every
/// seventh, which goes to the real upstream `web`: those are the ones changed and polled).
const SERVICES: usize = 1_000;
/// Endpoints per Service (10,000 in all).
const ENDPOINTS: usize = 10;
/// Background endpoint changes per second during the second series of changes.
const CHURN_PER_SECOND: u64 = 100;

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

/// Polls every proxy (every 2 ms) until each answers 200 for `host`.
async fn until_served(proxies: &[SocketAddr], host: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    for &p in proxies {
        while proxy::status(p, host).await != 200 {
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
    let service = if i.is_multiple_of(7) {
        "web".to_string()
    } else {
        format!("svc{}", i % SERVICES)
    };
    let applied = json!({"apiVersion": "hookway.dev/v1alpha1", "kind": "Route",
        "metadata": {"name": format!("r{i}"), "namespace": "bench"},
        "spec": {"hosts": [host], "service": service}});
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

/// The endpoints of core Service `b{j}`: endpoint `k` has an address of its own per
/// generation `generations[k]` (an address the fake API server accepts; no traffic goes there).
fn endpoints(j: usize, generations: &[u64]) -> serde_json::Value {
    let list: Vec<serde_json::Value> = generations
        .iter()
        .enumerate()
        .map(|(k, g)| {
            let host = 1 + k as u64 * 20 + g % 20;
            json!({"addresses": [format!("10.{}.{}.{host}", j / 200, j % 200 + 1)],
                   "conditions": {"ready": true}})
        })
        .collect();
    json!(list)
}

/// A core Service `b{j}` with an EndpointSlice of `ENDPOINTS` endpoints, and the hookway Service
/// `svc{j}` that uses it.
async fn backend(client: &kube::Client, j: usize) {
    let core: Api<CoreService> = Api::namespaced(client.clone(), "bench");
    core.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": format!("b{j}")},
            "spec": {"ports": [{"name": "http", "port": 80}]}}))
        .unwrap(),
    )
    .await
    .unwrap();
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "bench");
    slices
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": format!("b{j}-1"),
                             "labels": {"kubernetes.io/service-name": format!("b{j}")}},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080}],
                "endpoints": endpoints(j, &[0; ENDPOINTS])}))
            .unwrap(),
        )
        .await
        .unwrap();
    let services: Api<Service> = Api::namespaced(client.clone(), "bench");
    services
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"apiVersion": "hookway.dev/v1alpha1", "kind": "Service",
                "metadata": {"name": format!("svc{j}")},
                "spec": {"backend": {"name": format!("b{j}"), "port": 80}}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
}

/// Changes one endpoint of one EndpointSlice every `1 / CHURN_PER_SECOND` s (a merge patch of
/// the slice's endpoints, round-robin over the Services) until `stop`; returns how many changes
/// were made.
async fn churn(client: kube::Client, stop: tokio::sync::watch::Receiver<bool>) -> u64 {
    let slices: Api<EndpointSlice> = Api::namespaced(client, "bench");
    let mut generations = vec![[0u64; ENDPOINTS]; SERVICES];
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / CHURN_PER_SECOND));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0u64;
    while !*stop.borrow() {
        tick.tick().await;
        let j = (n % SERVICES as u64) as usize;
        let k = ((n / SERVICES as u64) % ENDPOINTS as u64) as usize;
        generations[j][k] += 1;
        let patch = json!({"endpoints": endpoints(j, &generations[j])});
        slices
            .patch(
                &format!("b{j}-1"),
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
            .unwrap();
        n += 1;
    }
    n
}

/// A value read from each proxy's metrics, summed over the proxies.
fn proxies_sum(
    running: &[proxy::RunningProxy],
    read: impl Fn(&hookway_proxy::metrics::Metrics) -> f64,
) -> f64 {
    running.iter().map(|p| read(p.state.metrics())).sum()
}

/// Delta frames the controller sent so far (to all proxies) and their bytes.
fn delta_frames(metrics: &str) -> (f64, f64) {
    let sent = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name}{{kind=\"delta\"}}")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    (
        sent("hookway_controller_frames_sent_total"),
        sent("hookway_controller_frame_bytes_sent_total"),
    )
}

/// `ROUNDS` Route changes, one at a time: change → served by every proxy, and change →
/// published by the controller, each sorted.
async fn timed_changes(
    routes: &Api<Route>,
    compiled: &mut tokio::sync::watch::Receiver<Option<Arc<Snapshot>>>,
    proxies: &[SocketAddr],
    tag: &str,
) -> (Vec<Duration>, Vec<Duration>) {
    let mut samples = Vec::new();
    let mut published = Vec::new();
    for round in 1..=ROUNDS {
        let i = round as usize * 7;
        let host = format!("h{i}-{tag}{round}.example.com");
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
        until_served(proxies, &host, Duration::from_secs(30)).await;
        samples.push(t.elapsed());
    }
    samples.sort();
    published.sort();
    (samples, published)
}

/// `p50, p90, p99, max` of sorted samples.
fn percentiles(samples: &[Duration]) -> String {
    let pct = |p: usize| samples[(samples.len() * p / 100).min(samples.len() - 1)];
    format!(
        "p50 {:?}, p90 {:?}, p99 {:?}, max {:?}",
        pct(50),
        pct(90),
        pct(99),
        samples[samples.len() - 1]
    )
}

/// What the proxies did so far: time applying in place (s) and how many, the same for whole
/// builds, and the parts rebuilt (route, router, upstream, chain).
#[derive(Clone, Copy, Debug, Default)]
struct ProxyWork {
    delta_seconds: f64,
    deltas: f64,
    full_seconds: f64,
    fulls: f64,
    parts: [f64; 4],
}

impl ProxyWork {
    fn read(running: &[proxy::RunningProxy]) -> Self {
        let apply = |kind: &str, count: bool| {
            proxies_sum(running, |m| {
                let h = m.snapshot_apply.with_label_values(&[kind]);
                if count {
                    h.get_sample_count() as f64
                } else {
                    h.get_sample_sum()
                }
            })
        };
        let part = |p: &str| {
            proxies_sum(running, |m| {
                m.snapshot_rebuilt.with_label_values(&[p]).get() as f64
            })
        };
        Self {
            delta_seconds: apply("delta", false),
            deltas: apply("delta", true),
            full_seconds: apply("full", false),
            fulls: apply("full", true),
            parts: ["route", "router", "upstream", "chain"].map(part),
        }
    }

    /// What was done since `before`, for the report.
    fn since(&self, before: &Self) -> String {
        let deltas = self.deltas - before.deltas;
        let fulls = self.fulls - before.fulls;
        let parts: Vec<f64> = (0..4).map(|i| self.parts[i] - before.parts[i]).collect();
        format!(
            "{deltas} applied in place, mean {:.3} ms; {fulls} built whole, mean {:.1} ms; \
             rebuilt route/router/upstream/chain {parts:?}",
            (self.delta_seconds - before.delta_seconds) * 1000.0 / deltas.max(1.0),
            (self.full_seconds - before.full_seconds) * 1000.0 / fulls.max(1.0),
        )
    }
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
    let started = Instant::now();
    futures::stream::iter(0..SERVICES)
        .map(|j| {
            let client = client.clone();
            async move { backend(&client, j).await }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    eprintln!(
        "created {SERVICES} Services with {} endpoints in all in {:?}",
        SERVICES * ENDPOINTS,
        started.elapsed()
    );
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
    // The last Route to the real upstream (every seventh goes there).
    until_served(
        &proxies,
        &format!("h{}.example.com", (ROUTES - 1) / 7 * 7),
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

    let initial = ProxyWork::read(&running);
    eprintln!(
        "proxies' initial apply: {}",
        initial.since(&ProxyWork::default())
    );

    // Quiet: Route changes only.
    let frames_before = delta_frames(&controller.metrics.render());
    let work_before = ProxyWork::read(&running);
    let (samples, published) = timed_changes(&routes, &mut compiled, &proxies, "q").await;
    let frames_after = delta_frames(&controller.metrics.render());
    eprintln!(
        "quiet: change -> served by both proxies ({ROUNDS} changes): {}",
        percentiles(&samples)
    );
    eprintln!(
        "quiet: change -> published by the controller (watch event, debounce, compile, hash): {}",
        percentiles(&published)
    );
    let frames = frames_after.0 - frames_before.0;
    eprintln!(
        "quiet: bytes sent per Route change per proxy (delta frames): {:.0} ({frames} frames)",
        (frames_after.1 - frames_before.1) / frames.max(1.0)
    );
    eprintln!(
        "quiet: proxies: {}",
        ProxyWork::read(&running).since(&work_before)
    );

    // Churn: the same changes with endpoint changes in the background.
    let (stop_churn, churn_stop) = tokio::sync::watch::channel(false);
    let churning = tokio::spawn(churn(client.clone(), churn_stop));
    let churn_started = Instant::now();
    // Let the churn reach its pace (and the controller its compile rhythm) first.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let frames_before = delta_frames(&controller.metrics.render());
    let work_before = ProxyWork::read(&running);
    let timed = Instant::now();
    let (samples, published) = timed_changes(&routes, &mut compiled, &proxies, "c").await;
    let timed = timed.elapsed();
    let frames_after = delta_frames(&controller.metrics.render());
    let work = ProxyWork::read(&running).since(&work_before);
    stop_churn.send_replace(true);
    let changes = churning.await.unwrap();
    let churned = churn_started.elapsed();
    eprintln!(
        "churn: {changes} endpoint changes in {churned:?} ({:.0}/s)",
        changes as f64 / churned.as_secs_f64()
    );
    eprintln!(
        "churn: change -> served by both proxies ({ROUNDS} changes): {}",
        percentiles(&samples)
    );
    eprintln!(
        "churn: change -> published by the controller: {}",
        percentiles(&published)
    );
    let frames = frames_after.0 - frames_before.0;
    eprintln!(
        "churn: {frames} delta frames in {timed:?}, {:.0} bytes each on average (Route and endpoint changes)",
        (frames_after.1 - frames_before.1) / frames.max(1.0)
    );
    eprintln!("churn: proxies: {work}");

    let metrics = controller.metrics.render();
    let bytes = metrics
        .lines()
        .find(|l| l.starts_with("hookway_controller_snapshot_bytes "))
        .unwrap_or("?");
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
         2 proxies {live_proxies:.1} MiB (added when they started), {:.2} KiB per Route per proxy",
        live_before_proxies - live_api,
        live_proxies * 1024.0 / 2.0 / ROUTES as f64
    );
    assert_eq!(samples.len(), ROUNDS as usize);
    drop(running);
}
