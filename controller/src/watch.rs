//! Reflectors: kube-runtime watchers feeding in-memory stores; every change pokes the compile
//! loop.
//!
//! | kind | scope | selector |
//! |---|---|---|
//! | GatewayPlugin, Service, Route (hookway.dev) | watched namespaces (or all) | — |
//! | core Service, EndpointSlice | watched namespaces | — (index.rs keeps only referenced ones; of both only what the compiler reads: `index::CoreServiceLite`, `index::EndpointSliceLite`) |
//! | Secret `kubernetes.io/tls` | watched namespaces | `fieldSelector=type=kubernetes.io/tls` |
//! | Secret with credentials for plugins | watched namespaces | `labelSelector=hookway.dev/credentials=true` |
//! | ConfigMap with plugin data (a `wasm` module) | watched namespaces | `labelSelector=hookway.dev/plugin-data=true` |
//! | PlatformPolicy (hookway.dev) | the root namespace only | — (honoured only there) |
//! | Namespace | cluster | — (labels for `policy.namespaces`) |
//! | Ingress (networking.k8s.io) | watched namespaces | — |
//! | IngressClass (networking.k8s.io) | cluster | — |
//! | GatewayClass (gateway.networking.k8s.io) | cluster | — (once the API server serves the Gateway API: `gateway_api_discovery.rs`) |
//! | Gateway, HTTPRoute, ReferenceGrant | watched namespaces | — (likewise) |
//! | GRPCRoute | watched namespaces | — (once the API server serves it too) |
//! | the proxy Service (`--proxy-service`) | its namespace | `metadata.name` |
//!
//! No other Secret is ever loaded: a plugin config's Secret must carry the label
//! `hookway.dev/credentials=true` to be visible to the controller; likewise a plugin config's
//! ConfigMap the label `hookway.dev/plugin-data=true` (other ConfigMaps are never loaded). The root namespace is always
//! watched. Watch restarts and `410 Gone` are handled by kube-runtime (relist with backoff).

use std::fmt::Debug;

use crate::store::{self as reflector, Store};
use futures::StreamExt;
use hookway_crds::gateway_api::{GRPCRoute, Gateway, GatewayClass, HTTPRoute, ReferenceGrant};
use hookway_crds::{GatewayPlugin, PlatformPolicy, Route, Service};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service as CoreService};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::compile_loop::Poke;
use crate::index::{
    CoreServiceLite, EndpointSliceLite, GatewayApiSlot, GatewayApiStores, MultiStore, Stores,
};
use crate::status::StatusObject;
use crate::statuses::{self, Statuses};
use hookway_crds::snapshot::ObjectKey;
use std::collections::HashSet;

/// Label that makes a Secret visible to plugin configs.
pub const CREDENTIALS_LABEL: &str = "hookway.dev/credentials=true";
/// Label that makes a ConfigMap visible to plugin configs.
pub const PLUGIN_DATA_LABEL: &str = "hookway.dev/plugin-data=true";
/// Field selector for TLS Secrets.
pub const TLS_SECRET_FIELDS: &str = "type=kubernetes.io/tls";

/// Whether `new` changes what the compiler reads, compared with `stored` (the store's copy
/// before the update): a new object, or a new generation. Our own status patches keep the
/// generation, so they do not trigger a recompile. Kinds without a generation always count as
/// changed. The store's copy is the memory: no per-object table is kept for this.
fn changed<K: Resource>(stored: Option<&K>, new: &K) -> bool {
    let Some(generation) = new.meta().generation else {
        return true;
    };
    stored.and_then(|o| o.meta().generation) != Some(generation)
}

/// kubectl's client-side-apply copy of the whole object, kept in an annotation.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops what the stores never read before an object is cached: `managedFields` and kubectl's
/// last-applied copy. On a real API server these two are often larger than the rest of the
/// object (one managedFields entry per writer, the last-applied annotation a second copy of the
/// spec), so with 10,000 Routes they would be most of the controller's memory.
pub fn trim<K: Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

/// Which namespaces to watch.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    /// Empty: every namespace. Otherwise these (the root namespace is added if missing).
    pub namespaces: Vec<String>,
    /// The root namespace (PlatformPolicies are watched there only).
    pub root: String,
}

fn reflect<K>(tasks: &mut JoinSet<()>, api: Api<K>, config: watcher::Config, poke: Poke) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    reflect_with(tasks, api, config, poke, |_: &mut watcher::Event<K>| {})
}

/// [`reflect`], with `keep` seeing (and changing) every event before the store takes it.
fn reflect_with<K, F>(
    tasks: &mut JoinSet<()>,
    api: Api<K>,
    config: watcher::Config,
    poke: Poke,
    mut keep: F,
) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    F: FnMut(&mut watcher::Event<K>) + Send + 'static,
{
    let (store, mut writer) = reflector::store();
    let kind = K::kind(&()).to_string();
    let stream = watcher(api, config).default_backoff().modify(trim);
    tasks.spawn(async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            let mut event = match event {
                Ok(event) => event,
                Err(e) => {
                    warn!(%kind, error = %e, "watch failed; retrying with backoff");
                    continue;
                }
            };
            keep(&mut event);
            // Whether an Apply is a change, judged against the stored copy before the store
            // takes it; poked after: a compile woken by the poke must find the store updated.
            let poke_after = match &event {
                watcher::Event::Init | watcher::Event::InitApply(_) => false,
                watcher::Event::Apply(obj) => changed(writer.get_like(obj).as_deref(), obj),
                watcher::Event::Delete(_) | watcher::Event::InitDone => true,
            };
            writer.apply(event);
            if poke_after {
                poke.poke();
            }
        }
        debug!(%kind, "watch stream ended");
    });
    store
}

/// What a watch of a kind with statuses does to each event before its store takes it: takes
/// the status out of the object and keeps its record in `statuses` (`statuses.rs`: the stores
/// hold no status). `namespace`: the watch's scope (`None`: every namespace), for forgetting
/// the records of objects a relist no longer holds.
pub fn status_keeper<K: StatusObject>(
    statuses: Statuses,
    namespace: Option<String>,
) -> impl FnMut(&mut watcher::Event<K>) + Send + 'static {
    let mut listed: Option<HashSet<ObjectKey>> = None;
    move |event| match event {
        watcher::Event::Init => listed = Some(HashSet::new()),
        watcher::Event::InitApply(obj) => {
            if let (Some(listed), Some(id)) = (listed.as_mut(), statuses::id_of(obj)) {
                listed.insert(id.key);
            }
            statuses.take(obj);
        }
        watcher::Event::Apply(obj) => statuses.take(obj),
        watcher::Event::Delete(obj) => statuses.remove(obj),
        watcher::Event::InitDone => {
            if let Some(listed) = listed.take() {
                statuses.retain_listed::<K>(namespace.as_deref(), &listed);
            }
        }
    }
}

fn multi<K>(
    tasks: &mut JoinSet<()>,
    client: &Client,
    scope: &Scope,
    config: &watcher::Config,
    poke: &Poke,
) -> MultiStore<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    multi_with(tasks, client, scope, config, poke, |_| {
        |_: &mut watcher::Event<K>| {}
    })
}

/// [`multi`] for a kind with statuses: they are kept in `statuses`, not in the stores.
fn multi_statuses<K: StatusObject>(
    tasks: &mut JoinSet<()>,
    client: &Client,
    scope: &Scope,
    config: &watcher::Config,
    poke: &Poke,
    statuses: &Statuses,
) -> MultiStore<K> {
    multi_with(tasks, client, scope, config, poke, |namespace| {
        status_keeper::<K>(statuses.clone(), namespace.map(str::to_string))
    })
}

/// [`multi`], each watch's events seen first by `keep(namespace)`.
fn multi_with<K, F>(
    tasks: &mut JoinSet<()>,
    client: &Client,
    scope: &Scope,
    config: &watcher::Config,
    poke: &Poke,
    keep: impl Fn(Option<&str>) -> F,
) -> MultiStore<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
    F: FnMut(&mut watcher::Event<K>) + Send + 'static,
{
    if scope.namespaces.is_empty() {
        MultiStore(vec![reflect_with(
            tasks,
            Api::all(client.clone()),
            config.clone(),
            poke.clone(),
            keep(None),
        )])
    } else {
        MultiStore(
            scope
                .namespaces
                .iter()
                .map(|ns| {
                    reflect_with(
                        tasks,
                        Api::namespaced(client.clone(), ns),
                        config.clone(),
                        poke.clone(),
                        keep(Some(ns)),
                    )
                })
                .collect(),
        )
    }
}

/// Which Gateway API kinds the API server serves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GatewayApiServed {
    /// GatewayClasses, Gateways, HTTPRoutes and ReferenceGrants (all needed to watch any).
    pub core: bool,
    /// GRPCRoutes too (standard channel since v1.1; older installs lack them).
    pub grpc_routes: bool,
}

/// How often the controller asks discovery again whether the Gateway API is served, until it
/// is (with GRPCRoutes): one `GET /apis/gateway.networking.k8s.io/v1` each time.
pub const GATEWAY_API_RECHECK: std::time::Duration = std::time::Duration::from_secs(30);

/// Which Gateway API kinds discovery lists now (no logging; an error: the group is not served).
pub async fn gateway_api_kinds(client: &Client) -> Result<GatewayApiServed, kube::Error> {
    let list = client
        .list_api_group_resources(hookway_crds::gateway_api::API_VERSION_V1)
        .await?;
    let has = |name: &str| list.resources.iter().any(|r| r.name == name);
    let core = [
        "gatewayclasses",
        "gateways",
        "httproutes",
        "referencegrants",
    ]
    .into_iter()
    .all(has);
    Ok(GatewayApiServed {
        core,
        grpc_routes: core && has("grpcroutes"),
    })
}

/// Whether the API server serves the Gateway API's `gateway.networking.k8s.io/v1` Gateways and
/// HTTPRoutes (its CRDs are installed), and GRPCRoutes, as asked at start (logged). What is not
/// served yet is asked again every [`GATEWAY_API_RECHECK`] (`gateway_api_discovery.rs`).
pub async fn gateway_api_served(client: &Client) -> GatewayApiServed {
    match gateway_api_kinds(client).await {
        Ok(served) => {
            if served.grpc_routes {
                info!("Gateway API (with GRPCRoute) served by the API server; watching it");
            } else if served.core {
                info!("Gateway API served by the API server without grpcroutes; watching it, GRPCRoutes once they are served");
            } else {
                warn!("Gateway API v1 is only partly installed (need gatewayclasses, gateways, httproutes, referencegrants); watching it once it is");
            }
            served
        }
        Err(e) => {
            info!(error = %e, "Gateway API not installed; watching it once its CRDs are");
            GatewayApiServed::default()
        }
    }
}

/// Starts the reflectors of the Gateway API kinds (GRPCRoutes with `grpc_routes`).
pub fn gateway_api_stores(
    client: &Client,
    scope: &Scope,
    poke: &Poke,
    tasks: &mut JoinSet<()>,
    grpc_routes: bool,
) -> GatewayApiStores {
    let any = watcher::Config::default().any_semantic();
    GatewayApiStores {
        classes: reflect::<GatewayClass>(
            tasks,
            Api::all(client.clone()),
            any.clone(),
            poke.clone(),
        ),
        gateways: multi::<Gateway>(tasks, client, scope, &any, poke),
        http_routes: multi::<HTTPRoute>(tasks, client, scope, &any, poke),
        grpc_routes: grpc_routes.then(|| grpc_route_store(client, scope, poke, tasks)),
        reference_grants: multi::<ReferenceGrant>(tasks, client, scope, &any, poke),
    }
}

/// Starts the reflectors of GRPCRoutes.
pub fn grpc_route_store(
    client: &Client,
    scope: &Scope,
    poke: &Poke,
    tasks: &mut JoinSet<()>,
) -> MultiStore<GRPCRoute> {
    let any = watcher::Config::default().any_semantic();
    multi::<GRPCRoute>(tasks, client, scope, &any, poke)
}

/// Starts every reflector; their tasks live in `tasks`. The stores fill asynchronously: wait
/// with [`wait_ready`] before the first compile. With `gateway_api`, the Gateway API kinds are
/// watched too; with `proxy_service` (`namespace/name`, or `name` in the root namespace), that
/// Service.
pub fn start(
    client: &Client,
    scope: &Scope,
    poke: &Poke,
    tasks: &mut JoinSet<()>,
    gateway_api: GatewayApiServed,
    proxy_service: Option<&str>,
) -> Stores {
    let any = watcher::Config::default().any_semantic();
    let gateway_api = GatewayApiSlot::new(
        gateway_api
            .core
            .then(|| gateway_api_stores(client, scope, poke, tasks, gateway_api.grpc_routes)),
    );
    let proxy_service = proxy_service.map(|service| {
        let (namespace, name) = service.split_once('/').unwrap_or((&scope.root, service));
        reflect::<CoreService>(
            tasks,
            Api::namespaced(client.clone(), namespace),
            any.clone().fields(&format!("metadata.name={name}")),
            poke.clone(),
        )
    });
    let statuses = Statuses::default();
    Stores {
        gateway_api,
        proxy_service,
        ingresses: multi::<Ingress>(tasks, client, scope, &any, poke),
        ingress_classes: reflect::<IngressClass>(
            tasks,
            Api::all(client.clone()),
            any.clone(),
            poke.clone(),
        ),
        plugins: multi_statuses::<GatewayPlugin>(tasks, client, scope, &any, poke, &statuses),
        services: multi_statuses::<Service>(tasks, client, scope, &any, poke, &statuses),
        routes: multi_statuses::<Route>(tasks, client, scope, &any, poke, &statuses),
        core_services: multi::<CoreServiceLite>(tasks, client, scope, &any, poke),
        endpoint_slices: multi::<EndpointSliceLite>(tasks, client, scope, &any, poke),
        tls_secrets: multi::<Secret>(
            tasks,
            client,
            scope,
            &any.clone().fields(TLS_SECRET_FIELDS),
            poke,
        ),
        credential_secrets: multi::<Secret>(
            tasks,
            client,
            scope,
            &any.clone().labels(CREDENTIALS_LABEL),
            poke,
        ),
        config_maps: multi::<ConfigMap>(
            tasks,
            client,
            scope,
            &any.clone().labels(PLUGIN_DATA_LABEL),
            poke,
        ),
        policies: MultiStore(vec![reflect_with(
            tasks,
            Api::namespaced(client.clone(), &scope.root),
            any.clone(),
            poke.clone(),
            status_keeper::<PlatformPolicy>(statuses.clone(), Some(scope.root.clone())),
        )]),
        namespaces: reflect::<Namespace>(tasks, Api::all(client.clone()), any, poke.clone()),
        statuses,
    }
}

/// Waits until every store finished its first list. `false` if a writer went away.
pub async fn wait_ready(stores: &Stores) -> bool {
    stores.plugins.wait_until_ready().await
        && stores.services.wait_until_ready().await
        && stores.routes.wait_until_ready().await
        && stores.core_services.wait_until_ready().await
        && stores.endpoint_slices.wait_until_ready().await
        && stores.tls_secrets.wait_until_ready().await
        && stores.credential_secrets.wait_until_ready().await
        && stores.config_maps.wait_until_ready().await
        && stores.policies.wait_until_ready().await
        && stores.namespaces.wait_until_ready().await.is_ok()
        && stores.ingresses.wait_until_ready().await
        && stores.ingress_classes.wait_until_ready().await.is_ok()
        && match stores.gateway_api.get() {
            Some(g) => g.wait_until_ready().await,
            None => true,
        }
        && match &stores.proxy_service {
            Some(s) => s.wait_until_ready().await.is_ok(),
            None => true,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trim_drops_managed_fields_and_the_last_applied_copy_only() {
        let mut route: Route = serde_json::from_value(serde_json::json!({
            "apiVersion": "hookway.dev/v1alpha1", "kind": "Route",
            "metadata": {
                "name": "r", "namespace": "ns", "generation": 3,
                "labels": {"team": "shop"},
                "annotations": {LAST_APPLIED: "{\"spec\":{}}", "note": "kept"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}]
            },
            "spec": {"service": "s", "hosts": ["a.example.com"]}
        }))
        .unwrap();
        let spec_before = serde_json::to_value(&route.spec).unwrap();
        trim(&mut route);
        assert_eq!(route.metadata.managed_fields, None);
        let annotations = route.metadata.annotations.clone().unwrap();
        assert_eq!(annotations.len(), 1);
        assert_eq!(annotations["note"], "kept");
        assert_eq!(route.metadata.labels.clone().unwrap()["team"], "shop");
        assert_eq!(route.metadata.generation, Some(3));
        assert_eq!(serde_json::to_value(&route.spec).unwrap(), spec_before);

        let mut secret = Secret::default();
        secret.metadata.annotations = Some([(LAST_APPLIED.to_string(), "{}".to_string())].into());
        trim(&mut secret);
        assert_eq!(
            secret.metadata.annotations, None,
            "an emptied map is dropped"
        );
    }

    #[test]
    fn status_only_updates_do_not_count_as_changes() {
        let mut route = Route::new(
            "r",
            serde_json::from_value(serde_json::json!({"service": "s"})).unwrap(),
        );
        route.metadata.namespace = Some("ns".into());
        route.metadata.generation = Some(1);
        let stored = route.clone();
        let mut status_only = route.clone();
        status_only.status = Some(Default::default());
        let mut spec = route.clone();
        spec.metadata.generation = Some(2);
        let cases = [
            ("new object", None, &route, true),
            ("status-only update", Some(&stored), &status_only, false),
            ("spec change", Some(&stored), &spec, true),
        ];
        for (what, stored, new, want) in cases {
            assert_eq!(changed(stored, new), want, "{what}");
        }
        let secret = Secret::default();
        assert!(
            changed(Some(&secret), &secret),
            "no generation: always a change"
        );
    }
}
