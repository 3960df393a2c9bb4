//! Reflector stores -> the compiler's [`Objects`]. Pure: no I/O, no async.

use hookway_crds::compiler::Objects;
use hookway_crds::gateway_api::http_route::BackendObjectReference;
use hookway_crds::gateway_api::{GRPCRoute, Gateway, GatewayClass, HTTPRoute, ReferenceGrant};
use hookway_crds::{GatewayPlugin, PlatformPolicy, Route, Service};
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, Secret, Service as CoreService, ServicePort, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::sync::Arc;

pub use crate::store::Store;

/// An EndpointSlice as its reflector store keeps it: only what the compiler reads (addresses,
/// readiness, ports, labels). k8s-openapi's `Endpoint` is about 500 bytes with its many optional
/// fields (`targetRef`, `hints`, `nodeName`, `zone`, ...), so with 10,000 endpoints the whole
/// objects took 5 MiB; these take about a quarter of that. A compile reads them back as
/// EndpointSlices ([`EndpointSliceLite::to_slice`]).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSliceLite {
    /// Metadata (`managedFields` dropped on arrival: `watch::trim`).
    pub metadata: ObjectMeta,
    /// `IPv4`, `IPv6` or `FQDN`.
    pub address_type: String,
    /// Endpoints: addresses and readiness only (`null`, as the API server writes an empty
    /// list, reads as none).
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub endpoints: Vec<EndpointLite>,
    /// Ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<EndpointPort>>,
}

/// One endpoint of an [`EndpointSliceLite`].
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct EndpointLite {
    /// Its addresses.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub addresses: Vec<String>,
    /// Its conditions (only `ready` is kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<ReadyLite>,
}

/// The `ready` condition of an endpoint.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct ReadyLite {
    /// `None`: unknown (counted as ready).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
}

/// A list that may be `null`.
fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

impl EndpointSliceLite {
    /// The EndpointSlice the compiler reads.
    pub fn to_slice(&self) -> EndpointSlice {
        EndpointSlice {
            metadata: self.metadata.clone(),
            address_type: self.address_type.clone(),
            endpoints: Some(
                self.endpoints
                    .iter()
                    .map(|e| Endpoint {
                        addresses: e.addresses.clone(),
                        conditions: e.conditions.map(|c| EndpointConditions {
                            ready: c.ready,
                            ..EndpointConditions::default()
                        }),
                        ..Endpoint::default()
                    })
                    .collect(),
            ),
            ports: self.ports.clone(),
        }
    }
}

/// `kube::Resource` for a lite type (`metadata` plus the fields the compiler reads) as the
/// resource `$full` it is read from: the API calls and watches are `$full`'s.
macro_rules! lite_resource {
    ($lite:ty, $full:ty) => {
        impl kube::Resource for $lite {
            type DynamicType = ();
            type Scope = k8s_openapi::NamespaceResourceScope;

            fn kind(dt: &()) -> Cow<'_, str> {
                <$full>::kind(dt)
            }
            fn group(dt: &()) -> Cow<'_, str> {
                <$full>::group(dt)
            }
            fn version(dt: &()) -> Cow<'_, str> {
                <$full>::version(dt)
            }
            fn api_version(dt: &()) -> Cow<'_, str> {
                <$full>::api_version(dt)
            }
            fn plural(dt: &()) -> Cow<'_, str> {
                <$full>::plural(dt)
            }
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

lite_resource!(EndpointSliceLite, EndpointSlice);

/// A core Service as its reflector store keeps it: metadata and ports, the only part of it the
/// compiler reads (ports by number or name, their `appProtocol`). k8s-openapi's `Service` is
/// 824 bytes before anything it points to (a spec of some 25 optional fields, a status), and a
/// real API server fills several of them (cluster IPs, IP families, policies); this is about
/// half of that here and less on a real server. A compile reads them back as Services
/// ([`CoreServiceLite::to_service`]).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct CoreServiceLite {
    /// Metadata (`managedFields` dropped on arrival: `watch::trim`).
    pub metadata: ObjectMeta,
    /// Its ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<CoreServiceSpecLite>,
}

/// The ports of a [`CoreServiceLite`].
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct CoreServiceSpecLite {
    /// Ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<ServicePort>>,
}

impl CoreServiceLite {
    /// The Service the compiler reads.
    pub fn to_service(&self) -> CoreService {
        CoreService {
            metadata: self.metadata.clone(),
            spec: self.spec.as_ref().map(|s| ServiceSpec {
                ports: s.ports.clone(),
                ..ServiceSpec::default()
            }),
            status: None,
        }
    }
}

lite_resource!(CoreServiceLite, CoreService);

/// Several reflector stores of one kind (one per watched namespace) read as one.
pub struct MultiStore<K: kube::Resource<DynamicType = ()> + 'static>(pub Vec<Store<K>>);

impl<K: kube::Resource<DynamicType = ()> + Clone + 'static> Clone for MultiStore<K> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<K: kube::Resource<DynamicType = ()> + Clone + 'static> MultiStore<K> {
    /// Every object of every store.
    pub fn state(&self) -> Vec<Arc<K>> {
        match self.0.as_slice() {
            [one] => one.state(),
            many => many.iter().flat_map(Store::state).collect(),
        }
    }

    /// The object `namespace/name`, if any store has it.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        self.0.iter().find_map(|s| s.get(Some(namespace), name))
    }

    /// Waits until every store has completed its first list.
    pub async fn wait_until_ready(&self) -> bool {
        for s in &self.0 {
            if s.wait_until_ready().await.is_err() {
                return false;
            }
        }
        true
    }
}

/// The reflector stores the compiler reads.
#[derive(Clone)]
pub struct Stores {
    /// GatewayPlugins.
    pub plugins: MultiStore<GatewayPlugin>,
    /// hookway Services.
    pub services: MultiStore<Service>,
    /// Routes.
    pub routes: MultiStore<Route>,
    /// Core Services.
    pub core_services: MultiStore<CoreServiceLite>,
    /// EndpointSlices (what the compiler reads of them).
    pub endpoint_slices: MultiStore<EndpointSliceLite>,
    /// `kubernetes.io/tls` Secrets.
    pub tls_secrets: MultiStore<Secret>,
    /// Credential Secrets (label `hookway.dev/credentials=true`).
    pub credential_secrets: MultiStore<Secret>,
    /// ConfigMaps with plugin data (label `hookway.dev/plugin-data=true`).
    pub config_maps: MultiStore<ConfigMap>,
    /// PlatformPolicies of the root namespace.
    pub policies: MultiStore<PlatformPolicy>,
    /// Namespaces (metadata only matters: labels).
    pub namespaces: Store<Namespace>,
    /// Gateway API kinds, once the API server serves them (`watch::gateway_api_served`, asked
    /// at start and again until they are: `gateway_api_discovery.rs`).
    pub gateway_api: GatewayApiSlot,
    /// The proxy Service (its addresses become Gateways' `status.addresses`).
    pub proxy_service: Option<Store<CoreService>>,
    /// Ingresses (`networking.k8s.io/v1`).
    pub ingresses: MultiStore<Ingress>,
    /// IngressClasses (cluster-scoped).
    pub ingress_classes: Store<IngressClass>,
    /// The statuses of the hookway kinds above (Routes, Services, GatewayPlugins,
    /// PlatformPolicies), taken out of their stored objects by the watch (`statuses.rs`).
    pub statuses: crate::statuses::Statuses,
}

/// Core Services (namespace, name) an Ingress sends traffic to (its rules and default backend).
fn ingress_backends(ingress: &Ingress) -> Vec<(String, String)> {
    let ns = ingress.metadata.namespace.clone().unwrap_or_default();
    let Some(spec) = &ingress.spec else {
        return Vec::new();
    };
    let paths = spec
        .rules
        .iter()
        .flatten()
        .filter_map(|r| r.http.as_ref())
        .flat_map(|h| &h.paths)
        .map(|p| &p.backend);
    spec.default_backend
        .iter()
        .chain(paths)
        .filter_map(|b| b.service.as_ref())
        .map(|s| (ns.clone(), s.name.clone()))
        .collect()
}

/// Where the Gateway API's stores appear once their kinds are watched (at start, or when the
/// CRDs are installed later). Clones share the slot.
#[derive(Clone, Default)]
pub struct GatewayApiSlot(Arc<std::sync::RwLock<Option<GatewayApiStores>>>);

impl GatewayApiSlot {
    /// A slot holding `stores` already.
    pub fn new(stores: Option<GatewayApiStores>) -> Self {
        Self(Arc::new(std::sync::RwLock::new(stores)))
    }

    /// The stores, when the Gateway API is watched (cheap: reflector stores are shared).
    pub fn get(&self) -> Option<GatewayApiStores> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Publishes `stores` (their first list done): the next compile reads them.
    pub fn set(&self, stores: GatewayApiStores) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some(stores);
    }
}

/// The Gateway API's reflector stores.
#[derive(Clone)]
pub struct GatewayApiStores {
    /// GatewayClasses (cluster-scoped).
    pub classes: Store<GatewayClass>,
    /// Gateways.
    pub gateways: MultiStore<Gateway>,
    /// HTTPRoutes.
    pub http_routes: MultiStore<HTTPRoute>,
    /// GRPCRoutes, when the API server serves them (`watch::gateway_api_served`).
    pub grpc_routes: Option<MultiStore<GRPCRoute>>,
    /// ReferenceGrants.
    pub reference_grants: MultiStore<ReferenceGrant>,
}

impl GatewayApiStores {
    /// Waits until every store has completed its first list.
    pub async fn wait_until_ready(&self) -> bool {
        self.classes.wait_until_ready().await.is_ok()
            && self.gateways.wait_until_ready().await
            && self.http_routes.wait_until_ready().await
            && match &self.grpc_routes {
                Some(s) => s.wait_until_ready().await,
                None => true,
            }
            && self.reference_grants.wait_until_ready().await
    }
}

/// The core Services (namespace, name) among `refs` of a route in `ns`.
fn core_services<'a>(
    ns: &'a str,
    refs: impl Iterator<Item = &'a BackendObjectReference> + 'a,
) -> impl Iterator<Item = (String, String)> + 'a {
    refs.filter(|b| {
        b.group.as_deref().unwrap_or("").is_empty()
            && b.kind.as_deref().unwrap_or("Service") == "Service"
    })
    .map(move |b| {
        (
            b.namespace.clone().unwrap_or_else(|| ns.to_string()),
            b.name.clone(),
        )
    })
}

/// Core Services (namespace, name) an HTTPRoute sends traffic or mirrors to.
fn http_route_backends(route: &HTTPRoute) -> Vec<(String, String)> {
    let ns = route.metadata.namespace.as_deref().unwrap_or_default();
    let refs = route.spec.rules.iter().flat_map(|rule| {
        let mirrors = rule
            .filters
            .iter()
            .chain(rule.backend_refs.iter().flat_map(|b| &b.filters))
            .filter_map(|f| f.request_mirror.as_ref().map(|m| &m.backend_ref));
        rule.backend_refs.iter().map(|b| &b.backend).chain(mirrors)
    });
    core_services(ns, refs).collect()
}

/// Core Services (namespace, name) a GRPCRoute sends traffic or mirrors to.
fn grpc_route_backends(route: &GRPCRoute) -> Vec<(String, String)> {
    let ns = route.metadata.namespace.as_deref().unwrap_or_default();
    let refs = route.spec.rules.iter().flat_map(|rule| {
        let mirrors = rule
            .filters
            .iter()
            .chain(rule.backend_refs.iter().flat_map(|b| &b.filters))
            .filter_map(|f| f.request_mirror.as_ref().map(|m| &m.backend_ref));
        rule.backend_refs.iter().map(|b| &b.backend).chain(mirrors)
    });
    core_services(ns, refs).collect()
}

impl Stores {
    /// The current objects. Only core Services (and their EndpointSlices) that some hookway
    /// Service references are passed on; everything else in the stores is ignored.
    pub fn objects(&self) -> Objects {
        let services = self.services.state();
        let referenced: std::collections::HashSet<(String, String)> = services
            .iter()
            .flat_map(|s| {
                let ns = s.metadata.namespace.clone().unwrap_or_default();
                let one = s.spec.backend.iter().map(|b| b.name.clone());
                let many = s.spec.backends.iter().flatten().map(|b| b.name.clone());
                one.chain(many)
                    .map(move |name| (ns.clone(), name))
                    .collect::<Vec<_>>()
            })
            .collect();
        let gateway_api = self.gateway_api.get().map(|g| {
            (
                g.classes.state(),
                g.gateways.state(),
                g.http_routes.state(),
                g.grpc_routes
                    .as_ref()
                    .map(MultiStore::state)
                    .unwrap_or_default(),
                g.reference_grants.state(),
            )
        });
        let mut referenced = referenced;
        if let Some((_, _, routes, grpc_routes, _)) = &gateway_api {
            referenced.extend(routes.iter().flat_map(|r| http_route_backends(r)));
            referenced.extend(grpc_routes.iter().flat_map(|r| grpc_route_backends(r)));
        }
        let ingresses = self.ingresses.state();
        referenced.extend(ingresses.iter().flat_map(|i| ingress_backends(i)));
        let is_referenced = |ns: Option<&String>, name: Option<&String>| match (ns, name) {
            (Some(ns), Some(name)) => referenced.contains(&(ns.clone(), name.clone())),
            _ => false,
        };
        let core_services = self
            .core_services
            .state()
            .into_iter()
            .filter(|s| is_referenced(s.metadata.namespace.as_ref(), s.metadata.name.as_ref()))
            .map(|s| Arc::new(s.to_service()))
            .collect();
        let endpoint_slices = self
            .endpoint_slices
            .state()
            .into_iter()
            .filter(|e| {
                let svc = e
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("kubernetes.io/service-name"));
                is_referenced(e.metadata.namespace.as_ref(), svc)
            })
            .map(|e| Arc::new(e.to_slice()))
            .collect();
        let mut secrets = self.tls_secrets.state();
        secrets.extend(self.credential_secrets.state());
        Objects {
            plugins: self.plugins.state(),
            services,
            routes: self.routes.state(),
            core_services,
            endpoint_slices,
            secrets,
            namespaces: self.namespaces.state(),
            policies: self.policies.state(),
            ingresses,
            ingress_classes: self.ingress_classes.state(),
            config_maps: self.config_maps.state(),
            ..gateway_api.map_or_else(
                Objects::default,
                |(classes, gateways, routes, grpc_routes, grants)| Objects {
                    gateway_classes: classes,
                    gateways,
                    http_routes: routes,
                    grpc_routes,
                    reference_grants: grants,
                    ..Objects::default()
                },
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{self as reflector, Writer};
    use kube::runtime::watcher::Event;

    fn multi<K>(objs: Vec<K>) -> MultiStore<K>
    where
        K: kube::Resource<DynamicType = ()> + Clone + 'static,
    {
        let (store, mut writer): (Store<K>, Writer<K>) = reflector::store();
        writer.apply_watcher_event(&Event::Init);
        for o in &objs {
            writer.apply_watcher_event(&Event::InitApply(o.clone()));
        }
        writer.apply_watcher_event(&Event::InitDone);
        MultiStore(vec![store])
    }

    fn meta<K: kube::Resource<DynamicType = ()>>(mut k: K, ns: &str, name: &str) -> K {
        k.meta_mut().namespace = Some(ns.into());
        k.meta_mut().name = Some(name.into());
        k
    }

    fn hsvc(ns: &str, name: &str, backend: &str) -> Service {
        let spec =
            serde_json::from_value(serde_json::json!({"backend": {"name": backend, "port": 80}}))
                .unwrap();
        meta(Service::new(name, spec), ns, name)
    }

    fn slice(ns: &str, name: &str, svc: &str) -> EndpointSliceLite {
        let mut e = meta(EndpointSliceLite::default(), ns, name);
        e.metadata.labels =
            Some([("kubernetes.io/service-name".to_string(), svc.to_string())].into());
        e
    }

    fn stores() -> Stores {
        Stores {
            plugins: multi(vec![]),
            services: multi(vec![hsvc("a", "web", "web-core")]),
            routes: multi(vec![]),
            core_services: multi(vec![
                meta(CoreServiceLite::default(), "a", "web-core"),
                meta(CoreServiceLite::default(), "a", "unrelated"),
                meta(CoreServiceLite::default(), "b", "web-core"),
            ]),
            endpoint_slices: multi(vec![
                slice("a", "web-core-abc", "web-core"),
                slice("a", "unrelated-x", "unrelated"),
            ]),
            tls_secrets: multi(vec![meta(Secret::default(), "a", "tls")]),
            credential_secrets: multi(vec![meta(Secret::default(), "a", "creds")]),
            config_maps: multi(vec![meta(ConfigMap::default(), "a", "modules")]),
            policies: multi(vec![]),
            namespaces: {
                let (store, mut writer) = reflector::store();
                writer.apply_watcher_event(&Event::Apply(meta(Namespace::default(), "", "a")));
                store
            },
            gateway_api: GatewayApiSlot::default(),
            proxy_service: None,
            ingresses: multi(vec![]),
            ingress_classes: reflector::store().0,
            statuses: Default::default(),
        }
    }

    #[test]
    fn only_referenced_core_services_and_their_slices_are_compiled() {
        let objects = stores().objects();
        let names = |v: Vec<Option<String>>| v.into_iter().flatten().collect::<Vec<_>>();
        assert_eq!(
            names(
                objects
                    .core_services
                    .iter()
                    .map(|s| s.metadata.name.clone())
                    .collect()
            ),
            ["web-core"]
        );
        assert_eq!(
            objects.core_services[0].metadata.namespace.as_deref(),
            Some("a")
        );
        assert_eq!(
            names(
                objects
                    .endpoint_slices
                    .iter()
                    .map(|s| s.metadata.name.clone())
                    .collect()
            ),
            ["web-core-abc"]
        );
        assert_eq!(objects.secrets.len(), 2);
        assert_eq!(objects.config_maps.len(), 1);
        assert_eq!(objects.services.len(), 1);
        assert_eq!(objects.namespaces.len(), 1);
    }

    #[test]
    fn http_route_backends_are_core_services_in_the_route_or_named_namespace() {
        let route: HTTPRoute = serde_json::from_value(serde_json::json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "r", "namespace": "app"},
            "spec": {"rules": [
                {"backendRefs": [
                    {"name": "web", "port": 80},
                    {"name": "other", "namespace": "shared", "port": 80},
                    {"group": "example.com", "kind": "Bucket", "name": "not-a-service"},
                    {"kind": "Service", "name": "explicit", "port": 80}
                ],
                 "filters": [{"type": "RequestMirror",
                              "requestMirror": {"backendRef": {"name": "mirror", "port": 80}}}]}
            ]}
        }))
        .unwrap();
        let mut got: Vec<(String, String)> = http_route_backends(&route);
        got.sort();
        let want = [
            ("app", "explicit"),
            ("app", "mirror"),
            ("app", "web"),
            ("shared", "other"),
        ]
        .map(|(n, s)| (n.to_string(), s.to_string()));
        assert_eq!(got, want);
    }

    #[test]
    fn grpc_route_backends_are_core_services_in_the_route_or_named_namespace() {
        let route: GRPCRoute = serde_json::from_value(serde_json::json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GRPCRoute",
            "metadata": {"name": "r", "namespace": "app"},
            "spec": {"rules": [
                {"backendRefs": [
                    {"name": "grpc", "port": 50051},
                    {"name": "other", "namespace": "shared", "port": 50051},
                    {"group": "example.com", "kind": "Bucket", "name": "not-a-service"}
                ],
                 "filters": [{"type": "RequestMirror",
                              "requestMirror": {"backendRef": {"name": "mirror", "port": 80}}}]}
            ]}
        }))
        .unwrap();
        let mut got: Vec<(String, String)> = grpc_route_backends(&route);
        got.sort();
        let want = [("app", "grpc"), ("app", "mirror"), ("shared", "other")]
            .map(|(n, s)| (n.to_string(), s.to_string()));
        assert_eq!(got, want);
    }

    #[test]
    fn ingress_backends_are_its_rules_and_default_backend() {
        let ingress: Ingress = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "i", "namespace": "app"},
            "spec": {
                "defaultBackend": {"service": {"name": "fallback", "port": {"number": 80}}},
                "rules": [{"host": "a.example.com", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix",
                     "backend": {"service": {"name": "web", "port": {"name": "http"}}}},
                    {"path": "/files", "pathType": "Prefix",
                     "backend": {"resource": {"kind": "Bucket", "name": "files"}}}
                ]}}]
            }
        }))
        .unwrap();
        let mut got = ingress_backends(&ingress);
        got.sort();
        assert_eq!(
            got,
            [
                ("app".to_string(), "fallback".to_string()),
                ("app".into(), "web".into())
            ]
        );
    }

    #[test]
    fn a_lite_slice_reads_back_as_what_the_compiler_needs() {
        let full: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-abc", "namespace": "a",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "appProtocol": "kubernetes.io/h2c"}],
            "endpoints": [
                {"addresses": ["10.0.0.1"], "conditions": {"ready": true, "serving": true},
                 "nodeName": "n1", "zone": "z", "hints": {"forZones": [{"name": "z"}]},
                 "targetRef": {"kind": "Pod", "name": "web-1", "namespace": "a", "uid": "u"}},
                {"addresses": ["10.0.0.2"], "conditions": {"ready": false}},
                {"addresses": ["10.0.0.3"]}
            ]
        }))
        .unwrap();
        let lite: EndpointSliceLite =
            serde_json::from_value(serde_json::to_value(&full).unwrap()).unwrap();
        let back = lite.to_slice();
        assert_eq!(back.metadata, full.metadata);
        assert_eq!(back.address_type, full.address_type);
        assert_eq!(back.ports, full.ports);
        let read = |s: &EndpointSlice| -> Vec<(Vec<String>, Option<bool>)> {
            s.endpoints
                .iter()
                .flatten()
                .map(|e| {
                    let ready = e.conditions.as_ref().and_then(|c| c.ready);
                    (e.addresses.clone(), ready)
                })
                .collect()
        };
        assert_eq!(read(&back), read(&full));
        assert_eq!(
            back.endpoints.as_ref().unwrap()[0].target_ref,
            None,
            "not kept"
        );
    }

    #[test]
    fn a_lite_core_service_reads_back_as_what_the_compiler_needs() {
        // As a real API server returns one: cluster IPs, families, policies, a status.
        let full: CoreService = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "a", "uid": "u-1",
                         "resourceVersion": "42", "labels": {"app": "web"}},
            "spec": {
                "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                "internalTrafficPolicy": "Cluster", "sessionAffinity": "None",
                "type": "ClusterIP", "selector": {"app": "web"},
                "ports": [
                    {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080},
                    {"name": "grpc", "port": 81, "protocol": "TCP", "targetPort": "grpc",
                     "appProtocol": "kubernetes.io/h2c"}
                ]
            },
            "status": {"loadBalancer": {}}
        }))
        .unwrap();
        let lite: CoreServiceLite =
            serde_json::from_value(serde_json::to_value(&full).unwrap()).unwrap();
        let back = lite.to_service();
        assert_eq!(back.metadata, full.metadata);
        assert_eq!(
            back.spec.as_ref().and_then(|s| s.ports.clone()),
            full.spec.as_ref().and_then(|s| s.ports.clone()),
            "ports, with names, target ports and app protocols"
        );
        assert_eq!(back.spec.unwrap().cluster_ip, None, "not kept");
        let none: CoreServiceLite = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "bare", "namespace": "a"}
        }))
        .unwrap();
        assert_eq!(
            none.to_service().spec,
            None,
            "a Service without a spec stays without"
        );
    }

    #[test]
    fn deletes_leave_the_index() {
        let (store, mut writer) = reflector::store::<Secret>();
        let s = meta(Secret::default(), "a", "tls");
        writer.apply_watcher_event(&Event::Apply(s.clone()));
        writer.apply_watcher_event(&Event::Delete(s));
        assert!(MultiStore(vec![store]).state().is_empty());
    }
}
