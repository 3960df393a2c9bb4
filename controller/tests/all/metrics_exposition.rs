//! The controller's `/metrics` exposition: every metric appears with the documented name and
//! type once it has a value. With `HOOKWAY_METRICS_OUT=FILE` the text is also written to FILE,
//! which `scripts/check-metrics.sh` runs through `promtool check metrics`.

use hookway_controller::metrics::Metrics;

/// Gives every metric (and every labelled family) a value, as a running controller would.
fn populated() -> Metrics {
    let m = Metrics::new().unwrap();
    m.reconciles.inc();
    m.compiles_changed.inc();
    m.compile_seconds.observe(0.004);
    m.snapshot_bytes.set(2048);
    m.snapshot_version.set(1_763_790_000_000);
    m.objects.with_label_values(&["Route", "accepted"]).set(3);
    m.objects.with_label_values(&["Route", "rejected"]).set(1);
    m.connected_proxies.set(2);
    m.proxy_lag.with_label_values(&["hookway-proxy-0"]).set(0);
    m.proxy_lag.with_label_values(&["hookway-proxy-1"]).set(1);
    m.status_patches.with_label_values(&["Route"]).inc();
    m.frames_sent.with_label_values(&["delta"]).inc();
    m.frame_bytes_sent.with_label_values(&["delta"]).inc_by(300);
    m.status_patch_errors.inc();
    m.leader.set(1);
    m
}

#[test]
fn every_metric_is_exposed_with_its_type() {
    let text = populated().render();
    if let Ok(path) = std::env::var("HOOKWAY_METRICS_OUT") {
        std::fs::write(&path, &text).unwrap();
    }
    for (name, kind) in [
        ("hookway_controller_reconciles_total", "counter"),
        ("hookway_controller_snapshots_published_total", "counter"),
        ("hookway_controller_compile_duration_seconds", "histogram"),
        ("hookway_controller_snapshot_bytes", "gauge"),
        ("hookway_controller_snapshot_version", "gauge"),
        ("hookway_controller_objects", "gauge"),
        ("hookway_controller_connected_proxies", "gauge"),
        ("hookway_controller_proxy_lag_versions", "gauge"),
        ("hookway_controller_status_patches_total", "counter"),
        ("hookway_controller_frames_sent_total", "counter"),
        ("hookway_controller_frame_bytes_sent_total", "counter"),
        ("hookway_controller_status_patch_errors_total", "counter"),
        ("hookway_controller_leader", "gauge"),
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} {kind}\n")),
            "{name} {kind} missing:\n{text}"
        );
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "{name} has no help:\n{text}"
        );
    }
    assert!(
        text.contains(r#"hookway_controller_proxy_lag_versions{proxy="hookway-proxy-1"} 1"#),
        "{text}"
    );
}
