//! The `hookway-proxy` binary: serves a snapshot file, and exits 0 on SIGTERM after finishing
//! the in-flight request.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hookway_crds::snapshot::{
    Balance, Endpoint, ObjectKey, PathMatchType, RouteEntry, RuleEntry, Scheme, Snapshot,
    UpstreamEntry,
};

use crate::support::{client, refuses_connections, wait_until, HeldServer};

fn snapshot(port: u16) -> Snapshot {
    Snapshot {
        version: 3,
        hash: String::new(),
        routes: vec![std::sync::Arc::new(RouteEntry {
            key: ObjectKey::new("t", "r"),
            hosts: vec![],
            rules: vec![RuleEntry {
                path_type: PathMatchType::Prefix,
                path: "/".into(),
                methods: vec![],
                headers: vec![],
                query: vec![],
                tls: None,
                isolation: None,
            }],
            priority: 0,
            created: 0,
            upstream: ObjectKey::new("t", "up"),
            chain: vec![],
        })],
        upstreams: vec![std::sync::Arc::new(UpstreamEntry {
            key: ObjectKey::new("t", "up"),
            scheme: Scheme::Http,
            protocol: Default::default(),
            balance: Balance::RoundRobin,
            hash_header: None,
            endpoints: vec![Endpoint {
                address: "127.0.0.1".into(),
                port,
                weight: 1,
            }],
            connect_timeout_ms: 1000,
            request_timeout_ms: 5000,
            retries: 0,
            retry_on_status: vec![],
            tls_server_name: None,
            tls_insecure_skip_verify: false,
        })],
        certificates: vec![],
        secrets: vec![],
        default_chain: vec![],
        blobs: vec![],
    }
}

#[tokio::test]
async fn serves_a_snapshot_file_and_exits_zero_on_sigterm() {
    let mut upstream = HeldServer::start().await;
    let dir = std::env::temp_dir().join(format!("hookway-binary-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("snapshot.json");
    std::fs::write(
        &file,
        serde_json::to_vec(&snapshot(upstream.addr.port())).unwrap(),
    )
    .unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_hookway-proxy"))
        .args(["--snapshot", file.to_str().unwrap()])
        .args([
            "--http-addr",
            "127.0.0.1:0",
            "--no-https",
            "--admin-addr",
            "127.0.0.1:0",
        ])
        .args([
            "--log-format",
            "json",
            "--log-level",
            "info",
            "--grace",
            "5",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The "listening" log line names the bound address.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(10);
    let http = loop {
        assert!(Instant::now() < deadline, "no listening line");
        let line = lines.next().expect("log line").unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if v["fields"]["message"] == "hookway-proxy listening" {
            let addr = v["fields"]["http"].as_str().unwrap().to_owned();
            break addr
                .trim_start_matches("Some(")
                .trim_end_matches(')')
                .to_owned();
        }
    };
    let http: std::net::SocketAddr = http.parse().unwrap();
    let in_flight = tokio::spawn(async move {
        client()
            .get(format!("http://{http}/"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    upstream.arrived().await;
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // Draining has begun once the listener is closed; the request is still held upstream.
    wait_until("the proxy stops accepting", || refuses_connections(http)).await;
    assert!(
        !in_flight.is_finished(),
        "the in-flight request was cut off"
    );
    upstream.release();
    assert_eq!(in_flight.await.unwrap(), "held ok");
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
