use std::sync::{Arc, OnceLock};

use http::StatusCode;
use serde_json::json;

use super::window::ManualClock;
use super::*;
use crate::plugins::testing::{self, body_string, ctx, parts, NS};
use hookway_crds::snapshot::Snapshot;

/// 40 s into a UTC day (and so into its hour and minute).
const T0: u64 = 1_700_006_440_000;

fn limiter(config: serde_json::Value, clock: &ManualClock) -> RateLimiting {
    limiter_named(config, clock, "rl")
}

fn limiter_named(config: serde_json::Value, clock: &ManualClock, name: &str) -> RateLimiting {
    let config: Config = serde_json::from_value(config).unwrap();
    config.validate().unwrap();
    let snapshot = Snapshot::default();
    let plugin_ref = ObjectKey::new(NS, name);
    let bindings = std::collections::BTreeMap::new();
    let env = BuildEnv {
        snapshot: &snapshot,
        plugin_ref: &plugin_ref,
        alias: name,
        secrets: &bindings,
        services: &Default::default(),
    };
    RateLimiting::with_clock(config, &env, Arc::new(clock.clone())).unwrap()
}

/// Runs request (and, when allowed, response) hooks; returns status and response headers.
async fn call(
    rl: &RateLimiting,
    peer: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, http::HeaderMap, String) {
    let mut req = parts("GET", "/x", headers);
    let mut cx = ctx(peer);
    match testing::request(rl, &mut req, &mut cx).await {
        Some(resp) => {
            let status = resp.status();
            let headers = resp.headers().clone();
            (status, headers, body_string(resp).await)
        }
        None => {
            let resp = testing::response(rl, &mut cx, None).await;
            (StatusCode::OK, resp.headers, String::new())
        }
    }
}

#[tokio::test]
async fn second_limit_rejects_then_resets() {
    let clock = ManualClock::at(T0 + 200);
    let rl = limiter(json!({"second": 2}), &clock);
    let (s, h, _) = call(&rl, "1.1.1.1:1", &[]).await;
    assert_eq!(s, 200);
    assert_eq!(h["x-ratelimit-limit-second"], "2");
    assert_eq!(h["x-ratelimit-remaining-second"], "1");
    let (s, h, _) = call(&rl, "1.1.1.1:1", &[]).await;
    assert_eq!(
        (s, &h["x-ratelimit-remaining-second"]),
        (StatusCode::OK, &"0".parse::<HeaderValue>().unwrap())
    );
    let (s, h, body) = call(&rl, "1.1.1.1:1", &[]).await;
    assert_eq!(s, 429);
    assert_eq!(body, "[rate_limiting] API rate limit of second exceeded\n");
    assert_eq!(h[header::RETRY_AFTER], "1");
    assert_eq!(h["x-ratelimit-remaining-second"], "0");
    // Another client has its own budget.
    assert_eq!(call(&rl, "2.2.2.2:1", &[]).await.0, 200);
    // The next window starts fresh.
    clock.advance(800);
    assert_eq!(call(&rl, "1.1.1.1:1", &[]).await.0, 200);
}

#[tokio::test]
async fn units_are_checked_second_to_day() {
    let clock = ManualClock::at(T0);
    let rl = limiter(
        json!({"second": 5, "minute": 3, "hour": 100, "day": 1000, "error_type": "json"}),
        &clock,
    );
    for _ in 0..3 {
        assert_eq!(call(&rl, "1.1.1.1:1", &[]).await.0, 200);
        clock.advance(1_000);
    }
    let (s, h, body) = call(&rl, "1.1.1.1:1", &[]).await;
    assert_eq!(s, 429);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v,
        json!({"message": "[rate_limiting] API rate limit of minute exceeded", "status_code": 429})
    );
    // T0 is 40 s into its minute; 3 s passed: 17 s left.
    assert_eq!(h[header::RETRY_AFTER], "17");
    clock.advance(17_000);
    let (s, h, _) = call(&rl, "1.1.1.1:1", &[]).await;
    assert_eq!(s, 200);
    assert_eq!(h["x-ratelimit-remaining-minute"], "2");
    assert_eq!(h["x-ratelimit-remaining-hour"], "96");
    assert_eq!(h["x-ratelimit-remaining-day"], "996");
}

#[tokio::test]
async fn hour_and_day_windows() {
    let clock = ManualClock::at(T0);
    let rl = limiter(json!({"hour": 1, "day": 2}), &clock);
    assert_eq!(call(&rl, "1.1.1.1:1", &[]).await.0, 200);
    let (s, _, body) = call(&rl, "1.1.1.1:1", &[]).await;
    assert_eq!(s, 429);
    assert!(body.contains("of hour exceeded"), "{body}");
    clock.advance(3_600_000);
    assert_eq!(call(&rl, "1.1.1.1:1", &[]).await.0, 200);
    clock.advance(3_600_000);
    let (s, _, body) = call(&rl, "1.1.1.1:1", &[]).await;
    assert_eq!(s, 429);
    assert!(body.contains("of day exceeded"), "{body}");
}

#[tokio::test]
async fn refused_requests_do_not_count() {
    let clock = ManualClock::at(T0);
    let rl = limiter(json!({"second": 1, "minute": 2}), &clock);
    assert_eq!(call(&rl, "1.1.1.1:1", &[]).await.0, 200);
    for _ in 0..5 {
        assert_eq!(call(&rl, "1.1.1.1:1", &[]).await.0, 429);
    }
    clock.advance(1_000);
    // The minute budget saw only one request so far.
    assert_eq!(call(&rl, "1.1.1.1:1", &[]).await.0, 200);
}

#[tokio::test]
async fn hidden_headers() {
    let clock = ManualClock::at(T0);
    let rl = limiter(json!({"second": 1, "hide_client_header": true}), &clock);
    let (_, h, _) = call(&rl, "1.1.1.1:1", &[]).await;
    assert!(h.get("x-ratelimit-limit-second").is_none());
    let (s, h, _) = call(&rl, "1.1.1.1:1", &[]).await;
    assert_eq!(s, 429);
    assert!(h.get("x-ratelimit-remaining-second").is_none());
    assert!(h.get(header::RETRY_AFTER).is_some());
}

#[tokio::test]
async fn keyed_by_header_consumer_and_route() {
    let clock = ManualClock::at(T0);
    let rl = limiter(
        json!({"second": 1, "key": "header", "header_name": "x-tenant"}),
        &clock,
    );
    assert_eq!(call(&rl, "1.1.1.1:1", &[("x-tenant", "a")]).await.0, 200);
    assert_eq!(call(&rl, "2.2.2.2:1", &[("x-tenant", "a")]).await.0, 429);
    assert_eq!(call(&rl, "2.2.2.2:1", &[("x-tenant", "b")]).await.0, 200);
    let long_a = "a".repeat(500);
    let long_b = format!("{}b", "a".repeat(499));
    assert_eq!(
        call(&rl, "1.1.1.1:1", &[("x-tenant", &long_a)]).await.0,
        200
    );
    assert_eq!(
        call(&rl, "1.1.1.1:1", &[("x-tenant", &long_a)]).await.0,
        429
    );
    assert_eq!(
        call(&rl, "1.1.1.1:1", &[("x-tenant", &long_b)]).await.0,
        200
    );

    let rl = limiter(json!({"second": 1, "key": "consumer"}), &clock);
    let run = |id: &'static str| {
        let rl = &rl;
        async move {
            let mut req = parts("GET", "/", &[]);
            let mut cx = ctx("1.1.1.1:1");
            cx.consumer = Some(std::sync::Arc::new(crate::plugin::Consumer {
                id: id.into(),
                labels: Default::default(),
            }));
            testing::request(rl, &mut req, &mut cx).await.is_none()
        }
    };
    assert!(run("alice").await);
    assert!(!run("alice").await);
    assert!(run("bob").await);

    let rl = limiter(json!({"second": 1, "key": "route"}), &clock);
    let run = |route: &'static str, peer: &'static str| {
        let rl = &rl;
        async move {
            let mut req = parts("GET", "/", &[]);
            let mut cx = ctx(peer);
            cx.route = Some(std::sync::Arc::new(ObjectKey::new(NS, route)));
            testing::request(rl, &mut req, &mut cx).await.is_none()
        }
    };
    assert!(run("r1", "1.1.1.1:1").await);
    assert!(
        !run("r1", "2.2.2.2:1").await,
        "route budget is shared by clients"
    );
    assert!(run("r2", "2.2.2.2:1").await);
}

#[tokio::test]
async fn built_through_the_registry() {
    let plugin = testing::build("rate_limiting", json!({"second": 1}));
    let mut req = parts("GET", "/", &[]);
    assert!(testing::request(&*plugin, &mut req, &mut ctx("1.1.1.1:1"))
        .await
        .is_none());
    let resp = testing::request(&*plugin, &mut req, &mut ctx("1.1.1.1:1")).await;
    assert_eq!(
        resp.map(|r| r.status()),
        Some(StatusCode::TOO_MANY_REQUESTS)
    );
}

#[test]
fn config_validation() {
    let reg = crate::plugins::builtin();
    let cat = reg.catalogue();
    let check = |v: serde_json::Value| cat.validate("rate_limiting", &v);
    assert!(check(json!({"minute": 10})).is_ok());
    assert!(check(json!({})).unwrap_err().contains("at least one"));
    assert!(check(json!({"second": 1, "key": "header"}))
        .unwrap_err()
        .contains("header_name is required"));
    assert!(check(json!({"second": 1, "policy": "redis"}))
        .unwrap_err()
        .contains("redis is required"));
    assert!(
        check(json!({"second": 1, "policy": "redis", "redis": {"url": "nope://x"}}))
            .unwrap_err()
            .contains("redis.url")
    );
    assert!(check(json!({"second": 1, "policy": "redis",
                          "redis": {"url": "redis://127.0.0.1:1", "timeout": "soon"}}))
    .unwrap_err()
    .contains("redis.timeout"));
    assert!(check(json!({"second": 1, "week": 3}))
        .unwrap_err()
        .contains("week"));
    let v = check(json!({"second": 1, "policy": "redis",
                         "redis": {"url": "redis://127.0.0.1:1", "password_secret": "redis-auth"}}))
    .unwrap();
    assert_eq!(v.secret_refs, vec!["redis-auth".to_string()]);
}

/// Port of a redis-server started by scripts/ensure-redis.sh (once per test binary).
fn redis_port() -> Option<u16> {
    static PORT: OnceLock<Option<u16>> = OnceLock::new();
    *PORT.get_or_init(start_redis)
}

/// Starts a fresh redis-server with scripts/ensure-redis.sh; `None` (with a message) when the
/// script fails, so the caller skips.
fn start_redis() -> Option<u16> {
    start_redis_with(None)
}

/// Like [`start_redis`], the server requiring `password` when one is given.
fn start_redis_with(password: Option<&str>) -> Option<u16> {
    {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/ensure-redis.sh");
        let mut command = std::process::Command::new("bash");
        command.arg(script).arg(std::process::id().to_string());
        if let Some(password) = password {
            command.env("REDIS_PASSWORD", password);
        }
        let out = command.output();
        match out {
            Ok(out) if out.status.success() => {
                String::from_utf8_lossy(&out.stdout).trim().parse().ok()
            }
            Ok(out) => {
                eprintln!(
                    "SKIPPING redis test: ensure-redis.sh failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPING redis test: cannot run ensure-redis.sh: {e}");
                None
            }
        }
    }
}

fn unique_prefix() -> String {
    format!(
        "test:{}:{}:",
        std::process::id(),
        T0 + rand::random::<u32>() as u64
    )
}

#[tokio::test]
async fn redis_limit_is_shared_by_two_proxies() {
    let Some(port) = redis_port() else { return };
    let clock = ManualClock::at(T0 + 100);
    let cfg = json!({"second": 3, "minute": 4, "policy": "redis",
                     "redis": {"url": format!("redis://127.0.0.1:{port}"),
                               "key_prefix": unique_prefix(), "timeout": "2s"}});
    // Two instances of the same GatewayPlugin, as two proxy replicas would build them.
    let a = limiter(cfg.clone(), &clock);
    let b = limiter(cfg.clone(), &clock);
    let (s, h, _) = call(&a, "1.1.1.1:1", &[]).await;
    assert_eq!(s, 200);
    assert_eq!(h["x-ratelimit-remaining-second"], "2");
    assert_eq!(call(&b, "1.1.1.1:1", &[]).await.0, 200);
    let (s, h, _) = call(&a, "1.1.1.1:1", &[]).await;
    assert_eq!(s, 200);
    assert_eq!(h["x-ratelimit-remaining-second"], "0");
    let (s, h, body) = call(&b, "1.1.1.1:1", &[]).await;
    assert_eq!(s, 429, "{body}");
    assert!(body.contains("of second exceeded"));
    assert_eq!(h[header::RETRY_AFTER], "1");
    // Another key is unaffected.
    assert_eq!(call(&b, "2.2.2.2:1", &[]).await.0, 200);
    // Next second: the minute budget (4) has one left, across both proxies.
    clock.advance(1_000);
    assert_eq!(call(&b, "1.1.1.1:1", &[]).await.0, 200);
    let (s, _, body) = call(&a, "1.1.1.1:1", &[]).await;
    assert_eq!(s, 429);
    assert!(body.contains("of minute exceeded"));
    // A different GatewayPlugin with the same prefix has its own budget.
    let other = limiter_named(cfg, &clock, "other");
    assert_eq!(call(&other, "1.1.1.1:1", &[]).await.0, 200);
}

/// The password comes from the Secret named by `password_secret`; without it the server refuses
/// the limiter's commands and the fail-closed policy answers 503.
#[tokio::test]
async fn redis_password_comes_from_the_secret() {
    const PASSWORD: &str = "s3cret-pw";
    let Some(port) = start_redis_with(Some(PASSWORD)) else {
        return;
    };
    let clock = ManualClock::at(T0 + 100);
    let redis = json!({"url": format!("redis://127.0.0.1:{port}"),
                       "key_prefix": unique_prefix(), "timeout": "2s"});
    let mut with_secret = redis.clone();
    with_secret["password_secret"] = json!("redis-auth");
    let secret = ObjectKey::new(NS, "redis-auth");
    let snapshot = Snapshot {
        secrets: vec![Arc::new(hookway_crds::snapshot::SecretEntry {
            key: secret.clone(),
            data: [("password".to_string(), PASSWORD.to_string())].into(),
        })],
        ..Snapshot::default()
    };
    let bindings = [("redis-auth".to_string(), secret)].into();
    let plugin_ref = ObjectKey::new(NS, "rl");
    let build = |redis: serde_json::Value, bindings| {
        let config: Config = serde_json::from_value(
            json!({"second": 1, "policy": "redis", "fail_open": false, "redis": redis}),
        )
        .unwrap();
        let env = BuildEnv {
            snapshot: &snapshot,
            plugin_ref: &plugin_ref,
            alias: "rl",
            secrets: bindings,
            services: &Default::default(),
        };
        RateLimiting::with_clock(config, &env, Arc::new(clock.clone())).unwrap()
    };
    let authenticated = build(with_secret, &bindings);
    assert_eq!(call(&authenticated, "1.1.1.1:1", &[]).await.0, 200);
    let (s, _, body) = call(&authenticated, "1.1.1.1:1", &[]).await;
    assert_eq!(
        s, 429,
        "the second request of the second counts on the server: {body}"
    );
    let anonymous = build(redis, &Default::default());
    let (s, _, body) = call(&anonymous, "1.1.1.1:1", &[]).await;
    assert_eq!(
        s, 503,
        "no password: the server refuses, fail closed: {body}"
    );
}

fn unreachable_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("redis://127.0.0.1:{port}")
}

#[tokio::test]
async fn redis_down_fail_open_lets_through() {
    let clock = ManualClock::at(T0);
    let rl = limiter(
        json!({"second": 1, "policy": "redis", "fail_open": true,
               "redis": {"url": unreachable_url(), "timeout": "200ms"}}),
        &clock,
    );
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let (s, h, _) = call(&rl, "1.1.1.1:1", &[]).await;
        assert_eq!(s, 200);
        assert!(h.get("x-ratelimit-remaining-second").is_none());
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }
}

#[tokio::test]
async fn redis_down_fail_closed_answers_503() {
    let clock = ManualClock::at(T0);
    let rl = limiter(
        json!({"second": 100, "policy": "redis", "fail_open": false, "error_type": "json",
               "redis": {"url": unreachable_url(), "timeout": "200ms"}}),
        &clock,
    );
    let (s, _, body) = call(&rl, "1.1.1.1:1", &[]).await;
    assert_eq!(s, 503);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status_code"], 503);
    // While backing off, the answer comes at once.
    let started = std::time::Instant::now();
    assert_eq!(call(&rl, "1.1.1.1:1", &[]).await.0, 503);
    assert!(started.elapsed() < std::time::Duration::from_millis(100));
}

#[tokio::test]
async fn redis_going_away_mid_flight_follows_fail_open() {
    let Some(port) = start_redis() else { return };
    let clock = ManualClock::at(T0);
    let cfg = |fail_open: bool| {
        json!({"second": 100, "policy": "redis", "fail_open": fail_open,
               "redis": {"url": format!("redis://127.0.0.1:{port}"),
                         "key_prefix": unique_prefix(), "timeout": "300ms"}})
    };
    let open = limiter(cfg(true), &clock);
    let closed = limiter(cfg(false), &clock);
    let (s, h, _) = call(&open, "1.1.1.1:1", &[]).await;
    assert_eq!(s, 200);
    assert!(
        h.get("x-ratelimit-remaining-second").is_some(),
        "counted by redis"
    );
    assert_eq!(call(&closed, "1.1.1.1:1", &[]).await.0, 200);
    // Stop the server under the connected limiters.
    let _ = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string(), "shutdown", "nosave"])
        .output();
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let (s, h, _) = call(&open, "1.1.1.1:1", &[]).await;
        assert_eq!(s, 200);
        assert!(h.get("x-ratelimit-remaining-second").is_none());
        assert_eq!(call(&closed, "1.1.1.1:1", &[]).await.0, 503);
        assert!(started.elapsed() < std::time::Duration::from_secs(3));
    }
}
