//! Benchmark (ignored by default; run with `bench/controller.sh`, or
//! `cargo test --profile dist --workspace --test bench -- --ignored --nocapture`): 10,000
//! Routes, 1,000 Services with 10 endpoints each (EndpointSlices of core Services), the real
//! controller and two real proxies (the data plane, in-process) in front of a real upstream.
//! The objects live in the in-process fake API server, or in a real kube-apiserver with
//! `HOOKWAY_BENCH_API=real` (started for the run from `../shared/k8s`; skipped with one line
//! when that is absent) or `HOOKWAY_BENCH_KUBECONFIG=PATH` (one already running); see [`api`].
//! `HOOKWAY_BENCH_ROUTES` and `HOOKWAY_BENCH_SERVICES` shrink the world for a quick check.
//!
//! Reports the time from one Route change (a `replace` on the API server) until **both proxies
//! serve it** — measured by traffic: each proxy is polled with the Route's new host until it
//! answers from the upstream instead of 404 — as p50/p99/max over `ROUNDS` changes, first on a
//! quiet cluster, then with `CHURN_PER_SECOND` endpoint changes per second in the background
//! (EndpointSlice patches on a fixed schedule, [`churn`]); the bytes sent per change per proxy;
//! how long the proxies took to apply each change (`hookway_snapshot_apply_seconds`) and what
//! they rebuilt; CPU time of this process (and of the API server's, when real) per series; the
//! snapshot's size on the wire; and live heap (controller, proxies per Route).

#[path = "bench/api.rs"]
mod api;
#[path = "bench/churn.rs"]
mod churn;
#[path = "bench/fleet.rs"]
mod fleet;
#[path = "bench/heap.rs"]
mod heap;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use hookway_controller::compile_loop::Debounce;
use hookway_controller::metrics::Metrics;
use hookway_controller::run::{Config, Controller};
use hookway_controller::stream::{tls, Token};
use hookway_crds::{Route, Service, Snapshot};
use hookway_tests::{pki::Pki, proxy, upstream};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::core::v1::Service as CoreService;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::PostParams;
use kube::Api;
use serde_json::json;
use tokio::net::TcpListener;

use api::Backend;
use churn::{endpoints, ENDPOINTS};
use fleet::{FLEET, FLEET_ROUNDS};

#[global_allocator]
static ALLOCATOR: heap::Counting = heap::Counting;

const ROUNDS: usize = 30;
/// Every `WEB`-th Route goes to the real upstream `web` (the others to `svc{i % services}`):
/// those are the ones changed and polled.
const WEB: usize = 7;
/// Background endpoint changes per second during the second series of changes.
const CHURN_PER_SECOND: u64 = 100;
/// Objects created at once while the world is built.
const CREATE_IN_FLIGHT: usize = 32;
/// How long the status writes may take to settle (10,000 patches on a real server, loaded).
const SETTLE_LIMIT: Duration = Duration::from_secs(600);

/// How big the world is: `HOOKWAY_BENCH_ROUTES` (default 10,000) Routes and
/// `HOOKWAY_BENCH_SERVICES` (default a tenth of the Routes) Services of `ENDPOINTS` endpoints.
#[derive(Clone, Copy, Debug)]
struct Sizes {
    routes: usize,
    services: usize,
}

impl Sizes {
    fn from_env() -> Self {
        let read = |name: &str| {
            std::env::var(name).ok().map(|v| {
                v.replace([',', '_'], "")
                    .parse::<usize>()
                    .unwrap_or_else(|e| panic!("{name}={v}: {e}"))
            })
        };
        let routes = read("HOOKWAY_BENCH_ROUTES").unwrap_or(10_000);
        let services = read("HOOKWAY_BENCH_SERVICES").unwrap_or(routes / 10).max(1);
        assert!(
            routes > (ROUNDS + FLEET_ROUNDS) * WEB,
            "HOOKWAY_BENCH_ROUTES={routes}: the timed changes need more than {}",
            (ROUNDS + FLEET_ROUNDS) * WEB
        );
        Self { routes, services }
    }
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

/// The status patches the controller made so far (applied or failed), from its own metrics (so
/// the same on the fake and on a real API server).
fn status_patches(metrics: &Metrics) -> u64 {
    metrics
        .render()
        .lines()
        .filter(|l| {
            l.starts_with("hookway_controller_status_patches_total{")
                || l.starts_with("hookway_controller_status_patch_errors_total ")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Waits until the controller's status patches stop: no new one for a second once there was
/// one, or none at all for five seconds; at most `SETTLE_LIMIT`.
async fn settle_status_writes(metrics: &Metrics, what: &str) {
    let settle = Instant::now();
    let first = status_patches(metrics);
    let mut last = first;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = status_patches(metrics);
        if now == last && (now > first || settle.elapsed() >= Duration::from_secs(5)) {
            break;
        }
        if settle.elapsed() > SETTLE_LIMIT {
            eprintln!("{what}: still going after {SETTLE_LIMIT:?}; going on");
            break;
        }
        last = now;
    }
    eprintln!(
        "{what} settled after {:?} ({} patches; {last} in all; load average {})",
        settle.elapsed(),
        last - first,
        heap::load_average()
    );
}

/// Route `r{i}` as `kubectl apply` would create it: with the last-applied annotation (a copy of
/// the object) that kubectl's client-side apply keeps on every object.
fn route(i: usize, host: &str, namespace: &str, services: usize) -> Route {
    let service = if i.is_multiple_of(WEB) {
        "web".to_string()
    } else {
        format!("svc{}", i % services)
    };
    let applied = json!({"apiVersion": "hookway.dev/v1alpha1", "kind": "Route",
        "metadata": {"name": format!("r{i}"), "namespace": namespace},
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

/// A core Service `b{j}` with an EndpointSlice of `ENDPOINTS` endpoints, and the hookway Service
/// `svc{j}` that uses it.
async fn create_backend(client: &kube::Client, namespace: &str, j: usize) {
    let core: Api<CoreService> = Api::namespaced(client.clone(), namespace);
    core.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": format!("b{j}")},
            "spec": {"ports": [{"name": "http", "port": 80}]}}))
        .unwrap(),
    )
    .await
    .unwrap();
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), namespace);
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
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
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

/// Waits (30 s at most) until the controller's snapshot channel holds a Route with `host`.
async fn until_published(
    compiled: &mut tokio::sync::watch::Receiver<Option<Arc<Snapshot>>>,
    host: &str,
) {
    let has_host = |s: &Option<Arc<Snapshot>>| {
        s.as_ref()
            .is_some_and(|s| s.routes.iter().any(|e| e.hosts.iter().any(|h| h == host)))
    };
    tokio::time::timeout(Duration::from_secs(30), compiled.wait_for(has_host))
        .await
        .expect("change compiled")
        .unwrap();
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
        let i = round * WEB;
        let host = format!("h{i}-{tag}{round}.example.com");
        let mut r = routes.get(&format!("r{i}")).await.unwrap();
        r.spec.hosts = vec![host.clone()];
        let t = Instant::now();
        routes
            .replace(&format!("r{i}"), &PostParams::default(), &r)
            .await
            .unwrap();
        until_published(compiled, &host).await;
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

/// CPU seconds used so far by this process and by the API server's processes (0 for the fake,
/// whose work is in this process).
#[derive(Clone, Copy, Debug)]
struct Cpu {
    this: f64,
    api: f64,
}

impl Cpu {
    fn read(backend: &Backend) -> Self {
        Self {
            this: heap::cpu_seconds("self"),
            api: backend.cpu_seconds(),
        }
    }

    /// CPU used since `before`, for the report.
    fn since(&self, before: &Self, backend: &Backend) -> String {
        let this = format!("this process {:.1} s", self.this - before.this);
        if backend.is_real() {
            format!(
                "{this}, the API server and etcd {:.1} s",
                self.api - before.api
            )
        } else {
            format!("{this} (the fake API server included)")
        }
    }
}

/// One series of timed changes, reported under `name`.
struct Series<'a> {
    name: &'a str,
    metrics: &'a Metrics,
    running: &'a [proxy::RunningProxy],
    backend: &'a Backend,
    frames: (f64, f64),
    work: ProxyWork,
    cpu: Cpu,
    started: Instant,
}

impl<'a> Series<'a> {
    fn start(
        name: &'a str,
        metrics: &'a Metrics,
        running: &'a [proxy::RunningProxy],
        backend: &'a Backend,
    ) -> Self {
        Self {
            name,
            metrics,
            running,
            backend,
            frames: delta_frames(&metrics.render()),
            work: ProxyWork::read(running),
            cpu: Cpu::read(backend),
            started: Instant::now(),
        }
    }

    /// Prints what the series did, given its sorted samples.
    fn report(&self, samples: &[Duration], published: &[Duration]) {
        let elapsed = self.started.elapsed();
        let frames = delta_frames(&self.metrics.render());
        let name = self.name;
        eprintln!(
            "{name}: change -> served by both proxies ({ROUNDS} changes): {}",
            percentiles(samples)
        );
        eprintln!(
            "{name}: change -> published by the controller (watch event, debounce, compile, hash): {}",
            percentiles(published)
        );
        let count = frames.0 - self.frames.0;
        eprintln!(
            "{name}: {count} delta frames in {elapsed:?}, {:.0} bytes each on average",
            (frames.1 - self.frames.1) / count.max(1.0)
        );
        eprintln!(
            "{name}: proxies: {}",
            ProxyWork::read(self.running).since(&self.work)
        );
        eprintln!(
            "{name}: CPU: {}; load average {}",
            Cpu::read(self.backend).since(&self.cpu, self.backend),
            heap::load_average()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly"]
async fn ten_thousand_routes() {
    let Some(backend) = Backend::from_env().await else {
        return;
    };
    let Sizes {
        routes: n_routes,
        services: n_services,
    } = Sizes::from_env();
    let client = backend.client().await;
    backend.install_crds(&client).await;
    let ns = backend.namespace();
    eprintln!(
        "against {} (namespace {ns}): {n_routes} Routes, {n_services} Services of {ENDPOINTS} \
         endpoints; load average {}",
        backend.describe(),
        heap::load_average()
    );
    let pki = Pki::new("bench");
    let up = upstream::start().await;
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .unwrap();
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
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
    // Three objects each, one after the other: half as many at once as for the Routes.
    futures::stream::iter(0..n_services)
        .map(|j| {
            let (client, ns) = (&client, &ns);
            async move { create_backend(client, ns, j).await }
        })
        .buffer_unordered(CREATE_IN_FLIGHT / 2)
        .collect::<Vec<_>>()
        .await;
    eprintln!(
        "created {n_services} Services with {} endpoints in all in {:?}",
        n_services * ENDPOINTS,
        started.elapsed()
    );
    let routes: Api<Route> = Api::namespaced(client.clone(), &ns);
    let started = Instant::now();
    futures::stream::iter(0..n_routes)
        .map(|i| {
            let (routes, ns) = (&routes, &ns);
            async move {
                let r = route(i, &format!("h{i}.example.com"), ns, n_services);
                routes.create(&PostParams::default(), &r).await.unwrap();
            }
        })
        .buffer_unordered(CREATE_IN_FLIGHT)
        .collect::<Vec<_>>()
        .await;
    eprintln!(
        "created {n_routes} routes in {:?} ({CREATE_IN_FLIGHT} at once); load average {}",
        started.elapsed(),
        heap::load_average()
    );
    let rss_api = heap::rss_mib("self");
    let live_api = backend.live_mib();

    let started = Instant::now();
    let controller = Controller::start(
        client.clone(),
        Config {
            namespaces: vec![ns.clone()],
            root_namespace: ns.clone(),
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
            compile: hookway_controller::run::default_compile(&ns),
        },
    )
    .await
    .unwrap();
    let metrics = controller.metrics.clone();
    let mut compiled = controller.snapshots.clone();
    tokio::time::timeout(
        Duration::from_secs(120),
        compiled.wait_for(|s| s.as_ref().is_some_and(|s| s.routes.len() == n_routes)),
    )
    .await
    .expect("first snapshot")
    .unwrap();
    eprintln!(
        "controller: first snapshot of {n_routes} routes after {:?}",
        started.elapsed()
    );

    // Let the initial status writes (one per object) finish: they compete for the same 2 cores.
    settle_status_writes(&metrics, "initial status writes").await;
    let rss_controller = heap::rss_mib("self");
    let live_before_proxies = backend.live_mib();

    let started = Instant::now();
    let mut proxies = Vec::new();
    let mut running = Vec::new();
    for id in ["p1", "p2"] {
        let proxy = proxy::start(&pki, controller.stream_addr, id).await;
        proxies.push(proxy.http);
        running.push(proxy);
    }
    // The last Route to the real upstream.
    until_served(
        &proxies,
        &format!("h{}.example.com", (n_routes - 1) / WEB * WEB),
        Duration::from_secs(120),
    )
    .await;
    eprintln!(
        "2 proxies started and serving {n_routes} routes after {:?}",
        started.elapsed()
    );
    let rss_all = heap::rss_mib("self");
    // Every Route goes from `NoProxies` to `Programmed` when the first proxy acks (one patch
    // per Route); the second proxy joining adds none.
    settle_status_writes(&metrics, "status writes for the proxies' acks").await;
    let live_proxies = backend.live_mib() - live_before_proxies;

    let initial = ProxyWork::read(&running);
    eprintln!(
        "proxies' initial apply: {}",
        initial.since(&ProxyWork::default())
    );

    // Quiet: Route changes only.
    let series = Series::start("quiet", &metrics, &running, &backend);
    let (samples, published) = timed_changes(&routes, &mut compiled, &proxies, "q").await;
    series.report(&samples, &published);

    // Churn: the same changes with endpoint changes in the background.
    let (stop_churn, churn_stop) = tokio::sync::watch::channel(false);
    let churning = tokio::spawn(churn::churn(
        client.clone(),
        ns.clone(),
        n_services,
        CHURN_PER_SECOND,
        churn_stop,
    ));
    // Let the churn reach its pace (and the controller its compile rhythm) first.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let series = Series::start("churn", &metrics, &running, &backend);
    let (samples, published) = timed_changes(&routes, &mut compiled, &proxies, "c").await;
    stop_churn.send_replace(true);
    series.report(&samples, &published);
    let churned = churning.await.unwrap();
    eprintln!("churn: {churned} (aim: {CHURN_PER_SECOND}/s)");
    settle_status_writes(&metrics, "status writes after the churn").await;

    // A fleet restarting at once, while Routes change.
    let patches = status_patches(&metrics);
    let cpu = Cpu::read(&backend);
    let restarts = fleet::Restarts {
        pki: &pki,
        stream_addr: controller.stream_addr,
        metrics: &metrics,
        routes: &routes,
        steady: &proxies,
        first_change: ROUNDS + 1,
        every: WEB,
    };
    let timed = restarts.run(&mut compiled).await;
    eprintln!(
        "fleet: {FLEET} proxies restarting at once ({}), {FLEET_ROUNDS} times, one Route change \
         each: change -> published by the controller {}; -> served by the 2 steady proxies {}; \
         -> served by the whole new fleet too {}",
        timed.how,
        percentiles(&timed.published),
        percentiles(&timed.steady),
        percentiles(&timed.fleet)
    );
    settle_status_writes(&metrics, "status writes for the fleet's restarts").await;
    eprintln!(
        "fleet: {} status patches for {FLEET_ROUNDS} restarts of {FLEET} proxies and \
         {FLEET_ROUNDS} Route changes; CPU: {}; load average {}",
        status_patches(&metrics) - patches,
        Cpu::read(&backend).since(&cpu, &backend),
        heap::load_average()
    );

    let rendered = metrics.render();
    for l in rendered.lines().filter(|l| {
        l.starts_with("hookway_controller_snapshot_bytes ")
            || l.starts_with("hookway_controller_compile_duration_seconds_sum")
            || l.starts_with("hookway_controller_compile_duration_seconds_count")
            || l.starts_with("hookway_controller_reconciles_total")
            || l.starts_with("hookway_controller_status_patches_total")
            || l.starts_with("hookway_controller_status_patch_errors_total")
            || l.starts_with("hookway_controller_frames_sent_total")
            || l.starts_with("hookway_controller_frame_bytes_sent_total")
    }) {
        eprintln!("{l}");
    }
    let live_all = backend.live_mib();
    drop(compiled);
    controller.shutdown().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let live_controller = live_all - backend.live_mib();
    // The proxies' share as what their shutdown frees (the reading taken when they started also
    // holds whatever the controller grew by during the acks' status writes).
    let live_with_proxies = backend.live_mib();
    drop(running);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let live_proxies_freed = live_with_proxies - backend.live_mib();
    if backend.is_real() {
        eprintln!(
            "RSS of this process: {rss_api:.0} MiB before the controller; {rss_controller:.0} MiB \
             with it; {rss_all:.0} MiB with 2 proxies. The API server: {}",
            backend.rss()
        );
    } else {
        eprintln!(
            "RSS (one process): {rss_api:.0} MiB with the fake API server holding {n_routes} \
             routes; {rss_controller:.0} MiB with the controller; {rss_all:.0} MiB with 2 proxies"
        );
    }
    eprintln!(
        "live heap: controller {live_controller:.1} MiB (freed by its shutdown; {:.1} MiB added \
         by its start{}), 2 proxies {live_proxies:.1} MiB (added when they started), {:.2} KiB \
         per Route per proxy; load average {}",
        live_before_proxies - live_api,
        if backend.is_real() {
            ""
        } else {
            ", which also counts the statuses the fake API server now stores"
        },
        live_proxies * 1024.0 / 2.0 / n_routes as f64,
        heap::load_average()
    );
    eprintln!(
        "live heap: 2 proxies {live_proxies_freed:.1} MiB freed by their shutdown (after the \
         controller's), {:.2} KiB per Route per proxy",
        live_proxies_freed * 1024.0 / 2.0 / n_routes as f64
    );
    assert_eq!(samples.len(), ROUNDS);
    assert_eq!(timed.steady.len(), FLEET_ROUNDS);
    assert!(churned.applied > 0, "no endpoint change applied: {churned}");
}
