//! The admin endpoints.

use hookway_crds::snapshot::PathMatchType;

use crate::support::*;

#[tokio::test]
async fn health_readiness_metrics_and_config() {
    let s = EchoServer::start("s").await;
    let proxy = Proxy::start(None).await;
    let c = client();
    let admin = |p: &str| format!("http://{}{}", proxy.admin, p);
    assert_eq!(c.get(admin("/healthz")).send().await.unwrap().status(), 200);
    assert_eq!(c.get(admin("/readyz")).send().await.unwrap().status(), 503);
    assert_eq!(c.get(proxy.url("/")).send().await.unwrap().status(), 503);

    proxy.apply(simple(7, &[s.addr])).await;
    assert_eq!(c.get(admin("/readyz")).send().await.unwrap().status(), 200);
    assert_eq!(c.get(proxy.url("/")).send().await.unwrap().status(), 200);

    let metrics = c
        .get(admin("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for want in [
        "hookway_requests_total{method=\"GET\",route=\"default/r\",service=\"default/svc\",status=\"200\"} 1",
        "hookway_request_duration_seconds_bucket{route=\"default/r\"",
        "hookway_upstream_duration_seconds_count{service=\"default/svc\"} 1",
        "hookway_snapshot_version 7",
        "hookway_snapshot_reloads_total{result=\"applied\"} 1",
        "hookway_active_connections",
    ] {
        assert!(metrics.contains(want), "missing {want} in\n{metrics}");
    }
    let config: serde_json::Value = c
        .get(admin("/config"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(config["version"], 7);
    assert_eq!(config["routes"][0]["route"], "default/r");
    assert_eq!(config["routes"][0]["upstream"], "default/svc");
    assert!(config["routes"][0]["chain"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn a_removed_routes_series_leave_metrics() {
    let s = EchoServer::start("s").await;
    let both = |version| {
        snapshot(
            version,
            vec![
                route(
                    "series-kept",
                    &[],
                    vec![rule(PathMatchType::Prefix, "/kept")],
                    "svc",
                ),
                route(
                    "series-gone",
                    &[],
                    vec![rule(PathMatchType::Prefix, "/gone")],
                    "svc",
                ),
            ],
            vec![upstream("svc", &[s.addr])],
            vec![],
        )
    };
    let proxy = Proxy::start(Some(both(1))).await;
    let c = client();
    for path in ["/kept", "/gone"] {
        assert_eq!(c.get(proxy.url(path)).send().await.unwrap().status(), 200);
    }
    let text = metrics(&proxy).await;
    for route in ["default/series-kept", "default/series-gone"] {
        assert!(
            text.contains(&format!("route=\"{route}\"")),
            "{route}: {text}"
        );
    }
    let mut only_kept = both(2);
    only_kept.routes.retain(|r| r.key.name == "series-kept");
    proxy.apply(only_kept.seal()).await;
    let text = metrics(&proxy).await;
    assert!(text.contains("route=\"default/series-kept\""), "{text}");
    assert!(!text.contains("series-gone"), "{text}");
}
