//! Writes statuses while this replica leads: after each compile, on acks, and on gaining the
//! lease. Only real changes are patched (server-side apply on `/status`, field manager
//! `hookway-controller`, forced).
//!
//! `Programmed` needs to know in which snapshot version each object's generation first
//! appeared: [`Generations`] remembers that, so a proxy that acked that version (or later) holds it.
//!
//! The proxies counted are those of every live replica: this replica's own table merged with
//! the other replicas' registry Leases (`fleet::merge`). A change of that merged view (a
//! replica's proxies acked, connected, went away, or its Lease expired) re-syncs too.

use std::collections::HashMap;
use std::time::Duration;

use hookway_crds::compiler::{Kind, ObjectId, ObjectReport};
use hookway_crds::{GatewayPlugin, PlatformPolicy, Route, Service, FIELD_MANAGER};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::compile_loop::{kind_name, Published};
use crate::events::Events;
use crate::fleet::{self, Programmed, View};
use crate::index::{MultiStore, Stores};
use crate::metrics::Metrics;
use crate::origin_failures;
use crate::proxies::Proxies;
use crate::registry::Leases;
use crate::status::{self, StatusObject};
use crate::statuses::StatusRecord;
use crate::versions;
use crate::{gateway_status, ingress_status};

/// The snapshot version in which each object's current content first appeared: its
/// generation and, for served Routes and Services, the digest of what the snapshot holds for
/// it (a Route's digest covers its upstream, certificates and credential Secrets too).
///
/// Keyed by a 128-bit keyed digest of the object's id (16 bytes a key, not its two name
/// `String`s: 2.12 → 1.1 MiB at 10,000 Routes; collisions out of reach, the keys being random
/// per process).
#[derive(Default, Debug)]
pub struct Generations {
    held: HashMap<u128, Held>,
    keys: (std::hash::RandomState, std::hash::RandomState),
}

/// What identifies an object's current content, and the version it first appeared in.
#[derive(Debug)]
struct Held {
    /// The snapshot's digest of the object's content (0: not served).
    digest: hookway_crds::applied::Digest,
    generation: i64,
    version: u64,
    /// The [`fingerprint`] of the inputs of the last pass that found this object's status
    /// already as desired (0: none). The same inputs give the same desired status, so the
    /// next pass with them skips it instead of re-deriving it.
    settled: u64,
}

impl Generations {
    fn key(&self, id: &ObjectId) -> u128 {
        use std::hash::BuildHasher;
        let (a, b) = &self.keys;
        (u128::from(a.hash_one(id)) << 64) | u128::from(b.hash_one(id))
    }

    /// Records a compile: new objects, new generations and new content get `version`; gone
    /// objects are forgotten.
    pub fn update(&mut self, published: &Published) {
        let mut listed = std::collections::HashSet::with_capacity(published.reports.len());
        for (id, report) in published.reports.iter() {
            let key = self.key(id);
            listed.insert(key);
            let digest = published.digests.get(id).unwrap_or(0);
            let fresh = || Held {
                digest,
                generation: report.generation,
                version: published.version,
                settled: 0,
            };
            let held = self.held.entry(key).or_insert_with(fresh);
            if held.generation != report.generation || held.digest != digest {
                *held = fresh();
            }
        }
        self.held.retain(|key, _| listed.contains(key));
    }

    /// The version that holds `id`'s current content.
    pub fn version(&self, id: &ObjectId) -> Option<u64> {
        self.held.get(&self.key(id)).map(|held| held.version)
    }

    /// Whether the last pass over `id` found its status as desired with these same inputs.
    fn settled(&self, id: &ObjectId, fingerprint: u64) -> bool {
        self.held
            .get(&self.key(id))
            .is_some_and(|h| h.settled == fingerprint)
    }

    /// Records that `id`'s status is as desired for inputs `fingerprint` (0: forget).
    fn settle(&mut self, id: &ObjectId, fingerprint: u64) {
        let key = self.key(id);
        if let Some(held) = self.held.get_mut(&key) {
            held.settled = fingerprint;
        }
    }
}

/// A digest of everything that decides an object's desired status (`status::desired`): the
/// object as stored (its `resourceVersion` changes with every write, status included), the
/// compile's report and the proxies' count. Never 0 (0 means "not settled").
fn fingerprint(resource_version: Option<&str>, report: &ObjectReport, count: &Programmed) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    resource_version.hash(&mut h);
    report.generation.hash(&mut h);
    for c in [&report.accepted, &report.resolved_refs] {
        (c.status, &c.reason, &c.message).hash(&mut h);
    }
    report.warnings.hash(&mut h);
    for e in &report.chain {
        (&e.alias, &e.namespace, &e.plugin, &e.tier, e.order).hash(&mut h);
    }
    (report.routes, report.endpoints).hash(&mut h);
    (count.count.applied, count.count.ready, count.settling).hash(&mut h);
    for f in &count.failures {
        (&f.proxy, &f.reason).hash(&mut h);
    }
    h.finish().max(1)
}

/// The status writer.
pub struct StatusLoop {
    /// API client.
    pub client: Client,
    /// Reflector stores (current objects, with their current status).
    pub stores: Stores,
    /// Proxies connected to this replica.
    pub proxies: Proxies,
    /// Every replica's registry Lease (`registry::watch_leases`).
    pub registry: watch::Receiver<Leases>,
    /// This replica's identity (its own registry Lease is ignored: `proxies` is the truth).
    pub identity: String,
    /// Leadership.
    pub leader: watch::Receiver<bool>,
    /// Compile results.
    pub published: watch::Receiver<Option<Published>>,
    /// Event recorder.
    pub events: Option<Events>,
    /// Metrics.
    pub metrics: Metrics,
    /// How long after taking the lead an empty fleet counts as *settling* (proxies
    /// reconnecting): `Programmed=True` is not flipped to `NoProxies` meanwhile.
    pub grace: Duration,
}

/// Statuses this replica wrote (their records), to avoid re-patching before the watch catches
/// up.
type Written = HashMap<ObjectId, StatusRecord>;

impl StatusLoop {
    /// Runs until the published channel closes.
    pub async fn run(mut self) {
        let mut generations = Generations::default();
        let mut written = Written::new();
        let mut gateway_written = gateway_status::Written::new();
        let mut ingress_written = ingress_status::Written::default();
        let mut acks = self.proxies.subscribe();
        let mut last_view: Option<View> = None;
        let mut registry_only = false;
        let mut registry_open = true;
        let mut leading_since: Option<tokio::time::Instant> = None;
        let mut settle_deadline: Option<tokio::time::Instant> = None;
        loop {
            let leading = *self.leader.borrow_and_update();
            let leases = self.registry.borrow_and_update().clone();
            if leading {
                let view = fleet::merge(
                    &self.proxies.table(),
                    &leases,
                    &self.identity,
                    Timestamp::now(),
                );
                let since = *leading_since.get_or_insert_with(tokio::time::Instant::now);
                let settling = view.is_empty() && since.elapsed() < self.grace;
                let woken_to_settle = settle_deadline.is_some() && !settling;
                settle_deadline = settling.then(|| since + self.grace);
                let unchanged = last_view.as_ref() == Some(&view);
                if !unchanged {
                    debug!(replica = %self.identity, proxies = view.len(), "proxies across replicas changed");
                }
                // Woken by the registry alone without a change of the merged view: nothing to do.
                let idle = registry_only
                    && unchanged
                    && !woken_to_settle
                    && !self.published.has_changed().unwrap_or(true);
                let published = self.published.borrow_and_update().clone();
                if let Some(published) = published.filter(|_| !idle) {
                    generations.update(&published);
                    let window = self.proxies.published();
                    self.sync(
                        &published,
                        &mut generations,
                        &view,
                        &window,
                        settling,
                        &mut written,
                    )
                    .await;
                    let failures = origin_failures::by_source(
                        &published.origins,
                        &view,
                        &window,
                        |source| generations.version(source),
                        published.version,
                    );
                    self.sync_gateway_api(
                        &published,
                        &generations,
                        &view,
                        &window,
                        &failures,
                        &mut gateway_written,
                    )
                    .await;
                    if published.reports.keys().any(|id| id.kind == Kind::Ingress) {
                        ingress_status::Writer {
                            client: &self.client,
                            ingresses: &self.stores.ingresses,
                            events: self.events.as_ref(),
                            metrics: &self.metrics,
                        }
                        .sync(
                            &published,
                            &self.proxy_addresses(),
                            &failures,
                            &mut ingress_written,
                        )
                        .await;
                    }
                    // After the pass: a reader that sees N here sees statuses written for N.
                    self.metrics.fleet_proxies.set(view.len() as i64);
                }
                last_view = Some(view);
            } else {
                leading_since = None;
                settle_deadline = None;
                written.clear();
                gateway_written.clear();
                ingress_written.clear();
                last_view = None;
                self.metrics.fleet_proxies.set(0);
            }
            registry_only = false;
            tokio::select! {
                r = self.published.changed() => if r.is_err() { return },
                r = acks.changed() => if r.is_err() { return },
                r = self.leader.changed() => if r.is_err() { return },
                r = self.registry.changed(), if registry_open => match r {
                    Ok(()) => registry_only = true,
                    Err(_) => registry_open = false,
                },
                // The grace ended with no proxy: write what the fleet now says.
                _ = tokio::time::sleep_until(settle_deadline.unwrap_or_else(tokio::time::Instant::now)),
                    if settle_deadline.is_some() => {}
            }
            // Let a burst of acks settle.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn sync(
        &self,
        published: &Published,
        generations: &mut Generations,
        view: &View,
        window: &versions::Published,
        settling: bool,
        written: &mut Written,
    ) {
        let mut skipped = 0usize;
        let now = Time(Timestamp::now());
        for (id, report) in published.reports.iter() {
            if !*self.leader.borrow() {
                debug!("not leading any more; status writes stopped");
                return;
            }
            let version = generations.version(id).unwrap_or(published.version);
            let mut count = view.programmed(id, version, window);
            count.settling = settling;
            match id.kind {
                Kind::Route => {
                    self.one::<Route>(
                        &self.stores.routes,
                        id,
                        report,
                        &count,
                        &now,
                        written,
                        generations,
                        &mut skipped,
                    )
                    .await
                }
                Kind::Service => {
                    self.one::<Service>(
                        &self.stores.services,
                        id,
                        report,
                        &count,
                        &now,
                        written,
                        generations,
                        &mut skipped,
                    )
                    .await
                }
                Kind::GatewayPlugin => {
                    self.one::<GatewayPlugin>(
                        &self.stores.plugins,
                        id,
                        report,
                        &count,
                        &now,
                        written,
                        generations,
                        &mut skipped,
                    )
                    .await
                }
                Kind::PlatformPolicy => {
                    self.one::<PlatformPolicy>(
                        &self.stores.policies,
                        id,
                        report,
                        &count,
                        &now,
                        written,
                        generations,
                        &mut skipped,
                    )
                    .await
                }
                // Gateway API statuses have their own shape: `sync_gateway_api`.
                Kind::GatewayClass | Kind::Gateway | Kind::HTTPRoute | Kind::GRPCRoute => {}
                // Ingress status (loadBalancer) and Events: `ingress_status.rs`.
                Kind::Ingress => {}
            }
        }
        debug!(
            objects = published.reports.len(),
            skipped, "status pass: objects whose inputs had not changed were skipped"
        );
    }

    /// The proxy Service's addresses (none without `--proxy-service` or before it has any).
    fn proxy_addresses(&self) -> Vec<hookway_crds::gateway_api::gateway::GatewayStatusAddress> {
        self.stores
            .proxy_service
            .as_ref()
            .and_then(|s| s.state().into_iter().next())
            .map(|s| gateway_status::addresses(&s))
            .unwrap_or_default()
    }

    /// Gateway API statuses (`gateway_status.rs`), when the compile held Gateway API objects.
    async fn sync_gateway_api(
        &self,
        published: &Published,
        generations: &Generations,
        view: &View,
        window: &versions::Published,
        failures: &origin_failures::SourceFailures,
        written: &mut gateway_status::Written,
    ) {
        let (Some(stores), Some(_)) = (self.stores.gateway_api.get(), &published.gateway_api)
        else {
            return;
        };
        if !*self.leader.borrow() {
            return;
        }
        let addresses = self.proxy_addresses();
        let programmed = gateway_status::programmed(published, |id| {
            let version = generations.version(id).unwrap_or(published.version);
            let count = view.programmed(id, version, window).count;
            count.ready > 0 && count.applied == count.ready
        });
        gateway_status::Writer {
            client: &self.client,
            stores: &stores,
            metrics: &self.metrics,
        }
        .sync(published, &addresses, programmed, failures, written)
        .await;
    }

    #[allow(clippy::too_many_arguments)]
    async fn one<K: StatusObject>(
        &self,
        store: &MultiStore<K>,
        id: &ObjectId,
        report: &ObjectReport,
        count: &Programmed,
        now: &Time,
        written: &mut Written,
        generations: &mut Generations,
        skipped: &mut usize,
    ) {
        let Some(obj) = store.get(&id.key.namespace, &id.key.name) else {
            return;
        };
        if obj.meta().generation.unwrap_or_default() != report.generation {
            return; // a newer generation is being compiled
        }
        let fingerprint = fingerprint(obj.meta().resource_version.as_deref(), report, count);
        if generations.settled(id, fingerprint) {
            *skipped += 1;
            return;
        }
        generations.settle(id, 0);
        // The stored object holds no status: its record does (`statuses.rs`). Compare against
        // what we last wrote when the watch has not caught up yet.
        let stored = self.stores.statuses.get(id);
        let current = match written.get(id) {
            Some(w) if stored.as_ref() != Some(w) => Some(*w),
            Some(_) => {
                // The watch caught up with what we wrote: forget it.
                written.remove(id);
                stored
            }
            None => stored,
        };
        let Some(desired) = status::desired_from::<K>(current.as_ref(), report, count, now) else {
            generations.settle(id, fingerprint);
            return;
        };
        let ns = id.key.namespace.as_str();
        let name = id.key.name.as_str();
        let kind = kind_name(id.kind);
        let api: Api<K> = Api::namespaced(self.client.clone(), ns);
        let body = status::apply_body(&*obj, &desired);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        match api.patch_status(name, &params, &Patch::Apply(&body)).await {
            Ok(_) => {
                self.metrics.status_patches.with_label_values(&[kind]).inc();
                info!(%kind, namespace = %ns, %name, accepted = report.accepted.status, programmed = %status::programmed(report, count).message, "status updated");
                written.insert(id.clone(), StatusRecord::of::<K>(&desired));
                self.maybe_event(&*obj, current.as_ref(), report).await;
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {
                debug!(%kind, namespace = %ns, %name, "object gone")
            }
            Err(e) => {
                self.metrics.status_patch_errors.inc();
                warn!(%kind, namespace = %ns, %name, error = %e, "status patch failed");
            }
        }
    }

    /// A Warning event when the object newly fails Accepted or ResolvedRefs (or fails for a
    /// new reason).
    async fn maybe_event<K: StatusObject>(
        &self,
        obj: &K,
        previous: Option<&StatusRecord>,
        report: &ObjectReport,
    ) {
        let Some(events) = &self.events else { return };
        for (type_, result) in [
            ("Accepted", &report.accepted),
            ("ResolvedRefs", &report.resolved_refs),
        ] {
            if result.status {
                continue;
            }
            let before = previous.and_then(|r| r.condition(type_));
            let already = before.is_some_and(|c| {
                !c.status()
                    && c.reason_is(result.reason)
                    && c.observed_generation() == Some(report.generation)
            });
            if !already {
                warn!(kind = %K::kind(&()), namespace = %obj.namespace().unwrap_or_default(), name = %obj.name_any(), reason = %result.reason, message = %result.message, "object rejected");
                events
                    .rejected(&obj.object_ref(&()), result.reason, &result.message)
                    .await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookway_crds::compiler::ConditionResult;
    use hookway_crds::snapshot::ObjectKey;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn published(version: u64, generation: i64) -> Published {
        published_with(version, generation, "d1")
    }

    fn published_with(version: u64, generation: i64, digest: &str) -> Published {
        let mut reports = BTreeMap::new();
        reports.insert(
            ObjectId {
                kind: Kind::Route,
                key: ObjectKey::new("ns", "r"),
            },
            ObjectReport {
                generation,
                accepted: ConditionResult::ok("Accepted", ""),
                resolved_refs: ConditionResult::ok("ResolvedRefs", ""),
                warnings: vec![],
                chain: vec![],
                routes: 0,
                endpoints: 0,
            },
        );
        // A snapshot serving Route ns/r with content `digest`.
        let snapshot = hookway_crds::Snapshot {
            routes: vec![std::sync::Arc::new(hookway_crds::snapshot::RouteEntry {
                key: ObjectKey::new("ns", "r"),
                hosts: vec![],
                rules: vec![],
                priority: 0,
                created: 0,
                upstream: ObjectKey::new("ns", "s"),
                chain: vec![],
            })],
            ..Default::default()
        };
        let digests = hookway_crds::applied::Digests {
            routes: vec![u128::from(digest.as_bytes()[1])],
            upstreams: vec![],
        };
        Published {
            version,
            reports: Arc::new(reports),
            digests: Arc::new(crate::compile_loop::ObjectDigests::new(
                Arc::new(snapshot),
                digests,
            )),
            origins: Arc::default(),
            gateway_api: None,
        }
    }

    #[test]
    fn a_generation_is_held_from_the_version_it_first_appeared_in() {
        let id = ObjectId {
            kind: Kind::Route,
            key: ObjectKey::new("ns", "r"),
        };
        let mut g = Generations::default();
        g.update(&published(10, 1));
        g.update(&published(11, 1));
        assert_eq!(
            g.version(&id),
            Some(10),
            "unchanged generation keeps its version"
        );
        g.update(&published(12, 2));
        assert_eq!(g.version(&id), Some(12));
        g.update(&Published {
            version: 13,
            reports: Arc::default(),
            digests: Arc::default(),
            origins: Arc::default(),
            gateway_api: None,
        });
        assert_eq!(g.version(&id), None, "deleted objects are forgotten");
    }

    #[test]
    fn new_content_of_a_dependency_counts_as_a_new_version() {
        let mut g = Generations::default();
        g.update(&published_with(10, 1, "d1"));
        g.update(&published_with(11, 1, "d1"));
        assert_eq!(g.version(&route_id()), Some(10));
        // Same generation, but its Secret or GatewayPlugin changed: the digest did.
        g.update(&published_with(12, 1, "d2"));
        assert_eq!(g.version(&route_id()), Some(12));
    }

    fn route_id() -> ObjectId {
        ObjectId {
            kind: Kind::Route,
            key: ObjectKey::new("ns", "r"),
        }
    }

    #[test]
    fn a_status_is_re_derived_only_when_an_input_changed() {
        use crate::fleet::ProxyFailure;
        use crate::proxies::Count;
        let report = published(1, 1).reports.values().next().unwrap().clone();
        let count = Programmed {
            count: Count {
                applied: 1,
                ready: 2,
            },
            failures: vec![],
            settling: false,
        };
        let base = fingerprint(Some("7"), &report, &count);
        assert_eq!(
            base,
            fingerprint(Some("7"), &report.clone(), &count.clone())
        );
        let mut warned = report.clone();
        warned.warnings.push("w".into());
        let mut message = report.clone();
        message.accepted.message = "other".into();
        let mut generation = report.clone();
        generation.generation = 2;
        let mut chain = report.clone();
        chain.chain.push(hookway_crds::api::ChainStatusEntry {
            alias: "a".into(),
            namespace: "ns".into(),
            plugin: "limit".into(),
            tier: "route".into(),
            order: 1,
        });
        let mut applied = count.clone();
        applied.count.applied = 2;
        let mut failed = count.clone();
        failed.failures.push(ProxyFailure {
            proxy: "p".into(),
            reason: "bad".into(),
        });
        let mut settling = count.clone();
        settling.settling = true;
        let changed = [
            (
                "object written (new resourceVersion)",
                fingerprint(Some("8"), &report, &count),
            ),
            ("no resourceVersion", fingerprint(None, &report, &count)),
            ("new warning", fingerprint(Some("7"), &warned, &count)),
            ("new message", fingerprint(Some("7"), &message, &count)),
            (
                "new generation",
                fingerprint(Some("7"), &generation, &count),
            ),
            ("new chain", fingerprint(Some("7"), &chain, &count)),
            (
                "another proxy applied",
                fingerprint(Some("7"), &report, &applied),
            ),
            (
                "a proxy failed it",
                fingerprint(Some("7"), &report, &failed),
            ),
            ("settling", fingerprint(Some("7"), &report, &settling)),
        ];
        for (what, f) in changed {
            assert_ne!(f, base, "{what}");
            assert_ne!(f, 0, "{what}");
        }
    }

    #[test]
    fn settled_fingerprints_are_forgotten_with_new_content() {
        let mut g = Generations::default();
        g.update(&published_with(10, 1, "d1"));
        g.settle(&route_id(), 42);
        assert!(g.settled(&route_id(), 42));
        assert!(!g.settled(&route_id(), 43));
        g.update(&published_with(11, 1, "d1"));
        assert!(g.settled(&route_id(), 42), "same content: still settled");
        g.update(&published_with(12, 1, "d2"));
        assert!(!g.settled(&route_id(), 42), "new content: derived again");
    }
}
