//! Upstream behaviour: balancing, retries, timeouts, errors, forwarded and hop-by-hop headers.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hookway_crds::snapshot::{Balance, UpstreamEntry};

use crate::support::*;

async fn distribution(
    proxy: &Proxy,
    n: usize,
    header: Option<(&str, &str)>,
) -> HashMap<String, usize> {
    let c = client();
    let mut counts = HashMap::new();
    for _ in 0..n {
        let mut req = c.get(proxy.url("/"));
        if let Some((k, v)) = header {
            req = req.header(k, v);
        }
        let v = json(req.send().await.unwrap()).await;
        *counts
            .entry(v["server"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    counts
}

/// A proxy with one Route `r` (every host, every path) to `up`, which must be named `svc`.
async fn proxy_to(up: UpstreamEntry) -> Proxy {
    Proxy::start(Some(snapshot(
        1,
        vec![route("r", &[], vec![], "svc")],
        vec![up],
        vec![],
    )))
    .await
}

async fn three() -> Vec<EchoServer> {
    vec![
        EchoServer::start("n0").await,
        EchoServer::start("n1").await,
        EchoServer::start("n2").await,
    ]
}

#[tokio::test]
async fn round_robin_and_weighted_distribution() {
    let s = three().await;
    let addrs: Vec<_> = s.iter().map(|s| s.addr).collect();
    let proxy = Proxy::start(Some(simple(1, &addrs))).await;
    let counts = distribution(&proxy, 30, None).await;
    assert_eq!(
        counts.values().copied().collect::<Vec<_>>(),
        vec![10, 10, 10],
        "{counts:?}"
    );

    let mut up = upstream("svc", &addrs);
    up.balance = Balance::Weighted;
    up.endpoints[0].weight = 4;
    let snap = snapshot(2, vec![route("r", &[], vec![], "svc")], vec![up], vec![]);
    proxy.apply(snap).await;
    let counts = distribution(&proxy, 60, None).await;
    assert_eq!(
        (counts["n0"], counts["n1"], counts["n2"]),
        (40, 10, 10),
        "{counts:?}"
    );
}

#[tokio::test]
async fn ip_hash_and_header_hash_are_sticky() {
    let s = three().await;
    let addrs: Vec<_> = s.iter().map(|s| s.addr).collect();
    let mut up = upstream("svc", &addrs);
    up.balance = Balance::IpHash;
    let proxy = proxy_to(up.clone()).await;
    assert_eq!(
        distribution(&proxy, 12, None).await.len(),
        1,
        "one client IP, one node"
    );

    up.balance = Balance::HeaderHash;
    up.hash_header = Some("x-user".into());
    proxy
        .apply(snapshot(
            2,
            vec![route("r", &[], vec![], "svc")],
            vec![up],
            vec![],
        ))
        .await;
    assert_eq!(
        distribution(&proxy, 12, Some(("x-user", "alice")))
            .await
            .len(),
        1
    );
    let mut seen = std::collections::HashSet::new();
    for i in 0..30 {
        let user = format!("user-{i}");
        let d = distribution(&proxy, 1, Some(("x-user", &user))).await;
        seen.extend(d.into_keys());
    }
    assert!(seen.len() > 1, "different users spread over nodes");
}

#[tokio::test]
async fn retries_go_to_the_next_node_for_idempotent_requests_only() {
    let live = EchoServer::start("live").await;
    let dead = dead_addr().await;
    let mut up = upstream("svc", &[dead, live.addr]);
    up.retries = 1;
    let proxy = proxy_to(up).await;
    let c = client();
    for _ in 0..6 {
        let resp = c.get(proxy.url("/")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let resp = c.post(proxy.url("/")).body("x").send().await.unwrap();
        statuses.push(resp.status().as_u16());
    }
    statuses.sort();
    assert_eq!(statuses, vec![200, 200, 502, 502], "POST is not retried");
}

#[tokio::test]
async fn retry_on_status_503() {
    let bad = EchoServer::with_status("bad", 503).await;
    let good = EchoServer::start("good").await;
    let mut up = upstream("svc", &[bad.addr, good.addr]);
    up.retries = 1;
    up.retry_on_status = vec![503];
    let proxy = proxy_to(up).await;
    let c = client();
    for _ in 0..6 {
        assert_eq!(
            get_server(&c, &proxy.url("/"), None).await,
            (200, "good".into())
        );
    }
    assert_eq!(bad.hits(), 3);
}

/// A raw HTTP/1.1 upstream that records every request head byte for byte and answers each
/// with `status` (keep-alive, empty body).
async fn head_recorder(
    status: u16,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>> = Default::default();
    let log = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = sock.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        log.lock().unwrap().push(buf.drain(..end + 4).collect());
                        let answer = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
                        if sock.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, heads)
}

#[tokio::test]
async fn a_retry_sends_the_very_same_head_again() {
    let (bad, bad_heads) = head_recorder(503).await;
    let (good, good_heads) = head_recorder(200).await;
    let mut up = upstream("svc", &[bad, good]);
    up.retries = 1;
    up.retry_on_status = vec![503];
    let proxy = proxy_to(up).await;
    let c = client();
    for i in 0..4 {
        let resp = c
            .get(proxy.url(&format!("/p?i={i}")))
            .header("x-n", i.to_string())
            .header("x-request-id", format!("req-{i}"))
            .header("te", "trailers")
            .header("connection", "te, x-drop")
            .header("x-drop", "1")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "request {i}");
    }
    let bad_heads = bad_heads.lock().unwrap().clone();
    let good_heads = good_heads.lock().unwrap().clone();
    // Round robin: every other request starts on the 503 node and is retried on the other.
    assert_eq!(bad_heads.len(), 2, "{bad_heads:?}");
    assert_eq!(good_heads.len(), 4);
    for head in &bad_heads {
        let text = String::from_utf8_lossy(head);
        assert!(text.starts_with("GET /p?i="), "{text}");
        assert!(!text.contains("te:") && !text.contains("x-drop"), "{text}");
        assert!(
            good_heads.contains(head),
            "the retry sent the same bytes: {text}"
        );
    }
}

#[tokio::test]
async fn a_client_that_leaves_mid_request_ends_the_upstream_call() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // An upstream that takes the request head and never answers; it reports when it has the
    // head and when the proxy closes the connection.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (got_head, head_seen) = tokio::sync::oneshot::channel();
    let (closed, upstream_closed) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let mut got_head = Some(got_head);
        loop {
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                if let Some(tx) = got_head.take() {
                    let _ = tx.send(());
                }
            }
        }
        let _ = closed.send(());
    });
    let mut up = upstream("svc", &[addr]);
    // Far beyond the wait below: only the client leaving can end the call in time.
    up.request_timeout_ms = 60_000;
    let proxy = proxy_to(up).await;
    let mut client = tokio::net::TcpStream::connect(proxy.http).await.unwrap();
    client
        .write_all(b"GET /wait HTTP/1.1\r\nhost: a.test\r\n\r\n")
        .await
        .unwrap();
    tokio::time::timeout(WAIT, head_seen)
        .await
        .expect("the request reached the upstream")
        .unwrap();
    drop(client);
    tokio::time::timeout(WAIT, upstream_closed)
        .await
        .expect("the proxy closed the upstream connection when the client left")
        .unwrap();
}

#[tokio::test]
async fn each_request_on_a_keep_alive_connection_gets_its_own_upstream_timeout() {
    let s = EchoServer::start("s").await;
    let mut up = upstream("svc", &[s.addr]);
    up.request_timeout_ms = 300;
    let proxy = proxy_to(up).await;
    // One client connection (the client keeps it alive): a slow request after fast ones still
    // times out on time, and the connection serves the next one.
    let c = client();
    for (i, delay_ms, status) in [
        (0, 0, 200),
        (1, 5000, 504),
        (2, 100, 200),
        (3, 5000, 504),
        (4, 0, 200),
    ] {
        let started = Instant::now();
        let resp = c
            .get(proxy.url("/"))
            .header("x-delay-ms", delay_ms.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "request {i}");
        let took = started.elapsed();
        assert!(took < Duration::from_secs(2), "request {i} took {took:?}");
        if status == 504 {
            assert!(
                took >= Duration::from_millis(300),
                "request {i} took {took:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_short_upstream_timeout_after_long_ones_still_fires_on_time() {
    // Upstream timeouts reuse their timers (a timer goes back, still armed, when its request is
    // answered): one left armed at a long deadline must not delay a shorter one after it, and
    // one left at an earlier request's deadline must not end a later request early.
    let s = EchoServer::start("s").await;
    let mut long = upstream("long", &[s.addr]);
    long.request_timeout_ms = 60_000;
    let mut short = upstream("short", &[s.addr]);
    short.request_timeout_ms = 300;
    let proxy = Proxy::start(Some(snapshot(
        1,
        vec![
            route("l", &["long.test"], vec![], "long"),
            route("s", &["short.test"], vec![], "short"),
        ],
        vec![long, short],
        vec![],
    )))
    .await;
    let c = client();
    let get = |host: &'static str, delay_ms: u64| {
        c.get(proxy.url("/"))
            .header("host", host)
            .header("x-delay-ms", delay_ms.to_string())
            .send()
    };
    for round in 0..3 {
        for _ in 0..20 {
            assert_eq!(get("long.test", 0).await.unwrap().status(), 200);
        }
        let started = Instant::now();
        let resp = get("short.test", 5000).await.unwrap();
        let took = started.elapsed();
        assert_eq!(resp.status(), 504, "round {round}");
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(2),
            "round {round}: {took:?}"
        );
        // Short deadlines left armed, then requests that take longer than 300 ms in all.
        for _ in 0..5 {
            assert_eq!(get("short.test", 0).await.unwrap().status(), 200);
        }
        let started = Instant::now();
        let resp = get("long.test", 700).await.unwrap();
        assert_eq!(resp.status(), 200, "round {round}");
        assert!(started.elapsed() >= Duration::from_millis(700));
    }
}

#[tokio::test]
async fn slow_upstream_is_504_and_dead_node_is_502_and_no_nodes_503() {
    let slow = EchoServer::start("slow").await;
    let mut up = upstream("svc", &[slow.addr]);
    up.request_timeout_ms = 300;
    let dead = upstream("dead", &[dead_addr().await]);
    let empty = upstream("empty", &[]);
    let routes = vec![
        route("r", &[], vec![], "svc"),
        route("d", &["dead.test"], vec![], "dead"),
        route("e", &["empty.test"], vec![], "empty"),
    ];
    let proxy = Proxy::start(Some(snapshot(1, routes, vec![up, dead, empty], vec![]))).await;
    let c = client();
    let started = Instant::now();
    let resp = c
        .get(proxy.url("/"))
        .header("x-delay-ms", "5000")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 504);
    assert_eq!(resp.text().await.unwrap(), "upstream timed out\n");
    assert!(started.elapsed() < Duration::from_secs(2));

    let (status, body) = get_server(&c, &proxy.url("/"), Some("dead.test")).await;
    assert_eq!(status, 502);
    assert!(body.starts_with("upstream connect error: "), "{body}");
    let (status, body) = get_server(&c, &proxy.url("/"), Some("empty.test")).await;
    assert_eq!((status, body.as_str()), (503, "no healthy endpoints\n"));
}

#[tokio::test]
async fn forwarded_and_hop_by_hop_headers() {
    let s = EchoServer::start("s").await;
    let proxy = Proxy::start(Some(simple(1, &[s.addr]))).await;
    let resp = client()
        .get(proxy.url("/p?q=1"))
        .header("host", "front.test")
        .header("x-forwarded-for", "10.1.2.3")
        .header("x-request-id", "req-42")
        .header("connection", "x-drop-me")
        .header("x-drop-me", "1")
        .header("te", "trailers")
        .header("proxy-authorization", "secret")
        .send()
        .await
        .unwrap();
    assert!(
        resp.headers().get("keep-alive").is_none(),
        "response hop-by-hop removed"
    );
    let v = json(resp).await;
    let h = &v["headers"];
    assert_eq!(v["path"], "/p?q=1");
    assert_eq!(h["host"], "front.test");
    // The client is not a trusted proxy: what it sent is replaced by the peer.
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "front.test");
    assert_eq!(h["x-request-id"], "req-42");
    for gone in ["x-drop-me", "te", "proxy-authorization"] {
        assert!(
            h.get(gone).is_none(),
            "{gone} must not reach the upstream: {h}"
        );
    }
}

#[tokio::test]
async fn the_chain_upstream_honours_ctx_overrides() {
    use hookway_proxy::chain::Upstream as _;
    use hookway_proxy::plugin::{respond, Ctx};
    use hookway_proxy::upstream::client::ClientCache;
    use hookway_proxy::upstream::{ProxyUpstream, UpstreamPool, UpstreamSlot, Upstreams};

    let a = EchoServer::start("a").await;
    let b = EchoServer::start("b").await;
    let metrics = hookway_proxy::metrics::Metrics::new().unwrap();
    let clients = ClientCache::default();
    let mut upstreams = Upstreams::new();
    for (name, addr) in [("a", a.addr), ("b", b.addr)] {
        let pool = UpstreamPool::new(&upstream(name, &[addr]), &clients, &metrics).unwrap();
        upstreams.insert(
            key(name),
            std::sync::Arc::new(UpstreamSlot::from_pointee(pool)),
        );
    }
    let up = ProxyUpstream {
        upstreams: &upstreams,
    };
    let peer = "127.0.0.1:5555".parse().unwrap();
    let req = || {
        http::Request::builder()
            .uri("/orig?x=1")
            .header("host", "h.test")
            .body(respond::empty())
            .unwrap()
    };
    let body = |resp: http::Response<hookway_proxy::plugin::ProxyBody>| async move {
        use http_body_util::BodyExt;
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()
    };

    // Retarget to another upstream of the snapshot.
    let mut ctx = Ctx::new(peer, peer, false);
    ctx.upstream = Some(std::sync::Arc::new(key("b")));
    let v = body(up.call(req(), &mut ctx).await.unwrap()).await;
    assert_eq!(v["server"], "b");
    assert_eq!(
        ctx.upstream_addr.as_ref().map(http::uri::Authority::as_str),
        Some(b.addr.to_string().as_str())
    );

    // A fixed host, port and path.
    let mut ctx = Ctx::new(peer, peer, false);
    ctx.upstream = Some(std::sync::Arc::new(key("b")));
    ctx.target.host = Some("127.0.0.1".into());
    ctx.target.port = Some(a.addr.port());
    ctx.target.path = Some("/new".into());
    let v = body(up.call(req(), &mut ctx).await.unwrap()).await;
    assert_eq!(
        (v["server"].as_str(), v["path"].as_str()),
        (Some("a"), Some("/new?x=1"))
    );

    // A short timeout.
    let mut ctx = Ctx::new(peer, peer, false);
    ctx.upstream = Some(std::sync::Arc::new(key("a")));
    ctx.target.timeout = Some(Duration::from_millis(100));
    let mut slow = req();
    slow.headers_mut()
        .insert("x-delay-ms", "2000".parse().unwrap());
    let err = up.call(slow, &mut ctx).await.unwrap_err();
    assert_eq!(err.status, 504);

    // An upstream the snapshot does not have.
    let mut ctx = Ctx::new(peer, peer, false);
    ctx.upstream = Some(std::sync::Arc::new(key("nope")));
    assert_eq!(up.call(req(), &mut ctx).await.unwrap_err().status, 503);
}

#[tokio::test]
async fn https_upstreams_verify_unless_told_not_to() {
    use hookway_crds::snapshot::Scheme;
    let ca = Ca::new();
    let (cert, key_pem) = ca.leaf(&["backend.test"]);
    let s = EchoServer::start_tls("tls-backend", &cert, &key_pem).await;
    let mut verified = upstream("verified", &[s.addr]);
    verified.scheme = Scheme::Https;
    verified.tls_server_name = Some("backend.test".into());
    let mut insecure = verified.clone();
    insecure.key = key("insecure");
    insecure.tls_insecure_skip_verify = true;
    let routes = vec![
        route("v", &["v.test"], vec![], "verified"),
        route("i", &["i.test"], vec![], "insecure"),
    ];
    let proxy = Proxy::start(Some(snapshot(1, routes, vec![verified, insecure], vec![]))).await;
    let c = client();
    assert_eq!(
        get_server(&c, &proxy.url("/"), Some("i.test")).await,
        (200, "tls-backend".into())
    );
    let (status, body) = get_server(&c, &proxy.url("/"), Some("v.test")).await;
    assert_eq!(status, 502, "the test CA is not trusted: {body}");
}
