//! End to end: the real controller code (reflectors, compile loop, status writer, Lease, stream
//! server) against an API server, with real proxy-side stream clients.
//!
//! By default the API server is the in-process fake (`hookway_tests::fake_api`). With
//! `HOOKWAY_E2E_KUBECONFIG=/path/to/kubeconfig` the same scenarios run against that cluster
//! (the CRDs from charts/ are applied first; each test uses its own namespace).
//!
//! Snapshots are compiled by the real compiler from hookway-crds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hookway_controller::compile_loop::Debounce;
use hookway_controller::run::{default_compile, CompileFn, Config, Controller};
use hookway_controller::stream::{tls, Token};
use hookway_crds::{Route, Service, Snapshot};
use hookway_proxy::source::controller::{self as source, Backoff, ControllerSourceConfig};
use hookway_tests::fake_api::FakeApi;
use hookway_tests::pki::Pki;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

const WAIT: Duration = Duration::from_secs(10);

struct Env {
    client: Client,
    fake: Option<FakeApi>,
    ns: String,
    pki: Pki,
}

async fn env(name: &str) -> Env {
    let pki = Pki::new(name);
    match std::env::var("HOOKWAY_E2E_KUBECONFIG") {
        Ok(path) => {
            let kc = kube::config::Kubeconfig::read_from(&path).expect("HOOKWAY_E2E_KUBECONFIG");
            let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .expect("kubeconfig");
            let client = Client::try_from(config).expect("client");
            apply_crds(&client).await;
            let ns = format!("hookway-e2e-{name}-{}", std::process::id());
            let nss: Api<Namespace> = Api::all(client.clone());
            let _ = nss
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
                )
                .await;
            Env {
                client,
                fake: None,
                ns,
                pki,
            }
        }
        Err(_) => {
            let fake = FakeApi::start().await;
            let client = fake.client().await;
            let nss: Api<Namespace> = Api::all(client.clone());
            nss.create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "e2e"}})).unwrap(),
            )
            .await
            .unwrap();
            Env {
                client,
                fake: Some(fake),
                ns: "e2e".into(),
                pki,
            }
        }
    }
}

async fn apply_crds(client: &Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/hookway/crds");
    for entry in std::fs::read_dir(dir).expect("charts/hookway/crds") {
        let yaml = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let crd: CustomResourceDefinition = serde_yaml::from_str(&yaml).unwrap();
        let name = crd.metadata.name.clone().expect("a CRD has a name");
        match api.create(&PostParams::default(), &crd).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => panic!("applying CRD: {e}"),
        }
        // Served once Established, not after a guessed delay.
        let established = kube::runtime::wait::await_condition(
            api.clone(),
            &name,
            kube::runtime::wait::conditions::is_crd_established(),
        );
        tokio::time::timeout(WAIT, established)
            .await
            .unwrap_or_else(|_| panic!("CRD {name} not Established within {WAIT:?}"))
            .unwrap_or_else(|e| panic!("watching CRD {name}: {e}"));
    }
}

fn compiler(root: &str) -> CompileFn {
    default_compile(root)
}

impl Env {
    async fn controller(&self, stream_addr: &str, identity: &str) -> Controller {
        let config = Config {
            namespaces: vec![self.ns.clone()],
            root_namespace: self.ns.clone(),
            stream_listener: TcpListener::bind(stream_addr).await.expect("bind stream"),
            admin_listener: TcpListener::bind("127.0.0.1:0").await.expect("bind admin"),
            token: Token::new(&self.pki.token).unwrap(),
            tls: tls::server_config(self.pki.cert_pem.as_bytes(), self.pki.key_pem.as_bytes())
                .unwrap(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(3),
            debounce: Debounce::default(),
            gateway_api_recheck: Duration::from_secs(1),
            fetch: Default::default(),
            proxy_service: None,
            compile: compiler(&self.ns),
        };
        Controller::start(self.client.clone(), config)
            .await
            .expect("controller starts")
    }

    fn proxy(
        &self,
        controller: &Controller,
        id: &str,
    ) -> (
        watch::Receiver<Option<Arc<Snapshot>>>,
        tokio::task::JoinHandle<()>,
    ) {
        let mut config = ControllerSourceConfig::new(
            format!("https://127.0.0.1:{}", controller.stream_addr.port()),
            self.pki.ca_file.clone(),
            self.pki.token_file.clone(),
            id,
        );
        config.backoff = Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(500),
        };
        let (tx, rx) = watch::channel(None);
        let task = tokio::spawn(async move {
            let _ = source::run(config, tx, None).await;
        });
        (rx, task)
    }

    fn routes(&self) -> Api<Route> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    async fn create_service(&self, name: &str) {
        let api: Api<Service> = Api::namespaced(self.client.clone(), &self.ns);
        let svc: Service = serde_json::from_value(json!({
            "apiVersion": "hookway.dev/v1alpha1", "kind": "Service",
            "metadata": {"name": name},
            "spec": {"nodes": [{"address": "10.0.0.1", "port": 8080, "weight": 1}]}
        }))
        .unwrap();
        api.create(&PostParams::default(), &svc)
            .await
            .expect("create service");
    }

    async fn create_route(&self, name: &str, spec: serde_json::Value) {
        let route: Route = serde_json::from_value(json!({
            "apiVersion": "hookway.dev/v1alpha1", "kind": "Route",
            "metadata": {"name": name}, "spec": spec
        }))
        .unwrap();
        self.routes()
            .create(&PostParams::default(), &route)
            .await
            .expect("create route");
    }

    async fn condition(&self, route: &str, type_: &str) -> Option<(String, String, String)> {
        let r = self.routes().get(route).await.ok()?;
        r.status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == type_)
            .map(|c| (c.status, c.reason, c.message))
    }

    async fn wait_condition(
        &self,
        route: &str,
        type_: &str,
        status: &str,
        reason_or_message: &str,
    ) {
        let deadline = Instant::now() + WAIT;
        loop {
            let c = self.condition(route, type_).await;
            if let Some((s, reason, message)) = &c {
                if s == status && (reason == reason_or_message || message == reason_or_message) {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{route} {type_}: {c:?}, want {status} {reason_or_message}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Env {
    /// Waits until `controller` leads a fleet of `proxies` proxies holding a snapshot (its last
    /// status pass counted them) and `route` is `Programmed` on all of them.
    async fn wait_programmed(&self, controller: &Controller, route: &str, proxies: i64) {
        let deadline = Instant::now() + WAIT;
        while controller.metrics.fleet_proxies.get() != proxies {
            assert!(
                Instant::now() < deadline,
                "fleet of {} proxies, want {proxies}",
                controller.metrics.fleet_proxies.get()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.wait_condition(route, "Programmed", "True", "Programmed")
            .await;
    }
}

async fn wait_snapshot(
    rx: &mut watch::Receiver<Option<Arc<Snapshot>>>,
    what: &str,
    f: impl Fn(&Snapshot) -> bool,
) -> Arc<Snapshot> {
    let got = tokio::time::timeout(WAIT, rx.wait_for(|s| s.as_ref().is_some_and(|s| f(s))))
        .await
        .map(|r| r.map(|s| s.clone()));
    match got {
        Ok(Ok(Some(s))) => s,
        _ => panic!(
            "proxy never got a snapshot where {what}; has {:?}",
            rx.borrow()
        ),
    }
}

fn route<'a>(s: &'a Snapshot, name: &str) -> Option<&'a hookway_crds::snapshot::RouteEntry> {
    s.routes.iter().find(|r| r.key.name == name).map(|r| &**r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_update_reject_delete() {
    let env = env("crud").await;
    let controller = env.controller("127.0.0.1:0", "controller-0").await;
    let (mut proxy, proxy_task) = env.proxy(&controller, "proxy-0");

    env.create_service("web").await;
    env.create_route("a", json!({"hosts": ["a.example.com"], "service": "web"}))
        .await;
    wait_snapshot(&mut proxy, "route a is served", |s| route(s, "a").is_some()).await;
    env.wait_condition("a", "Accepted", "True", "Accepted")
        .await;
    env.wait_programmed(&controller, "a", 1).await;

    // Update: the proxy has it within a second.
    let mut a = env.routes().get("a").await.unwrap();
    a.spec.priority = 7;
    let started = Instant::now();
    env.routes()
        .replace("a", &PostParams::default(), &a)
        .await
        .unwrap();
    wait_snapshot(&mut proxy, "route a has priority 7", |s| {
        route(s, "a").is_some_and(|r| r.priority == 7)
    })
    .await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "update took {took:?}");
    eprintln!("update reached the proxy in {took:?}");

    // An invalid Route is rejected on its own status; the others keep being served.
    env.create_route(
        "bad",
        json!({"hosts": ["b.example.com"], "service": "web", "plugins": {"missing": {}}}),
    )
    .await;
    env.wait_condition("bad", "ResolvedRefs", "False", "PluginNotFound")
        .await;
    let s = proxy.borrow().clone().unwrap();
    assert!(
        route(&s, "a").is_some() && route(&s, "bad").is_none(),
        "{s:?}"
    );

    // Unchanged statuses are not re-patched. Each new Route makes the leader compile and, once
    // the proxy acks, sync every status again, in object order: when `zz-later-N` (sorted after
    // `bad`) is Programmed, those passes have been through `bad`.
    if let Some(fake) = &env.fake {
        let env = &env;
        let controller = &controller;
        let later = |n: u32| async move {
            let name = format!("zz-later-{n}");
            let host = format!("z{n}.example.com");
            env.create_route(&name, json!({"hosts": [host], "service": "web"}))
                .await;
            env.wait_programmed(controller, &name, 1).await;
        };
        later(1).await;
        let before = fake.status_patches("routes", &env.ns, "bad");
        later(2).await;
        assert_eq!(
            fake.status_patches("routes", &env.ns, "bad"),
            before,
            "no patch without a change"
        );
    }

    // Delete: gone from the proxy.
    env.routes()
        .delete("a", &DeleteParams::default())
        .await
        .unwrap();
    wait_snapshot(&mut proxy, "route a is gone", |s| route(s, "a").is_none()).await;

    proxy_task.abort();
    controller.shutdown().await;
}

/// A proxy joining or leaving the fleet rewrites no status: `Programmed` names no proxy count,
/// and a proxy counts only once it holds a snapshot. A change to one Route patches that Route
/// only. (With `n/m proxies` in the message, two proxies joining a 10,000-Route cluster cost
/// 20,000 patches.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_joining_and_leaving_write_no_status() {
    const ROUTES: usize = 12;
    let env = env("fleet").await;
    let controller = env.controller("127.0.0.1:0", "controller-0").await;
    let (_p1, t1) = env.proxy(&controller, "proxy-1");
    env.create_service("web").await;
    for i in 0..ROUTES {
        env.create_route(
            &format!("r{i}"),
            json!({"hosts": [format!("r{i}.example.com")], "service": "web"}),
        )
        .await;
    }
    for i in 0..ROUTES {
        env.wait_programmed(&controller, &format!("r{i}"), 1).await;
    }
    let Some(fake) = &env.fake else {
        eprintln!("patch counts need the fake API server; joined and left without them");
        t1.abort();
        controller.shutdown().await;
        return;
    };
    let patches = |fake: &hookway_tests::fake_api::FakeApi| {
        (0..ROUTES)
            .map(|i| fake.status_patches("routes", &env.ns, &format!("r{i}")))
            .collect::<Vec<_>>()
    };
    let before = patches(fake);

    // Two proxies join; once the leader's status pass has counted them, nothing was patched.
    let (mut p2, t2) = env.proxy(&controller, "proxy-2");
    let (_p3, t3) = env.proxy(&controller, "proxy-3");
    wait_snapshot(&mut p2, "proxy-2 holds the routes", |s| {
        s.routes.len() == ROUTES
    })
    .await;
    for i in 0..ROUTES {
        env.wait_programmed(&controller, &format!("r{i}"), 3).await;
    }
    assert_eq!(patches(fake), before, "proxies joining patched statuses");

    // They leave: still nothing.
    t2.abort();
    t3.abort();
    let deadline = Instant::now() + WAIT;
    while controller.metrics.fleet_proxies.get() != 1 {
        assert!(
            Instant::now() < deadline,
            "the leaving proxies are still counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(patches(fake), before, "proxies leaving patched statuses");

    // One Route changes: only it is patched.
    let mut r0 = env.routes().get("r0").await.unwrap();
    r0.spec.priority = 3;
    env.routes()
        .replace("r0", &PostParams::default(), &r0)
        .await
        .unwrap();
    let generation = env.routes().get("r0").await.unwrap().metadata.generation;
    let deadline = Instant::now() + WAIT;
    loop {
        let r0 = env.routes().get("r0").await.unwrap();
        let programmed = r0.status.and_then(|s| {
            s.conditions
                .into_iter()
                .find(|c| c.type_ == "Programmed" && c.status == "True")
        });
        if programmed.is_some_and(|c| c.observed_generation == generation) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "r0's new generation never Programmed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = patches(fake);
    assert!(after[0] > before[0], "r0 was patched");
    assert_eq!(after[1..], before[1..], "only r0 was patched");
    t1.abort();
    controller.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_survive_a_controller_restart_and_resync() {
    let env = env("restart").await;
    let controller = env.controller("127.0.0.1:0", "controller-0").await;
    let addr = controller.stream_addr;
    let (mut p1, t1) = env.proxy(&controller, "proxy-1");
    let (mut p2, t2) = env.proxy(&controller, "proxy-2");
    env.create_service("web").await;
    env.create_route("a", json!({"hosts": ["a.example.com"], "service": "web"}))
        .await;
    let first = wait_snapshot(&mut p1, "route a is served", |s| route(s, "a").is_some()).await;
    wait_snapshot(&mut p2, "route a is served", |s| route(s, "a").is_some()).await;
    env.wait_programmed(&controller, "a", 2).await;
    let patches_of_a = env
        .fake
        .as_ref()
        .map(|f| f.status_patches("routes", &env.ns, "a"));

    controller.shutdown().await;
    // Two redials: the proxies have noticed (usually one each; a check that cannot fail falsely).
    hookway_tests::proxy::wait_redials(addr, 2).await;
    assert_eq!(
        p1.borrow().as_ref().unwrap().hash,
        first.hash,
        "last snapshot kept"
    );

    // While the controller is down, a change is made; the restarted controller resyncs.
    env.create_route("b", json!({"hosts": ["b.example.com"], "service": "web"}))
        .await;
    let controller = env.controller(&addr.to_string(), "controller-1").await;
    let s = wait_snapshot(&mut p1, "route b is served", |s| route(s, "b").is_some()).await;
    assert!(
        s.version > first.version,
        "versions keep growing across restarts"
    );
    wait_snapshot(&mut p2, "route b is served", |s| route(s, "b").is_some()).await;
    env.wait_programmed(&controller, "b", 2).await;
    // The new leader kept `a`'s Programmed while the proxies reconnected: no NoProxies flip
    // and back (a restart or failover would otherwise rewrite every status twice).
    if let (Some(fake), Some(before)) = (&env.fake, patches_of_a) {
        env.wait_programmed(&controller, "a", 2).await;
        assert_eq!(
            fake.status_patches("routes", &env.ns, "a"),
            before,
            "route a was patched across the restart"
        );
    }

    // A proxy restarted gets the current snapshot.
    t2.abort();
    let (mut p3, t3) = env.proxy(&controller, "proxy-2");
    wait_snapshot(&mut p3, "route b is served", |s| route(s, "b").is_some()).await;
    for t in [t1, t3] {
        t.abort();
    }
    controller.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_changes_rewrite_no_route_status() {
    // A rollout changes a Service's endpoints many times; proxies swap them in place. The
    // Routes on that Service keep `Programmed` as it is: no `Pending` and back (two status
    // writes per Route per endpoint change, a storm under churn).
    let env = env("endpoint-churn").await;
    let Some(fake) = env.fake.as_ref() else {
        eprintln!("skipped: counts status patches on the fake API server");
        return;
    };
    let controller = env.controller("127.0.0.1:0", "controller-0").await;
    let (mut p1, t1) = env.proxy(&controller, "proxy-1");
    env.create_service("web").await;
    env.create_route("a", json!({"hosts": ["a.example.com"], "service": "web"}))
        .await;
    wait_snapshot(&mut p1, "route a is served", |s| route(s, "a").is_some()).await;
    env.wait_programmed(&controller, "a", 1).await;
    let before = fake.status_patches("routes", &env.ns, "a");

    let services: Api<Service> = Api::namespaced(env.client.clone(), &env.ns);
    for (i, address) in ["10.0.0.2", "10.0.0.3", "10.0.0.4"].into_iter().enumerate() {
        let patch = json!({"spec": {"nodes": [{"address": address, "port": 8080, "weight": 1}]}});
        services
            .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("patch service");
        wait_snapshot(&mut p1, "the new endpoint is held", |s| {
            s.upstreams
                .iter()
                .any(|u| u.endpoints.iter().any(|e| e.address == address))
        })
        .await;
        // A later Route, Programmed only after a status pass over a version that holds the new
        // endpoint: any write for `a` caused by it has been made by then.
        let later = format!("later-{i}");
        env.create_route(
            &later,
            json!({"hosts": [format!("{later}.example.com")], "service": "web"}),
        )
        .await;
        env.wait_programmed(&controller, &later, 1).await;
    }
    assert_eq!(
        fake.status_patches("routes", &env.ns, "a"),
        before,
        "route a's status was rewritten by endpoint changes"
    );
    t1.abort();
    controller.shutdown().await;
}

#[tokio::test]
async fn fake_api_refuses_loopback_endpoints_and_expires_old_watches() {
    if std::env::var_os("HOOKWAY_E2E_KUBECONFIG").is_some() {
        eprintln!("skipped: checks the fake API server only");
        return;
    }
    use futures::StreamExt;
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use kube::api::{WatchEvent, WatchParams};
    let fake = FakeApi::start().await;
    let client = fake.client().await;
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": "web-abc", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["127.0.0.1"]}]
    }))
    .unwrap();
    match slices.create(&PostParams::default(), &slice).await {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 422, "{e:?}"),
        other => panic!("loopback endpoint accepted: {other:?}"),
    }

    fake.compact();
    let stream = slices.watch(&WatchParams::default(), "1").await.unwrap();
    futures::pin_mut!(stream);
    match tokio::time::timeout(WAIT, stream.next()).await {
        Ok(Some(Ok(WatchEvent::Error(e)))) => assert_eq!(e.code, 410),
        other => panic!("expected 410 Gone, got {other:?}"),
    }
}

#[tokio::test]
async fn fake_api_applies_lists_watches_and_deletes_leases_like_a_real_one() {
    if std::env::var_os("HOOKWAY_E2E_KUBECONFIG").is_some() {
        eprintln!("skipped: checks the fake API server only");
        return;
    }
    use futures::StreamExt;
    use kube::api::{WatchEvent, WatchParams};
    let fake = FakeApi::start().await;
    let leases: Api<Lease> = Api::namespaced(fake.client().await, "default");
    let lease = |annotations: serde_json::Value| -> serde_json::Value {
        json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "r-0", "labels": {"hookway.dev/proxy-registry": "true"},
                         "annotations": annotations},
            "spec": {"holderIdentity": "c0", "leaseDurationSeconds": 3}
        })
    };
    let selected = WatchParams::default().labels("hookway.dev/proxy-registry=true");
    let watch = leases.watch(&selected, "0").await.unwrap();
    futures::pin_mut!(watch);
    // Apply creates...
    let apply = PatchParams::apply("hookway-controller").force();
    let created = leases
        .patch(
            "r-0",
            &apply,
            &Patch::Apply(lease(json!({"a": "1", "b": "2"}))),
        )
        .await
        .expect("apply creates");
    assert_eq!(created.metadata.annotations.unwrap().len(), 2);
    // ...then updates; what the manager no longer applies is removed.
    let updated = leases
        .patch("r-0", &apply, &Patch::Apply(lease(json!({"a": "3"}))))
        .await
        .unwrap();
    assert_eq!(
        updated.metadata.annotations.unwrap(),
        [("a".to_string(), "3".to_string())].into()
    );
    // Apply without a field manager is refused.
    let anonymous = PatchParams {
        field_manager: None,
        ..PatchParams::default()
    };
    match leases
        .patch("r-0", &anonymous, &Patch::Apply(lease(json!({}))))
        .await
    {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 400),
        other => panic!("apply without fieldManager: {other:?}"),
    }
    // Lease names must be DNS-1123 subdomains.
    let mut bad = lease(json!({}));
    bad["metadata"]["name"] = json!("R_0");
    match leases.patch("R_0", &apply, &Patch::Apply(bad)).await {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 422),
        other => panic!("invalid lease name accepted: {other:?}"),
    }
    // An unlabelled Lease is not selected.
    let other: Lease = serde_json::from_value(json!({"metadata": {"name": "leader"}})).unwrap();
    leases.create(&PostParams::default(), &other).await.unwrap();
    let listed = leases
        .list(&ListParams::default().labels("hookway.dev/proxy-registry=true"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    leases
        .delete("r-0", &DeleteParams::default())
        .await
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match tokio::time::timeout(WAIT, watch.next()).await {
            Ok(Some(Ok(WatchEvent::Added(l) | WatchEvent::Modified(l)))) => {
                seen.push(l.metadata.name.unwrap())
            }
            Ok(Some(Ok(WatchEvent::Deleted(l)))) => {
                seen.push(format!("-{}", l.metadata.name.unwrap()))
            }
            Ok(Some(Ok(WatchEvent::Bookmark(_)))) => {}
            other => panic!("watch: {other:?} after {seen:?}"),
        }
    }
    assert_eq!(
        seen,
        ["r-0", "r-0", "-r-0"],
        "only the labelled Lease is watched"
    );
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect admin");
    let req = format!("GET {path} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut buf = String::new();
    tokio::time::timeout(WAIT, tcp.read_to_string(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let code = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, buf)
}

/// Two controller replicas with a proxy streaming from each (the proxies' stream tasks `t0`,
/// `t1`, and the snapshots they received, kept open for as long as the test runs).
struct TwoReplicas {
    c0: Controller,
    c1: Controller,
    t0: tokio::task::JoinHandle<()>,
    t1: tokio::task::JoinHandle<()>,
    snapshots: [watch::Receiver<Option<Arc<Snapshot>>>; 2],
}

/// Starts controller-0 and lets it win the Lease, then controller-1 (following); connects
/// proxy-0 to the first and proxy-1 to the second, creates Service `web` and Route `a`, and
/// waits until both proxies (so both replicas) serve the Route.
async fn two_replicas_serving_route_a(env: &Env) -> TwoReplicas {
    let c0 = env.controller("127.0.0.1:0", "controller-0").await;
    let mut leader0 = c0.leader.clone();
    tokio::time::timeout(WAIT, leader0.wait_for(|l| *l))
        .await
        .unwrap()
        .unwrap();
    let c1 = env.controller("127.0.0.1:0", "controller-1").await;
    let (mut p0, t0) = env.proxy(&c0, "proxy-0");
    let (mut p1, t1) = env.proxy(&c1, "proxy-1");
    env.create_service("web").await;
    env.create_route("a", json!({"hosts": ["a.example.com"], "service": "web"}))
        .await;
    wait_snapshot(&mut p0, "route a is served", |s| route(s, "a").is_some()).await;
    wait_snapshot(&mut p1, "route a is served", |s| route(s, "a").is_some()).await;
    TwoReplicas {
        c0,
        c1,
        t0,
        t1,
        snapshots: [p0, p1],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_writes_status_and_a_standby_takes_over() {
    let env = env("ha").await;
    let TwoReplicas {
        c0,
        c1,
        t0,
        t1,
        snapshots: _snapshots,
    } = two_replicas_serving_route_a(&env).await;
    // Only the leader writes status; it counts the proxies of both replicas.
    env.wait_programmed(&c0, "a", 2).await;
    assert!(!*c1.leader.borrow(), "the standby does not lead");

    // Admin endpoint of the leader.
    let (code, _) = http_get(c0.admin_addr, "/healthz").await;
    assert_eq!(code, 200);
    let (code, _) = http_get(c0.admin_addr, "/readyz").await;
    assert_eq!(code, 200);
    let (code, body) = http_get(c0.admin_addr, "/metrics").await;
    assert_eq!(code, 200);
    assert!(
        body.contains("hookway_controller_connected_proxies 1"),
        "{body}"
    );
    assert!(body.contains("hookway_controller_leader 1"), "{body}");

    // The leader goes away (releasing the Lease): the standby takes over and writes status.
    t0.abort();
    c0.shutdown().await;
    let mut leader1 = c1.leader.clone();
    tokio::time::timeout(Duration::from_secs(10), leader1.wait_for(|l| *l))
        .await
        .expect("standby takes over")
        .unwrap();
    env.create_route("b", json!({"hosts": ["b.example.com"], "service": "web"}))
        .await;
    env.wait_programmed(&c1, "b", 1).await;
    t1.abort();
    c1.shutdown().await;
}

fn registry_leases(env: &Env) -> Api<Lease> {
    Api::namespaced(env.client.clone(), &env.ns)
}

/// The holders of the registry Leases in the controller's namespace.
async fn registry_holders(env: &Env) -> Vec<String> {
    let params = ListParams::default().labels("hookway.dev/proxy-registry=true");
    let mut holders: Vec<String> = registry_leases(env)
        .list(&params)
        .await
        .expect("list registry leases")
        .items
        .into_iter()
        .filter_map(|l| l.spec?.holder_identity)
        .collect();
    holders.sort();
    holders
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn programmed_counts_the_proxies_of_every_replica() {
    let env = env("registry").await;
    let TwoReplicas {
        c0,
        c1,
        t0,
        t1,
        snapshots: _snapshots,
    } = two_replicas_serving_route_a(&env).await;

    // The leader counts proxy-1 (connected to the follower) through the follower's Lease,
    // although each replica numbers its snapshots on its own.
    env.wait_programmed(&c0, "a", 2).await;
    assert!(!*c1.leader.borrow(), "controller-1 follows");
    assert_eq!(
        registry_holders(&env).await,
        ["controller-0", "controller-1"]
    );
    let lease = registry_leases(&env)
        .get("hookway-controller-proxies-controller-1")
        .await
        .expect("controller-1's registry lease");
    let proxies = &lease.metadata.annotations.unwrap()["hookway.dev/proxies"];
    assert!(
        proxies.starts_with(r#"{"proxy-1":{"applied":"#),
        "{proxies}"
    );
    let (_, metrics) = http_get(c1.admin_addr, "/metrics").await;
    assert!(
        metrics.contains("hookway_controller_proxy_lag_versions{proxy=\"proxy-1\"} 0"),
        "{metrics}"
    );

    // The follower crashes (dropped: no clean shutdown, its Lease stays): once the Lease
    // expired (3 s here), its proxy is no longer counted.
    let crashed = Instant::now();
    drop(c1);
    env.wait_programmed(&c0, "a", 1).await;
    assert!(
        crashed.elapsed() >= Duration::from_secs(1),
        "counted until the Lease expired"
    );
    assert_eq!(
        registry_holders(&env).await,
        ["controller-0", "controller-1"],
        "a crashed replica's Lease expires, it is not deleted"
    );

    // A clean shutdown deletes the replica's Lease.
    t0.abort();
    t1.abort();
    c0.shutdown().await;
    assert_eq!(registry_holders(&env).await, ["controller-1"]);
}
