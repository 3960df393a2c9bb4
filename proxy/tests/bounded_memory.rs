//! Memory a client cannot grow: 1,000,000 distinct API keys (`X-Api-Key`, counted by a
//! `rate_limiting` with `key: header`) sprayed at one rate-limited Route, while the proxy's
//! live heap is measured by a counting allocator (this test is its own binary for that reason).
//!
//! - over a real loopback socket: [`SOCKET_KEYS`] distinct keys from [`CONNECTIONS`] keep-alive
//!   connections, each request answered 200 with its `X-RateLimit-*` headers;
//! - the rest of the million through the very plugin instance the proxy serves the Route with
//!   (its request hook, called directly: the same table, without paying for HTTP in a debug
//!   build).
//!
//! The stated bound: the live heap grows by at most [`HEAP_BOUND`] (8 MiB) while the table
//! holds at most `max_keys` = 10,000 keys (10,048 after rounding to 64 shards). Without the
//! bound the table would keep every key of its day window: about 200 MB for the million.

#[path = "e2e/support.rs"]
mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::json;

use hookway_crds::snapshot::{ChainEntry, ObjectKey, Tier};
use hookway_proxy::plugin::{Ctx, Flow};
use support::*;

/// Every key sprayed.
const KEYS: usize = 1_000_000;
/// Of which over the socket.
const SOCKET_KEYS: usize = 20_000;
/// Client connections for the socket part.
const CONNECTIONS: usize = 16;
/// `max_keys` of the rate limiter.
const MAX_KEYS: usize = 10_000;
/// Most the live heap may grow while the million keys arrive.
const HEAP_BOUND: isize = 8 * 1024 * 1024;
/// Bounds the whole test.
const DEADLINE: Duration = Duration::from_secs(120);

/// Live heap bytes, counted beside `System`.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to `System` unchanged; only a counter is updated beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

fn entry(alias: &str, plugin: &str, order: i32, config: serde_json::Value) -> ChainEntry {
    ChainEntry {
        alias: alias.into(),
        plugin_ref: ObjectKey::new("default", alias),
        plugin: plugin.into(),
        tier: Tier::Route,
        order,
        config,
        exclude_paths: vec![],
        secrets: Default::default(),
        services: Default::default(),
    }
}

/// `/` limited per `X-Api-Key` (5 a day), answered by `mock`.
fn limited_route(echo: SocketAddr) -> hookway_crds::snapshot::Snapshot {
    let mut r = route("limited", &[], vec![], "svc");
    r.chain = vec![
        entry(
            "limit",
            "rate_limiting",
            1,
            json!({"day": 5, "key": "header", "header_name": "x-api-key", "max_keys": MAX_KEYS}),
        ),
        entry("answer", "mock", 2, json!({"status": 200, "body": "ok"})),
    ];
    snapshot(1, vec![r], vec![upstream("svc", &[echo])], vec![])
}

/// Sends `GET /` with each key on one keep-alive connection; returns the statuses seen.
async fn send_keys(proxy: SocketAddr, keys: impl Iterator<Item = String>) -> Vec<u16> {
    let stream = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut statuses = Vec::new();
    for key in keys {
        let req = http::Request::get("/")
            .header("host", "spray.test")
            .header("x-api-key", key)
            .body(Empty::<Bytes>::new())
            .unwrap();
        sender.ready().await.unwrap();
        let resp = sender.send_request(req).await.unwrap();
        statuses.push(resp.status().as_u16());
        resp.into_body().collect().await.unwrap();
    }
    statuses
}

/// The value of `name{...table="rate_limiting_keys"...}` in the proxy's `/metrics`.
async fn table_metric(proxy: &Proxy, name: &str) -> f64 {
    let text = metrics(proxy).await;
    text.lines()
        .find(|l| l.starts_with(name) && l.contains("table=\"rate_limiting_keys\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_client_keys_stay_within_the_stated_heap_bound() {
    tokio::time::timeout(DEADLINE, spray())
        .await
        .expect("the spray finishes in time");
}

/// The UTC day now (the rate limiter's day window).
fn utc_day() -> u64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    since_epoch.as_secs() / 86_400
}

async fn spray() {
    let started = Instant::now();
    let day = utc_day();
    let echo = EchoServer::start("echo").await;
    let proxy = Proxy::start(Some(limited_route(echo.addr))).await;

    // A heavy key uses its budget: 5 allowed, then 429.
    let heavy = send_keys(proxy.http, (0..6).map(|_| "heavy".to_string())).await;
    assert_eq!(heavy, [200, 200, 200, 200, 200, 429]);
    // Warm-up (connection pools, metric handles, per-thread caches), then the baseline.
    send_keys(proxy.http, (0..200).map(|i| format!("warm-{i}"))).await;
    let baseline = live();

    // Over the socket: distinct keys from parallel connections.
    let per_connection = SOCKET_KEYS / CONNECTIONS;
    let clients: Vec<_> = (0..CONNECTIONS)
        .map(|c| {
            let keys = (0..per_connection).map(move |i| format!("sock-{c}-{i}"));
            tokio::spawn(send_keys(proxy.http, keys))
        })
        .collect();
    for client in clients {
        let statuses = client.await.unwrap();
        assert!(
            statuses.iter().all(|s| *s == 200),
            "every new key is allowed"
        );
    }
    let socket_part = started.elapsed();

    // The rest through the proxy's own instance of the Route's rate limiter, from two tasks.
    let runtime = proxy.state.load().expect("a live runtime");
    let limiter = runtime.routes[0].chain.links()[0].plugin.clone();
    let local = proxy.http;
    let halves: Vec<_> = [(SOCKET_KEYS, KEYS / 2), (KEYS / 2, KEYS)]
        .into_iter()
        .map(|(from, to)| {
            let limiter = limiter.clone();
            tokio::spawn(async move {
                let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
                let (mut parts, ()) = http::Request::get("/").body(()).unwrap().into_parts();
                for i in from..to {
                    let key = http::HeaderValue::from(i as u64);
                    parts.headers.insert("x-api-key", key);
                    let mut ctx = Ctx::new(peer, local, false);
                    let flow = limiter.on_request(&mut parts, &mut ctx).resolve().await;
                    assert!(matches!(flow, Ok(Flow::Continue)), "key {i} allowed");
                }
            })
        })
        .collect();
    for half in halves {
        half.await.unwrap();
    }
    drop((limiter, runtime));

    let grown = live() - baseline;
    let entries = table_metric(&proxy, "hookway_table_entries").await;
    let evictions = table_metric(&proxy, "hookway_table_evictions_total").await;
    println!(
        "{KEYS} keys ({SOCKET_KEYS} over loopback in {socket_part:?}), {:?} in all: heap grew \
         {:.2} MiB (bound {} MiB), table {entries} entries, {evictions} evictions",
        started.elapsed(),
        grown as f64 / (1024.0 * 1024.0),
        HEAP_BOUND / (1024 * 1024)
    );
    assert!(entries <= 10_048.0, "table holds {entries} keys");
    assert!(
        evictions >= (KEYS + 200 - 10_048) as f64,
        "{evictions} evictions"
    );
    assert!(
        grown <= HEAP_BOUND,
        "live heap grew by {grown} bytes, more than the stated {HEAP_BOUND}"
    );
    // The heavy key kept its count through the spray: still limited (unless the day window
    // ended meanwhile, which starts every count over).
    let last = send_keys(proxy.http, ["heavy".to_string()].into_iter()).await;
    if utc_day() == day {
        assert_eq!(last, [429], "the heavy key's count survived the spray");
    }
}
