//! What the controller holds at issue 18's size, by part, counted by a global allocator: the
//! reflector stores (objects as `tests/tests/bench.rs` creates them, with the statuses the
//! controller writes, which the watch keeps as records beside the stores: `statuses.rs`), the
//! compile loop's published state (snapshot, reports, digests) and the status loop's
//! bookkeeping. Run:
//! `cargo test --workspace --test heap -- --ignored --nocapture` (debug or release: bytes do
//! not depend on the profile).

#[path = "../../crds/benches/support/live_heap.rs"]
mod live_heap;

use hookway_controller::compile_loop::CompileLoop;
use hookway_controller::fleet::Programmed;
use hookway_controller::index::{
    CoreServiceLite, EndpointSliceLite, GatewayApiSlot, MultiStore, Stores,
};
use hookway_controller::metrics::Metrics;
use hookway_controller::proxies::Count;
use hookway_controller::status::{self, StatusObject};
use hookway_controller::status_loop::Generations;
use hookway_controller::statuses::Statuses;
use hookway_controller::store::{self as reflector, Store, Writer};
use hookway_crds::compiler::{Kind, ObjectId, Options};
use hookway_crds::snapshot::ObjectKey;
use hookway_crds::{Route, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::watcher::Event;
use live_heap::live;
use serde_json::json;
use tokio::sync::watch;

#[global_allocator]
static ALLOCATOR: live_heap::Counting = live_heap::Counting;

const ROUTES: usize = 10_000;
const SERVICES: usize = 1_000;
const ENDPOINTS: usize = 10;

fn meta(name: &str, i: usize) -> serde_json::Value {
    json!({"name": name, "namespace": "bench", "uid": format!("0000-{i:08}"),
           "resourceVersion": format!("{}", 1000 + i), "generation": 1,
           "creationTimestamp": "2026-12-07T10:00:00Z"})
}

fn store<K>(objects: Vec<K>) -> (Store<K>, Writer<K>)
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    store_with(objects, |_| {})
}

/// A store filled as the watch fills it, `keep` seeing each event first (`watch.rs`).
fn store_with<K>(objects: Vec<K>, mut keep: impl FnMut(&mut Event<K>)) -> (Store<K>, Writer<K>)
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    let (store, mut writer) = reflector::store();
    let mut apply = |mut event: Event<K>| {
        keep(&mut event);
        writer.apply(event);
    };
    apply(Event::Init);
    for mut o in objects {
        hookway_controller::watch::trim(&mut o);
        apply(Event::InitApply(o));
    }
    apply(Event::InitDone);
    (store, writer)
}

/// A store of a kind with statuses: they go to `statuses`, as the watch does.
fn kept<K: StatusObject>(objects: Vec<K>, statuses: &Statuses) -> (Store<K>, Writer<K>) {
    let namespace = Some("bench".to_string());
    store_with(
        objects,
        hookway_controller::watch::status_keeper::<K>(statuses.clone(), namespace),
    )
}

fn empty<K>() -> MultiStore<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    MultiStore(vec![store(Vec::new()).0])
}

fn mib(bytes: isize) -> String {
    format!("{bytes:>11} B = {:>6.2} MiB", bytes as f64 / 1048576.0)
}

/// Writes each object's status as the controller would (2 of 2 proxies applied it), brought
/// back by the watch (which keeps its record in `statuses`).
fn with_statuses<K: StatusObject>(
    writer: &mut Writer<K>,
    store: &Store<K>,
    statuses: &Statuses,
    kind: Kind,
    reports: &std::collections::BTreeMap<ObjectId, hookway_crds::compiler::ObjectReport>,
) {
    let mut keep = hookway_controller::watch::status_keeper::<K>(statuses.clone(), None);
    let now = Time(Timestamp::now());
    let count = Programmed {
        count: Count {
            applied: 2,
            ready: 2,
        },
        failures: vec![],
        settling: false,
    };
    for obj in store.state() {
        let id = ObjectId {
            kind,
            key: ObjectKey::new(
                obj.meta().namespace.clone().unwrap_or_default(),
                obj.meta().name.clone().unwrap_or_default(),
            ),
        };
        let Some(report) = reports.get(&id) else {
            continue;
        };
        if let Some(s) = status::desired(&*obj, report, &count, &now) {
            let mut copy = K::clone(&obj);
            copy.set_status(s);
            let mut event = Event::Apply(copy);
            keep(&mut event);
            writer.apply(event);
        }
    }
}

/// `snapshot` with a copy of every entry (what it holds, not what it shares).
fn deep_copy(snapshot: &hookway_crds::Snapshot) -> hookway_crds::Snapshot {
    fn each<T: Clone>(entries: &[std::sync::Arc<T>]) -> Vec<std::sync::Arc<T>> {
        entries
            .iter()
            .map(|e| std::sync::Arc::new(T::clone(e)))
            .collect()
    }
    hookway_crds::Snapshot {
        version: snapshot.version,
        hash: snapshot.hash.clone(),
        routes: each(&snapshot.routes),
        upstreams: each(&snapshot.upstreams),
        certificates: each(&snapshot.certificates),
        secrets: each(&snapshot.secrets),
        default_chain: snapshot.default_chain.clone(),
        blobs: each(&snapshot.blobs),
    }
}

#[test]
#[ignore = "a measurement: run with --ignored --nocapture"]
fn controller_heap_at_10k_routes() {
    let start = live();
    let routes_at = live();
    let routes: Vec<Route> = (0..ROUTES)
        .map(|i| {
            let service = if i % 7 == 0 {
                "web".to_string()
            } else {
                format!("svc{}", i % SERVICES)
            };
            serde_json::from_value(
                json!({"apiVersion": "hookway.dev/v1alpha1", "kind": "Route",
                "metadata": meta(&format!("r{i}"), i),
                "spec": {"hosts": [format!("h{i}.example.com")], "service": service}}),
            )
            .unwrap()
        })
        .collect();
    let routes_objects = live() - routes_at;
    let services_at = live();
    let mut services: Vec<Service> = (0..SERVICES)
        .map(|j| {
            serde_json::from_value(
                json!({"apiVersion": "hookway.dev/v1alpha1", "kind": "Service",
                "metadata": meta(&format!("svc{j}"), j),
                "spec": {"backend": {"name": format!("b{j}"), "port": 80}}}),
            )
            .unwrap()
        })
        .collect();
    services.push(
        serde_json::from_value(
            json!({"apiVersion": "hookway.dev/v1alpha1", "kind": "Service",
            "metadata": meta("web", 99_999),
            "spec": {"nodes": [{"address": "127.0.0.1", "port": 8080}]}}),
        )
        .unwrap(),
    );
    let services_objects = live() - services_at;
    // As a real API server returns them (what `watch::trim` leaves: no managedFields).
    let core_json = |j: usize| {
        json!({"metadata": meta(&format!("b{j}"), j),
            "spec": {
                "clusterIP": format!("10.96.{}.{}", j / 250, j % 250 + 1),
                "clusterIPs": [format!("10.96.{}.{}", j / 250, j % 250 + 1)],
                "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                "internalTrafficPolicy": "Cluster", "sessionAffinity": "None",
                "type": "ClusterIP", "selector": {"app": format!("b{j}")},
                "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]},
            "status": {"loadBalancer": {}}})
    };
    let core_at = live();
    let core: Vec<CoreServiceLite> = (0..SERVICES)
        .map(|j| serde_json::from_value(core_json(j)).unwrap())
        .collect();
    let core_objects = live() - core_at;
    let slices_at = live();
    let slices: Vec<EndpointSliceLite> = (0..SERVICES)
        .map(|j| {
            let endpoints: Vec<_> = (0..ENDPOINTS)
                .map(|k| {
                    json!({"addresses": [format!("10.{}.{}.{}", j / 200, j % 200 + 1, 1 + k * 20)],
                                "conditions": {"ready": true}})
                })
                .collect();
            let mut m = meta(&format!("b{j}-1"), j);
            m["labels"] = json!({"kubernetes.io/service-name": format!("b{j}")});
            serde_json::from_value(json!({"metadata": m, "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080}], "endpoints": endpoints}))
            .unwrap()
        })
        .collect();
    let slices_objects = live() - slices_at;
    let statuses = Statuses::default();
    let at = live();
    let (route_store, mut route_writer) = kept(routes, &statuses);
    let routes_bytes = live() - at + routes_objects;
    let at = live();
    let (service_store, mut service_writer) = kept(services, &statuses);
    let services_bytes = live() - at + services_objects;
    let at = live();
    let (core_store, _core_writer) = store(core);
    let core_bytes = live() - at + core_objects;
    let at = live();
    let (slice_store, _slice_writer) = store(slices);
    let slices_bytes = live() - at + slices_objects;
    let stores = Stores {
        plugins: empty(),
        services: MultiStore(vec![service_store.clone()]),
        routes: MultiStore(vec![route_store.clone()]),
        core_services: MultiStore(vec![core_store]),
        endpoint_slices: MultiStore(vec![slice_store]),
        tls_secrets: empty(),
        credential_secrets: empty(),
        config_maps: empty(),
        policies: empty(),
        namespaces: store(Vec::new()).0,
        gateway_api: GatewayApiSlot::default(),
        proxy_service: None,
        ingresses: empty(),
        ingress_classes: store(Vec::new()).0,
        statuses: statuses.clone(),
    };

    // The statuses the controller writes (from a first compile), as the watch brings them back.
    let options = Options {
        root_namespace: "bench".into(),
        now: None,
    };
    let at = live();
    let catalogue = hookway_crds::Catalogue::builtin();
    let catalogue_bytes = live() - at;
    let first = hookway_crds::compiler::compile(&stores.objects(), &options, &catalogue);
    assert_eq!(first.snapshot.routes.len(), ROUTES, "every Route is served");
    let at = live();
    with_statuses(
        &mut route_writer,
        &route_store,
        &statuses,
        Kind::Route,
        &first.reports,
    );
    let route_statuses = live() - at;
    with_statuses(
        &mut service_writer,
        &service_store,
        &statuses,
        Kind::Service,
        &first.reports,
    );
    assert_eq!(
        statuses.len(),
        ROUTES + SERVICES + 1,
        "every status recorded"
    );
    assert!(
        route_store.state().iter().all(|r| r.status.is_none()),
        "the store holds no status"
    );
    drop(first);
    // The catalogue was made in between: it is counted on its own line.
    let stores_bytes = live() - start - catalogue_bytes;

    let (snapshots, snapshot_rx) = watch::channel(None);
    let (published, published_rx) = watch::channel(None);
    let objects_stores = stores.clone();
    let metrics = Metrics::new().unwrap();
    let before_loop = live();
    let mut compile_loop = CompileLoop::new(
        move || objects_stores.objects(),
        |o: &hookway_crds::compiler::Objects,
         previous: Option<hookway_crds::compiler::Previous<'_>>| {
            hookway_crds::compiler::compile_reusing(o, &options, &catalogue, previous)
        },
        snapshots,
        published,
        metrics,
    );
    compile_loop.step().expect("the first compile publishes");
    let loop_bytes = live() - before_loop;
    let snapshot = snapshot_rx.borrow().clone().unwrap();
    let p = published_rx.borrow().clone().unwrap();
    let frame_len = serde_json::to_vec(&*snapshot).unwrap().len() as isize;

    let before_generations = live();
    let mut generations = Generations::default();
    generations.update(&p);
    let generations_bytes = live() - before_generations;

    // Parts, measured by what dropping a copy of each would free.
    let at = live();
    let reports: std::collections::BTreeMap<_, _> = (*p.reports).clone();
    let reports_bytes = live() - at;
    drop(reports);
    let at = live();
    let digests = p.digests.digests().clone();
    let digests_bytes = live() - at;
    drop(digests);
    let at = live();
    // Entries are shared (`Arc`) between versions: a copy of the snapshot alone would be
    // pointers, so each entry is copied too.
    let copy = deep_copy(&snapshot);
    let snapshot_bytes = live() - at;
    drop(copy);

    println!(
        "controller heap, {ROUTES} Routes, {SERVICES} Services, {} endpoints:",
        SERVICES * ENDPOINTS
    );
    println!(
        "  reflector stores (with statuses):       {}",
        mib(stores_bytes)
    );
    println!(
        "    Routes without status (in the store): {}",
        mib(routes_bytes)
    );
    println!(
        "    Routes' status records:               {}",
        mib(route_statuses)
    );
    println!(
        "    Services without status:              {}",
        mib(services_bytes)
    );
    println!(
        "    core Services:                        {}",
        mib(core_bytes)
    );
    println!(
        "    EndpointSlices:                       {}",
        mib(slices_bytes)
    );
    println!(
        "  compile loop after a step (all held):   {}",
        mib(loop_bytes)
    );
    println!(
        "    snapshot:                             {}",
        mib(snapshot_bytes)
    );
    println!(
        "    reports:                              {}",
        mib(reports_bytes)
    );
    println!(
        "    digests (by object):                  {}",
        mib(digests_bytes)
    );
    println!(
        "  status loop's generations:              {}",
        mib(generations_bytes)
    );
    println!(
        "  plugin catalogue (none used):           {}",
        mib(catalogue_bytes)
    );
    println!(
        "  a whole frame (JSON), while being sent: {}",
        mib(frame_len)
    );
    println!(
        "  total (stores, loop, generations, catalogue): {}",
        mib(stores_bytes + loop_bytes + generations_bytes + catalogue_bytes)
    );
    // Budgets (bench/CONTROLLER.md, 2026-12-07: 1.95, 0.17 and 28.65 MiB measured; session 11:
    // records 1.77, Routes in the store 6.71, generations 1.02, total 22.27 MiB; session 12:
    // the snapshot's lists no longer collected in place, total 22.02 MiB; core Services as a
    // real server returns them, kept lite: 1.63 -> 0.58 MiB, total 21.60 MiB; validators compiled
    // on first use: catalogue 1.51 -> 0.87 MiB (it was counted in the stores until then), total
    // 20.96 MiB).
    const MIB: isize = 1 << 20;
    let budgets = [
        (
            route_statuses,
            2 * MIB,
            "Routes' statuses kept whole again? (5.00 MiB before)",
        ),
        (
            routes_bytes,
            7 * MIB,
            "Routes keyed by ObjectRef copies again? (8.09 MiB before)",
        ),
        (
            slices_bytes,
            5 * MIB / 2,
            "EndpointSlices kept whole again?",
        ),
        (
            core_bytes,
            3 * MIB / 4,
            "core Services kept whole again? (1.63 MiB before, 0.58 measured)",
        ),
        (digests_bytes, MIB / 4, "digests kept by object again?"),
        (
            catalogue_bytes,
            MIB,
            "every kind's validator compiled before use again? (1.51 MiB before, 0.87 measured)",
        ),
        (
            generations_bytes,
            3 * MIB / 2,
            "generations keyed by names again? (2.12 MiB before)",
        ),
        (
            stores_bytes + loop_bytes + generations_bytes + catalogue_bytes,
            23 * MIB,
            "the controller holds more than 23 MiB at 10,000 Routes (20.96 measured)",
        ),
    ];
    for (bytes, budget, why) in budgets {
        assert!(bytes < budget, "{why}: {}", mib(bytes));
    }
    drop(generations);

    // What each holder frees when dropped, in order: the loop's own fields (the previous
    // compile kept for reuse, the entry digests of the seal), then the published reports and
    // digests, then the snapshot as held (against the compact copies measured above, the
    // difference is spare capacity).
    let at = live();
    drop(compile_loop);
    drop((snapshot_rx, published_rx));
    let loop_own = at - live();
    let at = live();
    drop(p);
    let published_bytes = at - live();
    let at = live();
    drop(snapshot);
    let snapshot_held = at - live();
    println!("  freed by dropping, in order:");
    println!(
        "    the loop (previous compile, seal):    {}",
        mib(loop_own)
    );
    println!(
        "    the published reports and digests:    {}",
        mib(published_bytes)
    );
    println!(
        "    the snapshot as held:                 {}",
        mib(snapshot_held)
    );
    assert!(
        snapshot_held < snapshot_bytes + MIB / 16,
        "the snapshot holds more than a compact copy of it ({} against {}): a list collected \
         in place keeps its source's room (snapshot::shared)",
        mib(snapshot_held),
        mib(snapshot_bytes)
    );
}
