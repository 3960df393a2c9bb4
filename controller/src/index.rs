//! Reflector stores -> the compiler's [`Objects`]. Pure: no I/O, no async.

use hookway_crds::compiler::Objects;
use hookway_crds::{GatewayPlugin, PlatformPolicy, Route, Service};
use k8s_openapi::api::core::v1::{Namespace, Secret, Service as CoreService};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use std::sync::Arc;

use kube::runtime::reflector::Store;

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
        let key = kube::runtime::reflector::ObjectRef::new(name).within(namespace);
        self.0.iter().find_map(|s| s.get(&key))
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
    pub core_services: MultiStore<CoreService>,
    /// EndpointSlices.
    pub endpoint_slices: MultiStore<EndpointSlice>,
    /// `kubernetes.io/tls` Secrets.
    pub tls_secrets: MultiStore<Secret>,
    /// Credential Secrets (label `hookway.dev/credentials=true`).
    pub credential_secrets: MultiStore<Secret>,
    /// PlatformPolicies of the root namespace.
    pub policies: MultiStore<PlatformPolicy>,
    /// Namespaces (metadata only matters: labels).
    pub namespaces: Store<Namespace>,
}

impl Stores {
    /// The current objects. Only core Services (and their EndpointSlices) that some hookway
    /// Service references are passed on; everything else in the stores is ignored.
    pub fn objects(&self) -> Objects {
        let services = self.services.state();
        let referenced: std::collections::HashSet<(String, String)> = services
            .iter()
            .filter_map(|s| {
                let ns = s.metadata.namespace.clone()?;
                let backend = s.spec.backend.as_ref()?;
                Some((ns, backend.name.clone()))
            })
            .collect();
        let is_referenced = |ns: Option<&String>, name: Option<&String>| match (ns, name) {
            (Some(ns), Some(name)) => referenced.contains(&(ns.clone(), name.clone())),
            _ => false,
        };
        let core_services = self
            .core_services
            .state()
            .into_iter()
            .filter(|s| is_referenced(s.metadata.namespace.as_ref(), s.metadata.name.as_ref()))
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
            ..Objects::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::reflector::{self, store::Writer};
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

    fn slice(ns: &str, name: &str, svc: &str) -> EndpointSlice {
        let mut e = meta(EndpointSlice::default(), ns, name);
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
                meta(CoreService::default(), "a", "web-core"),
                meta(CoreService::default(), "a", "unrelated"),
                meta(CoreService::default(), "b", "web-core"),
            ]),
            endpoint_slices: multi(vec![
                slice("a", "web-core-abc", "web-core"),
                slice("a", "unrelated-x", "unrelated"),
            ]),
            tls_secrets: multi(vec![meta(Secret::default(), "a", "tls")]),
            credential_secrets: multi(vec![meta(Secret::default(), "a", "creds")]),
            policies: multi(vec![]),
            namespaces: {
                let (store, mut writer) = reflector::store();
                writer.apply_watcher_event(&Event::Apply(meta(Namespace::default(), "", "a")));
                store
            },
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
        assert_eq!(objects.services.len(), 1);
        assert_eq!(objects.namespaces.len(), 1);
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
