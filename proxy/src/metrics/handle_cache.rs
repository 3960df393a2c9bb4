//! Per-thread caches of label-resolved metric handles for the request path.
//!
//! `MetricVec::with_label_values` hashes every label value and takes a lock on each call; a
//! request with a three-plugin chain made seven such calls (bench/RESULTS.md profiles). Here a
//! handle is looked up by the *addresses* of its label strings, which are stable for as long
//! as the chain or route that owns them lives, plus the [`Metrics`](super::Metrics) instance.
//! A hit is confirmed by comparing the label contents, so an address reused by a later snapshot
//! for other labels only costs one fresh lookup. Each thread keeps at most [`MAX_ENTRIES`]
//! handles and starts over beyond that.

use std::cell::RefCell;
use std::collections::HashMap;

use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec};
use rustc_hash::FxBuildHasher;

/// Entries per thread and per cache before the cache is emptied.
const MAX_ENTRIES: usize = 4096;

fn addr(s: &str) -> usize {
    s.as_ptr() as usize
}

struct HookEntry {
    alias: Box<str>,
    plugin: Box<str>,
    histogram: Histogram,
}

struct RequestEntry {
    route: Box<str>,
    service: Box<str>,
    counter: IntCounter,
}

type HookKey = (u64, usize, usize, usize);
type RequestKey = (u64, usize, usize, usize, u16);

thread_local! {
    static HOOKS: RefCell<HashMap<HookKey, HookEntry, FxBuildHasher>> =
        const { RefCell::new(HashMap::with_hasher(FxBuildHasher)) };
    static REQUESTS: RefCell<HashMap<RequestKey, RequestEntry, FxBuildHasher>> =
        const { RefCell::new(HashMap::with_hasher(FxBuildHasher)) };
}

/// Observes `elapsed` seconds on `vec{plugin, alias, phase}` of metrics instance `id`.
pub fn observe_hook(
    id: u64,
    vec: &HistogramVec,
    alias: &str,
    plugin: &str,
    phase: &'static str,
    elapsed: f64,
) {
    HOOKS.with(|cell| {
        let mut map = cell.borrow_mut();
        let key = (id, addr(alias), addr(plugin), addr(phase));
        if let Some(e) = map.get(&key) {
            if *e.alias == *alias && *e.plugin == *plugin {
                e.histogram.observe(elapsed);
                return;
            }
        }
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        let histogram = vec.with_label_values(&[plugin, alias, phase]);
        histogram.observe(elapsed);
        map.insert(
            key,
            HookEntry {
                alias: alias.into(),
                plugin: plugin.into(),
                histogram,
            },
        );
    });
}

/// Counts one request on `vec{route, service, method, status}` of metrics instance `id`.
pub fn count_request(
    id: u64,
    vec: &IntCounterVec,
    route: &str,
    service: &str,
    method: &'static str,
    status: http::StatusCode,
) {
    REQUESTS.with(|cell| {
        let mut map = cell.borrow_mut();
        let key = (
            id,
            addr(route),
            addr(service),
            addr(method),
            status.as_u16(),
        );
        if let Some(e) = map.get(&key) {
            if *e.route == *route && *e.service == *service {
                e.counter.inc();
                return;
            }
        }
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        let counter = vec.with_label_values(&[route, service, method, status.as_str()]);
        counter.inc();
        map.insert(
            key,
            RequestEntry {
                route: route.into(),
                service: service.into(),
                counter,
            },
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{HistogramOpts, Opts};

    fn hooks() -> HistogramVec {
        HistogramVec::new(HistogramOpts::new("h", "h"), &["plugin", "alias", "phase"]).unwrap()
    }

    #[test]
    fn cached_handles_count_under_the_right_labels() {
        let vec = hooks();
        let alias: std::sync::Arc<str> = "a".into();
        for _ in 0..3 {
            observe_hook(1, &vec, &alias, "headers", "request", 0.001);
        }
        observe_hook(1, &vec, &alias, "headers", "response", 0.001);
        let count = |phase: &str| {
            vec.with_label_values(&["headers", "a", phase])
                .get_sample_count()
        };
        assert_eq!(count("request"), 3);
        assert_eq!(count("response"), 1);
    }

    #[test]
    fn a_reused_address_with_other_labels_is_not_confused() {
        let vec = hooks();
        // Same buffer, other contents: the content check must miss.
        let mut buf = String::from("one");
        observe_hook(2, &vec, &buf, "p", "request", 0.001);
        buf.replace_range(.., "two");
        observe_hook(2, &vec, &buf, "p", "request", 0.001);
        assert_eq!(
            vec.with_label_values(&["p", "one", "request"])
                .get_sample_count(),
            1
        );
        assert_eq!(
            vec.with_label_values(&["p", "two", "request"])
                .get_sample_count(),
            1
        );
    }

    #[test]
    fn instances_do_not_share_handles() {
        let (a, b) = (hooks(), hooks());
        observe_hook(3, &a, "x", "p", "request", 0.001);
        observe_hook(4, &b, "x", "p", "request", 0.001);
        assert_eq!(
            a.with_label_values(&["p", "x", "request"])
                .get_sample_count(),
            1
        );
        assert_eq!(
            b.with_label_values(&["p", "x", "request"])
                .get_sample_count(),
            1
        );
    }

    #[test]
    fn requests_are_counted_by_status() {
        let vec = IntCounterVec::new(
            Opts::new("r", "r"),
            &["route", "service", "method", "status"],
        )
        .unwrap();
        let (route, service): (std::sync::Arc<str>, std::sync::Arc<str>) =
            ("ns/r".into(), "ns/s".into());
        for _ in 0..2 {
            count_request(5, &vec, &route, &service, "GET", http::StatusCode::OK);
        }
        count_request(
            5,
            &vec,
            &route,
            &service,
            "GET",
            http::StatusCode::NOT_FOUND,
        );
        assert_eq!(
            vec.with_label_values(&["ns/r", "ns/s", "GET", "200"]).get(),
            2
        );
        assert_eq!(
            vec.with_label_values(&["ns/r", "ns/s", "GET", "404"]).get(),
            1
        );
    }
}
