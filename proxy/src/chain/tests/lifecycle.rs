//! Order of hooks (the onion), short-circuit, completion and exclude_paths.

use std::sync::Arc;

use super::*;

/// Edge Microgateway's plugin-1/2/3 example: request handlers 1,2,3; response handlers 3,2,1;
/// two response chunks each pass every plugin's data handler, in reverse order, the last one
/// together with the end of the stream.
#[tokio::test]
async fn edge_microgateway_example_order() {
    let log = Arc::new(Log::default());
    let links = ["plugin-1", "plugin-2", "plugin-3"]
        .into_iter()
        .map(|name| {
            probe(name, &log)
                .request_filter(Filter::Log)
                .response_filter(Filter::Log)
                .link()
        })
        .collect();
    let first: &'static str = Box::leak("a".repeat(931).into_boxed_str());
    let second: &'static str = Box::leak("b".repeat(1808).into_boxed_str());
    let upstream = TestUpstream::new(Answer::Chunks(vec![first, second]));
    let (resp, _) = run(links, get("/"), &upstream).await;
    assert_eq!(text(resp).await.len(), 931 + 1808);
    let expected = lines(&[
        "plugin-1: onrequest",
        "plugin-2: onrequest",
        "plugin-3: onrequest",
        "plugin-1: onend_request",
        "plugin-2: onend_request",
        "plugin-3: onend_request",
        "plugin-3: onresponse",
        "plugin-2: onresponse",
        "plugin-1: onresponse",
        "plugin-3: ondata_response 931",
        "plugin-2: ondata_response 931",
        "plugin-1: ondata_response 931",
        "plugin-3: ondata_response 1808",
        "plugin-3: onend_response",
        "plugin-2: ondata_response 1808",
        "plugin-2: onend_response",
        "plugin-1: ondata_response 1808",
        "plugin-1: onend_response",
        "plugin-3: complete",
        "plugin-2: complete",
        "plugin-1: complete",
    ]);
    assert_eq!(log.lines(), expected);
}

#[tokio::test]
async fn early_answer_runs_the_onion_and_skips_the_upstream() {
    let log = Arc::new(Log::default());
    let links = vec![
        probe("a", &log).link(),
        probe("b", &log).answers().link(),
        probe("c", &log).link(),
    ];
    let upstream = TestUpstream::new(Answer::Stream(vec!["upstream"]));
    let (resp, _) = run(links, get("/"), &upstream).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let seen: Vec<_> = resp.headers().get_all("x-seen-by").iter().collect();
    assert_eq!(seen, ["b", "a"]);
    assert_eq!(text(resp).await, "early from b\n");
    assert_eq!(upstream.calls(), 0);
    assert_eq!(
        log.lines(),
        lines(&[
            "a: onrequest",
            "b: onrequest",
            "b: onresponse",
            "a: onresponse",
            "b: complete",
            "a: complete",
        ])
    );
    let (_, completion, ran) = &log.completions()[0];
    assert_eq!(ran, &["a", "b"]);
    assert_eq!(completion.status, 202);
    assert!(completion.upstream_duration.is_none());
}

#[tokio::test]
async fn request_hooks_change_what_the_upstream_gets() {
    let log = Arc::new(Log::default());
    let links = vec![probe("a", &log).link(), probe("b", &log).link()];
    let upstream = TestUpstream::new(Answer::Stream(vec!["ok"]));
    let (resp, observer) = run(links, get("/"), &upstream).await;
    assert_eq!(text(resp).await, "ok");
    let seen: Vec<_> = upstream
        .last()
        .headers
        .get_all("x-seen-by")
        .iter()
        .cloned()
        .collect();
    assert_eq!(seen, ["a", "b"]);
    let phases = observer.hooks.lock().unwrap().clone();
    assert!(phases.contains(&("a".into(), "request")));
    assert!(phases.contains(&("b".into(), "response")));
    assert!(phases.contains(&("a".into(), "complete")));
}

#[tokio::test]
async fn completion_reports_status_and_bytes() {
    let log = Arc::new(Log::default());
    let links = vec![probe("a", &log).link()];
    let upstream = TestUpstream::new(Answer::Stream(vec!["hello", " world"]));
    let (resp, _) = run(links, post("/", &["abc", "de"]), &upstream).await;
    assert_eq!(text(resp).await, "hello world");
    let (_, completion, _) = &log.completions()[0];
    assert_eq!(completion.status, 200);
    assert_eq!(completion.bytes_sent, 11);
    assert_eq!(completion.bytes_received, 5);
    assert!(!completion.client_aborted);
    assert!(completion.error.is_none());
    assert!(completion.upstream_duration.is_some());
}

#[tokio::test]
async fn completion_runs_once_when_the_client_goes_away() {
    let log = Arc::new(Log::default());
    let links = vec![probe("a", &log).link(), probe("b", &log).link()];
    let (tx, rx) = futures::channel::mpsc::unbounded();
    let upstream = TestUpstream::new(Answer::Channel(Mutex::new(Some(rx))));
    let (resp, _) = run(links, get("/"), &upstream).await;
    tx.unbounded_send(Bytes::from_static(b"first")).unwrap();
    let mut body = resp.into_body();
    let frame = body.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "first");
    assert!(log.completions().is_empty(), "not complete while streaming");
    drop(body);
    let completions = log.completions();
    assert_eq!(completions.len(), 2);
    assert_eq!(completions[0].0, "b");
    assert!(completions[0].1.client_aborted);
    assert_eq!(completions[0].1.bytes_sent, 5);
}

#[tokio::test]
async fn an_unread_empty_body_is_not_an_abort() {
    let log = Arc::new(Log::default());
    let links = vec![probe("a", &log).answers().link()];
    let upstream = TestUpstream::new(Answer::Stream(vec![]));
    let (resp, _) = run(links, get("/"), &upstream).await;
    drop(resp);
    let completions = log.completions();
    assert_eq!(completions.len(), 1);
    // The early answer has a body nobody read: that is an abort.
    assert!(completions[0].1.client_aborted);

    let log = Arc::new(Log::default());
    let links = vec![probe("a", &log).link()];
    let upstream = TestUpstream::new(Answer::Chunks(vec![]));
    let (resp, _) = run(
        links,
        Request::head("/").body(respond::empty()).unwrap(),
        &upstream,
    )
    .await;
    drop(resp);
    assert!(!log.completions()[0].1.client_aborted);
}

#[tokio::test]
async fn excluded_paths_skip_the_link() {
    let log = Arc::new(Log::default());
    let links = || {
        vec![
            probe("a", &log).link(),
            probe("auth", &log).link_excluding(&["/health*", "/public/*/img"]),
            probe("c", &log).link(),
        ]
    };
    let upstream = TestUpstream::new(Answer::Stream(vec!["ok"]));
    for path in ["/healthz", "/public/v1/img"] {
        let (resp, _) = run(links(), get(path), &upstream).await;
        text(resp).await;
        let (_, _, ran) = log.completions().pop().unwrap();
        assert_eq!(ran, ["a", "c"], "{path}");
    }
    assert!(!log.lines().iter().any(|l| l.starts_with("auth")));
    let (resp, _) = run(links(), get("/api"), &upstream).await;
    text(resp).await;
    let (_, _, ran) = log.completions().pop().unwrap();
    assert_eq!(ran, ["a", "auth", "c"]);
}

#[tokio::test]
async fn an_empty_chain_is_a_plain_pass_through() {
    let upstream = TestUpstream::new(Answer::Chunks(vec!["hello"]));
    let (resp, observer) = run(vec![], post("/", &["abc"]), &upstream).await;
    assert_eq!(resp.body().size_hint().exact(), Some(5));
    assert_eq!(text(resp).await, "hello");
    assert_eq!(upstream.last().body, "abc");
    assert!(observer.hooks.lock().unwrap().is_empty());
}
