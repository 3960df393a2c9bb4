//! Plugins that buffer or rewrite bodies, through a real proxy and a real echo upstream,
//! configured by manifests: accumulate, params_transformer.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::*;

/// Sends `POST path` with a chunked body made of `chunks` on a fresh connection (closed after
/// the answer) and returns `(status, whole answer text)`.
async fn post_chunked(addr: SocketAddr, path: &str, chunks: &[&[u8]]) -> (u16, String) {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nhost: e2e.test\r\ncontent-type: text/plain\r\n\
             transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        )
        .into_bytes();
        for chunk in chunks {
            request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            request.extend_from_slice(chunk);
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(b"0\r\n\r\n");
        // The proxy may answer (and close) before reading everything: a failed write is fine.
        let _ = stream.write_all(&request).await;
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    };
    let answer = tokio::time::timeout(WAIT, exchange).await.unwrap();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"));
    (status, answer)
}

// ---------------------------------------------------------------- accumulate

async fn accumulate_proxy(echo: &EchoServer) -> (ManifestDir, Proxy) {
    proxy_with(
        echo.addr,
        &[
            (
                "req.yaml",
                plugin_yaml(
                    "whole-req",
                    "accumulate",
                    "{request: true, max_request_body: 64}",
                ),
            ),
            (
                "resp.yaml",
                plugin_yaml(
                    "whole-resp",
                    "accumulate",
                    "{response: true, max_response_body: 1000}",
                ),
            ),
            ("r1.yaml", route_yaml("acc-req", "/req", "whole-req: {}")),
            ("r2.yaml", route_yaml("acc-resp", "/resp", "whole-resp: {}")),
        ],
    )
    .await
}

#[tokio::test]
async fn accumulate_hands_the_upstream_the_whole_request_body_and_refuses_larger_ones() {
    let echo = EchoServer::start("echo").await;
    let (_dir, proxy) = accumulate_proxy(&echo).await;
    let c = client();

    // With a length, and chunked in pieces: the upstream receives the complete body.
    let body = "a".repeat(30) + &"b".repeat(30);
    let resp = c
        .post(proxy.url("/req"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(json(resp).await["body"], body.as_str());
    let (status, answer) =
        post_chunked(proxy.http, "/req", &[b"first-", b"second-", b"third"]).await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer.contains("\"body\":\"first-second-third\""),
        "{answer}"
    );
    assert_eq!(echo.hits(), 2);

    // A declared length over the limit: 413 before reading; the upstream is not called.
    let resp = c
        .post(proxy.url("/req"))
        .body("x".repeat(100))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(
        resp.text().await.unwrap(),
        "[accumulate] request body larger than 64 bytes\n"
    );
    assert_eq!(echo.hits(), 2);

    // A chunked body crossing the limit: 413 as well.
    let piece = [b'y'; 25];
    let (status, answer) = post_chunked(proxy.http, "/req", &[&piece, &piece, &piece]).await;
    assert_eq!(status, 413, "{answer}");
    assert!(
        answer.ends_with("\r\n\r\nplugin whole-req failed\n"),
        "{answer}"
    );
}

#[tokio::test]
async fn accumulate_passes_whole_responses_and_answers_502_over_the_limit() {
    let echo = EchoServer::start("echo").await;
    let (_dir, proxy) = accumulate_proxy(&echo).await;
    let c = client();

    let resp = c.get(proxy.url("/resp/small")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let seen = json(resp).await;
    assert_eq!(seen["path"], "/resp/small");
    assert_eq!(seen["server"], "echo");

    // The echo of a 1200-byte body is over 1000 bytes (and says so in Content-Length).
    let resp = c
        .post(proxy.url("/resp/big"))
        .body("z".repeat(1200))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let text = resp.text().await.unwrap();
    assert!(
        !text.contains("zzzz"),
        "the upstream body is discarded: {text}"
    );
    assert_eq!(echo.hits(), 2);
}

/// An upstream answering every request with a chunked (length-less) 200 of `chunks` pieces of
/// 600 bytes.
async fn chunked_upstream(chunks: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                // Read the request head (no body: GET).
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let mut answer =
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n"
                        .to_vec();
                for _ in 0..chunks {
                    answer.extend_from_slice(format!("{:x}\r\n", 600).as_bytes());
                    answer.extend_from_slice(&[b'c'; 600]);
                    answer.extend_from_slice(b"\r\n");
                }
                answer.extend_from_slice(b"0\r\n\r\n");
                let _ = stream.write_all(&answer).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn accumulate_cuts_a_length_less_response_crossing_the_limit() {
    let config = "{response: true, max_response_body: 1000}";
    for (chunks, complete) in [(1, true), (3, false)] {
        let upstream = chunked_upstream(chunks).await;
        let (_dir, proxy) = proxy_with(
            upstream,
            &[
                (
                    "plugin.yaml",
                    plugin_yaml("whole-resp", "accumulate", config),
                ),
                (
                    "route.yaml",
                    route_yaml("acc-stream", "/", "whole-resp: {}"),
                ),
            ],
        )
        .await;
        let sent = client().get(proxy.url("/stream")).send().await;
        if complete {
            let resp = sent.unwrap();
            assert_eq!(resp.status(), 200);
            assert_eq!(resp.bytes().await.unwrap().len(), 600);
            continue;
        }
        // The head goes out before the body crosses the limit, unless the whole body was
        // already there when the head was written (the upstream sends it in one write): then
        // the connection ends before the head. Either way the client sees the response end
        // early, never a complete-looking body.
        match sent {
            Ok(resp) => {
                assert_eq!(resp.status(), 200);
                assert!(resp.bytes().await.is_err(), "a complete-looking body");
            }
            Err(err) => assert!(err.is_request(), "{err}"),
        }
    }
}

// ---------------------------------------------------------------- params_transformer

const TRANSFORMER: &str = "{remove: true, params: [\
    {name: X-Api-Token, position: header, proxy_name: token, proxy_position: query, required: true}, \
    {name: $.user.id, position: body, proxy_name: $.uid, proxy_position: body, required: true}, \
    {name: x-tenant, position: header, proxy_name: $.meta.tenant, proxy_position: body}]}";

#[tokio::test]
async fn params_transformer_moves_a_header_to_the_query_and_into_the_json_body() {
    let echo = EchoServer::start("echo").await;
    let (_dir, proxy) = proxy_with(
        echo.addr,
        &[
            (
                "plugin.yaml",
                plugin_yaml("token-to-query", "params_transformer", TRANSFORMER),
            ),
            (
                "route.yaml",
                route_yaml("pt-route", "/", "token-to-query: {}"),
            ),
        ],
    )
    .await;
    let c = client();

    let resp = c
        .post(proxy.url("/orders?x=1"))
        .header("x-api-token", "t1")
        .header("x-tenant", "acme")
        .header("content-type", "application/json")
        .body(r#"{"user":{"id":42,"name":"bo"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = json(resp).await;
    assert_eq!(seen["path"], "/orders?x=1&token=t1");
    assert!(
        seen["headers"].get("x-api-token").is_none(),
        "moved: {seen}"
    );
    assert!(seen["headers"].get("x-tenant").is_none(), "moved: {seen}");
    let body: serde_json::Value = serde_json::from_str(seen["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"user": {"name": "bo"}, "uid": 42, "meta": {"tenant": "acme"}}),
        "the JSON number stays a number"
    );
    let length: usize = seen["headers"]["content-length"]
        .as_str()
        .map_or(usize::MAX, |v| v.parse().unwrap());
    let sent = seen["body"].as_str().unwrap().len();
    assert!(
        seen["headers"].get("content-length").is_none() || length == sent,
        "the re-framed body is consistent: {seen}"
    );

    // GET: only the head parameters apply.
    let resp = c
        .get(proxy.url("/orders"))
        .header("x-api-token", "t2")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(json(resp).await["path"], "/orders?token=t2");
    assert_eq!(echo.hits(), 2);

    // A missing required header: 400 before the upstream.
    let resp = c.get(proxy.url("/orders")).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.text().await.unwrap(),
        "[params_transformer] param X-Api-Token required\n"
    );
    assert_eq!(echo.hits(), 2);

    // A missing required body parameter: 400 from the chain.
    let resp = c
        .post(proxy.url("/orders"))
        .header("x-api-token", "t3")
        .header("content-type", "application/json")
        .body(r#"{"user":{}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.text().await.unwrap(), "plugin token-to-query failed\n");
}
