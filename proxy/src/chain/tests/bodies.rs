//! Streaming body filters: pass-through, buffering, replacement, per-chunk transforms.

use std::sync::Arc;

use http::header::CONTENT_LENGTH;

use super::*;

#[tokio::test]
async fn without_filters_the_body_and_its_length_pass_untouched() {
    let log = Arc::new(Log::default());
    let upstream = TestUpstream::new(Answer::Chunks(vec!["hello"]));
    let (resp, _) = run(vec![probe("a", &log).link()], get("/"), &upstream).await;
    assert_eq!(resp.headers()[CONTENT_LENGTH], "5");
    assert_eq!(resp.body().size_hint().exact(), Some(5));
    assert_eq!(text(resp).await, "hello");
}

#[tokio::test]
async fn a_buffering_filter_hands_the_whole_body_to_later_filters() {
    let log = Arc::new(Log::default());
    // Response filters run descending: "acc" (second link) first, then "outer".
    let links = vec![
        probe("outer", &log).response_filter(Filter::Upper).link(),
        probe("acc", &log)
            .response_filter(Filter::Accumulate)
            .link(),
    ];
    let upstream = TestUpstream::new(Answer::Stream(vec!["ab", "cd", "ef"]));
    let (resp, _) = run(links, get("/"), &upstream).await;
    assert_eq!(text(resp).await, "ABCDEF");
    let outer: Vec<_> = log
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("outer: ondata"))
        .collect();
    assert_eq!(outer, ["outer: ondata_response 6"]);
}

#[tokio::test]
async fn a_filter_may_replace_the_whole_body() {
    let log = Arc::new(Log::default());
    let links = vec![probe("r", &log)
        .response_filter(Filter::Replace("Hello, World!\n"))
        .link()];
    let upstream = TestUpstream::new(Answer::Chunks(vec!["some ", "upstream body"]));
    let (resp, _) = run(links, get("/"), &upstream).await;
    assert!(resp.headers().get(CONTENT_LENGTH).is_none(), "re-framed");
    assert_eq!(text(resp).await, "Hello, World!\n");
    assert_eq!(log.completions()[0].1.bytes_sent, 14);
}

#[tokio::test]
async fn chunks_are_transformed_one_by_one() {
    let log = Arc::new(Log::default());
    let links = vec![probe("u", &log).response_filter(Filter::Upper).link()];
    let upstream = TestUpstream::new(Answer::Stream(vec!["hello ", "world"]));
    let (resp, _) = run(links, get("/"), &upstream).await;
    let mut body = resp.into_body();
    let mut frames = Vec::new();
    while let Some(frame) = body.frame().await {
        frames.push(frame.unwrap().into_data().unwrap());
    }
    assert_eq!(frames, ["HELLO ", "WORLD"]);
}

#[tokio::test]
async fn request_body_filters_reach_the_upstream() {
    let log = Arc::new(Log::default());
    let links = vec![
        probe("u", &log).request_filter(Filter::Upper).link(),
        probe("acc", &log).request_filter(Filter::Accumulate).link(),
    ];
    let upstream = TestUpstream::new(Answer::Stream(vec!["ok"]));
    let (resp, observer) = run(links, post("/", &["abc", "def"]), &upstream).await;
    assert_eq!(text(resp).await, "ok");
    let hooks = observer.hooks.lock().unwrap().clone();
    let timed = |alias: &str| {
        hooks
            .iter()
            .filter(|(a, phase)| a == alias && *phase == "request_body")
            .count()
    };
    assert_eq!(
        (timed("u"), timed("acc")),
        (1, 1),
        "one timing per filter per body"
    );
    let received = upstream.last();
    assert_eq!(received.body, "ABCDEF");
    assert!(received.headers.get(CONTENT_LENGTH).is_none(), "re-framed");
    // Request filters run ascending: "u" sees the chunks, "acc" gets them upper-cased.
    let acc: Vec<_> = log
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("acc"))
        .collect();
    assert_eq!(
        acc[1..3],
        ["acc: ondata_request 3", "acc: ondata_request 3"]
    );
}

#[tokio::test]
async fn request_bodies_without_filters_keep_their_length() {
    let log = Arc::new(Log::default());
    let upstream = TestUpstream::new(Answer::Stream(vec!["ok"]));
    let (resp, _) = run(
        vec![probe("a", &log).link()],
        post("/", &["abc"]),
        &upstream,
    )
    .await;
    text(resp).await;
    let received = upstream.last();
    assert_eq!(received.body, "abc");
    assert_eq!(received.headers[CONTENT_LENGTH], "3");
}

#[tokio::test]
async fn head_responses_get_no_body_filters() {
    let log = Arc::new(Log::default());
    let links = vec![probe("r", &log)
        .response_filter(Filter::Replace("x"))
        .link()];
    let upstream = TestUpstream::new(Answer::Chunks(vec![]));
    let req = Request::head("/").body(respond::empty()).unwrap();
    let (resp, _) = run(links, req, &upstream).await;
    assert_eq!(resp.headers()[CONTENT_LENGTH], "0");
    assert_eq!(text(resp).await, "");
}

/// A plugin that wraps body streams, appending `s` to every data frame.
struct Streamer;

impl crate::plugin::Plugin for Streamer {
    fn phases(&self) -> Phases {
        Phases::REQUEST_BODY | Phases::RESPONSE_BODY
    }

    fn request_body_stream(
        &self,
        _req: &request::Parts,
        _ctx: &mut Ctx,
    ) -> Option<crate::plugin::BodyStream> {
        Some(Box::new(append_s))
    }

    fn response_body_stream(
        &self,
        _resp: &response::Parts,
        _ctx: &mut Ctx,
    ) -> Option<crate::plugin::BodyStream> {
        Some(Box::new(append_s))
    }
}

fn append_s(body: ProxyBody) -> ProxyBody {
    body.map_frame(|f| f.map_data(|d| Bytes::from([&d[..], b"s"].concat())))
        .boxed_unsync()
}

#[tokio::test]
async fn body_streams_sit_at_their_plugins_place_among_the_filters() {
    let log = Arc::new(Log::default());
    let links = vec![
        probe("outer", &log)
            .request_filter(Filter::Upper)
            .response_filter(Filter::Upper)
            .link(),
        Link::new("streamer", "streamer", Arc::new(Streamer)),
        probe("inner", &log)
            .request_filter(Filter::Accumulate)
            .response_filter(Filter::Replace("x"))
            .link(),
    ];
    let upstream = TestUpstream::new(Answer::Stream(vec!["upstream"]));
    let (resp, _) = run(links, post("/", &["ab", "cd"]), &upstream).await;
    assert!(resp.headers().get(CONTENT_LENGTH).is_none(), "re-framed");
    // Response, descending: inner's replacement, the stream's `s`, then outer's upper-casing.
    assert_eq!(text(resp).await, "XS");
    // Request, ascending: outer's upper-casing, the stream's `s` per chunk, inner's buffer.
    assert_eq!(upstream.last().body, "ABsCDs");
}
