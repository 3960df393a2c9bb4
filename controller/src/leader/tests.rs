//! Two replicas electing on an in-memory Lease store, on tokio's paused clock: leadership
//! intervals are recorded at the virtual instant they change and must never overlap, whatever
//! the replicas' wall clocks say.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use k8s_openapi::jiff::SignedDuration;

use super::*;

/// The Lease in memory, with resourceVersion checks and per-replica network cuts.
#[derive(Default)]
struct Memory {
    lease: Mutex<Option<Lease>>,
    version: AtomicU64,
    cut_off: Mutex<HashSet<String>>,
}

/// One replica's view of [`Memory`].
struct View {
    memory: Arc<Memory>,
    who: String,
}

impl View {
    fn reachable(&self) -> kube::Result<()> {
        if self.memory.cut_off.lock().unwrap().contains(&self.who) {
            return Err(kube::Error::Service("network cut".into()));
        }
        Ok(())
    }

    fn store(&self, lease: &Lease) {
        let mut lease = lease.clone();
        let rv = self.memory.version.fetch_add(1, Ordering::SeqCst) + 1;
        lease.metadata.resource_version = Some(rv.to_string());
        *self.memory.lease.lock().unwrap() = Some(lease);
    }
}

impl LeaseStore for View {
    async fn get(&self, _name: &str) -> kube::Result<Option<Lease>> {
        self.reachable()?;
        Ok(self.memory.lease.lock().unwrap().clone())
    }

    async fn create(&self, lease: &Lease) -> kube::Result<Written> {
        self.reachable()?;
        if self.memory.lease.lock().unwrap().is_some() {
            return Ok(Written::Conflict);
        }
        self.store(lease);
        Ok(Written::Done)
    }

    async fn replace(&self, _name: &str, lease: &Lease) -> kube::Result<Written> {
        self.reachable()?;
        let current = self
            .memory
            .lease
            .lock()
            .unwrap()
            .as_ref()
            .and_then(|l| l.metadata.resource_version.clone());
        if current != lease.metadata.resource_version {
            return Ok(Written::Conflict);
        }
        self.store(lease);
        Ok(Written::Done)
    }
}

/// A wall clock `skew` away from the (virtual) true time.
struct Skewed {
    start: Instant,
    base: Timestamp,
    skew: SignedDuration,
}

impl WallClock for Skewed {
    fn now(&self) -> Timestamp {
        let elapsed = SignedDuration::try_from(self.start.elapsed()).unwrap();
        self.base + elapsed + self.skew
    }
}

/// Leadership intervals of one replica, in virtual time since the test started.
type Intervals = Arc<Mutex<Vec<(Duration, Option<Duration>)>>>;

struct Replica {
    intervals: Intervals,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

const DURATION: Duration = Duration::from_secs(15);

fn spawn(memory: &Arc<Memory>, who: &str, skew_secs: i64, t0: Instant) -> Replica {
    let view = View {
        memory: Arc::clone(memory),
        who: who.into(),
    };
    let clock = Skewed {
        start: t0,
        base: Timestamp::from_second(1_800_000_000).unwrap(),
        skew: SignedDuration::from_secs(skew_secs),
    };
    let config = LeaseConfig {
        name: "hookway-controller".into(),
        namespace: "hookway-system".into(),
        identity: who.into(),
        duration: DURATION,
        renew_every: DURATION / 3,
    };
    let (leader, mut watch_leader) = watch::channel(false);
    let intervals: Intervals = Arc::default();
    let recorded = Arc::clone(&intervals);
    // Records every change at the virtual instant it happens (paused time does not advance
    // while tasks are runnable).
    tokio::spawn(async move {
        while watch_leader.changed().await.is_ok() {
            let now = t0.elapsed();
            let mut iv = recorded.lock().unwrap();
            if *watch_leader.borrow() {
                iv.push((now, None));
            } else if let Some(last) = iv.last_mut().filter(|l| l.1.is_none()) {
                last.1 = Some(now);
            }
        }
    });
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        run_with(&view, &clock, config, leader, |_| {}, stopped).await;
    });
    Replica {
        intervals,
        stop,
        task,
    }
}

fn overlap(a: &Intervals, b: &Intervals, end: Duration) -> Option<String> {
    let a = a.lock().unwrap().clone();
    let b = b.lock().unwrap().clone();
    for (a0, a1) in &a {
        for (b0, b1) in &b {
            let (a1, b1) = (a1.unwrap_or(end), b1.unwrap_or(end));
            if a0.max(b0) < &a1.min(b1) {
                return Some(format!("{a0:?}..{a1:?} and {b0:?}..{b1:?}"));
            }
        }
    }
    None
}

fn led(iv: &Intervals) -> bool {
    !iv.lock().unwrap().is_empty()
}

/// (skew of the first replica, skew of the second) in seconds: far behind, far ahead, both.
const SKEWS: [(i64, i64); 4] = [(0, 3_600), (0, -3_600), (-86_400, 86_400), (30, -30)];

#[tokio::test(start_paused = true)]
async fn skewed_clocks_never_elect_two_leaders() {
    for (skew_a, skew_b) in SKEWS {
        let t0 = Instant::now();
        let memory = Arc::new(Memory::default());
        let a = spawn(&memory, "a", skew_a, t0);
        // b starts once a leads.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let b = spawn(&memory, "b", skew_b, t0);
        tokio::time::sleep(DURATION * 10).await;
        let end = t0.elapsed();
        assert_eq!(
            overlap(&a.intervals, &b.intervals, end),
            None,
            "skews {skew_a}/{skew_b}"
        );
        assert!(
            led(&a.intervals) && !led(&b.intervals),
            "skews {skew_a}/{skew_b}: a keeps the lease"
        );
        for r in [a, b] {
            r.stop.send_replace(true);
            r.task.await.unwrap();
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_cut_off_leader_steps_down_before_the_other_takes_over() {
    for (skew_a, skew_b) in SKEWS {
        let t0 = Instant::now();
        let memory = Arc::new(Memory::default());
        let a = spawn(&memory, "a", skew_a, t0);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let b = spawn(&memory, "b", skew_b, t0);
        tokio::time::sleep(DURATION * 2).await;
        memory.cut_off.lock().unwrap().insert("a".into());
        tokio::time::sleep(DURATION * 4).await;
        let end = t0.elapsed();
        assert_eq!(
            overlap(&a.intervals, &b.intervals, end),
            None,
            "skews {skew_a}/{skew_b}"
        );
        assert!(led(&b.intervals), "skews {skew_a}/{skew_b}: b took over");
        let a_ended = a.intervals.lock().unwrap()[0].1.expect("a stepped down");
        let b_began = b.intervals.lock().unwrap()[0].0;
        assert!(
            b_began >= a_ended + DURATION / 3,
            "{a_ended:?} → {b_began:?}"
        );
        for r in [a, b] {
            r.stop.send_replace(true);
            r.task.await.unwrap();
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_released_lease_is_taken_at_once() {
    let t0 = Instant::now();
    let memory = Arc::new(Memory::default());
    let a = spawn(&memory, "a", 0, t0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let b = spawn(&memory, "b", 3_600, t0);
    tokio::time::sleep(DURATION).await;
    a.stop.send_replace(true);
    a.task.await.unwrap();
    let released = t0.elapsed();
    tokio::time::sleep(DURATION / 2).await;
    let began = b.intervals.lock().unwrap().first().map(|i| i.0);
    assert!(
        began.is_some_and(|t| t >= released && t <= released + DURATION / 3),
        "{began:?} after release at {released:?}"
    );
    b.stop.send_replace(true);
    b.task.await.unwrap();
}
