//! Ingress backends → synthetic hookway Services: one per (Ingress, core Service, port), named
//! `<ingress>#<service>-<port>`, whose `backend` is the core Service (its ready endpoints from
//! EndpointSlices, as for any hookway Service). A port given by name is looked up in the core
//! Service's `spec.ports`.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service as CoreService;
use k8s_openapi::api::networking::v1::IngressBackend;

use super::annotations::Upstream;
use crate::api::service::{
    BackendRef, Balance, Retries, Scheme, ServiceSpec, Timeouts, UpstreamTls,
};
use crate::Service;

/// Core Services by namespace and name.
pub(crate) struct CoreIndex<'a>(HashMap<(&'a str, &'a str), &'a CoreService>);

impl<'a> CoreIndex<'a> {
    /// Indexes `services`.
    pub fn new(services: &'a [Arc<CoreService>]) -> Self {
        let mut map = HashMap::new();
        for s in services {
            if let (Some(ns), Some(name)) = (&s.metadata.namespace, &s.metadata.name) {
                map.entry((ns.as_str(), name.as_str()))
                    .or_insert(s.as_ref());
            }
        }
        Self(map)
    }
}

/// A resolved backend: the core Service and its port number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// Core Service name.
    pub service: String,
    /// Its port (`spec.ports[].port`).
    pub port: i32,
}

impl Target {
    /// The synthetic Service's name for Ingress `ingress`.
    pub fn synthetic_name(&self, ingress: &str) -> String {
        format!("{ingress}#{}-{}", self.service, self.port)
    }
}

/// Resolves `backend` in `namespace`. `Err` says why (the backend is then not served).
pub(crate) fn resolve(
    core: &CoreIndex<'_>,
    namespace: &str,
    backend: &IngressBackend,
) -> Result<Target, String> {
    if backend.resource.is_some() {
        return Err("resource backends are not supported (only service backends)".into());
    }
    let service = backend.service.as_ref().ok_or("backend has no service")?;
    let port = service.port.as_ref().ok_or_else(|| {
        format!(
            "backend Service {:?}: port (name or number) is required",
            service.name
        )
    })?;
    let number = match (port.number, port.name.as_deref()) {
        (Some(n), _) if (1..=65535).contains(&n) => n,
        (Some(n), _) => {
            return Err(format!(
                "backend Service {:?}: port {n} is out of range",
                service.name
            ))
        }
        (None, Some(name)) => {
            let svc = core
                .0
                .get(&(namespace, service.name.as_str()))
                .ok_or_else(|| {
                    format!(
                        "core Service {namespace}/{} not found (needed to resolve port name {name:?})",
                        service.name
                    )
                })?;
            svc.spec
                .as_ref()
                .and_then(|s| s.ports.as_ref())
                .and_then(|ports| ports.iter().find(|p| p.name.as_deref() == Some(name)))
                .map(|p| p.port)
                .ok_or_else(|| {
                    format!(
                        "core Service {namespace}/{} has no port named {name:?}",
                        service.name
                    )
                })?
        }
        (None, None) => {
            return Err(format!(
                "backend Service {:?}: port needs a name or a number",
                service.name
            ))
        }
    };
    Ok(Target {
        service: service.name.clone(),
        port: number,
    })
}

/// The synthetic Service for `target` with the Ingress's upstream settings.
pub(crate) fn synthetic(
    name: &str,
    namespace: &str,
    target: &Target,
    upstream: &Upstream,
) -> Arc<Service> {
    let defaults = Timeouts::default();
    let mut s = Service::new(
        name,
        ServiceSpec {
            backend: Some(BackendRef {
                name: target.service.clone(),
                port: target.port,
            }),
            backends: None,
            http2: upstream.http2,
            nodes: None,
            scheme: upstream.scheme,
            balance: Balance::RoundRobin,
            hash_header: None,
            timeout: Timeouts {
                connect: upstream.connect.clone().unwrap_or(defaults.connect),
                // ingress-nginx's default proxy-read-timeout.
                request: upstream.request.clone().unwrap_or_else(|| "60s".into()),
            },
            retries: Retries::default(),
            // ingress-nginx does not verify HTTPS backends by default (proxy-ssl-verify off).
            tls: (upstream.scheme == Scheme::Https).then_some(UpstreamTls {
                sni: None,
                insecure_skip_verify: true,
            }),
            plugins: Default::default(),
        },
    );
    s.metadata.namespace = Some(namespace.into());
    s.metadata.generation = Some(1);
    Arc::new(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(v: serde_json::Value) -> IngressBackend {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn backend_resolution_table() {
        let core: Vec<Arc<CoreService>> = vec![Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "web", "namespace": "ns"},
                "spec": {"ports": [{"name": "http", "port": 8080}]},
            }))
            .unwrap(),
        )];
        let index = CoreIndex::new(&core);
        #[rustfmt::skip]
        let cases: Vec<(serde_json::Value, Result<i32, &str>)> = vec![
            (serde_json::json!({"service": {"name": "web", "port": {"number": 80}}}), Ok(80)),
            (serde_json::json!({"service": {"name": "missing", "port": {"number": 80}}}), Ok(80)),
            (serde_json::json!({"service": {"name": "web", "port": {"name": "http"}}}), Ok(8080)),
            (serde_json::json!({"service": {"name": "web", "port": {"name": "grpc"}}}), Err("has no port named \"grpc\"")),
            (serde_json::json!({"service": {"name": "gone", "port": {"name": "http"}}}), Err("core Service ns/gone not found")),
            (serde_json::json!({"service": {"name": "web"}}), Err("port (name or number) is required")),
            (serde_json::json!({"resource": {"kind": "Bucket", "name": "b"}}), Err("resource backends are not supported")),
        ];
        for (b, want) in cases {
            let got = resolve(&index, "ns", &backend(b.clone())).map(|t| t.port);
            match (got, want) {
                (Ok(p), Ok(w)) => assert_eq!(p, w, "{b}"),
                (Err(e), Err(w)) => assert!(e.contains(w), "{b}: {e}"),
                (got, want) => panic!("{b}: got {got:?}, want {want:?}"),
            }
        }
        let t = Target {
            service: "web".into(),
            port: 80,
        };
        assert_eq!(t.synthetic_name("shop"), "shop#web-80");
    }
}
