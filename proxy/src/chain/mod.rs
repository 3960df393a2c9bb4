//! The hook chain: runs a Route's plugins around the upstream call, as an onion.
//!
//! ```text
//!  on_request 1 → 2 → 3 → [request body filters 1 → 2 → 3] → Upstream::call
//!  on_response 3 → 2 → 1 → [response body filters 3 → 2 → 1] → client
//!  on_complete 3 → 2 → 1   (when the response body ends, fails, or the client goes away)
//! ```
//!
//! Early answer from plugin k: plugins k+1.. and the upstream are skipped; on_response runs for
//! k, k-1, .., 1. A plugin error or panic ends the request with a 5xx naming nobody's internals,
//! and a log line naming the plugin (alias) and route.
//!
//! Details the runner pins down:
//! - `exclude_paths` are matched against the path the client sent, before any hook runs.
//! - A plugin that fails in its request hook answers `plugin <alias> failed` with the error's
//!   status (500 for a panic); the plugins before it still run their response hooks, its own
//!   is skipped. A failing response hook replaces the answer the same way and ends the
//!   response phase. Every plugin that ran gets its completion hook, with the error.
//! - A body filter failing mid-stream ends that body with a [`BodyFilterError`]: on a response
//!   the client sees a truncated or reset response; on a request the upstream call fails and
//!   the client gets `plugin <alias> failed` with the failure's status (413 over a plugin's
//!   body limit, 400 for a bad body, 500 for a panic).
//! - Body filters are not asked for on HEAD answers and 204/304 (they carry no body).
//! - A plugin may also wrap a whole body stream (`request_body_stream` /
//!   `response_body_stream`, for bodies that wait on something, e.g. ext_proc's gRPC stream):
//!   the wrapper sits at the plugin's place among the filters, in the same order.
//! - A non-empty request body is wrapped to count its bytes even without filters (for
//!   [`crate::plugin::Completion::bytes_received`]); an empty one is passed as is.
//!
//! - Whole-body hooks (`request_body_limit` / `on_request_body`) only cost something when a
//!   plugin that ran asks: the body is then buffered after the request body filters (413 over
//!   the smallest limit, refused on `Content-Length` before reading) and re-framed with an
//!   exact `Content-Length`.
//!
//! Files: `run` (the runner), `guard` (failure isolation), `body_filters` (streaming body
//! filters), `whole_body` (the whole-request-body hook), `completion` (the completion
//! tracker), `exclude` (`exclude_paths`), `builder` (snapshot → chains with instance reuse),
//! `link_set` (which links ran), `observer` (hook timings and failures for the metrics, and
//! the per-link slot where the metrics keep their resolved handles), `lap` (hook timing).

mod body_filters;
mod builder;
mod completion;
mod exclude;
mod guard;
mod lap;
mod link_set;
mod observer;
mod run;
#[cfg(test)]
pub(crate) mod tests;
mod whole_body;

use std::future::Future;
use std::sync::Arc;

use http::{Request, Response, StatusCode};

pub use body_filters::BodyFilterError;
pub use link_set::LinkSet;
pub(crate) use observer::LinkTimers;
pub use observer::{ChainObserver, HookPhase, ObserverSlot};

use crate::plugin::{Ctx, Phases, Plugin, ProxyBody, Registry};
use exclude::ExcludePaths;
use hookway_crds::snapshot::{ChainEntry, ObjectKey, RouteEntry, Snapshot, Tier};

/// Why the upstream call failed; turned into a short plain-text 502/503/504 by the chain (the
/// response hooks still run on it).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct UpstreamError {
    /// 502 (bad gateway: connect refused, reset, protocol error), 503 (no healthy node),
    /// 504 (timeout).
    pub status: StatusCode,
    /// Short reason, sent as the body (`upstream connect error: connection refused`).
    pub message: String,
}

/// The innermost layer of the onion: sends the (possibly modified) request to the upstream the
/// context names, or answers itself (e.g. the 404 of the no-route chain).
///
/// The runner is generic over it, so the call's future sits in the runner's own future instead
/// of a box of its own (allocated, and the future copied into it, on every request).
pub trait Upstream: Send + Sync {
    /// Performs the call.
    fn call<'a>(
        &'a self,
        req: Request<ProxyBody>,
        ctx: &'a mut Ctx,
    ) -> impl Future<Output = Result<Response<ProxyBody>, UpstreamError>> + Send + 'a;
}

/// One plugin in a chain.
#[derive(Clone)]
pub struct Link {
    /// The alias (GatewayPlugin name).
    pub alias: Arc<str>,
    /// The plugin kind.
    pub plugin_kind: Arc<str>,
    /// The instance.
    pub plugin: Arc<dyn Plugin>,
    /// Paths (with `*` wildcards) for which this link is skipped.
    pub exclude_paths: Arc<[String]>,
    /// The plugin's declared phases, read once.
    phases: Phases,
    /// Whether the plugin leaves hop-by-hop fields and `Host` alone, read once.
    keeps_hop_by_hop: bool,
    /// The observer's per-link storage (label-resolved metric handles).
    pub slot: ObserverSlot,
}

impl Link {
    /// A link running `plugin` as `alias` (a GatewayPlugin of kind `plugin_kind`).
    pub fn new(
        alias: impl Into<Arc<str>>,
        plugin_kind: impl Into<Arc<str>>,
        plugin: Arc<dyn Plugin>,
    ) -> Self {
        Self {
            alias: alias.into(),
            plugin_kind: plugin_kind.into(),
            phases: plugin.phases(),
            keeps_hop_by_hop: plugin.keeps_hop_by_hop(),
            plugin,
            exclude_paths: Arc::new([]),
            slot: ObserverSlot::default(),
        }
    }

    /// The same link, skipped for requests to `paths`.
    pub fn excluding(mut self, paths: impl Into<Arc<[String]>>) -> Self {
        self.exclude_paths = paths.into();
        self
    }

    /// Whether the plugin implements every phase of `phases` (see [`Phases`]).
    pub(crate) fn has(&self, phases: Phases) -> bool {
        self.phases.contains(phases)
    }
}

/// A Route's chain, ready to run. Cheap to clone.
#[derive(Clone)]
pub struct Chain {
    links: Arc<[Link]>,
    /// Each link's compiled `exclude_paths`, in the same order.
    excludes: Arc<[ExcludePaths]>,
    /// Whether any link has `exclude_paths` (else the per-request check is skipped).
    has_excludes: bool,
    /// The phases any link implements: the runner skips whole steps nobody takes part in.
    phases: Phases,
    /// The links' aliases, in run order (what [`crate::plugin::PluginsRan`] refers to).
    aliases: Arc<[Arc<str>]>,
    /// Whether every link leaves hop-by-hop fields and `Host` alone (see
    /// [`Plugin::keeps_hop_by_hop`]).
    keeps_hop_by_hop: bool,
}

/// The empty chain, shared: most Routes have no plugin, and each empty chain of its own would
/// cost three allocations per Route.
impl Default for Chain {
    fn default() -> Self {
        static EMPTY: std::sync::OnceLock<Chain> = std::sync::OnceLock::new();
        EMPTY
            .get_or_init(|| Chain {
                links: Arc::new([]),
                excludes: Arc::new([]),
                has_excludes: false,
                phases: Phases::default(),
                aliases: Arc::new([]),
                keeps_hop_by_hop: true,
            })
            .clone()
    }
}

impl Chain {
    /// A chain of `links` (already in run order). Their `exclude_paths` are compiled here.
    pub fn new(links: Vec<Link>) -> Self {
        if links.is_empty() {
            return Self::default();
        }
        let excludes: Arc<[ExcludePaths]> = links
            .iter()
            .map(|link| ExcludePaths::new(&link.exclude_paths))
            .collect();
        Self {
            has_excludes: excludes.iter().any(|e| !e.is_empty()),
            phases: links
                .iter()
                .fold(Phases::HEADS, |all, link| all | link.phases),
            aliases: links.iter().map(|link| link.alias.clone()).collect(),
            keeps_hop_by_hop: links.iter().all(|link| link.keeps_hop_by_hop),
            links: links.into(),
            excludes,
        }
    }

    /// The links skipped for a request to `path` (in place, without a call, when no link has
    /// `exclude_paths`).
    #[inline]
    fn excluded(&self, path: &str) -> LinkSet {
        if self.has_excludes {
            self.matching_excludes(path)
        } else {
            LinkSet::default()
        }
    }

    fn matching_excludes(&self, path: &str) -> LinkSet {
        let mut set = LinkSet::default();
        for (i, exclude) in self.excludes.iter().enumerate() {
            if exclude.matches(path) {
                set.insert(i);
            }
        }
        set
    }

    /// Whether some link implements `phases`, so that the runner must go through that step.
    /// Debug builds always do, so that their checks of what plugins declare still run.
    fn takes_part(&self, phases: Phases) -> bool {
        cfg!(debug_assertions) || self.phases.contains(phases)
    }

    /// The links in run order.
    pub fn links(&self) -> &[Link] {
        &self.links
    }

    /// Runs the request through the chain and `upstream`. Never fails: errors become responses.
    /// (The runner's own future, not one wrapping it: a future is moved whole, so every
    /// nesting level costs a copy.)
    pub fn run<'a, U: Upstream>(
        &'a self,
        req: Request<ProxyBody>,
        ctx: &'a mut Ctx,
        upstream: &'a U,
        observer: &'a Arc<dyn ChainObserver>,
    ) -> impl Future<Output = Response<ProxyBody>> + Send + 'a {
        run::run(self, req, ctx, upstream, observer)
    }
}

/// Builds chains from snapshots, reusing plugin instances across snapshots while their
/// `(GatewayPlugin, kind, config)` is unchanged (so rate-limit counters and breaker state
/// survive reloads).
pub struct ChainBuilder {
    registry: Registry,
    /// The instances of the last successful build.
    instances: builder::Instances,
}

/// One chain as built, or the plugin instance that could not be.
pub type BuiltChain = Result<Chain, Box<BuildError>>;

/// The chains of one snapshot, each built on its own.
pub struct Chains {
    /// Per Route, in the snapshot's route order.
    pub routes: Vec<Result<Chain, Box<BuildError>>>,
    /// For requests that match no Route.
    pub default: Result<Chain, Box<BuildError>>,
}

/// A plugin instance that could not be built: the chains using it are left out by this proxy.
#[derive(Debug, Clone, thiserror::Error)]
#[error("plugin {alias} ({plugin}) from {plugin_ref}: {message}")]
pub struct BuildError {
    /// Alias.
    pub alias: String,
    /// Kind.
    pub plugin: String,
    /// The GatewayPlugin.
    pub plugin_ref: ObjectKey,
    /// The level whose config was used (tells which object's config failed).
    pub tier: Tier,
    /// Why.
    pub message: String,
}

impl BuildError {
    /// The error for `entry`.
    pub fn of(entry: &ChainEntry, message: String) -> Self {
        Self {
            alias: entry.alias.clone(),
            plugin: entry.plugin.clone(),
            plugin_ref: entry.plugin_ref.clone(),
            tier: entry.tier,
            message,
        }
    }
}

impl ChainBuilder {
    /// A builder using `registry`.
    pub fn new(registry: Registry) -> Self {
        Self {
            registry,
            instances: builder::Instances::new(),
        }
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Builds every chain of `snapshot` (one per Route, in the snapshot's order, and the
    /// default chain), each on its own: an instance that cannot be built fails only the chains
    /// that use it. Instances whose `(GatewayPlugin, kind, config)` did not change since the
    /// last build are reused.
    pub fn build(&mut self, snapshot: &Snapshot) -> Chains {
        builder::build(&self.registry, &mut self.instances, snapshot)
    }

    /// Builds the chains of `routes` only (Routes of `snapshot`, in that order) and, with
    /// `default`, the default chain: for a snapshot applied in place, whose other chains are
    /// kept. Instances are reused as by [`ChainBuilder::build`]; those no chain holds any more
    /// are dropped.
    pub fn build_some(
        &mut self,
        snapshot: &Snapshot,
        routes: &[&RouteEntry],
        default: bool,
    ) -> (Vec<BuiltChain>, Option<BuiltChain>) {
        builder::build_some(
            &self.registry,
            &mut self.instances,
            snapshot,
            routes,
            default,
        )
    }

    /// How many distinct plugin instances the last build holds.
    pub fn instance_count(&self) -> usize {
        self.instances.len()
    }
}
