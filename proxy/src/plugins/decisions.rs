//! The per-plugin decision counter: `hookway_plugin_decisions_total{plugin, route, decision}`
//! in the default Prometheus registry. Plugins count the requests they stop (`denied`,
//! `limited`, `tripped`, `unavailable`); requests they let through are the route's request count
//! minus these, so the hot path of an allowed request pays nothing.

use std::sync::OnceLock;

use prometheus::{IntCounterVec, Opts};

use hookway_crds::snapshot::ObjectKey;

/// What a plugin decided about a request it stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Refused by an access rule (ip, auth, cors, csrf, referer, user agent).
    Denied,
    /// Refused by a rate limit or spike arrest.
    Limited,
    /// Answered by an open circuit breaker.
    Tripped,
    /// Refused because a dependency (Redis, auth service) failed.
    Unavailable,
}

impl Decision {
    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Decision::Denied => "denied",
            Decision::Limited => "limited",
            Decision::Tripped => "tripped",
            Decision::Unavailable => "unavailable",
        }
    }
}

/// The counter (registered in the default registry on first use).
pub fn counter() -> &'static IntCounterVec {
    static COUNTER: OnceLock<IntCounterVec> = OnceLock::new();
    COUNTER.get_or_init(|| {
        let c = IntCounterVec::new(
            Opts::new(
                "hookway_plugin_decisions_total",
                "Requests stopped by a plugin, by plugin kind, route and decision",
            ),
            &["plugin", "route", "decision"],
        )
        .expect("valid metric definition");
        let _ = prometheus::default_registry().register(Box::new(c.clone()));
        c
    })
}

/// Counts one stopped request.
pub fn record(plugin: &str, route: Option<&ObjectKey>, decision: Decision) {
    let route = route.map(ToString::to_string).unwrap_or_default();
    counter()
        .with_label_values(&[plugin, route.as_str(), decision.as_str()])
        .inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_labels() {
        let route = ObjectKey::new("apps", "decisions-test");
        let get = || {
            counter()
                .with_label_values(&["x", "apps/decisions-test", "limited"])
                .get()
        };
        let before = get();
        record("x", Some(&route), Decision::Limited);
        record("x", Some(&route), Decision::Limited);
        assert_eq!(get() - before, 2);
    }
}
