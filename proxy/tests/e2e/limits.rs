//! Limits: header size, body size, slow clients.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

async fn limited_proxy(s: &EchoServer) -> Proxy {
    let mut config = test_config();
    config.limits.max_header_bytes = 8192;
    config.limits.max_body_bytes = 1024;
    config.limits.header_read_timeout = Duration::from_millis(500);
    Proxy::start_with(Some(simple(1, &[s.addr])), config).await
}

#[tokio::test]
async fn too_large_header_and_body_are_refused() {
    let s = EchoServer::start("s").await;
    let proxy = limited_proxy(&s).await;
    let c = client();
    let resp = c
        .get(proxy.url("/"))
        .header("x-big", "a".repeat(20_000))
        .send()
        .await;
    match resp {
        Ok(r) => assert!(matches!(r.status().as_u16(), 431 | 400), "{}", r.status()),
        Err(e) => panic!("expected a 431 answer, got {e}"),
    }
    let resp = c
        .post(proxy.url("/"))
        .body(vec![b'x'; 2048])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let resp = c
        .post(proxy.url("/"))
        .body(vec![b'x'; 512])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(s.hits(), 1, "refused requests never reach the upstream");
}

#[tokio::test]
async fn slowloris_connection_is_closed() {
    let s = EchoServer::start("s").await;
    let proxy = limited_proxy(&s).await;
    let mut conn = TcpStream::connect(proxy.http).await.unwrap();
    conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "connection must be closed by the proxy");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(s.hits(), 0);
}

#[tokio::test]
async fn a_slow_head_is_closed_at_its_own_deadline_after_other_connections_ended() {
    // Header-read timers are reused (a connection that ends gives its timer back still armed
    // at its own deadline): a later connection's slow head is closed at its deadline, not at
    // the earlier one's, and not much after.
    let s = EchoServer::start("s").await;
    let proxy = limited_proxy(&s).await;
    for round in 0..3 {
        {
            let c = client();
            let answers =
                futures::future::join_all((0..8).map(|_| c.get(proxy.url("/")).send())).await;
            for answer in answers {
                assert_eq!(answer.unwrap().status(), 200, "round {round}");
            }
        } // The client's connections close: their timers (due in 500 ms) go back.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        let mut conn = TcpStream::connect(proxy.http).await.unwrap();
        conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut buf)).await;
        assert!(
            read.is_ok(),
            "round {round}: the proxy must close the connection"
        );
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(450) && took < Duration::from_secs(2),
            "round {round}: closed after {took:?}, the header read timeout is 500 ms"
        );
    }
    assert_eq!(s.hits(), 24);
}

#[tokio::test]
async fn max_connections_holds_extra_connections_back() {
    let s = EchoServer::start("s").await;
    let mut config = test_config();
    config.limits.max_connections = 1;
    let proxy = Proxy::start_with(Some(simple(1, &[s.addr])), config).await;
    let idle = TcpStream::connect(proxy.http).await.unwrap();
    wait_until("the idle connection takes the only slot", || async {
        metrics(&proxy)
            .await
            .contains("\nhookway_active_connections 1\n")
    })
    .await;
    let url = proxy.url("/");
    let mut second =
        tokio::spawn(async move { client().get(url).send().await.map(|r| r.status().as_u16()) });
    // Absence can only be watched for a while: 300 ms without an answer.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut second)
            .await
            .is_err(),
        "a second connection waits while the only slot is taken"
    );
    assert_eq!(s.hits(), 0);
    drop(idle);
    let status = tokio::time::timeout(WAIT, second).await.unwrap().unwrap();
    assert_eq!(status.unwrap(), 200, "served once the slot is free");
}

#[tokio::test]
async fn too_large_chunked_body_is_413() {
    let s = EchoServer::start("s").await;
    let proxy = limited_proxy(&s).await;
    let mut conn = TcpStream::connect(proxy.http).await.unwrap();
    let mut req =
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n".to_vec();
    req.extend(std::iter::repeat_n(b'x', 0x800));
    req.extend(b"\r\n0\r\n\r\n");
    conn.write_all(&req).await.unwrap();
    let mut head = [0u8; 12];
    tokio::time::timeout(WAIT, conn.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 413");
}
