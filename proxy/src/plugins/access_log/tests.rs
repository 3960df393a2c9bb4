use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::writer::FLUSH_EVERY;
use super::*;
use crate::plugin::Consumer;
use crate::plugins::harness::{build, ctx, on_request, request, validate};
use hookway_crds::snapshot::ObjectKey;
use serde_json::json;

fn temp_path(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "hookway-access-log-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Waits (bounded) until `path` holds `n` lines.
fn wait_lines(path: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The lines of `path` once one of them is `line` (or after 5 s).
fn wait_for_line(path: &Path, line: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.iter().any(|l| l == line) || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn completion(status: u16) -> Completion {
    Completion {
        status,
        bytes_sent: 1234,
        bytes_received: 56,
        duration: Duration::from_millis(12),
        upstream_duration: Some(Duration::from_millis(10)),
        error: None,
        client_aborted: false,
    }
}

async fn logged(config: serde_json::Value, completion: Completion) {
    let plugin = build("access_log", config).unwrap();
    let mut ctx = ctx();
    let mut req = request("POST", "/orders?id=7", &[("host", "shop.example")]);
    on_request(plugin.as_ref(), &mut req, &mut ctx)
        .await
        .unwrap();
    // What later hooks and the proxy fill in.
    req.uri = "/rewritten".parse().unwrap();
    ctx.route = Some(std::sync::Arc::new(ObjectKey::new("shop", "orders")));
    ctx.upstream = Some(std::sync::Arc::new(ObjectKey::new("shop", "orders-svc")));
    ctx.upstream_addr = Some(http::uri::Authority::from_static("10.0.0.5:8080"));
    ctx.request_id = Some("req-1".into());
    ctx.consumer = Some(std::sync::Arc::new(Consumer {
        id: "alice".into(),
        ..Default::default()
    }));
    ctx.plugins_ran = crate::plugin::PluginsRan::all(["log", "auth"]);
    plugin.on_complete(&ctx, &completion);
    drop(plugin); // the writer flushes and ends
}

#[tokio::test]
async fn json_line_has_every_field() {
    let path = temp_path("access.log");
    logged(json!({"output": "file", "path": path}), completion(201)).await;
    let lines = wait_lines(&path, 1);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(v["method"], "POST");
    assert_eq!(v["host"], "shop.example");
    assert_eq!(v["path"], "/orders?id=7", "the path as the client sent it");
    assert_eq!(v["status"], 201);
    assert_eq!(v["route"], "shop/orders");
    assert_eq!(v["service"], "shop/orders-svc");
    assert_eq!(v["upstream_addr"], "10.0.0.5:8080");
    assert_eq!(v["bytes_in"], 56);
    assert_eq!(v["bytes_out"], 1234);
    assert_eq!(v["duration_ms"], 12.0);
    assert_eq!(v["upstream_duration_ms"], 10.0);
    assert_eq!(v["consumer"], "alice");
    assert_eq!(v["request_id"], "req-1");
    assert_eq!(v["plugins"], json!(["log", "auth"]));
    assert_eq!(v["client"], "127.0.0.1:40000");
    assert_eq!(v["client_aborted"], false);
    assert!(v["time"].as_str().unwrap().ends_with('Z'), "{}", v["time"]);
}

#[tokio::test]
async fn consecutive_json_lines_are_whole_and_their_own() {
    // JSON lines are written through a buffer kept per thread: each line must be its own.
    let path = temp_path("access.log");
    let plugin = build("access_log", json!({"output": "file", "path": path})).unwrap();
    let long = format!("/{}", "x".repeat(20_000));
    let paths = ["/first?a=1", long.as_str(), "/third"];
    for target in paths {
        let mut ctx = ctx();
        let mut req = request("GET", target, &[("host", "shop.example")]);
        on_request(plugin.as_ref(), &mut req, &mut ctx)
            .await
            .unwrap();
        plugin.on_complete(&ctx, &completion(200));
    }
    drop(plugin);
    let lines = wait_lines(&path, paths.len());
    assert_eq!(lines.len(), paths.len());
    for (line, target) in lines.iter().zip(paths) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["path"], target);
        assert_eq!(v["host"], "shop.example");
    }
}

#[tokio::test]
async fn template_line_and_errors_and_aborts() {
    let path = temp_path("t.log");
    let mut c = completion(502);
    c.error = Some("upstream connect error:\nrefused".into());
    c.client_aborted = true;
    c.upstream_duration = None;
    logged(
        json!({"format": "template", "output": "file", "path": path,
               "template": "$method $path $status $route $upstream_duration_ms [$error] $client_aborted $plugins"}),
        c,
    )
    .await;
    let lines = wait_lines(&path, 1);
    assert_eq!(
        lines,
        ["POST /orders?id=7 502 shop/orders - [upstream connect error: refused] true log,auth"]
    );
}

#[tokio::test]
async fn a_request_answered_before_the_log_hook_still_logs() {
    let path = temp_path("early.log");
    let plugin = build("access_log", json!({"format": "template", "template": "$method $path $status", "output": "file", "path": path})).unwrap();
    let ctx = ctx();
    plugin.on_complete(&ctx, &completion(403));
    drop(plugin);
    assert_eq!(wait_lines(&path, 1), ["- - 403"]);
}

#[tokio::test]
async fn moved_file_is_reopened() {
    let path = temp_path("rotate.log");
    let rotated = path.with_extension("log.1");
    let plugin = build(
        "access_log",
        json!({"format": "template", "template": "$status", "output": "file", "path": path}),
    )
    .unwrap();
    let ctx = ctx();
    plugin.on_complete(&ctx, &completion(200));
    assert_eq!(wait_lines(&path, 1), ["200"]);
    std::fs::rename(&path, &rotated).unwrap();
    // The writer notices within a second or so and creates a new file.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !path.exists() && Instant::now() < deadline {
        plugin.on_complete(&ctx, &completion(201));
        std::thread::sleep(Duration::from_millis(100));
    }
    plugin.on_complete(&ctx, &completion(202));
    drop(plugin);
    // The new file may already hold `201` lines: wait for the last one written.
    let new = wait_for_line(&path, "202");
    assert!(new.contains(&"202".to_string()), "{new:?}");
    let old = wait_lines(&rotated, 1);
    assert_eq!(old[0], "200");
    assert!(!old.contains(&"202".to_string()));
}

#[test]
fn a_full_queue_drops_and_counts_without_blocking() {
    let writer = LogWriter::stalled(1, Duration::from_millis(500));
    let before = dropped_lines_total();
    let start = Instant::now();
    let sent = (0..10)
        .filter(|i| writer.send(&format!("line {i}")))
        .count();
    assert!(start.elapsed() < Duration::from_millis(200), "send blocked");
    assert!(sent <= 2, "sent {sent}");
    assert_eq!(writer.dropped(), 10 - sent as u64);
    assert!(dropped_lines_total() >= before + writer.dropped());
}

#[test]
fn config_errors_are_reported() {
    for (config, needle) in [
        (json!({"format": "template"}), "template: required"),
        (json!({"template": "$status"}), "only with format: template"),
        (
            json!({"format": "template", "template": "$bogus"}),
            "$bogus",
        ),
        (json!({"output": "file"}), "path: required"),
        (
            json!({"path": "/tmp/x.log"}),
            "path: only with output: file",
        ),
        (json!({"buffer": 0}), "buffer"),
        (json!({"format": "xml"}), "format"),
        (json!({"fields": []}), "unknown field"),
    ] {
        let err = validate("access_log", config.clone()).unwrap_err();
        assert!(err.contains(needle), "{config}: {err}");
    }
    validate("access_log", json!({})).unwrap();
}

#[tokio::test]
async fn unwritable_file_fails_the_build() {
    let err = build(
        "access_log",
        json!({"output": "file", "path": "/nonexistent-dir/x/y.log"}),
    )
    .err()
    .unwrap();
    assert!(err.contains("cannot open"), "{err}");
}

#[test]
fn batched_lines_all_arrive_in_order_and_a_lone_line_within_the_flush_interval() {
    let path = temp_path("batch.log");
    let writer = LogWriter::start(Sink::File(path.clone()), 100_000).unwrap();
    // A lone line is not large enough to wake the writer: the flush interval writes it.
    let start = Instant::now();
    assert!(writer.send("first"));
    assert_eq!(wait_lines(&path, 1), vec!["first".to_string()]);
    assert!(
        start.elapsed() < FLUSH_EVERY * 10,
        "took {:?}",
        start.elapsed()
    );
    // Many lines (several wake-ups' worth) keep their order; dropping the writer writes the rest.
    for i in 0..20_000 {
        assert!(writer.send(&format!("line {i:05}")));
    }
    drop(writer);
    let lines = wait_lines(&path, 20_001);
    assert_eq!(lines.len(), 20_001);
    let expected: Vec<String> = std::iter::once("first".to_string())
        .chain((0..20_000).map(|i| format!("line {i:05}")))
        .collect();
    assert_eq!(lines, expected);
}
