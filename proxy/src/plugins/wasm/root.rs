//! The root context's own events: ticks (`proxy_set_tick_period_milliseconds` →
//! `proxy_on_tick`) and shared-queue wake-ups (`proxy_on_queue_ready`).
//!
//! A filter config whose module exports `proxy_on_tick` or `proxy_on_queue_ready` gets one
//! dedicated *root instance* (besides the pool that serves requests) and one tokio task that
//! drives it: a `tokio::time::interval` at the period the filter set (at least [`MIN_TICK`];
//! none while the period is 0) and the wake-ups of the queues this config owns. The task ends
//! when the plugin is dropped (replaced or removed: [`WasmPlugin`](super::WasmPlugin) aborts
//! it). A failed call (trap, deadline, out-of-memory) is counted in
//! `hookway_wasm_failures_total` and the root instance is replaced by a fresh one at the next
//! event. Both callbacks may `proxy_http_call`: the task waits for the answers and delivers them
//! to the root instance before it handles the next event (a late tick is delayed, not doubled).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{mpsc, Notify};
use tokio::task::AbortHandle;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use super::host::Shared;
use super::instance::{CallError, Instance, Pool};
use super::shared_queue::Owner;

/// Shortest tick period; shorter ones are raised to it.
pub const MIN_TICK: Duration = Duration::from_millis(10);
/// Queue wake-ups waiting for the root context at most (more are dropped: the queue keeps its
/// messages, and the next wake-up's callback can drain them).
const WAKE_UPS: usize = 256;

/// What the instances of one config share about their root context.
pub struct RootControl {
    period_ms: AtomicU64,
    changed: Notify,
    queue_owner: OnceLock<Owner>,
    /// The GatewayPlugin's namespace: the name space of its shared queues.
    pub namespace: Arc<str>,
    /// `max_queue_length`.
    pub max_queue_length: usize,
}

impl RootControl {
    /// No ticks yet, no owner for queues yet.
    pub fn new(namespace: &str, max_queue_length: usize) -> Self {
        Self {
            period_ms: AtomicU64::new(0),
            changed: Notify::new(),
            queue_owner: OnceLock::new(),
            namespace: namespace.into(),
            max_queue_length,
        }
    }

    /// `proxy_set_tick_period_milliseconds` from any instance of the config (0 stops ticks).
    pub fn set_period(&self, millis: u32) {
        let old = self.period_ms.swap(u64::from(millis), Ordering::AcqRel);
        if old != u64::from(millis) {
            self.changed.notify_one();
        }
    }

    /// The period set last, milliseconds.
    pub fn period(&self) -> u64 {
        self.period_ms.load(Ordering::Acquire)
    }

    /// Where enqueues of the queues this config registers are announced (`None` without a
    /// root task).
    pub fn queue_owner(&self) -> Option<Owner> {
        self.queue_owner.get().cloned()
    }
}

/// Starts the root task of a config when its module has root callbacks and a tokio runtime
/// runs; returns the handle that stops it.
pub fn spawn(pool: &Arc<Pool>, shared: &Arc<Shared>) -> Option<AbortHandle> {
    if !pool.capabilities().root_events {
        return None;
    }
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    let (tx, rx) = mpsc::channel(WAKE_UPS);
    let _ = shared.root.queue_owner.set(tx);
    let task = run(pool.clone(), shared.clone(), rx);
    Some(runtime.spawn(task).abort_handle())
}

enum Event {
    Tick,
    QueueReady(u32),
}

fn interval(period_ms: u64) -> Option<Interval> {
    if period_ms == 0 {
        return None;
    }
    let period = Duration::from_millis(period_ms).max(MIN_TICK);
    let mut interval = tokio::time::interval_at(Instant::now() + period, period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    Some(interval)
}

async fn next_tick(interval: &mut Option<Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn run(pool: Arc<Pool>, shared: Arc<Shared>, mut wake_ups: mpsc::Receiver<u32>) {
    // Started now: a module registers its queues in its start-up callbacks.
    let mut root = start(&pool, &shared);
    let mut period = shared.root.period();
    let mut ticks = interval(period);
    loop {
        let event = tokio::select! {
            () = shared.root.changed.notified() => {
                let now = shared.root.period();
                if now != period {
                    period = now;
                    ticks = interval(period);
                }
                continue;
            }
            () = next_tick(&mut ticks) => Event::Tick,
            id = wake_ups.recv() => match id {
                Some(id) => Event::QueueReady(id),
                None => return,
            },
        };
        if root.is_none() {
            root = start(&pool, &shared);
        }
        let Some(instance) = root.as_mut() else {
            continue;
        };
        instance.host().calls.allowed = true;
        let result = match event {
            Event::Tick => {
                shared.metrics.tick();
                instance.on_tick()
            }
            Event::QueueReady(id) => instance.on_queue_ready(id),
        };
        instance.host().calls.allowed = false;
        let result = match result {
            Ok(()) => settle_calls(instance, &shared).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            failed(&shared, &e, "root context");
            root = None;
        }
    }
}

/// Waits for the calls the root context dispatched and delivers each answer (calls dispatched
/// by those callbacks too); the call budget starts again with the next event.
async fn settle_calls(instance: &mut Instance, shared: &Shared) -> Result<(), CallError> {
    let mut running = FuturesUnordered::new();
    let result = loop {
        let calls = &mut instance.host().calls;
        running.extend(calls.pending.drain(..).map(|call| call.run()));
        calls.in_flight = running.len();
        let Some((token, result, response)) = running.next().await else {
            break Ok(());
        };
        shared.metrics.http_call(result);
        let (headers, body, trailers) = response.as_ref().map_or((0, 0, 0), |r| {
            (r.headers.len() + 1, r.body.len(), r.trailers.len())
        });
        let host = instance.host();
        host.calls.response = response;
        host.calls.allowed = true;
        let delivered = instance.http_call_response(token, headers, body, trailers);
        let host = instance.host();
        host.calls.response = None;
        host.calls.allowed = false;
        // No stream to answer: an early answer from the root context is dropped.
        host.local_response = None;
        if let Err(e) = delivered {
            break Err(e);
        }
    };
    instance.host().calls.reset();
    result
}

fn start(pool: &Pool, shared: &Shared) -> Option<Box<Instance>> {
    match pool.root_instance() {
        Ok(instance) => Some(instance),
        Err(e) => {
            failed(shared, &e, "root context start");
            None
        }
    }
}

fn failed(shared: &Shared, error: &CallError, phase: &str) {
    shared.metrics.failed(error.reason);
    tracing::warn!(
        plugin = &*shared.alias,
        phase,
        error = %error,
        "wasm filter failed; its root instance is replaced"
    );
}
