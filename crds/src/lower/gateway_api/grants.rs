//! ReferenceGrants: may an object of kind `from_kind` in `from_ns` refer to `to_kind` `name`
//! in `to_ns`? Same-namespace references never need one.

use crate::gateway_api::reference_grant::ReferenceGrant;
use crate::gateway_api::GROUP;

/// The ReferenceGrants, by namespace.
pub(crate) struct Grants<'a> {
    grants: Vec<(&'a str, &'a ReferenceGrant)>,
}

/// The referring side of a reference.
#[derive(Clone, Copy)]
pub(crate) struct From<'a> {
    /// API group (`gateway.networking.k8s.io`).
    pub group: &'a str,
    /// Kind, e.g. `HTTPRoute`, `Gateway`.
    pub kind: &'a str,
    /// Namespace of the referring object.
    pub namespace: &'a str,
}

impl<'a> Grants<'a> {
    /// Indexes `grants`.
    pub fn new(grants: impl IntoIterator<Item = &'a ReferenceGrant>) -> Self {
        Self {
            grants: grants
                .into_iter()
                .filter_map(|g| Some((g.metadata.namespace.as_deref()?, g)))
                .collect(),
        }
    }

    /// Whether `from` may refer to `group`/`kind` `name` in `to_ns`.
    pub fn permits(
        &self,
        from: From<'_>,
        group: &str,
        kind: &str,
        to_ns: &str,
        name: &str,
    ) -> bool {
        if from.namespace == to_ns {
            return true;
        }
        self.grants
            .iter()
            .filter(|(ns, _)| *ns == to_ns)
            .any(|(_, g)| {
                g.spec.from.iter().any(|f| {
                    f.group == from.group && f.kind == from.kind && f.namespace == from.namespace
                }) && g.spec.to.iter().any(|t| {
                    t.group == group
                        && t.kind == kind
                        && t.name.as_deref().is_none_or(|n| n == name)
                })
            })
    }
}

/// The referring side for a route of `kind` (`HTTPRoute`, `GRPCRoute`) in `namespace`.
pub(crate) fn route<'a>(kind: &'a str, namespace: &'a str) -> From<'a> {
    From {
        group: GROUP,
        kind,
        namespace,
    }
}

/// The referring side for a Gateway in `namespace`.
pub(crate) fn gateway(namespace: &str) -> From<'_> {
    From {
        group: GROUP,
        kind: "Gateway",
        namespace,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(ns: &str, from_ns: &str, to_name: Option<&str>) -> ReferenceGrant {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
            "metadata": {"name": "g", "namespace": ns},
            "spec": {"from": [{"group": GROUP, "kind": "HTTPRoute", "namespace": from_ns}],
                     "to": [{"group": "", "kind": "Service", "name": to_name}]}
        }))
        .unwrap()
    }

    #[test]
    fn grants_permit_only_what_they_name() {
        let all = grant("backends", "apps", None);
        let one = grant("other", "apps", Some("web"));
        let grants = Grants::new([&all, &one]);
        let cases = [
            ("apps", "backends", "x", true),
            ("apps", "other", "web", true),
            ("apps", "other", "db", false),
            ("team", "backends", "x", false),
            ("same", "same", "x", true),
        ];
        for (from, to, name, want) in cases {
            assert_eq!(
                grants.permits(route("HTTPRoute", from), "", "Service", to, name),
                want,
                "{from} -> {to}/{name}"
            );
        }
        assert!(!grants.permits(gateway("apps"), "", "Service", "backends", "x"));
        // A grant from HTTPRoutes does not permit GRPCRoutes.
        assert!(!grants.permits(route("GRPCRoute", "apps"), "", "Service", "backends", "x"));
    }
}
