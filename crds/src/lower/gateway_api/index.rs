//! The Gateway API objects hookway serves, indexed: its GatewayClasses, their Gateways and each
//! listener's verdict (accepted? conflicted? certificates resolved? which route kinds?).

use std::collections::{BTreeMap, HashMap};

use super::grants::{self, Grants};
use crate::compiler::selector;
use crate::gateway_api::common::RouteGroupKind;
use crate::gateway_api::{Gateway, GatewayClass, Listener, CONTROLLER_NAME, GROUP};
use crate::snapshot::ObjectKey;

/// A condition verdict: `Err((reason, message))` when not `True`.
pub(crate) type Verdict = Result<(), (&'static str, String)>;

/// One listener after checking.
#[derive(Debug)]
pub(crate) struct ListenerInfo<'a> {
    /// The listener.
    pub listener: &'a Listener,
    /// Lower-cased hostname.
    pub hostname: Option<String>,
    /// `Accepted` (protocol, hostname, TLS mode).
    pub accepted: Verdict,
    /// `ResolvedRefs` (certificates, route kinds).
    pub resolved: Verdict,
    /// `Conflicted` (`Err` = conflicted).
    pub conflicted: Verdict,
    /// The route kinds that may attach.
    pub kinds: Vec<RouteGroupKind>,
    /// The TLS Secrets (resolved, permitted).
    pub certificates: Vec<ObjectKey>,
}

impl ListenerInfo<'_> {
    /// Whether routes may attach (accepted and not conflicted).
    pub fn usable(&self) -> bool {
        self.accepted.is_ok() && self.conflicted.is_ok()
    }

    /// Whether routes of `kind` may attach.
    pub fn allows(&self, kind: super::sources::RouteKind) -> bool {
        self.kinds.iter().any(|k| k.kind == kind.name())
    }
}

/// A Gateway of one of hookway's GatewayClasses.
#[derive(Debug)]
pub(crate) struct GatewayInfo<'a> {
    /// The Gateway.
    pub gateway: &'a Gateway,
    /// Its listeners, in spec order.
    pub listeners: Vec<ListenerInfo<'a>>,
}

/// Everything attachment needs.
pub(crate) struct Index<'a> {
    /// hookway's GatewayClasses by name.
    pub classes: BTreeMap<&'a str, &'a GatewayClass>,
    /// Gateways of those classes by key.
    pub gateways: BTreeMap<ObjectKey, GatewayInfo<'a>>,
    /// ReferenceGrants.
    pub grants: Grants<'a>,
    /// Namespace labels.
    pub labels: HashMap<&'a str, &'a BTreeMap<String, String>>,
}

/// The route kinds hookway serves on HTTP and HTTPS listeners (the default `allowedRoutes.kinds`
/// of both: the spec's defaults for HTTP and HTTPS listeners that support GRPCRoute).
pub(crate) const SUPPORTED_KINDS: &[&str] = &["HTTPRoute", "GRPCRoute"];

impl<'a> Index<'a> {
    /// Builds the index. `secrets` tells whether a Secret exists (its content is checked by the
    /// compiler).
    pub fn new(
        objects: &'a crate::compiler::Objects,
        secret_exists: &dyn Fn(&str, &str) -> bool,
    ) -> Self {
        let classes: BTreeMap<&str, &GatewayClass> = objects
            .gateway_classes
            .iter()
            .filter(|c| c.spec.controller_name == CONTROLLER_NAME)
            .filter_map(|c| Some((c.metadata.name.as_deref()?, c.as_ref())))
            .collect();
        let grants = Grants::new(objects.reference_grants.iter().map(AsRef::as_ref));
        let labels = objects
            .namespaces
            .iter()
            .filter_map(|n| Some((n.metadata.name.as_deref()?, n.metadata.labels.as_ref()?)))
            .collect();
        let mut gateways = BTreeMap::new();
        for g in &objects.gateways {
            if !classes.contains_key(g.spec.gateway_class_name.as_str()) {
                continue;
            }
            let (Some(ns), Some(name)) = (&g.metadata.namespace, &g.metadata.name) else {
                continue;
            };
            let key = ObjectKey::new(ns.as_str(), name.as_str());
            let listeners = listeners(g, ns, &grants, secret_exists);
            gateways.entry(key).or_insert(GatewayInfo {
                gateway: g.as_ref(),
                listeners,
            });
        }
        Self {
            classes,
            gateways,
            grants,
            labels,
        }
    }

    /// Whether a route in `namespace` may attach to `listener` of a Gateway in `gateway_ns`.
    pub fn namespace_allowed(
        &self,
        listener: &Listener,
        gateway_ns: &str,
        namespace: &str,
    ) -> bool {
        let ns = listener
            .allowed_routes
            .as_ref()
            .and_then(|a| a.namespaces.as_ref());
        match ns.and_then(|n| n.from.as_deref()).unwrap_or("Same") {
            "All" => true,
            "Same" => namespace == gateway_ns,
            "Selector" => ns.and_then(|n| n.selector.as_ref()).is_some_and(|s| {
                selector::validate(s).is_ok()
                    && selector::matches(s, self.labels.get(namespace).copied())
            }),
            _ => false,
        }
    }
}

fn is_valid_hostname(h: &str) -> bool {
    let name = h.strip_prefix("*.").unwrap_or(h);
    !name.is_empty()
        && name.len() <= 253
        && !name.contains('*')
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Checks every listener of `g`.
fn listeners<'a>(
    g: &'a Gateway,
    namespace: &str,
    grants: &Grants<'_>,
    secret_exists: &dyn Fn(&str, &str) -> bool,
) -> Vec<ListenerInfo<'a>> {
    let mut out: Vec<ListenerInfo<'a>> = g
        .spec
        .listeners
        .iter()
        .map(|l| check_listener(l, namespace, grants, secret_exists))
        .collect();
    // Conflicts: two listeners on one port with different protocols, or one protocol, port and
    // hostname (the spec's ProtocolConflict and HostnameConflict); also duplicate names.
    for i in 0..out.len() {
        for j in 0..out.len() {
            if i == j {
                continue;
            }
            let (a, b) = (out[i].listener, out[j].listener);
            let conflict = if a.port == b.port && a.protocol != b.protocol {
                Some((
                    "ProtocolConflict",
                    format!(
                        "listener {:?} uses port {} with protocol {}",
                        b.name, b.port, b.protocol
                    ),
                ))
            } else if a.port == b.port && out[i].hostname == out[j].hostname {
                Some((
                    "HostnameConflict",
                    format!(
                        "listener {:?} has the same port {} and hostname",
                        b.name, b.port
                    ),
                ))
            } else {
                None
            };
            if let Some((reason, message)) = conflict {
                if out[i].conflicted.is_ok() {
                    out[i].conflicted = Err((reason, message));
                }
            }
        }
    }
    out
}

fn check_listener<'a>(
    l: &'a Listener,
    namespace: &str,
    grants: &Grants<'_>,
    secret_exists: &dyn Fn(&str, &str) -> bool,
) -> ListenerInfo<'a> {
    let mut info = ListenerInfo {
        listener: l,
        hostname: l.hostname.as_ref().map(|h| h.to_ascii_lowercase()),
        accepted: Ok(()),
        resolved: Ok(()),
        conflicted: Ok(()),
        kinds: Vec::new(),
        certificates: Vec::new(),
    };
    let https = match l.protocol.as_str() {
        "HTTP" => false,
        "HTTPS" => true,
        other => {
            info.accepted = Err((
                "UnsupportedProtocol",
                format!("protocol {other:?} is not served by hookway (HTTP and HTTPS are)"),
            ));
            return info;
        }
    };
    if !(1..=65535).contains(&l.port) {
        info.accepted = Err((
            "PortUnavailable",
            format!("port {} is not in 1..65535", l.port),
        ));
    }
    if let Some(h) = &info.hostname {
        if !is_valid_hostname(h) {
            info.accepted = Err((
                "UnsupportedValue",
                format!("hostname {h:?} is not a valid host name"),
            ));
        }
    }
    // Route kinds.
    let asked = l
        .allowed_routes
        .as_ref()
        .map(|a| a.kinds.as_slice())
        .unwrap_or_default();
    if asked.is_empty() {
        info.kinds = SUPPORTED_KINDS
            .iter()
            .map(|k| RouteGroupKind {
                group: Some(GROUP.into()),
                kind: k.to_string(),
            })
            .collect();
    } else {
        let mut invalid = Vec::new();
        for k in asked {
            let group = k.group.as_deref().unwrap_or(GROUP);
            if group == GROUP && SUPPORTED_KINDS.contains(&k.kind.as_str()) {
                info.kinds.push(RouteGroupKind {
                    group: Some(GROUP.into()),
                    kind: k.kind.clone(),
                });
            } else {
                invalid.push(format!("{group}/{}", k.kind));
            }
        }
        if !invalid.is_empty() {
            info.resolved = Err((
                "InvalidRouteKinds",
                format!("route kinds not supported: {}", invalid.join(", ")),
            ));
        }
    }
    // TLS.
    let tls = l.tls.as_ref();
    if !https {
        return info;
    }
    let Some(tls) = tls else {
        info.accepted = Err((
            "UnsupportedValue",
            "an HTTPS listener needs tls.certificateRefs".into(),
        ));
        return info;
    };
    if tls.mode.as_deref().is_some_and(|m| m != "Terminate") {
        info.accepted = Err((
            "UnsupportedValue",
            "tls.mode Passthrough is not supported (Terminate is)".into(),
        ));
        return info;
    }
    let mut problems: Vec<(&'static str, String)> = Vec::new();
    for r in &tls.certificate_refs {
        let group = r.group.as_deref().unwrap_or("");
        let kind = r.kind.as_deref().unwrap_or("Secret");
        let ns = r.namespace.as_deref().unwrap_or(namespace);
        if !group.is_empty() || kind != "Secret" {
            problems.push((
                "InvalidCertificateRef",
                format!("certificateRef {group}/{kind} {} is not a Secret", r.name),
            ));
        } else if !grants.permits(grants::gateway(namespace), "", "Secret", ns, &r.name) {
            problems.push((
                "RefNotPermitted",
                format!(
                    "Secret {ns}/{} is in another namespace and no ReferenceGrant there permits it",
                    r.name
                ),
            ));
        } else if !secret_exists(ns, &r.name) {
            problems.push((
                "InvalidCertificateRef",
                format!("Secret {ns}/{} not found", r.name),
            ));
        } else {
            info.certificates.push(ObjectKey::new(ns, r.name.as_str()));
        }
    }
    if tls.certificate_refs.is_empty() {
        problems.push((
            "InvalidCertificateRef",
            "tls.certificateRefs is empty".into(),
        ));
    }
    if let Some((reason, _)) = problems.first() {
        let message = problems
            .iter()
            .map(|(_, m)| m.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        if info.resolved.is_ok() {
            info.resolved = Err((reason, message));
        }
    }
    info
}
