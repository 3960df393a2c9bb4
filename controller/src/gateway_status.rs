//! Writes Gateway API statuses (GatewayClass, Gateway, HTTPRoute, GRPCRoute) while this replica
//! leads.
//!
//! What the statuses say is computed purely by `hookway_crds::lower::status::compute`; this
//! module adds what only the controller knows (the proxy Service's addresses, whether the proxies
//! applied the objects), keeps `lastTransitionTime` of conditions whose status did not flip, and
//! patches only real changes (server-side apply on `/status`, field manager
//! `hookway-controller`).
//!
//! A route's (HTTPRoute's, GRPCRoute's) `status.parents` is shared with other controllers (one entry per parent and
//! controller): the entries of other controllers are written back as read, ours replaced.

use std::collections::HashMap;

use hookway_crds::compiler::{Compiled, Kind, ObjectId};
use hookway_crds::gateway_api::gateway::GatewayStatusAddress;
use hookway_crds::gateway_api::{
    GRPCRoute, Gateway, GatewayClass, HTTPRoute, RouteParentStatus, RouteStatus, CONTROLLER_NAME,
};
use hookway_crds::lower::status::{self, Environment, Statuses};
use hookway_crds::snapshot::ObjectKey;
use k8s_openapi::api::core::v1::Service as CoreService;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use kube::{Api, Client, Resource};
use serde::Serialize;
use tracing::warn;

use crate::compile_loop::Published;
use crate::index::GatewayApiStores;
use crate::metrics::Metrics;
use crate::origin_failures::SourceFailures;

/// Statuses this replica wrote, so that it does not patch again before its watch catches up.
pub type Written = HashMap<(Kind, ObjectKey), serde_json::Value>;

/// The addresses of the proxy Service, for Gateways' `status.addresses`: its load balancer's
/// IPs and host names; else its external IPs; else its cluster IPs.
pub fn addresses(service: &CoreService) -> Vec<GatewayStatusAddress> {
    let ip = |value: &str| GatewayStatusAddress {
        kind: Some("IPAddress".into()),
        value: value.to_string(),
    };
    let balancer: Vec<GatewayStatusAddress> = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| match (&i.ip, &i.hostname) {
            (Some(a), _) => Some(ip(a)),
            (None, Some(h)) => Some(GatewayStatusAddress {
                kind: Some("Hostname".into()),
                value: h.clone(),
            }),
            (None, None) => None,
        })
        .collect();
    if !balancer.is_empty() {
        return balancer;
    }
    let Some(spec) = &service.spec else {
        return Vec::new();
    };
    let external = spec.external_ips.clone().unwrap_or_default();
    let cluster = spec
        .cluster_ips
        .clone()
        .or_else(|| spec.cluster_ip.clone().map(|c| vec![c]))
        .unwrap_or_default();
    let chosen = if external.is_empty() {
        cluster
    } else {
        external
    };
    chosen
        .iter()
        .filter(|a| !a.is_empty() && a.as_str() != "None")
        .map(|a| ip(a))
        .collect()
}

/// Gives each condition of `desired` the `lastTransitionTime` of the `previous` condition of the
/// same type when its status did not change.
pub fn keep_transition_times(desired: &mut [Condition], previous: &[Condition]) {
    for c in desired {
        if let Some(p) = previous
            .iter()
            .find(|p| p.type_ == c.type_ && p.status == c.status)
        {
            c.last_transition_time = p.last_transition_time.clone();
        }
    }
}

/// Our `parents` entries for `route` merged with other controllers' entries, with transition
/// times kept from our previous entries for the same parent.
pub fn merge_parents(previous: Option<&RouteStatus>, mut ours: RouteStatus) -> RouteStatus {
    let before: &[RouteParentStatus] = previous.map_or(&[], |s| &s.parents);
    for entry in &mut ours.parents {
        if let Some(p) = before
            .iter()
            .find(|p| p.controller_name == CONTROLLER_NAME && p.parent_ref == entry.parent_ref)
        {
            keep_transition_times(&mut entry.conditions, &p.conditions);
        }
    }
    let mut parents: Vec<RouteParentStatus> = before
        .iter()
        .filter(|p| p.controller_name != CONTROLLER_NAME)
        .cloned()
        .collect();
    parents.extend(ours.parents);
    RouteStatus { parents }
}

/// The condition type that says proxies left out part of a route (implementation-specific,
/// hence domain-prefixed as the spec asks): present only while they do.
pub const PROGRAMMED_CONDITION: &str = "hookway.dev/Programmed";

/// Longest message of a [`PROGRAMMED_CONDITION`] (the proxies' reasons, cut).
const MAX_FAILURE_MESSAGE: usize = 4000;

/// Adds `hookway.dev/Programmed=False` (`ApplyFailed`, the proxies' reasons) to each of our
/// parent entries of a route some of whose synthetic objects ready proxies left out
/// (`origin_failures.rs`). `Accepted` and `ResolvedRefs` stay what the compiler says: the
/// route is valid, a proxy could not build part of it (the rest is served).
pub fn add_apply_failures(ours: &mut RouteStatus, failures: Option<&Vec<String>>) {
    let Some(failures) = failures.filter(|f| !f.is_empty()) else {
        return;
    };
    let mut message = format!("proxies left out: {}", failures.join("; "));
    if message.len() > MAX_FAILURE_MESSAGE {
        let mut end = MAX_FAILURE_MESSAGE;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
    }
    for entry in &mut ours.parents {
        let Some(accepted) = entry.conditions.iter().find(|c| c.type_ == "Accepted") else {
            continue;
        };
        let condition = Condition {
            type_: PROGRAMMED_CONDITION.into(),
            status: "False".into(),
            reason: "ApplyFailed".into(),
            message: message.clone(),
            observed_generation: accepted.observed_generation,
            last_transition_time: accepted.last_transition_time.clone(),
        };
        entry.conditions.push(condition);
    }
}

/// Writes every Gateway API status that differs from what the objects carry.
pub struct Writer<'a> {
    /// API client.
    pub client: &'a Client,
    /// The Gateway API stores (current objects with their status).
    pub stores: &'a GatewayApiStores,
    /// Metrics.
    pub metrics: &'a Metrics,
}

impl Writer<'_> {
    /// Computes and writes the statuses for `published` (which must hold Gateway API objects).
    pub async fn sync(
        &self,
        published: &Published,
        addresses: &[GatewayStatusAddress],
        programmed: bool,
        failures: &SourceFailures,
        written: &mut Written,
    ) {
        let Some(objects) = &published.gateway_api else {
            return;
        };
        let compiled = Compiled {
            snapshot: Default::default(),
            reports: (*published.reports).clone(),
            origins: Default::default(),
            url_sources: Default::default(),
            inputs: Default::default(),
        };
        let env = Environment {
            addresses,
            programmed,
            now: Time(k8s_openapi::jiff::Timestamp::now()),
        };
        let Statuses {
            gateway_classes,
            gateways,
            http_routes,
            grpc_routes,
        } = status::compute(objects, &compiled, &env);

        for (name, mut desired) in gateway_classes {
            let current = self.stores.classes.get(None, &name);
            let Some(current) = current else { continue };
            let previous = current.status.as_ref();
            keep_transition_times(
                &mut desired.conditions,
                previous.map_or(&[], |s| &s.conditions),
            );
            let key = ObjectKey::new("", name.as_str());
            let api = Api::<GatewayClass>::all(self.client.clone());
            self.write(api, Kind::GatewayClass, &key, previous, &desired, written)
                .await;
        }
        for (key, mut desired) in gateways {
            let Some(current) = self.stores.gateways.get(&key.namespace, &key.name) else {
                continue;
            };
            let previous = current.status.as_ref();
            keep_transition_times(
                &mut desired.conditions,
                previous.map_or(&[], |s| &s.conditions),
            );
            for listener in &mut desired.listeners {
                if let Some(p) = previous
                    .into_iter()
                    .flat_map(|s| &s.listeners)
                    .find(|p| p.name == listener.name)
                {
                    keep_transition_times(&mut listener.conditions, &p.conditions);
                }
            }
            let api = Api::<Gateway>::namespaced(self.client.clone(), &key.namespace);
            self.write(api, Kind::Gateway, &key, previous, &desired, written)
                .await;
        }
        for (key, mut ours) in http_routes {
            add_apply_failures(
                &mut ours,
                failures.get(&ObjectId {
                    kind: Kind::HTTPRoute,
                    key: key.clone(),
                }),
            );
            let Some(current) = self.stores.http_routes.get(&key.namespace, &key.name) else {
                continue;
            };
            let previous = current.status.as_ref();
            let desired = merge_parents(previous, ours);
            let api = Api::<HTTPRoute>::namespaced(self.client.clone(), &key.namespace);
            self.write(api, Kind::HTTPRoute, &key, previous, &desired, written)
                .await;
        }
        for (key, mut ours) in grpc_routes {
            add_apply_failures(
                &mut ours,
                failures.get(&ObjectId {
                    kind: Kind::GRPCRoute,
                    key: key.clone(),
                }),
            );
            let Some(store) = &self.stores.grpc_routes else {
                break;
            };
            let Some(current) = store.get(&key.namespace, &key.name) else {
                continue;
            };
            let previous = current.status.as_ref();
            let desired = merge_parents(previous, ours);
            let api = Api::<GRPCRoute>::namespaced(self.client.clone(), &key.namespace);
            self.write(api, Kind::GRPCRoute, &key, previous, &desired, written)
                .await;
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn write<K, S>(
        &self,
        api: Api<K>,
        kind: Kind,
        key: &ObjectKey,
        current: Option<&S>,
        desired: &S,
        written: &mut Written,
    ) where
        K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
        S: Serialize + PartialEq,
    {
        let value = match serde_json::to_value(desired) {
            Ok(v) => v,
            Err(e) => {
                warn!(?kind, %key, error = %e, "status not serialisable");
                return;
            }
        };
        let id = (kind, key.clone());
        if current == Some(desired) {
            written.remove(&id);
            return;
        }
        if written.get(&id) == Some(&value) {
            return; // written already; the watch has not caught up yet
        }
        if crate::apply_status::apply(&api, key, &value, self.metrics).await {
            written.insert(id, value);
        }
    }
}

/// Whether the ready proxies serve every Gateway API object's current content.
pub fn programmed(published: &Published, is_programmed: impl Fn(&ObjectId) -> bool) -> bool {
    published
        .reports
        .keys()
        .filter(|id| {
            matches!(
                id.kind,
                Kind::GatewayClass | Kind::Gateway | Kind::HTTPRoute | Kind::GRPCRoute
            )
        })
        .all(is_programmed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookway_crds::gateway_api::ParentReference;
    use k8s_openapi::api::core::v1::{
        LoadBalancerIngress, LoadBalancerStatus, ServiceSpec, ServiceStatus,
    };
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    fn condition(type_: &str, status: &str, time: i64) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: "R".into(),
            message: String::new(),
            observed_generation: Some(1),
            last_transition_time: at(time),
        }
    }

    #[test]
    fn addresses_prefer_the_load_balancer_then_external_then_cluster_ips() {
        let spec = |external: Option<Vec<&str>>| ServiceSpec {
            cluster_ip: Some("10.0.0.7".into()),
            cluster_ips: Some(vec!["10.0.0.7".into(), "fd00::7".into()]),
            external_ips: external.map(|v| v.into_iter().map(String::from).collect()),
            ..Default::default()
        };
        let lb = |ingress: Vec<LoadBalancerIngress>| {
            Some(ServiceStatus {
                load_balancer: Some(LoadBalancerStatus {
                    ingress: Some(ingress),
                }),
                ..Default::default()
            })
        };
        let values = |s: &CoreService| {
            addresses(s)
                .into_iter()
                .map(|a| format!("{}={}", a.kind.unwrap_or_default(), a.value))
                .collect::<Vec<_>>()
        };
        let cases = [
            (
                CoreService {
                    spec: Some(spec(None)),
                    status: lb(vec![
                        LoadBalancerIngress {
                            ip: Some("203.0.113.9".into()),
                            ..Default::default()
                        },
                        LoadBalancerIngress {
                            hostname: Some("lb.example.com".into()),
                            ..Default::default()
                        },
                    ]),
                    ..Default::default()
                },
                vec!["IPAddress=203.0.113.9", "Hostname=lb.example.com"],
            ),
            (
                CoreService {
                    spec: Some(spec(Some(vec!["198.51.100.1"]))),
                    ..Default::default()
                },
                vec!["IPAddress=198.51.100.1"],
            ),
            (
                CoreService {
                    spec: Some(spec(None)),
                    ..Default::default()
                },
                vec!["IPAddress=10.0.0.7", "IPAddress=fd00::7"],
            ),
            (
                CoreService {
                    spec: Some(ServiceSpec {
                        cluster_ip: Some("None".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                vec![],
            ),
        ];
        for (service, want) in cases {
            assert_eq!(values(&service), want);
        }
    }

    #[test]
    fn transition_times_are_kept_unless_the_status_flipped() {
        let previous = [
            condition("Accepted", "True", 10),
            condition("Programmed", "False", 20),
        ];
        let mut desired = [
            condition("Accepted", "True", 99),
            condition("Programmed", "True", 99),
        ];
        keep_transition_times(&mut desired, &previous);
        assert_eq!(desired[0].last_transition_time, at(10));
        assert_eq!(desired[1].last_transition_time, at(99));
    }

    #[test]
    fn other_controllers_parent_entries_are_kept_and_ours_replaced() {
        let parent = |name: &str| ParentReference {
            name: name.into(),
            ..Default::default()
        };
        let entry = |name: &str, controller: &str, time: i64| RouteParentStatus {
            parent_ref: parent(name),
            controller_name: controller.into(),
            conditions: vec![condition("Accepted", "True", time)],
        };
        let previous = RouteStatus {
            parents: vec![
                entry("theirs", "example.com/other", 1),
                entry("gw", CONTROLLER_NAME, 5),
                entry("gone", CONTROLLER_NAME, 5),
            ],
        };
        let ours = RouteStatus {
            parents: vec![
                entry("gw", CONTROLLER_NAME, 50),
                entry("new", CONTROLLER_NAME, 50),
            ],
        };
        let merged = merge_parents(Some(&previous), ours);
        let got: Vec<(String, String, Time)> = merged
            .parents
            .iter()
            .map(|p| {
                (
                    p.parent_ref.name.clone(),
                    p.controller_name.clone(),
                    p.conditions[0].last_transition_time.clone(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("theirs".into(), "example.com/other".into(), at(1)),
                ("gw".into(), CONTROLLER_NAME.into(), at(5)),
                ("new".into(), CONTROLLER_NAME.into(), at(50)),
            ]
        );
    }
}
