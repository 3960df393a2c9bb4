//! Plugin errors and panics end only their request; upstream errors become short answers.

use std::sync::Arc;

use super::*;

fn spare(mut req: Request<ProxyBody>) -> Request<ProxyBody> {
    req.headers_mut()
        .insert("x-spare", http::HeaderValue::from_static("1"));
    req
}

#[tokio::test]
async fn a_plugin_error_answers_its_status_and_names_the_plugin() {
    let log = Arc::new(Log::default());
    let chain = || {
        vec![
            probe("a", &log).link(),
            probe("b", &log)
                .fails_request(Fail::Error(StatusCode::FORBIDDEN))
                .link(),
            probe("c", &log).link(),
        ]
    };
    let upstream = TestUpstream::new(Answer::Stream(vec!["ok"]));
    let (resp, observer) = run(chain(), get("/"), &upstream).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(text(resp).await, "plugin b failed\n");
    assert_eq!(upstream.calls(), 0);
    assert_eq!(
        *observer.failures.lock().unwrap(),
        [("b".to_string(), Some(ObjectKey::new("default", "route")))]
    );
    // The plugins before it still see the answer; every plugin that ran completes.
    let lines = log.lines();
    assert!(lines.contains(&"a: onresponse".to_string()));
    assert!(!lines.contains(&"b: onresponse".to_string()));
    assert!(!lines.iter().any(|l| l.starts_with("c:")));
    let completions = log.completions();
    assert_eq!(completions.len(), 2);
    assert!(completions[0]
        .1
        .error
        .as_deref()
        .unwrap()
        .contains("plugin b failed"));

    // Another request through the same plugins is unaffected.
    let (resp, _) = run(chain(), spare(get("/")), &upstream).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(text(resp).await, "ok");
}

#[tokio::test]
async fn panics_are_isolated_to_their_request() {
    for fail in [Fail::Panic, Fail::AsyncPanic] {
        let log = Arc::new(Log::default());
        let chain = || vec![probe("boom", &log).fails_request(fail).link()];
        let upstream = TestUpstream::new(Answer::Stream(vec!["ok"]));
        let (resp, observer) = run(chain(), get("/"), &upstream).await;
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(text(resp).await, "plugin boom failed\n");
        assert_eq!(observer.failures.lock().unwrap().len(), 1);
        let (resp, _) = run(chain(), spare(get("/")), &upstream).await;
        assert_eq!(text(resp).await, "ok");
    }
}

#[tokio::test]
async fn a_failing_response_hook_replaces_the_answer() {
    let log = Arc::new(Log::default());
    let links = vec![
        probe("a", &log).link(),
        probe("b", &log).fails_response(Fail::Panic).link(),
    ];
    let upstream = TestUpstream::new(Answer::Stream(vec!["secret upstream body"]));
    let (resp, _) = run(links, get("/"), &upstream).await;
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(text(resp).await, "plugin b failed\n");
    assert_eq!(log.completions().len(), 2);
}

#[tokio::test]
async fn a_failing_body_filter_ends_the_stream_with_an_error() {
    for filter in [Filter::Fail, Filter::Panic] {
        let log = Arc::new(Log::default());
        let links = vec![probe("f", &log).response_filter(filter).link()];
        let upstream = TestUpstream::new(Answer::Stream(vec!["a", "b"]));
        let (resp, observer) = run(links, get("/"), &upstream).await;
        assert_eq!(
            resp.status(),
            StatusCode::OK,
            "the head was already decided"
        );
        let err = resp.into_body().collect().await.unwrap_err();
        assert_eq!(err.to_string(), "plugin f failed in response_body");
        assert_eq!(observer.failures.lock().unwrap().len(), 1);
        let completion = &log.completions()[0].1;
        assert!(completion.error.is_some());
        assert!(!completion.client_aborted);
    }
}

#[tokio::test]
async fn upstream_errors_become_short_answers_the_hooks_still_see() {
    let log = Arc::new(Log::default());
    let links = vec![probe("a", &log).link()];
    let upstream = TestUpstream::new(Answer::Error(
        StatusCode::BAD_GATEWAY,
        "upstream connect error: connection refused",
    ));
    let (resp, _) = run(links, get("/"), &upstream).await;
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(resp.headers()["x-seen-by"], "a");
    assert_eq!(
        text(resp).await,
        "upstream connect error: connection refused\n"
    );
    let completion = &log.completions()[0].1;
    assert_eq!(completion.status, 502);
    assert_eq!(
        completion.error.as_deref(),
        Some("upstream connect error: connection refused")
    );
}
