//! Metrics of Wasm filters, in the default Prometheus registry (rendered on `/metrics`):
//! `hookway_wasm_failures_total{plugin,reason}` and the metrics filters define with
//! `proxy_define_metric`, as `hookway_wasm_counter_total`, `hookway_wasm_gauge` and
//! `hookway_wasm_histogram`, each labelled with the plugin alias and the metric's name.

use std::sync::{Mutex, OnceLock};

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge};
use prometheus::{IntGaugeVec, Opts};

use super::abi::MetricType;

/// Most metrics one filter may define (their names are label values).
pub const MAX_METRICS: usize = 256;

/// Why a filter call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureReason {
    /// The module trapped (`unreachable`, out-of-bounds access, `proc_exit`, ...).
    Trap,
    /// The call ran past `deadline`.
    Deadline,
    /// The module asked for memory beyond `max_memory` and then failed.
    Memory,
    /// No instance could be created (limit reached, or instantiation failed).
    Unavailable,
}

impl FailureReason {
    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            FailureReason::Trap => "trap",
            FailureReason::Deadline => "deadline",
            FailureReason::Memory => "memory",
            FailureReason::Unavailable => "unavailable",
        }
    }
}

fn register<C: prometheus::core::Collector + Clone + 'static>(c: C) -> C {
    let _ = prometheus::default_registry().register(Box::new(c.clone()));
    c
}

/// `hookway_wasm_failures_total{plugin,reason}`.
pub fn failures() -> &'static IntCounterVec {
    static C: OnceLock<IntCounterVec> = OnceLock::new();
    C.get_or_init(|| {
        register(
            IntCounterVec::new(
                Opts::new(
                    "hookway_wasm_failures_total",
                    "Calls into Wasm filters that failed (the instance is replaced), by alias and reason.",
                ),
                &["plugin", "reason"],
            )
            .expect("valid metric definition"),
        )
    })
}

/// `hookway_wasm_http_calls_total{plugin,result}`: `proxy_http_call`s by how they ended.
pub fn http_calls() -> &'static IntCounterVec {
    static C: OnceLock<IntCounterVec> = OnceLock::new();
    C.get_or_init(|| {
        register(
            IntCounterVec::new(
                Opts::new(
                    "hookway_wasm_http_calls_total",
                    "proxy_http_call calls of Wasm filters, by alias and result (response, timeout, failure, too_large, refused).",
                ),
                &["plugin", "result"],
            )
            .expect("valid metric definition"),
        )
    })
}

/// `hookway_wasm_ticks_total{plugin}`: `proxy_on_tick` calls.
pub fn ticks() -> &'static IntCounterVec {
    static C: OnceLock<IntCounterVec> = OnceLock::new();
    C.get_or_init(|| {
        register(
            IntCounterVec::new(
                Opts::new(
                    "hookway_wasm_ticks_total",
                    "proxy_on_tick calls into Wasm filters' root contexts, by alias.",
                ),
                &["plugin"],
            )
            .expect("valid metric definition"),
        )
    })
}

/// `hookway_wasm_counter_total{plugin,name}`: the counters filters define.
pub fn counters() -> &'static IntCounterVec {
    static C: OnceLock<IntCounterVec> = OnceLock::new();
    C.get_or_init(|| {
        register(
            IntCounterVec::new(
                Opts::new(
                    "hookway_wasm_counter_total",
                    "Counters defined by Wasm filters.",
                ),
                &["plugin", "name"],
            )
            .expect("valid metric definition"),
        )
    })
}

fn gauges() -> &'static IntGaugeVec {
    static C: OnceLock<IntGaugeVec> = OnceLock::new();
    C.get_or_init(|| {
        register(
            IntGaugeVec::new(
                Opts::new("hookway_wasm_gauge", "Gauges defined by Wasm filters."),
                &["plugin", "name"],
            )
            .expect("valid metric definition"),
        )
    })
}

fn histograms() -> &'static HistogramVec {
    static C: OnceLock<HistogramVec> = OnceLock::new();
    C.get_or_init(|| {
        let buckets = prometheus::exponential_buckets(1.0, 4.0, 12).expect("valid buckets");
        register(
            HistogramVec::new(
                HistogramOpts::new(
                    "hookway_wasm_histogram",
                    "Histograms defined by Wasm filters.",
                )
                .buckets(buckets),
                &["plugin", "name"],
            )
            .expect("valid metric definition"),
        )
    })
}

/// One defined metric's handle.
#[derive(Clone)]
pub enum Metric {
    /// A counter.
    Counter(IntCounter),
    /// A gauge.
    Gauge(IntGauge),
    /// A histogram.
    Histogram(Histogram),
}

/// The metrics one filter (plugin alias) defined; ids are indices, shared by all its
/// instances (each instance defines them again when it starts).
pub struct FilterMetrics {
    alias: String,
    defined: Mutex<Vec<(MetricType, String, Metric)>>,
}

impl FilterMetrics {
    /// No metrics yet for `alias`.
    pub fn new(alias: &str) -> Self {
        Self {
            alias: alias.to_string(),
            defined: Mutex::new(Vec::new()),
        }
    }

    /// The id of metric `name` of `kind`, defined now if new; `None` past [`MAX_METRICS`].
    pub fn define(&self, kind: MetricType, name: &str) -> Option<u32> {
        let mut defined = self.defined.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = defined.iter().position(|(k, n, _)| *k == kind && n == name) {
            return Some(i as u32);
        }
        if defined.len() >= MAX_METRICS {
            return None;
        }
        let labels = [self.alias.as_str(), name];
        let metric = match kind {
            MetricType::Counter => Metric::Counter(counters().with_label_values(&labels)),
            MetricType::Gauge => Metric::Gauge(gauges().with_label_values(&labels)),
            MetricType::Histogram => Metric::Histogram(histograms().with_label_values(&labels)),
        };
        defined.push((kind, name.to_string(), metric));
        Some(defined.len() as u32 - 1)
    }

    /// The metric with `id`.
    pub fn get(&self, id: u32) -> Option<Metric> {
        let defined = self.defined.lock().unwrap_or_else(|e| e.into_inner());
        defined.get(id as usize).map(|(_, _, m)| m.clone())
    }

    /// Counts a `proxy_http_call` of this filter.
    pub fn http_call(&self, result: super::http_call::CallResult) {
        http_calls()
            .with_label_values(&[self.alias.as_str(), result.as_str()])
            .inc();
    }

    /// Counts a `proxy_on_tick` of this filter.
    pub fn tick(&self) {
        ticks().with_label_values(&[self.alias.as_str()]).inc();
    }

    /// Counts a failure of this filter.
    pub fn failed(&self, reason: FailureReason) {
        failures()
            .with_label_values(&[self.alias.as_str(), reason.as_str()])
            .inc();
    }
}
