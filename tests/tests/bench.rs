//! Benchmark (ignored by default; run with
//! `cargo test -p hookway-tests --test bench -- --ignored --nocapture`):
//! 10,000 Routes through the fake API server, the real controller and two proxy clients.
//! Reports the time from one Route change to both proxies holding it (p50/p99 over 20 changes),
//! the snapshot size on the wire and the process's resident memory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use hookway_controller::compile_loop::Debounce;
use hookway_controller::run::{Config, Controller};
use hookway_controller::stream::{tls, Token};
use hookway_crds::{Route, Service, Snapshot};
use hookway_proxy::source::controller::{self as source, ControllerSourceConfig};
use hookway_tests::{fake_api::FakeApi, pki::Pki};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::PostParams;
use kube::Api;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

const ROUTES: usize = 10_000;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly"]
async fn ten_thousand_routes() {
    let fake = FakeApi::start().await;
    let client = fake.client().await;
    let pki = Pki::new("bench");
    let ns = "bench";
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
            &serde_json::from_value(json!({"apiVersion": "hookway.dev/v1alpha1", "kind": "Service",
                "metadata": {"name": "web"}, "spec": {"nodes": [{"address": "10.0.0.1", "port": 80, "weight": 1}]}}))
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
                let r: Route = serde_json::from_value(
                    json!({"apiVersion": "hookway.dev/v1alpha1", "kind": "Route",
                    "metadata": {"name": format!("r{i}")},
                    "spec": {"hosts": [format!("h{i}.example.com")], "service": "web"}}),
                )
                .unwrap();
                routes.create(&PostParams::default(), &r).await.unwrap();
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    eprintln!("created {ROUTES} routes in {:?}", started.elapsed());
    let rss_before = rss_mib();

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
            compile: hookway_controller::run::default_compile(ns),
        },
    )
    .await
    .unwrap();
    let mut proxies: Vec<watch::Receiver<Option<Arc<Snapshot>>>> = Vec::new();
    for id in ["p1", "p2"] {
        let (tx, rx) = watch::channel(None);
        let config = ControllerSourceConfig::new(
            format!("https://127.0.0.1:{}", controller.stream_addr.port()),
            pki.ca_file.clone(),
            pki.token_file.clone(),
            id,
        );
        tokio::spawn(source::run(config, tx, None));
        proxies.push(rx);
    }
    for rx in &mut proxies {
        tokio::time::timeout(
            Duration::from_secs(120),
            rx.wait_for(|s| s.as_ref().is_some_and(|s| s.routes.len() == ROUTES)),
        )
        .await
        .expect("initial snapshot")
        .unwrap();
    }
    eprintln!(
        "initial sync of {ROUTES} routes to 2 proxies: {:?}",
        started.elapsed()
    );

    // Let the initial status writes (10,000 patches) finish: they compete for the same 2 cores.
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
        "initial status writes settled after {:?} ({last} patches)",
        settle.elapsed()
    );

    let mut samples = Vec::new();
    for round in 1..=20 {
        let name = format!("r{}", round * 7);
        let mut r = routes.get(&name).await.unwrap();
        r.spec.priority = round;
        let t = Instant::now();
        routes
            .replace(&name, &PostParams::default(), &r)
            .await
            .unwrap();
        for rx in &mut proxies {
            tokio::time::timeout(
                Duration::from_secs(30),
                rx.wait_for(|s| {
                    s.as_ref().is_some_and(|s| {
                        s.routes
                            .iter()
                            .any(|e| e.key.name == name && e.priority == round)
                    })
                }),
            )
            .await
            .expect("change applied")
            .unwrap();
        }
        samples.push(t.elapsed());
    }
    samples.sort();
    let metrics = controller.metrics.render();
    let bytes = metrics
        .lines()
        .find(|l| l.starts_with("hookway_controller_snapshot_bytes "))
        .unwrap_or("?");
    eprintln!(
        "change -> 2 proxies: p50 {:?}, p99 {:?}, max {:?}",
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100],
        samples[samples.len() - 1]
    );
    eprintln!("{bytes}");
    for l in metrics.lines().filter(|l| {
        l.starts_with("hookway_controller_compile_duration_seconds_sum")
            || l.starts_with("hookway_controller_compile_duration_seconds_count")
            || l.starts_with("hookway_controller_reconciles_total")
            || l.starts_with("hookway_controller_status_patches_total")
    }) {
        eprintln!("{l}");
    }
    eprintln!("RSS: {rss_before:.0} MiB before the controller, {:.0} MiB with controller + 2 proxies (same process, incl. the fake API server's copy)", rss_mib());
    controller.shutdown().await;
}
