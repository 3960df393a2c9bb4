//! Declared phases: what a plugin does not declare is not asked for, and without completion
//! hooks among the plugins that ran no completion tracker (nor its timer) is kept.

use std::sync::Arc;

use super::*;

#[tokio::test]
async fn completion_runs_only_for_plugins_that_declare_it() {
    let log = Arc::new(Log::default());
    let links = vec![
        probe("heads", &log).declares(Phases::HEADS).link(),
        probe("all", &log).link(),
    ];
    let upstream = TestUpstream::new(Answer::Chunks(vec!["hello"]));
    let (resp, observer) = run(links, get("/"), &upstream).await;
    assert_eq!(text(resp).await, "hello");
    assert_eq!(
        log.lines(),
        lines(&[
            "heads: onrequest",
            "all: onrequest",
            "all: onresponse",
            "heads: onresponse",
            "all: complete",
        ])
    );
    let completes: Vec<String> = observer
        .hooks
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, phase)| *phase == "complete")
        .map(|(alias, _)| alias.clone())
        .collect();
    assert_eq!(completes, vec!["all".to_string()]);
}

#[tokio::test]
async fn heads_only_chain_keeps_no_completion_tracker() {
    let log = Arc::new(Log::default());
    let links = vec![
        probe("a", &log).declares(Phases::HEADS).link(),
        probe("b", &log).declares(Phases::HEADS).link(),
    ];
    let upstream = TestUpstream::new(Answer::Chunks(vec!["one", "two"]));
    let (resp, observer) = run(links, post("/", &["pay", "load"]), &upstream).await;
    // The upstream's framing reaches the client untouched (no body wrapper dropped it).
    assert_eq!(
        resp.headers().get(http::header::CONTENT_LENGTH).unwrap(),
        "6"
    );
    assert_eq!(text(resp).await, "onetwo");
    assert_eq!(upstream.last().body, "payload");
    assert!(!log.lines().iter().any(|l| l.ends_with("complete")));
    let phases: Vec<&str> = observer.hooks.lock().unwrap().iter().map(|h| h.1).collect();
    assert_eq!(phases, ["request", "request", "response", "response"]);
}

#[tokio::test]
async fn body_phases_declared_are_still_asked() {
    let log = Arc::new(Log::default());
    let links = vec![probe("up", &log)
        .declares(Phases::RESPONSE_BODY)
        .response_filter(Filter::Upper)
        .link()];
    let upstream = TestUpstream::new(Answer::Chunks(vec!["quiet"]));
    let (resp, _) = run(links, get("/"), &upstream).await;
    assert_eq!(text(resp).await, "QUIET");
    assert!(!log.lines().iter().any(|l| l.ends_with("complete")));
}

#[cfg(debug_assertions)]
#[tokio::test]
#[should_panic(expected = "does not declare")]
async fn a_filter_from_an_undeclared_phase_fails_debug_builds() {
    let log = Arc::new(Log::default());
    let links = vec![probe("liar", &log)
        .declares(Phases::HEADS)
        .response_filter(Filter::Log)
        .link()];
    let upstream = TestUpstream::new(Answer::Chunks(vec!["x"]));
    let _ = run(links, get("/"), &upstream).await;
}

/// Records what the chain told it about the head's hop-by-hop fields.
#[derive(Default)]
struct SeesHopByHop(std::sync::Mutex<Option<Option<bool>>>);

impl Upstream for SeesHopByHop {
    fn call<'a>(
        &'a self,
        _req: Request<ProxyBody>,
        ctx: &'a mut Ctx,
    ) -> impl std::future::Future<Output = Result<Response<ProxyBody>, UpstreamError>> + Send + 'a
    {
        *self.0.lock().unwrap() = Some(ctx.hop_by_hop_removed);
        std::future::ready(Ok(Response::new(respond::empty())))
    }
}

#[tokio::test]
async fn the_upstream_looks_for_hop_by_hop_fields_again_unless_every_plugin_keeps_them() {
    use crate::plugins::testing::link;
    use serde_json::json;

    let keeps = || link("headers", json!({"request": {"set": {"x-env": "a"}}}));
    let adds_connection = || {
        link(
            "headers",
            json!({"request": {"add": {"connection": "x-env"}}}),
        )
    };
    let undeclared = || probe("undeclared", &Arc::new(Log::default())).link();
    for (links, expected) in [
        (vec![keeps(), keeps()], Some(true)),
        (vec![keeps(), adds_connection()], None),
        (vec![undeclared(), keeps()], None),
    ] {
        let upstream = SeesHopByHop::default();
        let observer: Arc<dyn ChainObserver> = Arc::new(Observer::default());
        let mut ctx = ctx();
        // As the server leaves it: the client's hop-by-hop fields removed, an upgrade asked.
        ctx.hop_by_hop_removed = Some(true);
        Chain::new(links)
            .run(get("/"), &mut ctx, &upstream, &observer)
            .await;
        assert_eq!(*upstream.0.lock().unwrap(), Some(expected));
    }
}
