//! The whole-request-body hook: answering from the body, rewriting it, the 413 limit, no
//! buffering when nobody asks, failure isolation.

use std::sync::Arc;

use futures::channel::mpsc;
use futures::StreamExt;
use http::header::CONTENT_LENGTH;

use super::*;

/// What a [`Whole`] plugin does with the body.
#[derive(Clone, Copy)]
enum Act {
    /// Answers 200 `got <body>`.
    Answer,
    /// Appends this to the body.
    Append(&'static str),
    /// Panics in `on_request_body`.
    Panic,
    /// Panics in `request_body_limit`.
    PanicLimit,
}

/// A plugin asking for the whole body (when `limit` is set).
struct Whole {
    name: &'static str,
    log: Arc<Log>,
    limit: Option<usize>,
    act: Act,
}

fn whole(name: &'static str, log: &Arc<Log>, limit: Option<usize>, act: Act) -> Link {
    let plugin = Arc::new(Whole {
        name,
        log: log.clone(),
        limit,
        act,
    });
    Link::new(name, "whole", plugin)
}

impl Plugin for Whole {
    fn request_body_limit(&self, _req: &request::Parts, _ctx: &Ctx) -> Option<usize> {
        if let Act::PanicLimit = self.act {
            panic!("limit panicked");
        }
        self.limit
    }

    fn on_request_body<'a>(
        &'a self,
        _req: &'a mut request::Parts,
        body: &'a mut Bytes,
        _ctx: &'a mut Ctx,
    ) -> Hook<'a, Result<Flow, PluginError>> {
        self.log
            .push(format!("{}: onbody {}", self.name, body.len()));
        match self.act {
            Act::Answer => {
                let text = format!("got {}", String::from_utf8_lossy(body));
                Hook::Ready(Ok(Flow::Respond(respond::text(StatusCode::OK, &text))))
            }
            Act::Append(suffix) => Hook::from_async(async move {
                tokio::task::yield_now().await;
                let mut out = body.to_vec();
                out.extend_from_slice(suffix.as_bytes());
                *body = out.into();
                Ok(Flow::Continue)
            }),
            Act::Panic => panic!("body hook panicked"),
            Act::PanicLimit => Hook::Ready(Ok(Flow::Continue)),
        }
    }

    fn on_response<'a>(
        &'a self,
        _resp: &'a mut response::Parts,
        _ctx: &'a mut Ctx,
    ) -> Hook<'a, Result<(), PluginError>> {
        self.log.push(format!("{}: onresponse", self.name));
        Hook::Ready(Ok(()))
    }
}

/// A POST whose body has no `Content-Length` and no size hint (chunked).
fn post_chunked(chunks: &[&'static str]) -> Request<ProxyBody> {
    Request::post("/").body(stream_body(chunks)).unwrap()
}

#[tokio::test]
async fn a_plugin_answers_from_the_body_and_the_onion_unwinds() {
    let log = Arc::new(Log::default());
    let links = vec![
        probe("a", &log).link(),
        whole("gw", &log, Some(100), Act::Answer),
        probe("c", &log).link(),
    ];
    let upstream = TestUpstream::new(Answer::Stream(vec!["upstream"]));
    let (resp, _) = run(links, post("/", &["hel", "lo"]), &upstream).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let seen: Vec<_> = resp.headers().get_all("x-seen-by").iter().collect();
    assert_eq!(
        seen,
        ["c", "a"],
        "response hooks of every plugin that ran, reversed"
    );
    assert_eq!(text(resp).await, "got hello\n");
    assert_eq!(upstream.calls(), 0);
    assert_eq!(
        log.lines(),
        lines(&[
            "a: onrequest",
            "c: onrequest",
            "gw: onbody 5",
            "c: onresponse",
            "gw: onresponse",
            "a: onresponse",
            "c: complete",
            "a: complete",
        ])
    );
    assert_eq!(log.completions()[0].1.bytes_received, 5);
}

#[tokio::test]
async fn the_rewritten_body_reaches_the_upstream_with_its_length() {
    let log = Arc::new(Log::default());
    // The request body filter runs first; only the plugins that asked see the whole body.
    let links = vec![
        probe("f", &log).request_filter(Filter::Upper).link(),
        whole("w1", &log, Some(64), Act::Append("!")),
        whole("quiet", &log, None, Act::Append("never")),
        whole("w2", &log, Some(100), Act::Append("?")),
    ];
    let upstream = TestUpstream::new(Answer::Stream(vec!["ok"]));
    let (resp, observer) = run(links, post_chunked(&["ab", "cd"]), &upstream).await;
    assert_eq!(text(resp).await, "ok");
    let received = upstream.last();
    assert_eq!(received.body, "ABCD!?");
    assert_eq!(received.headers[CONTENT_LENGTH], "6");
    assert!(received
        .headers
        .get(http::header::TRANSFER_ENCODING)
        .is_none());
    let bodies: Vec<_> = log
        .lines()
        .into_iter()
        .filter(|l| l.contains("onbody"))
        .collect();
    assert_eq!(bodies, ["w1: onbody 4", "w2: onbody 5"]);
    let hooks = observer.hooks.lock().unwrap().clone();
    assert!(hooks.contains(&("w2".to_string(), "whole_request_body")));
}

#[tokio::test]
async fn over_the_smallest_limit_answers_413() {
    let log = Arc::new(Log::default());
    let links = || {
        vec![
            probe("a", &log).link(),
            whole("big", &log, Some(100), Act::Answer),
            whole("small", &log, Some(4), Act::Answer),
        ]
    };
    let upstream = TestUpstream::new(Answer::Stream(vec!["ok"]));

    // Refused on Content-Length: the body is never read.
    let (resp, _) = run(links(), post("/", &["hello"]), &upstream).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    drop(resp);
    assert_eq!(log.completions()[0].1.bytes_received, 0);

    // Without a length: refused once the buffered bytes pass the limit.
    let (resp, _) = run(links(), post_chunked(&["he", "llo"]), &upstream).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(text(resp).await, "request body too large\n");
    assert!(!log.lines().iter().any(|l| l.contains("onbody")));
    assert!(log.lines().contains(&"a: onresponse".to_string()));
    assert_eq!(upstream.calls(), 0);

    // At the limit it passes.
    let (resp, _) = run(links(), post("/", &["hell"]), &upstream).await;
    assert_eq!(text(resp).await, "got hell\n");
}

/// Reads one frame of the request body and answers, without waiting for the body's end.
struct FirstChunk;

impl Upstream for FirstChunk {
    fn call<'a>(
        &'a self,
        req: Request<ProxyBody>,
        _ctx: &'a mut Ctx,
    ) -> impl std::future::Future<Output = Result<Response<ProxyBody>, UpstreamError>> + Send + 'a
    {
        Box::pin(async move {
            let (parts, mut body) = req.into_parts();
            let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
            let length = parts.headers[CONTENT_LENGTH].clone();
            let mut resp = Response::new(respond::full(first));
            resp.headers_mut().insert(CONTENT_LENGTH, length);
            Ok(resp)
        })
    }
}

#[tokio::test]
async fn nothing_is_buffered_when_no_plugin_asks() {
    let log = Arc::new(Log::default());
    let (tx, rx) = mpsc::unbounded::<Bytes>();
    tx.unbounded_send(Bytes::from_static(b"first")).unwrap();
    // The body never ends while `tx` lives: buffering it would hang.
    let body = StreamBody::new(rx.map(|b| Ok::<_, BoxError>(Frame::data(b)))).boxed_unsync();
    let req = Request::post("/")
        .header(CONTENT_LENGTH, 1000)
        .body(body)
        .unwrap();
    let links = vec![
        whole("quiet", &log, None, Act::Answer),
        // Excluded for this path: its limit is not asked for.
        whole("skipped", &log, Some(1), Act::Answer).excluding(vec!["/".to_string()]),
    ];
    let observer: Arc<dyn ChainObserver> = Arc::new(Observer::default());
    let chain = Chain::new(links);
    let mut context = ctx();
    let run = chain.run(req, &mut context, &FirstChunk, &observer);
    let resp = tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("the body streamed through");
    assert_eq!(resp.headers()[CONTENT_LENGTH], "1000", "framing untouched");
    drop(tx);
    assert_eq!(log.lines(), lines(&["quiet: onresponse"]));
}

#[tokio::test]
async fn failures_in_the_body_hooks_are_isolated() {
    for act in [Act::Panic, Act::PanicLimit] {
        let log = Arc::new(Log::default());
        let links = vec![probe("a", &log).link(), whole("boom", &log, Some(100), act)];
        let upstream = TestUpstream::new(Answer::Stream(vec!["ok"]));
        let (resp, observer) = run(links, post("/", &["hello"]), &upstream).await;
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(text(resp).await, "plugin boom failed\n");
        assert_eq!(upstream.calls(), 0);
        assert_eq!(observer.failures.lock().unwrap()[0].0, "boom");
        let lines = log.lines();
        assert!(lines.contains(&"a: onresponse".to_string()));
        assert!(!lines.contains(&"boom: onresponse".to_string()));
        assert!(log.completions()[0]
            .1
            .error
            .as_deref()
            .unwrap()
            .contains("plugin boom failed in whole_request_body"));
    }
}

#[tokio::test]
async fn a_failing_request_body_filter_ends_the_buffering_with_500() {
    let log = Arc::new(Log::default());
    let links = vec![
        probe("f", &log).request_filter(Filter::Fail).link(),
        whole("w", &log, Some(100), Act::Answer),
    ];
    let upstream = TestUpstream::new(Answer::Stream(vec!["ok"]));
    let (resp, observer) = run(links, post("/", &["hello"]), &upstream).await;
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(text(resp).await, "plugin f failed\n");
    assert_eq!(observer.failures.lock().unwrap()[0].0, "f");
    assert!(!log.lines().iter().any(|l| l.contains("onbody")));
}

#[tokio::test]
async fn a_request_body_filter_refusing_the_body_answers_its_status() {
    let log = Arc::new(Log::default());
    let links = vec![
        probe("f", &log).request_filter(Filter::TooLarge).link(),
        whole("w", &log, Some(100), Act::Answer),
    ];
    let upstream = TestUpstream::new(Answer::Stream(vec!["ok"]));
    let (resp, _) = run(links, post("/", &["hello"]), &upstream).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(text(resp).await, "plugin f failed\n");
}
