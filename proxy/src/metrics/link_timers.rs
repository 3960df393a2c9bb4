//! Hook-duration handles resolved once per chain link: observing a hook is then one atomic
//! load to find the handle and the histogram's own update, with no label hashing or lookup.
//!
//! A link's [`ObserverSlot`](crate::chain::ObserverSlot) holds the handles of the
//! [`Metrics`](super::Metrics) instance that first observed it, tagged with that instance's
//! id; another instance observing the same link (only in tests, where several proxies share
//! a process) resolves its labels on each call instead.

use prometheus::HistogramVec;

use crate::chain::{HookPhase, Link, LinkTimers};

/// Observes `seconds` on `vec{plugin, alias, phase}` for `link`, for metrics instance `id`.
/// The usual case (the link's handle for the phase already made by this instance) is inlined:
/// two loads, a compare and the histogram's update.
#[inline]
pub(super) fn observe(id: u64, vec: &HistogramVec, link: &Link, phase: HookPhase, seconds: f64) {
    if let Some(timers) = link.slot.get() {
        if timers.metrics_id == id {
            if let Some(histogram) = timers.by_phase[phase.index()].get() {
                histogram.observe(seconds);
                return;
            }
        }
    }
    observe_first(id, vec, link, phase, seconds);
}

/// The first observation of `link` (or of its `phase`) by instance `id`, or one by another
/// instance: the labels are resolved here.
#[cold]
#[inline(never)]
fn observe_first(id: u64, vec: &HistogramVec, link: &Link, phase: HookPhase, seconds: f64) {
    let resolve = || vec.with_label_values(&[&*link.plugin_kind, &*link.alias, phase.as_str()]);
    let timers = link.slot.get_or_init(|| LinkTimers::new(id));
    if timers.metrics_id == id {
        timers.by_phase[phase.index()]
            .get_or_init(resolve)
            .observe(seconds);
    } else {
        resolve().observe(seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use prometheus::HistogramOpts;

    use crate::plugin::{Phases, Plugin};

    struct Nothing;
    impl Plugin for Nothing {
        fn phases(&self) -> Phases {
            Phases::HEADS
        }
    }

    fn hooks() -> HistogramVec {
        HistogramVec::new(HistogramOpts::new("h", "h"), &["plugin", "alias", "phase"]).unwrap()
    }

    fn count(vec: &HistogramVec, alias: &str, phase: &str) -> u64 {
        vec.with_label_values(&["nothing", alias, phase])
            .get_sample_count()
    }

    #[test]
    fn observations_land_under_the_links_labels_and_phase() {
        let vec = hooks();
        let link = Link::new("a", "nothing", Arc::new(Nothing));
        for _ in 0..3 {
            observe(1, &vec, &link, HookPhase::Request, 0.001);
        }
        observe(1, &vec, &link.clone(), HookPhase::Response, 0.001);
        assert_eq!(count(&vec, "a", "request"), 3);
        assert_eq!(count(&vec, "a", "response"), 1);
        assert_eq!(count(&vec, "a", "complete"), 0);
    }

    #[test]
    fn a_second_metrics_instance_counts_in_its_own_vector() {
        let (first, second) = (hooks(), hooks());
        let link = Link::new("b", "nothing", Arc::new(Nothing));
        observe(10, &first, &link, HookPhase::Request, 0.001);
        observe(11, &second, &link, HookPhase::Request, 0.001);
        observe(11, &second, &link, HookPhase::Request, 0.001);
        assert_eq!(count(&first, "b", "request"), 1);
        assert_eq!(count(&second, "b", "request"), 2);
    }

    #[test]
    fn links_with_the_same_alias_share_the_series() {
        let vec = hooks();
        let (x, y) = (
            Link::new("c", "nothing", Arc::new(Nothing)),
            Link::new("c", "nothing", Arc::new(Nothing)),
        );
        observe(20, &vec, &x, HookPhase::Request, 0.001);
        observe(20, &vec, &y, HookPhase::Request, 0.001);
        assert_eq!(count(&vec, "c", "request"), 2);
    }
}
