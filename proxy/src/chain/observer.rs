//! What the chain tells the outside world while it runs: hook timings and plugin failures
//! (the proxy's metrics implement [`ChainObserver`]).

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hookway_crds::snapshot::ObjectKey;
use prometheus::Histogram;

use super::Link;

/// The hook a timing or a failure is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HookPhase {
    /// `on_request`.
    Request,
    /// A request body filter.
    RequestBody,
    /// `request_body_limit` / `on_request_body`.
    WholeRequestBody,
    /// `on_response`.
    Response,
    /// A response body filter.
    ResponseBody,
    /// `on_complete`.
    Complete,
}

impl HookPhase {
    /// How many phases there are (for per-phase tables indexed by [`HookPhase::index`]).
    pub const COUNT: usize = 6;

    /// The metric label and log field of the phase.
    pub const fn as_str(self) -> &'static str {
        match self {
            HookPhase::Request => "request",
            HookPhase::RequestBody => "request_body",
            HookPhase::WholeRequestBody => "whole_request_body",
            HookPhase::Response => "response",
            HookPhase::ResponseBody => "response_body",
            HookPhase::Complete => "complete",
        }
    }

    /// A dense index in `0..COUNT`.
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for HookPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One link's `hookway_plugin_hook_duration_seconds` handles, per phase, each made on first use
/// (a phase that never runs gets no series), for the metrics instance `metrics_id`.
pub(crate) struct LinkTimers {
    pub(crate) metrics_id: u64,
    pub(crate) by_phase: [OnceLock<Histogram>; HookPhase::COUNT],
}

impl LinkTimers {
    /// Handles for metrics instance `metrics_id`, none made yet.
    pub(crate) fn new(metrics_id: u64) -> Self {
        Self {
            metrics_id,
            by_phase: Default::default(),
        }
    }
}

/// Storage the metrics fill once per link with its label-resolved hook-duration handles, so
/// that observing a hook costs no label lookup. Typed (not `dyn Any`): finding the handle is
/// two loads and a compare. Shared by clones of the link.
#[derive(Clone, Default)]
pub struct ObserverSlot(Arc<OnceLock<LinkTimers>>);

impl ObserverSlot {
    /// The slot's handles, when filled.
    #[inline]
    pub(crate) fn get(&self) -> Option<&LinkTimers> {
        self.0.get()
    }

    /// The slot's handles, made by `init` on first use.
    pub(crate) fn get_or_init(&self, init: impl FnOnce() -> LinkTimers) -> &LinkTimers {
        self.0.get_or_init(init)
    }
}

impl fmt::Debug for ObserverSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "ObserverSlot(set)"
        } else {
            "ObserverSlot(empty)"
        })
    }
}

/// Observes the chain for metrics (implemented by the proxy's metrics module).
pub trait ChainObserver: Send + Sync {
    /// A hook of `link` ran for `elapsed`.
    fn hook(&self, link: &Link, phase: HookPhase, elapsed: Duration);
    /// Plugin `alias` failed (error or panic) on route `route`.
    fn plugin_failed(&self, alias: &str, plugin: &str, route: Option<&ObjectKey>);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_have_dense_indices_and_their_labels() {
        let all = [
            HookPhase::Request,
            HookPhase::RequestBody,
            HookPhase::WholeRequestBody,
            HookPhase::Response,
            HookPhase::ResponseBody,
            HookPhase::Complete,
        ];
        for (i, phase) in all.iter().enumerate() {
            assert_eq!(phase.index(), i);
        }
        assert_eq!(all.len(), HookPhase::COUNT);
        assert_eq!(
            HookPhase::WholeRequestBody.to_string(),
            "whole_request_body"
        );
    }

    #[test]
    fn a_slot_is_filled_once_and_shared_by_clones() {
        let slot = ObserverSlot::default();
        let copy = slot.clone();
        assert!(copy.get().is_none());
        assert_eq!(slot.get_or_init(|| LinkTimers::new(7)).metrics_id, 7);
        assert_eq!(
            copy.get_or_init(|| LinkTimers::new(8)).metrics_id,
            7,
            "filled once"
        );
        assert_eq!(copy.get().map(|t| t.metrics_id), Some(7));
    }
}
