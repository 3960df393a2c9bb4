//! Prometheus metrics of the proxy, in an explicit [`Registry`] (no globals).
//!
//! `/metrics` renders this registry plus the default registry, where plugins keep the
//! metrics they own (`hookway_plugin_decisions_total`, `hookway_circuit_breaker_state`).
//! Every metric is listed in `docs/operations.md`.

mod handle_cache;
mod link_timers;
mod pulled_counter;
mod route_series;
pub mod tables;

pub use pulled_counter::PulledCounter;
pub use route_series::remove_routes;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

use crate::chain::{ChainObserver, HookPhase, Link};
use hookway_crds::snapshot::ObjectKey;

/// Latency buckets (seconds): 0.5 ms .. 30 s.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Hook buckets (seconds): 10 µs .. 1 s.
const HOOK_BUCKETS: &[f64] = &[
    0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0,
];

/// Every metric the proxy exports.
#[derive(Clone)]
pub struct Metrics {
    /// Tells this instance's cached handles from another's (tests run several proxies).
    id: u64,
    registry: Registry,
    /// `hookway_requests_total{route,service,method,status}`.
    pub requests: IntCounterVec,
    /// `hookway_request_duration_seconds{route}`.
    pub request_duration: HistogramVec,
    /// `hookway_upstream_duration_seconds{service}` (time to the response head).
    pub upstream_duration: HistogramVec,
    /// `hookway_plugin_hook_duration_seconds{plugin,alias,phase}`.
    pub hook_duration: HistogramVec,
    /// `hookway_plugin_failures_total{plugin,alias}`.
    pub plugin_failures: IntCounterVec,
    /// `hookway_upstream_connect_errors_total{service}`.
    pub upstream_connect_errors: IntCounterVec,
    /// `hookway_active_connections`.
    pub active_connections: IntGauge,
    /// `hookway_snapshot_version`.
    pub snapshot_version: IntGauge,
    /// `hookway_snapshot_reloads_total{result}` (`applied`, `partial` or `failed`).
    pub snapshot_reloads: IntCounterVec,
    /// `hookway_snapshot_failed_objects`: objects of the live snapshot this proxy left out.
    pub snapshot_failed_objects: IntGauge,
    /// `hookway_snapshot_apply_seconds{kind}`: time to build and swap in a runtime, `full`
    /// (built whole) or `delta` (the previous runtime updated where the snapshot changed).
    pub snapshot_apply: HistogramVec,
    /// `hookway_snapshot_rebuilt_total{part}`: parts built by applying snapshots (`route`,
    /// `chain`, `upstream`, `router`, `certificates`).
    pub snapshot_rebuilt: IntCounterVec,
}

/// `hookway_access_log_dropped_lines_total`: read from the access_log writers at scrape time.
fn access_log_dropped_lines() -> prometheus::Result<PulledCounter> {
    PulledCounter::new(
        "hookway_access_log_dropped_lines_total",
        "Access log lines dropped because a writer queue was full or its writer had stopped.",
        crate::plugins::access_log::dropped_lines_total,
    )
}

impl Metrics {
    /// Creates and registers every metric in a fresh registry.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let histogram = |name: &str, help: &str, buckets: &[f64], labels: &[&str]| {
            HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                labels,
            )
        };
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let m = Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            requests: IntCounterVec::new(
                Opts::new("hookway_requests_total", "Requests served."),
                &["route", "service", "method", "status"],
            )?,
            request_duration: histogram(
                "hookway_request_duration_seconds",
                "Time from request head to response head.",
                BUCKETS,
                &["route"],
            )?,
            upstream_duration: histogram(
                "hookway_upstream_duration_seconds",
                "Time from sending to the upstream to its response head.",
                BUCKETS,
                &["service"],
            )?,
            hook_duration: histogram(
                "hookway_plugin_hook_duration_seconds",
                "Time spent in plugin hooks.",
                HOOK_BUCKETS,
                &["plugin", "alias", "phase"],
            )?,
            plugin_failures: IntCounterVec::new(
                Opts::new("hookway_plugin_failures_total", "Plugin errors and panics."),
                &["plugin", "alias"],
            )?,
            upstream_connect_errors: IntCounterVec::new(
                Opts::new(
                    "hookway_upstream_connect_errors_total",
                    "Failed connections to upstream nodes.",
                ),
                &["service"],
            )?,
            active_connections: IntGauge::new(
                "hookway_active_connections",
                "Open client connections.",
            )?,
            snapshot_version: IntGauge::new(
                "hookway_snapshot_version",
                "Version of the applied snapshot.",
            )?,
            snapshot_reloads: IntCounterVec::new(
                Opts::new(
                    "hookway_snapshot_reloads_total",
                    "Snapshots received: applied whole, applied except some objects, or failed.",
                ),
                &["result"],
            )?,
            snapshot_failed_objects: IntGauge::new(
                "hookway_snapshot_failed_objects",
                "Objects of the live snapshot this proxy could not apply and left out.",
            )?,
            snapshot_apply: histogram(
                "hookway_snapshot_apply_seconds",
                "Time to build and swap in the runtime of a snapshot: whole (full) or by updating the live one where the snapshot changed (delta).",
                HOOK_BUCKETS,
                &["kind"],
            )?,
            snapshot_rebuilt: IntCounterVec::new(
                Opts::new(
                    "hookway_snapshot_rebuilt_total",
                    "Parts of the runtime built by applying snapshots: route runtimes, chains, upstream pools, router indexes, certificate stores.",
                ),
                &["part"],
            )?,
            registry,
        };
        m.registry.register(Box::new(m.requests.clone()))?;
        m.registry.register(Box::new(m.request_duration.clone()))?;
        m.registry.register(Box::new(m.upstream_duration.clone()))?;
        m.registry.register(Box::new(m.hook_duration.clone()))?;
        m.registry.register(Box::new(m.plugin_failures.clone()))?;
        m.registry
            .register(Box::new(m.upstream_connect_errors.clone()))?;
        m.registry
            .register(Box::new(m.active_connections.clone()))?;
        m.registry.register(Box::new(m.snapshot_version.clone()))?;
        m.registry.register(Box::new(m.snapshot_reloads.clone()))?;
        m.registry
            .register(Box::new(m.snapshot_failed_objects.clone()))?;
        m.registry.register(Box::new(m.snapshot_apply.clone()))?;
        m.registry.register(Box::new(m.snapshot_rebuilt.clone()))?;
        m.registry.register(Box::new(access_log_dropped_lines()?))?;
        m.registry
            .register(Box::new(tables::TablesCollector::new()?))?;
        Ok(m)
    }

    /// Drops the series of the Routes in `gone` (`namespace/name`): `hookway_requests_total`
    /// and `hookway_request_duration_seconds` here, and the plugins' per-route series. Called
    /// when an applied snapshot removed Routes, so their series go away with them. Returns how
    /// many series were dropped.
    pub fn remove_routes(&self, gone: &std::collections::HashSet<&str>) -> usize {
        let dropped = route_series::remove_routes(&self.requests, "route", gone)
            + route_series::remove_routes(&self.request_duration, "route", gone)
            + crate::plugins::remove_route_series(gone);
        if dropped > 0 {
            // Cached request-counter handles of dropped series must not be counted on.
            handle_cache::forget(self.id);
        }
        dropped
    }

    /// Counts a served request (`hookway_requests_total`).
    pub fn count_request(
        &self,
        route: &str,
        service: &str,
        method: &'static str,
        status: http::StatusCode,
    ) {
        handle_cache::count_request(self.id, &self.requests, route, service, method, status);
    }

    /// The Prometheus text exposition of every metric: this registry's, then the plugins'
    /// (default registry).
    pub fn render(&self) -> String {
        let mut families = self.registry.gather();
        families.extend(prometheus::gather());
        let mut out = Vec::new();
        if let Err(err) = TextEncoder::new().encode(&families, &mut out) {
            tracing::warn!(error = %err, "encoding metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Bounded label for a method: the standard ones, else `OTHER`.
pub fn method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::PATCH => "PATCH",
        http::Method::DELETE => "DELETE",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::CONNECT => "CONNECT",
        http::Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

impl ChainObserver for Metrics {
    fn hook(&self, link: &Link, phase: HookPhase, elapsed: Duration) {
        link_timers::observe(
            self.id,
            &self.hook_duration,
            link,
            phase,
            elapsed.as_secs_f64(),
        );
    }

    fn plugin_failed(&self, alias: &str, plugin: &str, route: Option<&ObjectKey>) {
        let _ = route; // the route is in the log line; a label would be unbounded.
        self.plugin_failures
            .with_label_values(&[plugin, alias])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::decisions::{self, Decision};

    #[test]
    fn render_includes_plugin_metrics_and_dropped_access_log_lines() {
        let metrics = Metrics::new().unwrap();
        metrics
            .requests
            .with_label_values(&["apps/r", "apps/s", "GET", "200"])
            .inc();
        let route = ObjectKey::new("apps", "metrics-render-test");
        decisions::record("ip_restriction", Some(&route), Decision::Denied);
        crate::plugins::circuit_breaker::state_gauge()
            .with_label_values(&["breaker", "apps/metrics-render-test"])
            .set(0);
        let text = metrics.render();
        assert!(
            text.contains("# TYPE hookway_requests_total counter"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE hookway_access_log_dropped_lines_total counter"),
            "{text}"
        );
        assert!(
            text.contains(r#"hookway_plugin_decisions_total{decision="denied",plugin="ip_restriction",route="apps/metrics-render-test"}"#),
            "{text}"
        );
        assert!(
            text.contains("# TYPE hookway_circuit_breaker_state gauge"),
            "{text}"
        );
    }
}
