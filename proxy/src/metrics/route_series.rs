//! Dropping the series of Routes that went away. `prometheus` can only remove a series by its
//! full label values, so the vector's current series are listed (`collect`) and those whose
//! `route` label names a removed Route are removed one by one. Runs when an applied snapshot
//! removed Routes, off the request path. Only the removed Routes are named (not "every Route
//! not live"): the plugins' series live in the process-wide default registry, which several
//! proxies share in tests.

use std::collections::HashSet;

use prometheus::core::{Collector, MetricVec, MetricVecBuilder};

/// Removes from `vec` every series whose `label` is in `gone`; returns how many were removed.
pub fn remove_routes<T: MetricVecBuilder>(
    vec: &MetricVec<T>,
    label: &str,
    gone: &HashSet<&str>,
) -> usize {
    if gone.is_empty() {
        return 0;
    }
    let mut removed = 0;
    for family in vec.collect() {
        for metric in family.get_metric() {
            let pairs = metric.get_label();
            let removed_route = pairs
                .iter()
                .any(|p| p.name() == label && gone.contains(p.value()));
            if !removed_route {
                continue;
            }
            // `collect` lists labels sorted by name; removal wants them in declared order.
            let values: std::collections::HashMap<&str, &str> =
                pairs.iter().map(|p| (p.name(), p.value())).collect();
            if vec.remove(&values).is_ok() {
                removed += 1;
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{IntCounterVec, Opts};

    #[test]
    fn only_series_of_gone_routes_are_removed() {
        let vec = IntCounterVec::new(Opts::new("t", "t"), &["status", "route"]).unwrap();
        for (route, status) in [
            ("a/kept", "200"),
            ("a/gone", "200"),
            ("a/gone", "500"),
            ("", "404"),
        ] {
            vec.with_label_values(&[status, route]).inc();
        }
        let gone = HashSet::from(["a/gone"]);
        assert_eq!(remove_routes(&vec, "route", &gone), 2);
        let left: Vec<String> = vec.collect()[0]
            .get_metric()
            .iter()
            .map(|m| {
                m.get_label()
                    .iter()
                    .map(|l| l.value())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect();
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(left.iter().all(|l| !l.contains("a/gone")), "{left:?}");
        assert_eq!(remove_routes(&vec, "route", &gone), 0);
    }
}
