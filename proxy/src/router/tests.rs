//! Table-driven tests of route selection and tie-breaking.

use super::*;
use hookway_crds::snapshot::{Method, ObjectKey, RuleEntry, ValueMatchEntry, ValueMatchType};

fn route(name: &str, hosts: &[&str], rules: Vec<RuleEntry>) -> RouteEntry {
    RouteEntry {
        key: ObjectKey::new("default", name),
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        rules,
        priority: 0,
        created: 100,
        upstream: ObjectKey::new("default", "svc"),
        chain: vec![],
    }
}

fn rule(kind: PathMatchType, path: &str) -> RuleEntry {
    RuleEntry {
        path_type: kind,
        path: path.into(),
        methods: vec![],
        headers: vec![],
        query: vec![],
        tls: None,
        isolation: None,
    }
}

fn prefix(path: &str) -> RuleEntry {
    rule(PathMatchType::Prefix, path)
}

fn value(name: &str, kind: ValueMatchType, v: &str) -> ValueMatchEntry {
    ValueMatchEntry {
        name: name.into(),
        kind,
        value: v.into(),
    }
}

/// Routes the request and returns the matched route's name.
fn pick(
    routes: &[RouteEntry],
    host: &str,
    method: &str,
    target: &str,
    hdrs: &[(&str, &str)],
) -> Option<String> {
    // A snapshot's Routes are sorted by key, which the last tie-break relies on.
    let mut routes = routes.to_vec();
    routes.sort_by(|a, b| a.key.cmp(&b.key));
    let router = Router::new(&routes).unwrap();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let mut headers = HeaderMap::new();
    for (k, v) in hdrs {
        headers.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let method: http::Method = method.parse().unwrap();
    let view = RequestView {
        host: (!host.is_empty()).then_some(host),
        method: &method,
        path,
        query,
        headers: &headers,
        tls: false,
    };
    router.find(&view).map(|i| routes[i].key.name.clone())
}

#[test]
fn hosts_exact_beats_wildcard_beats_any() {
    let routes = vec![
        route("any", &[], vec![prefix("/")]),
        route("wild", &["*.example.com"], vec![prefix("/")]),
        route("deep-wild", &["*.a.example.com"], vec![prefix("/")]),
        route("exact", &["www.example.com"], vec![prefix("/")]),
    ];
    let cases = [
        ("www.example.com", "exact"),
        ("WWW.Example.COM:8080", "exact"),
        ("api.example.com", "wild"),
        ("x.y.example.com", "wild"),
        ("b.a.example.com", "deep-wild"),
        ("example.com", "any"),
        ("other.org", "any"),
        ("", "any"),
    ];
    for (host, want) in cases {
        assert_eq!(
            pick(&routes, host, "GET", "/x", &[]).as_deref(),
            Some(want),
            "host {host}"
        );
    }
}

#[test]
fn host_tier_falls_back_when_nothing_matches_there() {
    let routes = vec![
        route("exact-api", &["h.example.com"], vec![prefix("/api")]),
        route("wild-all", &["*.example.com"], vec![prefix("/")]),
    ];
    assert_eq!(
        pick(&routes, "h.example.com", "GET", "/api/x", &[]).as_deref(),
        Some("exact-api")
    );
    assert_eq!(
        pick(&routes, "h.example.com", "GET", "/web", &[]).as_deref(),
        Some("wild-all")
    );
}

#[test]
fn path_kinds_and_specificity() {
    let routes = vec![
        route("root", &[], vec![prefix("/")]),
        route("api", &[], vec![prefix("/api")]),
        route("api-v1", &[], vec![prefix("/api/v1/")]),
        route(
            "exact",
            &[],
            vec![rule(PathMatchType::Exact, "/api/v1/status")],
        ),
        route(
            "regex",
            &[],
            vec![rule(PathMatchType::Regex, "/img/[0-9]+\\.png")],
        ),
    ];
    let cases = [
        ("/", "root"),
        ("/api", "api"),
        ("/api/", "api"),
        ("/apix", "root"),
        ("/api/v1", "api-v1"),
        ("/api/v1/users", "api-v1"),
        ("/api/v1/status", "exact"),
        ("/api/v1/status/x", "api-v1"),
        // Prefix beats Regex (root matches everything).
        ("/img/12.png", "root"),
    ];
    for (path, want) in cases {
        assert_eq!(
            pick(&routes, "", "GET", path, &[]).as_deref(),
            Some(want),
            "path {path}"
        );
    }
    let only_regex = vec![route(
        "regex",
        &[],
        vec![rule(PathMatchType::Regex, "/img/[0-9]+\\.png")],
    )];
    assert_eq!(
        pick(&only_regex, "", "GET", "/img/12.png", &[]).as_deref(),
        Some("regex")
    );
    assert_eq!(
        pick(&only_regex, "", "GET", "/img/12.png.bak", &[]),
        None,
        "regex is anchored"
    );
}

#[test]
fn methods_headers_query_and_tie_breaks() {
    let mut get_only = prefix("/");
    get_only.methods = vec![Method::Get];
    let mut with_header = prefix("/");
    with_header.headers = vec![value("x-env", ValueMatchType::Exact, "canary")];
    let mut two_headers = prefix("/");
    two_headers.headers = vec![
        value("x-env", ValueMatchType::Exact, "canary"),
        value("x-user", ValueMatchType::Regex, "u[0-9]+"),
    ];
    let mut with_query = prefix("/");
    with_query.query = vec![value("debug", ValueMatchType::Present, "")];

    let routes = vec![
        route("plain", &[], vec![prefix("/")]),
        route("get", &[], vec![get_only]),
        route("hdr", &[], vec![with_header]),
        route("hdr2", &[], vec![two_headers]),
        route("query", &[], vec![with_query]),
    ];
    assert_eq!(pick(&routes, "", "GET", "/", &[]).as_deref(), Some("get"));
    assert_eq!(
        pick(&routes, "", "POST", "/", &[]).as_deref(),
        Some("plain")
    );
    assert_eq!(
        pick(&routes, "", "POST", "/", &[("x-env", "canary")]).as_deref(),
        Some("hdr")
    );
    assert_eq!(
        pick(
            &routes,
            "",
            "POST",
            "/",
            &[("x-env", "canary"), ("x-user", "u42")]
        )
        .as_deref(),
        Some("hdr2")
    );
    assert_eq!(
        pick(
            &routes,
            "",
            "POST",
            "/",
            &[("x-env", "canary"), ("x-user", "bob")]
        )
        .as_deref(),
        Some("hdr")
    );
    assert_eq!(
        pick(&routes, "", "POST", "/?a=1&debug", &[]).as_deref(),
        Some("query")
    );
    assert_eq!(
        pick(&routes, "", "POST", "/?debugx=1", &[]).as_deref(),
        Some("plain")
    );
}

#[test]
fn priority_then_created_then_name() {
    let mut low = route("b-low", &[], vec![prefix("/")]);
    low.priority = 1;
    let mut high = route("c-high", &[], vec![prefix("/")]);
    high.priority = 5;
    assert_eq!(
        pick(&[low.clone(), high.clone()], "", "GET", "/", &[]).as_deref(),
        Some("c-high")
    );

    let mut old = route("z-old", &[], vec![prefix("/")]);
    old.created = 10;
    let new = route("a-new", &[], vec![prefix("/")]);
    assert_eq!(
        pick(&[new.clone(), old], "", "GET", "/", &[]).as_deref(),
        Some("z-old")
    );

    let same = route("b-same", &[], vec![prefix("/")]);
    assert_eq!(
        pick(&[same, new], "", "GET", "/", &[]).as_deref(),
        Some("a-new")
    );
}

#[test]
fn no_match_is_none() {
    let routes = vec![route("api", &["a.example.com"], vec![prefix("/api")])];
    assert_eq!(pick(&routes, "a.example.com", "GET", "/web", &[]), None);
    assert_eq!(pick(&routes, "b.example.com", "GET", "/api", &[]), None);
}

#[test]
fn ten_thousand_routes_stay_fast() {
    let routes: Vec<_> = (0..10_000)
        .map(|i| {
            route(
                &format!("r{i}"),
                &[&format!("h{}.example.com", i % 100)],
                vec![prefix(&format!("/p{i}"))],
            )
        })
        .collect();
    let router = Router::new(&routes).unwrap();
    let headers = HeaderMap::new();
    let started = std::time::Instant::now();
    for i in 0..10_000 {
        let host = format!("h{}.example.com", i % 100);
        let path = format!("/p{i}/x");
        let view = RequestView {
            host: Some(&host),
            method: &http::Method::GET,
            path: &path,
            query: None,
            headers: &headers,
            tls: false,
        };
        assert_eq!(router.find(&view), Some(i));
    }
    // A linear scan would be ~10^8 rule checks; the index does a handful per request.
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}

#[test]
fn transport_conditions_split_one_host_between_http_and_https() {
    let with_tls = |tls| RuleEntry { tls, ..prefix("/") };
    let routes = vec![
        route("plain-only", &["app.example"], vec![with_tls(Some(false))]),
        route("tls-only", &["app.example"], vec![with_tls(Some(true))]),
        route("either", &["other.example"], vec![with_tls(None)]),
    ];
    let router = Router::new(&routes).unwrap();
    let headers = HeaderMap::new();
    // (host, tls, expected)
    let cases = [
        ("app.example", false, Some("plain-only")),
        ("app.example", true, Some("tls-only")),
        ("other.example", false, Some("either")),
        ("other.example", true, Some("either")),
    ];
    for (host, tls, want) in cases {
        let view = RequestView {
            host: Some(host),
            method: &http::Method::GET,
            path: "/x",
            query: None,
            headers: &headers,
            tls,
        };
        let got = router.find(&view).map(|i| routes[i].key.name.as_str());
        assert_eq!(got, want, "{host} tls={tls}");
    }
}
