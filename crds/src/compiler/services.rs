//! hookway Services: validation and upstreams (static nodes, or a core Service's ready
//! endpoints from its EndpointSlices).

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::Service as CoreService;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::policy::Policy;
use super::report::reason;
use super::{Inputs, ObjectReport};
use crate::api::service::{BackendRef, Http2, Node, Scheme, WeightedBackendRef};
use crate::duration;
use crate::snapshot::{Balance, Endpoint, ObjectKey, UpstreamEntry, UpstreamProtocol};
use crate::ServiceSpec;

/// The label linking an EndpointSlice to its core Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// One hookway Service after validation.
#[derive(Debug)]
pub(crate) struct ServiceInfo<'a> {
    /// The spec (its plugin refs feed every Route that targets it).
    pub spec: &'a ServiceSpec,
    /// The upstream, when the spec is valid and its plugin refs are acceptable.
    pub upstream: Option<UpstreamEntry>,
    /// What its own plugin ref configs name, by alias (filled by the caller).
    pub ref_bindings: super::precedence::RefBindings,
}

/// Core Services and EndpointSlices by namespace and (service) name.
#[derive(Debug, Default)]
pub(crate) struct Backends<'a> {
    core: HashMap<(&'a str, &'a str), &'a CoreService>,
    slices: HashMap<(&'a str, &'a str), Vec<&'a EndpointSlice>>,
}

impl<'a> Backends<'a> {
    /// Indexes core Services and EndpointSlices (sorted first so duplicates resolve the same way
    /// whatever the input order).
    pub fn new(
        core: impl IntoIterator<Item = &'a CoreService>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
    ) -> Self {
        let mut this = Self::default();
        for svc in core {
            if let (Some(ns), Some(name)) = (&svc.metadata.namespace, &svc.metadata.name) {
                this.core.entry((ns, name)).or_insert(svc);
            }
        }
        for slice in slices {
            let ns = slice.metadata.namespace.as_deref();
            let owner = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL));
            if let (Some(ns), Some(owner)) = (ns, owner) {
                this.slices.entry((ns, owner)).or_default().push(slice);
            }
        }
        this
    }

    /// Ready endpoints of core Service `namespace/backend.name` at port `backend.port`, and the
    /// port's `appProtocol` (the Service port's, else the one its EndpointSlices carry).
    fn endpoints(
        &self,
        namespace: &str,
        backend: &BackendRef,
    ) -> Result<(Vec<Endpoint>, Option<&'a str>), String> {
        let svc = self
            .core
            .get(&(namespace, backend.name.as_str()))
            .ok_or_else(|| format!("core Service {namespace}/{} not found", backend.name))?;
        let port = svc
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .and_then(|ports| ports.iter().find(|p| p.port == backend.port))
            .ok_or_else(|| {
                format!(
                    "core Service {namespace}/{} has no port {}",
                    backend.name, backend.port
                )
            })?;
        let port_name = port.name.as_deref().unwrap_or("");
        let mut app_protocol = port.app_protocol.as_deref();
        let mut out = Vec::new();
        for slice in self
            .slices
            .get(&(namespace, backend.name.as_str()))
            .into_iter()
            .flatten()
        {
            if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
                continue;
            }
            let slice_port = slice
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref().unwrap_or("") == port_name);
            if app_protocol.is_none() {
                app_protocol = slice_port.and_then(|p| p.app_protocol.as_deref());
            }
            let target = slice_port
                .and_then(|p| p.port)
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0);
            let Some(target) = target else { continue };
            for ep in slice.endpoints.iter().flatten() {
                let ready = ep.conditions.as_ref().and_then(|c| c.ready) != Some(false);
                if !ready {
                    continue;
                }
                for address in &ep.addresses {
                    out.push(Endpoint {
                        address: address.clone(),
                        port: target,
                        weight: 1,
                    });
                }
            }
        }
        Ok((out, app_protocol))
    }
}

/// The `appProtocol` that selects cleartext HTTP/2 with prior knowledge (KEP-3726).
const APP_PROTOCOL_H2C: &str = "kubernetes.io/h2c";

/// The HTTP version spoken to an upstream: the Service's `http2` first, then (for `auto`) its
/// backend port's `appProtocol`. Only `kubernetes.io/h2c` changes anything (over `http`); other
/// values (`kubernetes.io/ws`, `http`, …) keep the default.
pub(crate) fn protocol(
    scheme: Scheme,
    http2: Http2,
    app_protocol: Option<&str>,
) -> UpstreamProtocol {
    match http2 {
        Http2::Never => UpstreamProtocol::Http1,
        Http2::Always => UpstreamProtocol::Http2,
        Http2::Auto if scheme == Scheme::Http && app_protocol == Some(APP_PROTOCOL_H2C) => {
            UpstreamProtocol::Http2
        }
        Http2::Auto => UpstreamProtocol::Auto,
    }
}

/// Validates a Service's own spec and builds its upstream (without plugin checks). `Err` is a
/// spec error (`InvalidSpec`); an unresolved backend is reported on `report` and yields an
/// upstream without endpoints (the proxy answers 503 "no healthy endpoints").
pub(crate) fn upstream(
    key: &ObjectKey,
    spec: &ServiceSpec,
    backends: &Backends<'_>,
    report: &mut ObjectReport,
) -> Result<UpstreamEntry, String> {
    let connect =
        duration::parse(&spec.timeout.connect).map_err(|e| format!("spec.timeout.connect: {e}"))?;
    let request =
        duration::parse(&spec.timeout.request).map_err(|e| format!("spec.timeout.request: {e}"))?;
    let hash_header = match (&spec.balance, &spec.hash_header) {
        (Balance::HeaderHash, None) => {
            return Err("spec.hashHeader is required when balance is header-hash".into())
        }
        (_, Some(h)) if h.trim().is_empty() => {
            return Err("spec.hashHeader must not be empty".into())
        }
        (_, h) => h.as_ref().map(|h| h.to_ascii_lowercase()),
    };
    if let Some(code) = spec
        .retries
        .on_status
        .iter()
        .find(|c| !(100..=599).contains(*c))
    {
        return Err(format!(
            "spec.retries.onStatus: {code} is not an HTTP status code"
        ));
    }
    let mut balance = spec.balance;
    // The backend port's `appProtocol` (one core Service only; weighted backends: none).
    let mut app_protocol = None;
    let mut endpoints = match (&spec.backend, &spec.backends, &spec.nodes) {
        (None, None, Some(nodes)) => static_nodes(nodes)?,
        (Some(backend), None, None) => {
            check_port("spec.backend.port", backend.port)?;
            match backends.endpoints(&key.namespace, backend) {
                Ok((endpoints, app)) => {
                    app_protocol = app;
                    endpoints
                }
                Err(e) => {
                    report.unresolved(reason::BACKEND_NOT_FOUND, e);
                    Vec::new()
                }
            }
        }
        (None, Some(list), None) => {
            balance = match spec.balance {
                Balance::RoundRobin | Balance::Weighted => Balance::Weighted,
                other => {
                    return Err(format!(
                        "spec.balance: {other:?} cannot honour spec.backends' weights; leave it unset or use weighted"
                    ))
                }
            };
            weighted_endpoints(key, list, backends, report)?
        }
        _ => {
            return Err(
                "exactly one of spec.backend, spec.backends and spec.nodes must be set".into(),
            )
        }
    };
    endpoints.sort();
    endpoints.dedup();
    report.endpoints = u32::try_from(endpoints.len()).unwrap_or(u32::MAX);
    let tls = spec.tls.as_ref();
    Ok(UpstreamEntry {
        key: key.clone(),
        scheme: spec.scheme,
        protocol: protocol(spec.scheme, spec.http2, app_protocol),
        balance,
        hash_header,
        endpoints,
        connect_timeout_ms: millis(connect),
        request_timeout_ms: millis(request),
        retries: spec.retries.attempts,
        retry_on_status: spec.retries.on_status.clone(),
        tls_server_name: tls.and_then(|t| t.sni.clone()),
        tls_insecure_skip_verify: tls.is_some_and(|t| t.insecure_skip_verify),
    })
}

fn check_port(field: &str, port: i32) -> Result<(), String> {
    if (1..=65535).contains(&port) {
        Ok(())
    } else {
        Err(format!("{field}: {port} is not in 1..65535"))
    }
}

/// Endpoints of weighted core Services: each Service's ready endpoints share its weight, so
/// every Service gets `weight / total` of the requests whatever its endpoint count. Same-node
/// endpoints of different Services add up. Unresolved Services are reported (their share goes
/// to the others).
///
/// A name `namespace/name` is honoured only for Services the lowering synthesised (their names
/// contain [`crate::lower::SYNTHETIC_MARK`], which Kubernetes names cannot): the lowering has
/// already checked the ReferenceGrant that permits it.
fn weighted_endpoints(
    key: &ObjectKey,
    list: &[WeightedBackendRef],
    backends: &Backends<'_>,
    report: &mut ObjectReport,
) -> Result<Vec<Endpoint>, String> {
    let synthetic = crate::lower::is_synthetic(&key.name);
    let mut groups: Vec<(u64, Vec<Endpoint>)> = Vec::new();
    for (i, b) in list.iter().enumerate() {
        check_port(&format!("spec.backends[{i}].port"), b.port)?;
        let (namespace, name) = match b.name.split_once('/') {
            Some((ns, name)) if synthetic => (ns, name),
            Some(_) => {
                return Err(format!(
                    "spec.backends[{i}].name: {:?} must be a Service name of this namespace",
                    b.name
                ))
            }
            None => (key.namespace.as_str(), b.name.as_str()),
        };
        let backend = BackendRef {
            name: name.to_string(),
            port: b.port,
        };
        match backends.endpoints(namespace, &backend) {
            Ok((eps, _)) if b.weight > 0 && !eps.is_empty() => {
                groups.push((u64::from(b.weight), eps))
            }
            Ok(_) => {}
            Err(e) => report.unresolved(reason::BACKEND_NOT_FOUND, e),
        }
    }
    // Per-endpoint weight = weight * L / n (L = lcm of the endpoint counts), scaled down into u32.
    let lcm = groups
        .iter()
        .fold(1u64, |l, (_, eps)| lcm(l, eps.len() as u64).min(1 << 20));
    let mut out: BTreeMap<(String, u16), u64> = BTreeMap::new();
    for (weight, eps) in &groups {
        let each = (weight * lcm / eps.len() as u64).max(1);
        for e in eps {
            *out.entry((e.address.clone(), e.port)).or_default() += each;
        }
    }
    let max = out.values().copied().max().unwrap_or(0);
    let scale = max.div_ceil(u64::from(u32::MAX / 2)).max(1);
    Ok(out
        .into_iter()
        .map(|((address, port), w)| Endpoint {
            address,
            port,
            weight: u32::try_from((w / scale).max(1)).unwrap_or(u32::MAX),
        })
        .collect())
}

fn lcm(a: u64, b: u64) -> u64 {
    fn gcd(a: u64, b: u64) -> u64 {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    if a == 0 || b == 0 {
        return a.max(b);
    }
    a / gcd(a, b) * b
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn static_nodes(nodes: &[Node]) -> Result<Vec<Endpoint>, String> {
    if nodes.is_empty() {
        return Err("spec.nodes must list at least one node".into());
    }
    nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            if n.address.trim().is_empty() {
                return Err(format!("spec.nodes[{i}].address must not be empty"));
            }
            let port = u16::try_from(n.port)
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("spec.nodes[{i}].port: {} is not in 1..65535", n.port))?;
            Ok(Endpoint {
                address: n
                    .address
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
                port,
                weight: n.weight,
            })
        })
        .collect()
}

/// Services by namespace and name.
pub(crate) type ServiceIndex<'a> = HashMap<(&'a str, &'a str), ServiceInfo<'a>>;

/// Upstreams of the accepted Services, sorted by key.
pub(crate) fn upstreams(index: &ServiceIndex<'_>) -> Vec<UpstreamEntry> {
    let sorted: BTreeMap<&ObjectKey, &UpstreamEntry> = index
        .values()
        .filter_map(|s| s.upstream.as_ref())
        .map(|u| (&u.key, u))
        .collect();
    sorted.into_values().cloned().collect()
}

/// Validates every Service (spec + backend + what the platform policy allows); plugin refs are
/// checked by the caller.
pub(crate) fn build<'a>(
    inputs: &Inputs<'a>,
    backends: &Backends<'a>,
    policy: &Policy<'_>,
    reports: &mut BTreeMap<ObjectKey, ObjectReport>,
) -> ServiceIndex<'a> {
    let mut index = HashMap::with_capacity(inputs.services.len());
    for s in &inputs.services {
        let key = s.key();
        let mut report = ObjectReport::new(s.object.metadata.generation);
        let upstream = match upstream(&key, &s.object.spec, backends, &mut report) {
            Ok(u) if u.tls_insecure_skip_verify && !policy.insecure_skip_verify(s.namespace) => {
                report.reject(
                    reason::NOT_PERMITTED,
                    format!(
                        "spec.tls.insecureSkipVerify is allowed in namespace {:?} only where a PlatformPolicy grants it (spec.namespaces[].insecureSkipVerify)",
                        s.namespace
                    ),
                );
                None
            }
            Ok(u) => Some(u),
            Err(e) => {
                report.reject(reason::INVALID_SPEC, e);
                None
            }
        };
        reports.insert(key, report);
        index.entry((s.namespace, s.name)).or_insert(ServiceInfo {
            spec: &s.object.spec,
            upstream,
            ref_bindings: Default::default(),
        });
    }
    index
}
