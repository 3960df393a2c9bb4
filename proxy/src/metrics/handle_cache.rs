//! A per-thread cache of label-resolved request counters for the request path (hook timers
//! are resolved per chain link instead, in `link_timers`).
//!
//! `MetricVec::with_label_values` hashes every label value and takes a lock on each call. Here
//! a handle is looked up by the *addresses* of its label strings, which are stable for as long
//! as the chain or route that owns them lives, plus the [`Metrics`](super::Metrics) instance.
//! A hit is confirmed by comparing the label contents, so an address reused by a later snapshot
//! for other labels only costs one fresh lookup. Each thread keeps at most [`MAX_ENTRIES`]
//! handles and starts over beyond that.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus::{IntCounter, IntCounterVec};
use rustc_hash::FxBuildHasher;

/// Entries per thread and per cache before the cache is emptied.
const MAX_ENTRIES: usize = 4096;

fn addr(s: &str) -> usize {
    s.as_ptr() as usize
}

struct RequestEntry {
    route: Box<str>,
    service: Box<str>,
    counter: IntCounter,
}

type RequestKey = (u64, usize, usize, usize, u16);

thread_local! {
    static REQUESTS: RefCell<HashMap<RequestKey, RequestEntry, FxBuildHasher>> =
        const { RefCell::new(HashMap::with_hasher(FxBuildHasher)) };
    /// The [`GENERATION`] this thread's cache was filled in.
    static FILLED_IN: Cell<u64> = const { Cell::new(0) };
}

/// Bumped when series are removed from a vector: every thread empties its cache before its
/// next lookup, so no handle of a removed series is counted on.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Makes every thread drop its cached handles (series were removed; `id` is the metrics
/// instance, kept for the log).
pub fn forget(id: u64) {
    let generation = GENERATION.fetch_add(1, Ordering::Relaxed) + 1;
    tracing::trace!(
        metrics = id,
        generation,
        "request counter handles forgotten"
    );
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
        let generation = GENERATION.load(Ordering::Relaxed);
        if FILLED_IN.get() != generation {
            map.clear();
            FILLED_IN.set(generation);
        }
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
    use prometheus::Opts;

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
