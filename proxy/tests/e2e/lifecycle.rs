//! Hot swaps under load, graceful shutdown, WebSocket passthrough.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_swap_under_load_without_failures() {
    let a = EchoServer::start("a").await;
    let b = EchoServer::start("b").await;
    let proxy = Arc::new(Proxy::start(Some(simple(1, &[a.addr]))).await);
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let mut loaders = Vec::new();
    for _ in 0..4 {
        let (proxy, stop, ok) = (proxy.clone(), stop.clone(), ok.clone());
        loaders.push(tokio::spawn(async move {
            let c = client();
            let mut seen = std::collections::HashSet::new();
            while !stop.load(Ordering::Relaxed) {
                let (status, server) = get_server(&c, &proxy.url("/"), None).await;
                assert_eq!(status, 200, "request failed during a swap: {server}");
                seen.insert(server);
                ok.fetch_add(1, Ordering::Relaxed);
            }
            seen
        }));
    }
    for v in 2..=61u64 {
        let addr = if v % 2 == 0 { b.addr } else { a.addr };
        let served = ok.load(Ordering::Relaxed);
        proxy.apply(simple(v, &[addr])).await;
        wait_until("a request is served after the swap", || {
            std::future::ready(ok.load(Ordering::Relaxed) > served)
        })
        .await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut seen = std::collections::HashSet::new();
    for l in loaders {
        seen.extend(tokio::time::timeout(WAIT, l).await.unwrap().unwrap());
    }
    assert!(ok.load(Ordering::Relaxed) > 60);
    assert_eq!(seen.len(), 2, "both upstreams served: {seen:?}");
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let mut upstream = HeldServer::start().await;
    let mut proxy = Proxy::start(Some(simple(1, &[upstream.addr]))).await;
    let (url, http) = (proxy.url("/"), proxy.http);
    let in_flight = tokio::spawn(async move {
        let resp = client().get(&url).send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    });
    upstream.arrived().await;
    let shutdown = tokio::spawn(async move { proxy.shutdown().await });
    wait_until("the proxy stops accepting", || refuses_connections(http)).await;
    assert!(
        !shutdown.is_finished(),
        "shutdown waits for the in-flight request"
    );
    upstream.release();
    assert_eq!(in_flight.await.unwrap(), (200, "held ok".to_owned()));
    tokio::time::timeout(WAIT, shutdown).await.unwrap().unwrap();
}

#[tokio::test]
async fn websocket_upgrade_is_passed_through() {
    let s = EchoServer::start("ws").await;
    let proxy = Proxy::start(Some(simple(1, &[s.addr]))).await;
    let mut conn = TcpStream::connect(proxy.http).await.unwrap();
    conn.write_all(
        b"GET /chat HTTP/1.1\r\nHost: ws.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tokio::time::timeout(WAIT, conn.read_exact(&mut byte))
            .await
            .unwrap()
            .unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    conn.write_all(b"hello through the tunnel").await.unwrap();
    let mut echoed = vec![0u8; 24];
    tokio::time::timeout(WAIT, conn.read_exact(&mut echoed))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echoed, b"hello through the tunnel");
}
