//! Applying a snapshot by updating the live [`Runtime`] where the snapshot changed, instead of
//! building it whole (`apply.rs`).
//!
//! ```text
//!  live snapshot ─┐
//!                 ├─ SnapshotDelta::between ─► what changed, by object (entries the new
//!  new snapshot ──┘                              snapshot shares with the live one are equal
//!                                                by pointer, not compared)
//!        │
//!        ├─ upstreams changed ──► new pools, stored in place in their slots at commit (the
//!        │                        router, Routes and chains naming them are untouched)
//!        ├─ certificates changed ► certificate store rebuilt; else shared
//!        ├─ Routes changed, or bound to a changed Secret ─► their chains and route runtimes;
//!        │                        every other route runtime is shared
//!        └─ a Route's matchers (hosts, rules, priority) changed, added or removed ─► router
//!                                 rebuilt over the entries; else shared
//! ```
//!
//! This path only runs when the live runtime applied everything (no failed object) and
//! everything the change touches builds; then the result equals what the whole build gives
//! (every object of the snapshot served as it is), which `delta_tests.rs` checks against it.
//! Anything else — a failure now or before, most Routes changed — returns `None` and the
//! caller builds whole, which knows the fallback rules (previous versions keep serving).

use std::collections::HashSet;
use std::sync::Arc;

use hookway_crds::delta::SnapshotDelta;
use hookway_crds::snapshot::{ObjectKey, RouteEntry, Snapshot};

use super::apply::{route_runtime, Env, UpstreamNames};
use super::{RouteRuntime, Runtime};
use crate::certs::CertStore;
use crate::chain::Chain;
use crate::router::Router;
use crate::upstream::{UpstreamPool, UpstreamSlot, Upstreams};

/// Above this many changed Routes, and above half of them, building whole is as cheap.
const MANY_ROUTES: usize = 64;

/// How many parts an apply built (`hookway_snapshot_rebuilt_total{part}`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rebuilt {
    /// Route runtimes.
    pub routes: usize,
    /// Chains (the default chain included).
    pub chains: usize,
    /// Upstream pools.
    pub upstreams: usize,
    /// Router indexes.
    pub router: usize,
    /// Certificate stores.
    pub certificates: usize,
}

impl Rebuilt {
    /// The counts as `(part label, count)`.
    pub fn parts(&self) -> [(&'static str, usize); 5] {
        [
            ("route", self.routes),
            ("chain", self.chains),
            ("upstream", self.upstreams),
            ("router", self.router),
            ("certificates", self.certificates),
        ]
    }
}

/// A runtime updated from the live one, ready to be made live.
pub(super) struct Update {
    /// The new runtime.
    pub runtime: Runtime,
    /// Pools to store in slots the live runtime shares, when the new runtime goes live.
    swaps: Vec<(Arc<UpstreamSlot>, Arc<UpstreamPool>)>,
    /// Labels (`namespace/name`) of the Routes no longer served.
    pub gone: Vec<String>,
    /// What was built.
    pub rebuilt: Rebuilt,
}

impl Update {
    /// Stores the changed upstreams' pools in their slots (the live runtime sees them at once;
    /// in-flight requests keep the pool they loaded).
    pub fn commit_upstreams(&mut self) {
        for (slot, pool) in self.swaps.drain(..) {
            slot.store(pool);
        }
    }
}

/// Whether a Route change needs the router rebuilt: what the router compiles changed.
fn matchers_differ(a: &RouteEntry, b: &RouteEntry) -> bool {
    a.hosts != b.hosts || a.rules != b.rules || a.priority != b.priority || a.created != b.created
}

/// Whether `chain` binds one of the changed Secrets or Services (plugin instances are keyed by
/// their content: `chain::builder::InstanceKey`).
fn binds_any(chain: &[hookway_crds::snapshot::ChainEntry], changed: &Changed<'_>) -> bool {
    chain.iter().any(|c| {
        c.secrets.values().any(|k| changed.secrets.contains(k))
            || c.services.values().any(|k| changed.services.contains(k))
    })
}

/// The Secrets and Services a delta changes or removes.
struct Changed<'a> {
    secrets: HashSet<&'a ObjectKey>,
    services: HashSet<&'a ObjectKey>,
}

impl Changed<'_> {
    fn is_empty(&self) -> bool {
        self.secrets.is_empty() && self.services.is_empty()
    }
}

/// The live runtime `live` updated to `snapshot`, or `None` when it must be built whole.
pub(super) fn update(env: &Env<'_>, live: &Runtime, snapshot: Arc<Snapshot>) -> Option<Update> {
    if !live.failed.is_empty() || live.entries.is_some() {
        return None;
    }
    let delta = SnapshotDelta::between(&live.snapshot, &snapshot);
    let routes_changed = delta.routes.upsert.len() + delta.routes.remove.len();
    if routes_changed > MANY_ROUTES && routes_changed > snapshot.routes.len() / 2 {
        return None;
    }
    let mut rebuilt = Rebuilt::default();

    // Certificates: any change rebuilds the store; one that fails needs the whole build.
    let certs = if delta.certificates.is_empty() {
        live.certs.clone()
    } else {
        let (store, refused) = CertStore::build(&snapshot.certificates, Some(&*live.certs));
        if !refused.is_empty() {
            return None;
        }
        rebuilt.certificates = 1;
        Arc::new(store)
    };

    // Upstreams: a changed one gets a new pool, stored in its slot at commit.
    let mut swaps = Vec::new();
    let mut added = Vec::new();
    for entry in &delta.upstreams.upsert {
        let pool = Arc::new(UpstreamPool::new(entry, env.clients, env.metrics).ok()?);
        rebuilt.upstreams += 1;
        match live.upstreams.get(&entry.key) {
            Some(slot) => swaps.push((slot.clone(), pool)),
            None => added.push((entry.key.clone(), Arc::new(UpstreamSlot::new(pool)))),
        }
    }
    let upstreams = if added.is_empty() && delta.upstreams.remove.is_empty() {
        live.upstreams.clone()
    } else {
        let mut map = Upstreams::clone(&live.upstreams);
        for key in &delta.upstreams.remove {
            map.remove(key);
        }
        map.extend(added);
        Arc::new(map)
    };

    // Chains to build: changed Routes, and those (and the default chain) bound to a changed
    // Secret or Service, whose instances are keyed by their content.
    let changed = Changed {
        secrets: delta
            .secrets
            .upsert
            .iter()
            .map(|s| &s.key)
            .chain(&delta.secrets.remove)
            .collect(),
        services: delta
            .upstreams
            .upsert
            .iter()
            .map(|u| &u.key)
            .chain(&delta.upstreams.remove)
            .collect(),
    };
    let upserted: HashSet<&ObjectKey> = delta.routes.upsert.iter().map(|r| &r.key).collect();
    let touched: Vec<(usize, &RouteEntry)> = if changed.is_empty() {
        // Upserts are sorted by key, as the snapshot's routes: find them by binary search.
        delta
            .routes
            .upsert
            .iter()
            .filter_map(|u| {
                let i = snapshot
                    .routes
                    .binary_search_by(|r| r.key.cmp(&u.key))
                    .ok()?;
                Some((i, &*snapshot.routes[i]))
            })
            .collect()
    } else {
        snapshot
            .routes
            .iter()
            .enumerate()
            .filter(|(_, r)| upserted.contains(&r.key) || binds_any(&r.chain, &changed))
            .map(|(i, r)| (i, &**r))
            .collect()
    };
    let default = delta.default_chain.is_some() || binds_any(&snapshot.default_chain, &changed);
    let needs_builder = default || touched.iter().any(|(_, r)| !r.chain.is_empty());
    let (chains, default_chain) = if needs_builder {
        let entries: Vec<&RouteEntry> = touched.iter().map(|(_, r)| *r).collect();
        let (chains, default_chain) = env
            .builder
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .build_some(&snapshot, &entries, default);
        let chains = chains.into_iter().collect::<Result<Vec<Chain>, _>>().ok()?;
        let default_chain = match default_chain {
            Some(chain) => chain.ok()?,
            None => live.default_chain.clone(),
        };
        (chains, default_chain)
    } else {
        (
            vec![Chain::default(); touched.len()],
            live.default_chain.clone(),
        )
    };
    rebuilt.chains =
        touched.iter().filter(|(_, r)| !r.chain.is_empty()).count() + usize::from(default);

    // Routes: the touched ones built, every other one shared with the live runtime.
    let matchers_changed = !delta.routes.remove.is_empty()
        || delta.routes.upsert.iter().any(|u| {
            live.snapshot
                .routes
                .binary_search_by(|r| r.key.cmp(&u.key))
                .map_or(true, |i| matchers_differ(&live.snapshot.routes[i], u))
        });
    let routes: Arc<[RouteRuntime]> = if touched.is_empty() && delta.routes.remove.is_empty() {
        live.routes.clone()
    } else {
        let mut names = UpstreamNames::default();
        let mut built = touched
            .iter()
            .zip(chains)
            .map(|((i, entry), chain)| (*i, route_runtime(entry, chain, &mut names)))
            .peekable();
        let mut kept = live.routes.iter().peekable();
        let mut routes = Vec::with_capacity(snapshot.routes.len());
        for (i, entry) in snapshot.routes.iter().enumerate() {
            // Skip the live runtime's routes before this one (removed from the snapshot).
            while kept.next_if(|k| *k.key < entry.key).is_some() {}
            let same = kept.next_if(|k| *k.key == entry.key);
            match built.next_if(|(j, _)| *j == i) {
                Some((_, runtime)) => routes.push(runtime),
                None => routes.push(same?.clone()),
            }
        }
        rebuilt.routes = touched.len();
        routes.into()
    };
    let router = if matchers_changed {
        rebuilt.router = 1;
        Arc::new(Router::new(&snapshot.routes).ok()?)
    } else {
        live.router.clone()
    };
    let gone = delta
        .routes
        .remove
        .iter()
        .map(ToString::to_string)
        .collect();

    Some(Update {
        runtime: Runtime {
            snapshot,
            router,
            routes,
            entries: None,
            upstreams,
            default_chain,
            no_route_duration: live.no_route_duration.clone(),
            certs,
            failed: Arc::new([]),
        },
        swaps,
        gone,
        rebuilt,
    })
}
