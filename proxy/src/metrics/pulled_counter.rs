//! A counter whose value is read from a function at scrape time, for totals kept elsewhere
//! (an atomic in a plugin) that must not pay a metrics call on their own hot path.

use std::collections::HashMap;
use std::fmt;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, Metric, MetricFamily, MetricType};

/// A label-less counter backed by `fn() -> u64` (the function must be monotonic).
pub struct PulledCounter {
    desc: Desc,
    value: fn() -> u64,
}

impl fmt::Debug for PulledCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PulledCounter")
            .field("name", &self.desc.fq_name)
            .finish_non_exhaustive()
    }
}

impl PulledCounter {
    /// A counter named `name` (should end in `_total`) reading `value` on every scrape.
    pub fn new(name: &str, help: &str, value: fn() -> u64) -> prometheus::Result<Self> {
        Ok(Self {
            desc: Desc::new(name.into(), help.into(), Vec::new(), HashMap::new())?,
            value,
        })
    }
}

impl Collector for PulledCounter {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut counter = Counter::default();
        // Precision loss only above 2^53 lines.
        counter.set_value((self.value)() as f64);
        let mut metric = Metric::default();
        metric.set_counter(counter);
        let mut family = MetricFamily::default();
        family.set_name(self.desc.fq_name.clone());
        family.set_help(self.desc.help.clone());
        family.set_field_type(MetricType::COUNTER);
        family.set_metric(vec![metric]);
        vec![family]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    static VALUE: AtomicU64 = AtomicU64::new(0);

    #[test]
    fn reads_the_function_on_every_collect() {
        let counter = PulledCounter::new("test_pulled_total", "Test.", || {
            VALUE.load(Ordering::Relaxed)
        })
        .unwrap();
        VALUE.store(7, Ordering::Relaxed);
        let families = counter.collect();
        assert_eq!(families[0].get_field_type(), MetricType::COUNTER);
        assert_eq!(families[0].get_metric()[0].get_counter().get_value(), 7.0);
        VALUE.store(9, Ordering::Relaxed);
        assert_eq!(
            counter.collect()[0].get_metric()[0]
                .get_counter()
                .get_value(),
            9.0
        );
    }
}
