//! Sizes of the bounded tables that client input can grow (rate-limit keys, breaker states,
//! fetched documents), read at scrape time.
//!
//! A plugin instance registers one [`TableStats`] per table and updates its atomics only when
//! the table changes shape (an entry added, evicted or expired), never on a plain hit. The
//! registry keeps weak references: when the instance goes away (its GatewayPlugin was deleted
//! or reconfigured) its series go with it. Instances that share labels (one GatewayPlugin with
//! route-level configs) are summed.
//!
//! ```text
//!  plugin instance ── Arc<TableStats> ──┐
//!                                        ├─ registry (Weak) ── TablesCollector ── /metrics
//!  plugin instance ── Arc<TableStats> ──┘
//! ```
//!
//! Exported: `hookway_table_entries{plugin,table}`, `hookway_table_bytes{plugin,table}` (for
//! tables bounded in bytes), `hookway_table_limit{plugin,table,unit}` and
//! `hookway_table_evictions_total{plugin,table}` (entries dropped before they expired because
//! the table was full; a counter that restarts when the instance is rebuilt).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};

/// What a table's limit counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LimitUnit {
    /// Entries.
    Entries,
    /// Bytes (an estimate of the memory the entries hold).
    Bytes,
}

impl LimitUnit {
    fn as_str(self) -> &'static str {
        match self {
            LimitUnit::Entries => "entries",
            LimitUnit::Bytes => "bytes",
        }
    }
}

/// The live size of one bounded table.
#[derive(Debug)]
pub struct TableStats {
    plugin: String,
    table: &'static str,
    unit: LimitUnit,
    limit: u64,
    entries: AtomicU64,
    bytes: AtomicU64,
    evictions: AtomicU64,
}

/// Every registered table (dead ones are pruned on registration and on scrape).
static TABLES: Mutex<Vec<Weak<TableStats>>> = Mutex::new(Vec::new());

impl TableStats {
    /// A table not exported anywhere (tests, or a table built outside a proxy).
    pub fn unregistered(table: &'static str, unit: LimitUnit, limit: u64) -> Arc<Self> {
        Arc::new(Self::new(String::new(), table, unit, limit))
    }

    fn new(plugin: String, table: &'static str, unit: LimitUnit, limit: u64) -> Self {
        Self {
            plugin,
            table,
            unit,
            limit,
            entries: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    /// A table of `plugin` (`namespace/name` of its GatewayPlugin) named `table`, holding at
    /// most `limit` `unit`s, exported until the returned handle is dropped.
    pub fn register(plugin: String, table: &'static str, unit: LimitUnit, limit: u64) -> Arc<Self> {
        let stats = Arc::new(Self::new(plugin, table, unit, limit));
        let mut tables = TABLES.lock().unwrap_or_else(|p| p.into_inner());
        tables.retain(|t| t.strong_count() > 0);
        tables.push(Arc::downgrade(&stats));
        stats
    }

    /// The configured limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Entries now.
    pub fn entries(&self) -> u64 {
        self.entries.load(Ordering::Relaxed)
    }

    /// Bytes now (tables bounded in bytes).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Entries evicted because the table was full.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// One entry of `bytes` added.
    pub fn added(&self, bytes: u64) {
        self.entries.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// `n` entries of `bytes` in all removed because they expired (not an eviction).
    pub fn expired(&self, n: u64, bytes: u64) {
        self.entries.fetch_sub(n, Ordering::Relaxed);
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// One entry of `bytes` evicted to make room.
    pub fn evicted(&self, bytes: u64) {
        self.expired(1, bytes);
        self.evictions.fetch_add(1, Ordering::Relaxed);
    }
}

/// Sums of the live tables by labels.
#[derive(Default)]
struct Sums {
    entries: u64,
    bytes: u64,
    limit: u64,
    evictions: u64,
}

/// The collector of every registered table (registered in each [`super::Metrics`] registry).
pub struct TablesCollector {
    entries: Desc,
    bytes: Desc,
    limit: Desc,
    evictions: Desc,
}

impl TablesCollector {
    /// The collector.
    pub fn new() -> prometheus::Result<Self> {
        let desc = |name: &str, help: &str, labels: &[&str]| {
            Desc::new(
                name.into(),
                help.into(),
                labels.iter().map(|l| l.to_string()).collect(),
                HashMap::new(),
            )
        };
        Ok(Self {
            entries: desc(
                "hookway_table_entries",
                "Entries in a bounded table keyed by client input.",
                &["plugin", "table"],
            )?,
            bytes: desc(
                "hookway_table_bytes",
                "Estimated bytes held by a table bounded in bytes.",
                &["plugin", "table"],
            )?,
            limit: desc(
                "hookway_table_limit",
                "Configured bound of a table, in its unit.",
                &["plugin", "table", "unit"],
            )?,
            evictions: desc(
                "hookway_table_evictions_total",
                "Entries evicted before they expired because their table was full.",
                &["plugin", "table"],
            )?,
        })
    }
}

fn label(name: &str, value: &str) -> LabelPair {
    let mut pair = LabelPair::default();
    pair.set_name(name.into());
    pair.set_value(value.into());
    pair
}

fn family(desc: &Desc, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(desc.fq_name.clone());
    family.set_help(desc.help.clone());
    family.set_field_type(kind);
    family.set_metric(metrics);
    family
}

fn gauge(labels: Vec<LabelPair>, value: u64) -> Metric {
    let mut g = Gauge::default();
    g.set_value(value as f64);
    let mut m = Metric::default();
    m.set_label(labels);
    m.set_gauge(g);
    m
}

impl Collector for TablesCollector {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.entries, &self.bytes, &self.limit, &self.evictions]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let live: Vec<Arc<TableStats>> = {
            let mut tables = TABLES.lock().unwrap_or_else(|p| p.into_inner());
            tables.retain(|t| t.strong_count() > 0);
            tables.iter().filter_map(Weak::upgrade).collect()
        };
        let mut sums: BTreeMap<(&str, &str, LimitUnit), Sums> = BTreeMap::new();
        for t in &live {
            let s = sums.entry((&t.plugin, t.table, t.unit)).or_default();
            s.entries += t.entries();
            s.bytes += t.bytes();
            s.limit += t.limit;
            s.evictions += t.evictions();
        }
        let (mut entries, mut bytes, mut limits, mut evictions) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for ((plugin, table, unit), s) in &sums {
            let labels = || vec![label("plugin", plugin), label("table", table)];
            entries.push(gauge(labels(), s.entries));
            if *unit == LimitUnit::Bytes {
                bytes.push(gauge(labels(), s.bytes));
            }
            let mut with_unit = labels();
            with_unit.push(label("unit", unit.as_str()));
            limits.push(gauge(with_unit, s.limit));
            let mut c = Counter::default();
            c.set_value(s.evictions as f64);
            let mut m = Metric::default();
            m.set_label(labels());
            m.set_counter(c);
            evictions.push(m);
        }
        [
            family(&self.entries, MetricType::GAUGE, entries),
            family(&self.bytes, MetricType::GAUGE, bytes),
            family(&self.limit, MetricType::GAUGE, limits),
            family(&self.evictions, MetricType::COUNTER, evictions),
        ]
        .into_iter()
        .filter(|f| !f.get_metric().is_empty())
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(families: &[MetricFamily], name: &str, plugin: &str) -> Option<f64> {
        let f = families.iter().find(|f| f.name() == name)?;
        f.get_metric()
            .iter()
            .find(|m| m.get_label().iter().any(|l| l.value() == plugin))
            .map(|m| {
                if f.get_field_type() == MetricType::COUNTER {
                    m.get_counter().get_value()
                } else {
                    m.get_gauge().get_value()
                }
            })
    }

    #[test]
    fn series_are_summed_by_labels_and_go_with_their_tables() {
        let collector = TablesCollector::new().unwrap();
        let a = TableStats::register("t/sum".into(), "keys", LimitUnit::Entries, 10);
        let b = TableStats::register("t/sum".into(), "keys", LimitUnit::Entries, 5);
        a.added(0);
        a.added(0);
        b.added(0);
        a.evicted(0);
        let got = collector.collect();
        assert_eq!(value(&got, "hookway_table_entries", "t/sum"), Some(2.0));
        assert_eq!(value(&got, "hookway_table_limit", "t/sum"), Some(15.0));
        assert_eq!(
            value(&got, "hookway_table_evictions_total", "t/sum"),
            Some(1.0)
        );
        assert_eq!(value(&got, "hookway_table_bytes", "t/sum"), None);
        drop((a, b));
        // Another test's scrape may hold the dropped tables for the length of its `collect`:
        // gone is what a later scrape sees, within a bounded number of tries.
        let gone = (0..10_000).any(|_| {
            let got = collector.collect();
            let gone = value(&got, "hookway_table_entries", "t/sum").is_none();
            if !gone {
                std::thread::yield_now();
            }
            gone
        });
        assert!(gone, "the dropped tables are still exported");
    }

    #[test]
    fn byte_tables_export_their_bytes() {
        let collector = TablesCollector::new().unwrap();
        let docs = TableStats::register("t/bytes".into(), "docs", LimitUnit::Bytes, 1000);
        docs.added(300);
        docs.added(200);
        docs.expired(1, 200);
        let got = collector.collect();
        assert_eq!(value(&got, "hookway_table_bytes", "t/bytes"), Some(300.0));
        assert_eq!(value(&got, "hookway_table_entries", "t/bytes"), Some(1.0));
    }
}
