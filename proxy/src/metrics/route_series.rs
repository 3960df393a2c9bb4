//! Dropping the series of Routes that went away. `prometheus` can only remove a series by its
//! full label values, so the vector's current series are listed (`collect`) and those whose
//! `route` label names no live Route are removed one by one. Runs once per applied snapshot,
//! off the request path.

use std::collections::HashSet;

use prometheus::core::{Collector, MetricVec, MetricVecBuilder};

/// Removes from `vec` every series whose `label` is neither empty (the no-route series) nor in
/// `live`; returns how many were removed.
pub fn retain_routes<T: MetricVecBuilder>(
    vec: &MetricVec<T>,
    label: &str,
    live: &HashSet<&str>,
) -> usize {
    let mut removed = 0;
    for family in vec.collect() {
        for metric in family.get_metric() {
            let pairs = metric.get_label();
            let gone = pairs
                .iter()
                .any(|p| p.name() == label && !p.value().is_empty() && !live.contains(p.value()));
            if !gone {
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
        let live = HashSet::from(["a/kept"]);
        assert_eq!(retain_routes(&vec, "route", &live), 2);
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
        assert_eq!(retain_routes(&vec, "route", &live), 0);
    }
}
