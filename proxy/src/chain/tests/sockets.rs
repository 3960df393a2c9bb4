//! The completion tracker behind a real hyper server: a client that hangs up mid-response is
//! reported as `client_aborted` to every plugin that ran.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

#[tokio::test]
async fn a_client_hanging_up_mid_body_completes_as_aborted() {
    let log = Arc::new(Log::default());
    let chain = Chain::new(vec![probe("a", &log).link(), probe("b", &log).link()]);
    let (tx, rx) = futures::channel::mpsc::unbounded();
    let upstream = Arc::new(TestUpstream::new(Answer::Channel(Mutex::new(Some(rx)))));
    let observer: Arc<dyn ChainObserver> = Arc::new(Observer::default());

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let service = service_fn(move |req: Request<hyper::body::Incoming>| {
            let (chain, upstream, observer) = (chain.clone(), upstream.clone(), observer.clone());
            async move {
                let req = req.map(|b| b.map_err(BoxError::from).boxed_unsync());
                Ok::<_, std::convert::Infallible>(
                    chain.run(req, &mut ctx(), &*upstream, &observer).await,
                )
            }
        });
        // The connection ends with an error when the client hangs up: that is the point.
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service)
            .await;
    });

    let mut client = TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"GET /stream HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    tx.unbounded_send(Bytes::from_static(b"first-chunk"))
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(Duration::from_secs(5), async {
        while !seen.windows(11).any(|w| w == b"first-chunk") {
            let n = client.read(&mut buf).await.unwrap();
            assert!(n > 0, "server closed early");
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("first chunk arrives");
    drop(client);

    // Keep the upstream talking until the server notices the client is gone (bounded).
    for _ in 0..250 {
        if log.completions().len() == 2 {
            break;
        }
        let _ = tx.unbounded_send(Bytes::from_static(b"more"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let completions = log.completions();
    assert_eq!(completions.len(), 2, "both plugins complete once");
    assert_eq!(completions[0].0, "b");
    assert!(completions
        .iter()
        .all(|(_, c, _)| c.client_aborted && c.status == 200));
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server task ends")
        .unwrap();
}
