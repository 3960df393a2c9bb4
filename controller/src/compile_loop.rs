//! The compile loop: coalesce changes, compile, publish only what changed.
//!
//! ```text
//!  poke ─┐ idle (no poke for `quiet` since the last compile): compile at once; otherwise
//!        │ a quiet period (10 ms) after the last poke, but never more than max_delay (100 ms)
//!        ▼ after the first one, so a steady trickle cannot starve it
//!  objects() ─► compile() ─► same hash as last time? ── yes ─► publish reports only
//!                                   │ no
//!                                   ▼
//!                      version = max(last + 1, unix ms) ─► snapshots.send(..) + publish
//! ```
//!
//! Versions start from the wall clock in milliseconds, so a restarted controller still hands
//! out versions higher than the ones proxies already hold.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hookway_crds::applied::{Digest, Digests};
use hookway_crds::compiler::{
    Compiled, InputDigest, Kind, ObjectId, ObjectReport, Objects, Previous, UrlSource,
};
use hookway_crds::content_hash::ContentDigests;
use hookway_crds::Snapshot;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tracing::{debug, info};

use crate::metrics::Metrics;

/// Coalescing bounds.
///
/// The first change after an idle period (no change for `quiet` while waiting) is compiled at
/// once: a lone change waits for nothing. Changes that arrive while a compile runs (a burst:
/// `kubectl apply` of many objects, endpoint churn) are batched: the next compile waits until
/// they pause for `quiet`, but at most `max_delay` after the first of them.
#[derive(Clone, Copy, Debug)]
pub struct Debounce {
    /// Wait this long after the last change of a burst.
    pub quiet: Duration,
    /// But never longer than this after the first change.
    pub max_delay: Duration,
}

impl Default for Debounce {
    fn default() -> Self {
        Self {
            quiet: Duration::from_millis(10),
            max_delay: Duration::from_millis(100),
        }
    }
}

/// A cheap, cloneable "something changed" signal. Pokes before the loop waits are not lost
/// (a [`Notify`] stores one permit).
#[derive(Clone, Default, Debug)]
pub struct Poke(Arc<Notify>);

impl Poke {
    /// Signals a change.
    pub fn poke(&self) {
        self.0.notify_one();
    }

    /// Waits for the first change, then (unless it came after an idle `quiet` period) until
    /// changes settle within the [`Debounce`] bounds.
    pub async fn settle(&self, bounds: Debounce) {
        let waiting = Instant::now();
        self.0.notified().await;
        if waiting.elapsed() >= bounds.quiet {
            return; // idle until now: the first change compiles at once
        }
        let deadline = Instant::now() + bounds.max_delay;
        loop {
            let quiet_until = (Instant::now() + bounds.quiet).min(deadline);
            tokio::select! {
                _ = self.0.notified() => {
                    if Instant::now() >= deadline {
                        return;
                    }
                }
                _ = tokio::time::sleep_until(quiet_until) => return,
            }
        }
    }
}

/// One compile's outcome, as seen by the status loop.
#[derive(Clone, Debug)]
pub struct Published {
    /// The version of the snapshot currently served (unchanged if the content was the same).
    pub version: u64,
    /// Per-object reports of this compile.
    pub reports: Arc<BTreeMap<ObjectId, ObjectReport>>,
    /// Content digests of the served Routes (entry and dependencies) and Services (upstream)
    /// of the snapshot `version` (see `hookway_crds::applied::digests`).
    pub digests: Arc<ObjectDigests>,
    /// Synthetic objects of the snapshot `version` (lowered from an HTTPRoute, GRPCRoute or
    /// Ingress) → their source object (`Compiled::origins`): how a proxy's failure to apply a
    /// synthetic object reaches the source's status (`origin_failures.rs`).
    pub origins: Arc<BTreeMap<ObjectId, ObjectId>>,
    /// The compiled objects when any is of the Gateway API, whose statuses are computed from
    /// the objects as well as the reports (`gateway_status.rs`).
    pub gateway_api: Option<Arc<Objects>>,
}

/// The content digests of a snapshot's Routes and Services, found by object. No map of keys:
/// the snapshot's Routes and upstreams are sorted by key, so a lookup is a binary search in the
/// snapshot itself (which the compile loop holds anyway).
#[derive(Clone, Debug, Default)]
pub struct ObjectDigests {
    snapshot: Option<Arc<Snapshot>>,
    digests: Digests,
}

impl ObjectDigests {
    /// The digests of `snapshot`.
    pub fn new(snapshot: Arc<Snapshot>, digests: Digests) -> Self {
        Self {
            snapshot: Some(snapshot),
            digests,
        }
    }

    /// The digests of `snapshot`, computed.
    pub fn of(snapshot: Arc<Snapshot>) -> Self {
        let digests = hookway_crds::applied::digests(&snapshot);
        Self::new(snapshot, digests)
    }

    /// The digest of a served Route or Service.
    pub fn get(&self, id: &ObjectId) -> Option<Digest> {
        let snapshot = self.snapshot.as_ref()?;
        match id.kind {
            Kind::Route => snapshot
                .routes
                .binary_search_by(|r| r.key.cmp(&id.key))
                .ok()
                .and_then(|i| self.digests.routes.get(i).copied()),
            Kind::Service => snapshot
                .upstreams
                .binary_search_by(|u| u.key.cmp(&id.key))
                .ok()
                .and_then(|i| self.digests.upstreams.get(i).copied()),
            _ => None,
        }
    }

    /// The digests in the snapshot's order.
    pub fn digests(&self) -> &Digests {
        &self.digests
    }
}

/// The compile loop's state.
pub struct CompileLoop<O, C> {
    objects: O,
    compile: C,
    snapshots: watch::Sender<Option<Arc<Snapshot>>>,
    published: watch::Sender<Option<Published>>,
    metrics: Metrics,
    version: u64,
    /// The digests of the snapshot in `snapshots` (reused for the next one).
    digests: Arc<ObjectDigests>,
    origins: Arc<BTreeMap<ObjectId, ObjectId>>,
    /// The entry digests of the snapshot last sent, with its hash: sealing the next one hashes
    /// only the entries that changed.
    entry_digests: Option<(String, ContentDigests)>,
    /// What the last compile gave besides the snapshot (in `snapshots`): the next compile
    /// reuses it when only endpoints changed (`hookway_crds::compiler::compile_reusing`).
    last: Option<Last>,
}

/// The last compile's output besides its snapshot.
struct Last {
    inputs: InputDigest,
    reports: Arc<BTreeMap<ObjectId, ObjectReport>>,
    url_sources: std::collections::BTreeSet<UrlSource>,
}

impl<O, C> CompileLoop<O, C>
where
    O: Fn() -> Objects,
    C: Fn(&Objects, Option<Previous<'_>>) -> Compiled,
{
    /// A loop reading `objects()` and compiling with `compile`.
    pub fn new(
        objects: O,
        compile: C,
        snapshots: watch::Sender<Option<Arc<Snapshot>>>,
        published: watch::Sender<Option<Published>>,
        metrics: Metrics,
    ) -> Self {
        Self {
            objects,
            compile,
            snapshots,
            published,
            metrics,
            version: 0,
            digests: Arc::default(),
            origins: Arc::default(),
            entry_digests: None,
            last: None,
        }
    }

    /// Compiles once and publishes. Returns the new version if the snapshot changed.
    pub fn step(&mut self) -> Option<u64> {
        let started = std::time::Instant::now();
        let objects = (self.objects)();
        let served = self.snapshots.borrow().clone();
        let previous = served
            .as_deref()
            .zip(self.last.as_ref())
            .map(|(snapshot, last)| Previous {
                inputs: &last.inputs,
                snapshot,
                reports: &last.reports,
                url_sources: &last.url_sources,
            });
        let compiled = (self.compile)(&objects, previous);
        drop(served);
        self.metrics.reconciles.inc();
        self.metrics
            .compile_seconds
            .observe(started.elapsed().as_secs_f64());
        self.count_objects(&compiled);

        let Compiled {
            mut snapshot,
            reports,
            origins,
            url_sources,
            inputs,
        } = compiled;
        let mut entry_digests = None;
        if snapshot.hash.is_empty() {
            // Unsealed (`compile_reusing`): hash only the entries not equal to the previous
            // snapshot's.
            let previous = self.snapshots.borrow().clone();
            let previous = previous.as_deref().and_then(|p| match &self.entry_digests {
                Some((hash, digests)) if *hash == p.hash => Some((p, digests)),
                _ => None,
            });
            let (sealed, digests) = snapshot.seal_reusing(previous);
            snapshot = sealed;
            entry_digests = Some(digests);
        }
        let unchanged = self
            .snapshots
            .borrow()
            .as_ref()
            .is_some_and(|s| s.hash == snapshot.hash);
        let changed = if unchanged {
            debug!(hash = %snapshot.hash, "snapshot unchanged; not re-sent");
            None
        } else {
            self.version = next_version(self.version);
            snapshot.version = self.version;
            info!(
                version = self.version,
                hash = %snapshot.hash,
                routes = snapshot.routes.len(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "snapshot published"
            );
            self.metrics.compiles_changed.inc();
            self.metrics.snapshot_version.set(self.version as i64);
            // Digests of what changed since the snapshot last sent only: the entry digests were
            // reused by the seal above, each Route's own digest is one small hash of them.
            let digests = match &entry_digests {
                Some(content) => hookway_crds::applied::digests_with(&snapshot, content),
                None => hookway_crds::applied::digests(&snapshot),
            };
            let snapshot = Arc::new(snapshot);
            self.digests = Arc::new(ObjectDigests::new(snapshot.clone(), digests));
            self.origins = Arc::new(origins);
            self.entry_digests = entry_digests.map(|d| (snapshot.hash.clone(), d));
            self.snapshots.send_replace(Some(snapshot));
            Some(self.version)
        };
        let reports = Arc::new(reports);
        // Ingress and Gateway statuses also depend on the proxy Service's addresses (a change
        // of it pokes a compile): resync them after every compile.
        let standard = !objects.ingresses.is_empty();
        let gateway_api = (!objects.gateway_classes.is_empty()
            || !objects.gateways.is_empty()
            || !objects.http_routes.is_empty()
            || !objects.grpc_routes.is_empty())
        .then(|| Arc::new(objects));
        self.published.send_if_modified(|current| {
            // Gateway API statuses depend on the objects too.
            let same = gateway_api.is_none()
                && !standard
                && current.as_ref().is_some_and(|p| {
                    p.version == self.version && *p.reports == *reports && p.gateway_api.is_none()
                });
            if !same {
                *current = Some(Published {
                    version: self.version,
                    reports: reports.clone(),
                    digests: self.digests.clone(),
                    origins: self.origins.clone(),
                    gateway_api: gateway_api.clone(),
                });
            }
            !same
        });
        // The reports as published: when equal to the last ones, the channel kept those, and
        // holding the new copy too would double them.
        let reports = self
            .published
            .borrow()
            .as_ref()
            .map_or(reports, |p| p.reports.clone());
        self.last = Some(Last {
            inputs,
            reports,
            url_sources,
        });
        changed
    }

    /// Runs forever: compile once now, then after every settled burst of pokes.
    pub async fn run(mut self, poke: Poke, bounds: Debounce) {
        self.step();
        loop {
            poke.settle(bounds).await;
            self.step();
        }
    }

    fn count_objects(&self, compiled: &Compiled) {
        let mut counts: BTreeMap<(Kind, bool), i64> = BTreeMap::new();
        for kind in [
            Kind::GatewayPlugin,
            Kind::Service,
            Kind::Route,
            Kind::PlatformPolicy,
            Kind::Ingress,
        ] {
            counts.insert((kind, true), 0);
            counts.insert((kind, false), 0);
        }
        for (id, report) in &compiled.reports {
            *counts.entry((id.kind, report.is_ok())).or_default() += 1;
        }
        for ((kind, ok), n) in counts {
            let condition = if ok { "accepted" } else { "rejected" };
            self.metrics
                .objects
                .with_label_values(&[kind_name(kind), condition])
                .set(n);
        }
    }
}

/// The kind's API name.
pub fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::GatewayPlugin => "GatewayPlugin",
        Kind::Service => "Service",
        Kind::Route => "Route",
        Kind::PlatformPolicy => "PlatformPolicy",
        Kind::GatewayClass => "GatewayClass",
        Kind::Gateway => "Gateway",
        Kind::HTTPRoute => "HTTPRoute",
        Kind::GRPCRoute => "GRPCRoute",
        Kind::Ingress => "Ingress",
    }
}

/// The next version: strictly greater than `last`, and at least the wall clock in ms.
pub fn next_version(last: u64) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    now.max(last + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookway_crds::compiler::ConditionResult;
    use hookway_crds::snapshot::ObjectKey;
    use std::cell::Cell;

    fn report(ok: bool) -> ObjectReport {
        ObjectReport {
            generation: 1,
            accepted: if ok {
                ConditionResult::ok("Accepted", "ok")
            } else {
                ConditionResult::fail("Invalid", "bad")
            },
            resolved_refs: ConditionResult::ok("ResolvedRefs", "ok"),
            warnings: vec![],
            chain: vec![],
            routes: 0,
            endpoints: 0,
        }
    }

    fn compiled(priority: i32, ok: bool) -> Compiled {
        let mut snapshot = Snapshot::default();
        snapshot.default_chain = vec![];
        snapshot.routes = vec![Arc::new(hookway_crds::snapshot::RouteEntry {
            key: ObjectKey::new("ns", "r"),
            hosts: vec![],
            rules: vec![],
            priority,
            created: 0,
            upstream: ObjectKey::new("ns", "s"),
            chain: vec![],
        })];
        let mut reports = BTreeMap::new();
        reports.insert(
            ObjectId {
                kind: Kind::Route,
                key: ObjectKey::new("ns", "r"),
            },
            report(ok),
        );
        Compiled {
            snapshot: snapshot.seal(),
            reports,
            origins: BTreeMap::new(),
            url_sources: Default::default(),
            inputs: Default::default(),
        }
    }

    #[test]
    fn identical_content_is_not_resent_but_reports_are() {
        let (stx, srx) = watch::channel(None);
        let (ptx, prx) = watch::channel(None);
        let which = Cell::new(0);
        let mut lp = CompileLoop::new(
            Objects::default,
            |_: &Objects, _: Option<Previous<'_>>| match which.get() {
                0 => compiled(1, true),
                1 => compiled(1, false),
                _ => compiled(2, true),
            },
            stx,
            ptx,
            Metrics::new().unwrap(),
        );
        let v1 = lp.step().expect("first compile publishes");
        assert_eq!(srx.borrow().as_ref().unwrap().version, v1);
        // Same snapshot content, different reports: no new version, reports updated.
        which.set(1);
        assert_eq!(lp.step(), None);
        let p = prx.borrow().clone().unwrap();
        assert_eq!(p.version, v1);
        assert!(!p.reports.values().next().unwrap().is_ok());
        which.set(2);
        let v2 = lp.step().expect("changed content publishes");
        assert!(v2 > v1);
        assert_eq!(srx.borrow().as_ref().unwrap().version, v2);
    }

    #[test]
    fn equal_reports_are_held_once() {
        let (stx, _srx) = watch::channel(None);
        let (ptx, prx) = watch::channel(None);
        let mut lp = CompileLoop::new(
            Objects::default,
            |_: &Objects, _: Option<Previous<'_>>| compiled(1, true),
            stx,
            ptx,
            Metrics::new().unwrap(),
        );
        lp.step();
        lp.step();
        let published = prx.borrow().clone().unwrap();
        let last = lp.last.as_ref().unwrap();
        assert!(
            Arc::ptr_eq(&published.reports, &last.reports),
            "the second compile's equal reports are not kept beside the published ones"
        );
    }

    #[test]
    fn versions_are_monotonic_and_clock_based() {
        let a = next_version(0);
        assert!(a > 1_600_000_000_000);
        assert_eq!(next_version(u64::MAX - 1), u64::MAX);
        assert!(next_version(a) > a);
    }

    #[tokio::test(start_paused = true)]
    async fn debounce_waits_for_quiet() {
        let poke = Poke::default();
        let bounds = Debounce::default();
        poke.poke();
        let start = Instant::now();
        poke.settle(bounds).await;
        assert_eq!(start.elapsed(), bounds.quiet);
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_after_an_idle_period_compiles_at_once() {
        let poke = Poke::default();
        let bounds = Debounce::default();
        let later = {
            let poke = poke.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(500)).await;
                poke.poke();
            })
        };
        let start = Instant::now();
        poke.settle(bounds).await;
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(500),
            "no debounce after idle"
        );
        later.await.unwrap();
    }

    /// The debounce's share of a change's latency: a Route change at a random moment among
    /// endpoint changes every 10 ms (100/s), each compile taking `compile`. Paused clock: the
    /// figures are exact for the model, not measured on a machine.
    async fn debounce_wait(bounds: Debounce, churn: bool, compile: Duration) -> Vec<Duration> {
        let poke = Poke::default();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let churner = churn.then(|| {
            let poke = poke.clone();
            tokio::spawn(async move {
                loop {
                    poke.poke();
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        });
        let compiles = Arc::new(std::sync::Mutex::new(Vec::<Instant>::new()));
        let looper = {
            let (poke, compiles, stop) = (poke.clone(), compiles.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    poke.settle(bounds).await;
                    compiles.lock().unwrap().push(Instant::now());
                    tokio::time::sleep(compile).await;
                }
            })
        };
        let mut waits = Vec::new();
        let base = Instant::now();
        for i in 0..30u64 {
            // About 1 s apart at fixed times, shifted so that they land at every phase of the
            // compile cadence (which is at most 270 ms here).
            let offset = (i * 37) % 271;
            tokio::time::sleep_until(base + Duration::from_millis(1000 * (i + 1) + offset)).await;
            let at = Instant::now();
            poke.poke();
            loop {
                tokio::time::sleep(Duration::from_millis(1)).await;
                let started = compiles.lock().unwrap().iter().any(|c| *c >= at);
                if started {
                    break;
                }
            }
            let first = *compiles.lock().unwrap().iter().find(|c| **c >= at).unwrap();
            // The change is in the first compile that started after it.
            waits.push(first - at);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        poke.poke();
        looper.abort();
        if let Some(c) = churner {
            c.abort();
        }
        waits.sort();
        waits
    }

    #[tokio::test(start_paused = true)]
    async fn debounce_share_of_a_change_is_small_quiet_and_bounded_under_churn() {
        let old = Debounce {
            quiet: Duration::from_millis(50),
            max_delay: Duration::from_millis(250),
        };
        let new = Debounce::default();
        let compile = Duration::from_millis(20);
        let p99 = |w: &[Duration]| w[w.len() - 1];
        let quiet_old = debounce_wait(old, false, compile).await;
        let quiet_new = debounce_wait(new, false, compile).await;
        let churn_old = debounce_wait(old, true, compile).await;
        let churn_new = debounce_wait(new, true, compile).await;
        eprintln!(
            "debounce wait (p50 / max of 30), compile {compile:?}: quiet {:?} / {:?} -> {:?} / {:?}; churn {:?} / {:?} -> {:?} / {:?}",
            quiet_old[15], p99(&quiet_old), quiet_new[15], p99(&quiet_new),
            churn_old[15], p99(&churn_old), churn_new[15], p99(&churn_new)
        );
        assert!(p99(&quiet_new) <= Duration::from_millis(1), "{quiet_new:?}");
        assert!(p99(&churn_new) <= new.max_delay + compile, "{churn_new:?}");
        assert!(
            churn_new[15] < churn_old[15],
            "{churn_new:?} vs {churn_old:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn debounce_is_bounded_under_a_trickle() {
        let poke = Poke::default();
        let bounds = Debounce::default();
        let trickle = {
            let poke = poke.clone();
            tokio::spawn(async move {
                loop {
                    poke.poke();
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(1)).await;
        let start = Instant::now();
        poke.settle(bounds).await;
        trickle.abort();
        assert!(
            start.elapsed() <= bounds.max_delay + Duration::from_millis(20),
            "{:?}",
            start.elapsed()
        );
    }
}
