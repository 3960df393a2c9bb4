//! Prometheus metrics, registered on an explicit [`Registry`] (no globals).

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Every metric the controller exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Compile loop runs (after debouncing).
    pub reconciles: IntCounter,
    /// Compiles that produced a new snapshot (content changed).
    pub compiles_changed: IntCounter,
    /// Compile durations, seconds.
    pub compile_seconds: Histogram,
    /// Size of the last snapshot frame on the wire, bytes.
    pub snapshot_bytes: IntGauge,
    /// Version of the last snapshot.
    pub snapshot_version: IntGauge,
    /// Objects by kind and condition (`accepted`, `rejected`).
    pub objects: IntGaugeVec,
    /// Proxies with an open stream.
    pub connected_proxies: IntGauge,
    /// Proxies holding a snapshot across every live replica, as the leader counted them for
    /// `Programmed` in its last completed status pass (0 on other replicas).
    pub fleet_proxies: IntGauge,
    /// Published snapshot versions newer than the one a connected proxy applied (of the last
    /// 64; 64 means "64 or more"), per proxy.
    pub proxy_lag: IntGaugeVec,
    /// Status patches by outcome.
    pub status_patches: IntCounterVec,
    /// Status patch errors.
    pub status_patch_errors: IntCounter,
    /// Stream frames sent, by kind (`snapshot`: whole, `delta`).
    pub frames_sent: IntCounterVec,
    /// Bytes of stream frames sent, by kind.
    pub frame_bytes_sent: IntCounterVec,
    /// 1 while this replica holds the lease.
    pub leader: IntGauge,
}

impl Metrics {
    /// Creates and registers the metrics on a fresh registry.
    pub fn new() -> crate::Result<Self> {
        let registry = Registry::new_custom(Some("hookway_controller".into()), None)?;
        let m = Self {
            reconciles: IntCounter::new("reconciles_total", "Compile loop runs")?,
            compiles_changed: IntCounter::new(
                "snapshots_published_total",
                "Compiles that produced a new snapshot",
            )?,
            compile_seconds: Histogram::with_opts(
                HistogramOpts::new("compile_duration_seconds", "Compile durations").buckets(vec![
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ]),
            )?,
            snapshot_bytes: IntGauge::new("snapshot_bytes", "Size of the last snapshot frame")?,
            snapshot_version: IntGauge::new("snapshot_version", "Version of the last snapshot")?,
            objects: IntGaugeVec::new(
                Opts::new("objects", "Objects by kind and condition"),
                &["kind", "condition"],
            )?,
            connected_proxies: IntGauge::new("connected_proxies", "Proxies with an open stream")?,
            fleet_proxies: IntGauge::new(
                "fleet_proxies",
                "Proxies holding a snapshot across every replica, as the leader's last status pass counted them",
            )?,
            proxy_lag: IntGaugeVec::new(
                Opts::new(
                    "proxy_lag_versions",
                    "Published snapshot versions newer than the one the proxy applied (of the last 64: 64 means 64 or more)",
                ),
                &["proxy"],
            )?,
            status_patches: IntCounterVec::new(
                Opts::new("status_patches_total", "Status patches by kind"),
                &["kind"],
            )?,
            status_patch_errors: IntCounter::new(
                "status_patch_errors_total",
                "Status patches that failed",
            )?,
            frames_sent: IntCounterVec::new(
                Opts::new("frames_sent_total", "Stream frames sent, by kind"),
                &["kind"],
            )?,
            frame_bytes_sent: IntCounterVec::new(
                Opts::new("frame_bytes_sent_total", "Bytes of stream frames sent, by kind"),
                &["kind"],
            )?,
            leader: IntGauge::new("leader", "1 while this replica writes status")?,
            registry,
        };
        let r = &m.registry;
        r.register(Box::new(m.reconciles.clone()))?;
        r.register(Box::new(m.fleet_proxies.clone()))?;
        r.register(Box::new(m.compiles_changed.clone()))?;
        r.register(Box::new(m.compile_seconds.clone()))?;
        r.register(Box::new(m.snapshot_bytes.clone()))?;
        r.register(Box::new(m.snapshot_version.clone()))?;
        r.register(Box::new(m.objects.clone()))?;
        r.register(Box::new(m.connected_proxies.clone()))?;
        r.register(Box::new(m.proxy_lag.clone()))?;
        r.register(Box::new(m.status_patches.clone()))?;
        r.register(Box::new(m.status_patch_errors.clone()))?;
        r.register(Box::new(m.frames_sent.clone()))?;
        r.register(Box::new(m.frame_bytes_sent.clone()))?;
        r.register(Box::new(m.leader.clone()))?;
        Ok(m)
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}
