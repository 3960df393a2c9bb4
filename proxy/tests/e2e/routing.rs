//! Routing over real sockets: hosts, path kinds, methods, headers, query, priority, no route.

use hookway_crds::snapshot::{Method, PathMatchType, ValueMatchEntry, ValueMatchType};

use crate::support::*;

#[tokio::test]
async fn routes_by_host_path_method_header_query_and_priority() {
    let names = [
        "exact-host",
        "wild",
        "any",
        "api",
        "exact-path",
        "regex",
        "post",
        "hdr",
        "query",
        "prio",
    ];
    let mut servers = Vec::new();
    for n in names {
        servers.push(EchoServer::start(n).await);
    }
    let ups: Vec<_> = names
        .iter()
        .zip(&servers)
        .map(|(n, s)| upstream(n, &[s.addr]))
        .collect();
    let mut post = rule(PathMatchType::Prefix, "/m");
    post.methods = vec![Method::Post];
    let mut hdr = rule(PathMatchType::Prefix, "/h");
    hdr.headers = vec![ValueMatchEntry {
        name: "x-env".into(),
        kind: ValueMatchType::Exact,
        value: "canary".into(),
    }];
    let mut query = rule(PathMatchType::Prefix, "/q");
    query.query = vec![ValueMatchEntry {
        name: "v".into(),
        kind: ValueMatchType::Regex,
        value: "[0-9]+".into(),
    }];
    let mut prio = route("prio", &["p.test"], vec![], "prio");
    prio.priority = 10;
    let routes = vec![
        route("exact-host", &["www.example.com"], vec![], "exact-host"),
        route("wild", &["*.example.com"], vec![], "wild"),
        route("any", &[], vec![], "any"),
        route("api", &[], vec![rule(PathMatchType::Prefix, "/api")], "api"),
        route(
            "exact-path",
            &[],
            vec![rule(PathMatchType::Exact, "/api/health")],
            "exact-path",
        ),
        route(
            "regex",
            &[],
            vec![rule(PathMatchType::Regex, "/img/[a-z]+\\.png")],
            "regex",
        ),
        route("post", &[], vec![post], "post"),
        route("hdr", &[], vec![hdr], "hdr"),
        route("query", &[], vec![query], "query"),
        route("a-low", &["p.test"], vec![], "any"),
        prio,
    ];
    let proxy = Proxy::start(Some(snapshot(1, routes, ups, vec![]))).await;
    let c = client();
    let cases: &[(&str, &str, &str)] = &[
        ("www.example.com", "/api", "exact-host"),
        ("WWW.EXAMPLE.COM:80", "/", "exact-host"),
        ("shop.example.com", "/x", "wild"),
        ("other.test", "/", "any"),
        ("other.test", "/api/users", "api"),
        ("other.test", "/apiary", "any"),
        ("other.test", "/api/health", "exact-path"),
        ("other.test", "/img/cat.png", "any"),
        ("other.test", "/h", "any"),
        ("other.test", "/q?v=12", "query"),
        ("other.test", "/q?v=x", "any"),
        ("p.test", "/", "prio"),
    ];
    for (host, path, want) in cases {
        let (status, server) = get_server(&c, &proxy.url(path), Some(host)).await;
        assert_eq!((status, server.as_str()), (200, *want), "{host}{path}");
    }
    let resp = c.post(proxy.url("/m")).send().await.unwrap();
    assert_eq!(json(resp).await["server"], "post");
    let resp = c
        .get(proxy.url("/h"))
        .header("x-env", "canary")
        .send()
        .await
        .unwrap();
    assert_eq!(json(resp).await["server"], "hdr");
}

#[tokio::test]
async fn regex_route_and_no_route_404() {
    let s = EchoServer::start("img").await;
    let routes = vec![route(
        "img",
        &["img.test"],
        vec![rule(PathMatchType::Regex, "/img/[a-z]+\\.png")],
        "img",
    )];
    let proxy = Proxy::start(Some(snapshot(
        1,
        routes,
        vec![upstream("img", &[s.addr])],
        vec![],
    )))
    .await;
    let c = client();
    assert_eq!(
        get_server(&c, &proxy.url("/img/cat.png"), Some("img.test")).await,
        (200, "img".into())
    );
    let (status, body) = get_server(&c, &proxy.url("/img/cat.png"), Some("nope.test")).await;
    assert_eq!((status, body.as_str()), (404, "no route matched\n"));
    let (status, _) = get_server(&c, &proxy.url("/img/1.png"), Some("img.test")).await;
    assert_eq!(status, 404);
}
