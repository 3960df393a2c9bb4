//! Timers whose tokio timer entries are kept per thread and used again, so that a request's
//! timeout does not register a new entry in tokio's timer wheel and deregister it again.
//!
//! Two timeouts run for every HTTP/1.1 request: hyper's header-read timeout (armed when hyper
//! starts waiting for a request head, dropped when the head is in) and the upstream timeout
//! (around the upstream client's `Endpoint::send_head`). With
//! tokio's own `Sleep`, each of them registered an entry in the timer wheel on its first poll
//! (the driver's lock, the wheel's level and slot lists: ~380 instructions) and removed it again
//! when dropped (~170), every request (bench/RESULTS.md, issue 18).
//!
//! Here a [`PooledSleep`] takes a tokio `Sleep` when it is first polled, from a small pool of
//! the thread that polls it, and gives it back when dropped, still registered at its old
//! deadline. Taken again by a sleep with a later deadline (the common case: the timeouts of a
//! pool have one duration), it is polled as it is: it may wake the task at the earlier
//! deadline, and the sleep then sees that its own has not come and [`Sleep::reset`]s it to
//! that (once per timeout period and pooled timer, not once per request). A deadline earlier
//! than the one registered is registered anew first, as before. So a sleep is ready exactly
//! when its own deadline has passed, never at an earlier request's.
//!
//! A `Sleep` belongs to the runtime it was first polled in; every pool has an owner (one
//! [`SleepPool`], made by a server's run or an upstream client, both of which live in one
//! runtime), and a thread's pool is emptied when another owner uses it. A pooled `Sleep` keeps
//! the waker of its last task until it is used again or its deadline passes (a spurious wake-up
//! then, which futures allow).

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// Pooled `Sleep`s kept per thread and per kind, at most.
const POOL_CAP: usize = 256;

/// The kinds of pool: deadlines of one kind are mostly of one duration, so a reused entry's
/// new deadline is later than its old one (the fast path).
const KINDS: usize = 2;

struct Pool {
    owner: u64,
    sleeps: Vec<Pin<Box<Sleep>>>,
}

thread_local! {
    static POOLS: RefCell<[Pool; KINDS]> = const {
        RefCell::new([
            Pool { owner: 0, sleeps: Vec::new() },
            Pool { owner: 0, sleeps: Vec::new() },
        ])
    };
}

/// Where [`PooledSleep`]s of one owner and kind keep their tokio timers.
#[derive(Clone, Copy, Debug)]
pub struct SleepPool {
    owner: u64,
    kind: usize,
}

impl SleepPool {
    /// A pool for hyper's header-read timeouts of one server run.
    pub fn header_reads() -> Self {
        Self::new(0)
    }

    /// A pool for upstream timeouts of one upstream client.
    pub fn upstream_calls() -> Self {
        Self::new(1)
    }

    fn new(kind: usize) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Self {
            owner: NEXT.fetch_add(1, Ordering::Relaxed),
            kind,
        }
    }

    /// A sleep until `deadline`. Nothing is registered until it is first polled.
    pub fn sleep_until(self, deadline: Instant) -> PooledSleep {
        PooledSleep {
            deadline,
            sleep: None,
            pool: self,
        }
    }

    /// `fut`, or [`Elapsed`] when it has not finished within `duration` from now.
    pub fn timeout<F: Future + ?Sized>(
        self,
        duration: Duration,
        fut: Pin<&mut F>,
    ) -> Timeout<'_, F> {
        Timeout {
            fut,
            sleep: self.sleep_until(Instant::now() + duration),
        }
    }

    fn take(self) -> Option<Pin<Box<Sleep>>> {
        POOLS
            .try_with(|pools| {
                let mut pools = pools.try_borrow_mut().ok()?;
                let pool = &mut pools[self.kind];
                if pool.owner != self.owner {
                    // Another owner's (perhaps another runtime's) timers: not for this one.
                    pool.sleeps.clear();
                    pool.owner = self.owner;
                    return None;
                }
                pool.sleeps.pop()
            })
            .ok()
            .flatten()
    }

    fn give(self, sleep: Pin<Box<Sleep>>) {
        let _ = POOLS.try_with(|pools| {
            let Ok(mut pools) = pools.try_borrow_mut() else {
                return;
            };
            let pool = &mut pools[self.kind];
            if pool.owner != self.owner {
                pool.sleeps.clear();
                pool.owner = self.owner;
            }
            if pool.sleeps.len() < POOL_CAP {
                pool.sleeps.push(sleep);
            }
        });
    }
}

/// A sleep until a deadline whose tokio timer comes from, and goes back to, a [`SleepPool`].
#[derive(Debug)]
pub struct PooledSleep {
    deadline: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
    pool: SleepPool,
}

impl Future for PooledSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let deadline = this.deadline;
        let sleep = match &mut this.sleep {
            Some(sleep) => sleep,
            None => {
                let sleep = match this.pool.take() {
                    // Registered at an earlier request's deadline (or already fired): left as it
                    // is; it wakes this task early once, and is then reset (below).
                    Some(sleep) if sleep.deadline() <= deadline => sleep,
                    Some(mut sleep) => {
                        sleep.as_mut().reset(deadline);
                        sleep
                    }
                    None => Box::pin(tokio::time::sleep_until(deadline)),
                };
                this.sleep.insert(sleep)
            }
        };
        loop {
            std::task::ready!(sleep.as_mut().poll(cx));
            if sleep.deadline() >= deadline {
                return Poll::Ready(());
            }
            // An earlier deadline fired: this sleep's own is registered now.
            sleep.as_mut().reset(deadline);
        }
    }
}

impl Drop for PooledSleep {
    fn drop(&mut self) {
        if let Some(sleep) = self.sleep.take() {
            self.pool.give(sleep);
        }
    }
}

impl hyper::rt::Sleep for PooledSleep {}

/// hyper's [`Timer`](hyper::rt::Timer) with pooled tokio timers (`TokioTimer`'s clock: tokio's,
/// so a paused test clock applies).
#[derive(Clone, Debug)]
pub struct PooledTimer {
    pool: SleepPool,
}

impl PooledTimer {
    /// A timer with a pool of its own.
    pub fn new(pool: SleepPool) -> Self {
        Self { pool }
    }
}

impl hyper::rt::Timer for PooledTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(self.pool.sleep_until(Instant::now() + duration))
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(self.pool.sleep_until(Instant::from_std(deadline)))
    }

    fn now(&self) -> std::time::Instant {
        Instant::now().into_std()
    }
}

/// The time ran out (see [`SleepPool::timeout`]).
#[derive(Debug, PartialEq, Eq)]
pub struct Elapsed;

/// A pinned future with a deadline (tokio's `Timeout`, with a [`PooledSleep`]). It borrows
/// the future, which stays where it was pinned (a request's send future is large: it is not
/// moved into the timeout and with it again).
#[derive(Debug)]
pub struct Timeout<'a, F: ?Sized> {
    fut: Pin<&'a mut F>,
    sleep: PooledSleep,
}

impl<F: Future + ?Sized> Future for Timeout<'_, F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let had_budget = tokio::task::coop::has_budget_remaining();
        if let Poll::Ready(out) = this.fut.as_mut().poll(cx) {
            return Poll::Ready(Ok(out));
        }
        let sleep = Pin::new(&mut this.sleep);
        // As tokio's `Timeout`: when the future used up the task's budget, the deadline is
        // still looked at (else a future that always uses it up would never time out).
        let elapsed = if had_budget && !tokio::task::coop::has_budget_remaining() {
            Pin::new(&mut tokio::task::coop::unconstrained(sleep)).poll(cx)
        } else {
            sleep.poll(cx)
        };
        elapsed.map(|()| Err(Elapsed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many `Sleep`s this thread's pool of `pool`'s kind holds for `pool`.
    fn pooled(pool: SleepPool) -> usize {
        POOLS.with(|p| {
            let p = &p.borrow()[pool.kind];
            if p.owner == pool.owner {
                p.sleeps.len()
            } else {
                0
            }
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_reused_timer_fires_at_its_new_deadline() {
        let pool = SleepPool::upstream_calls();
        // Armed and dropped early: its timer goes back to the pool, registered.
        let start = Instant::now();
        let mut first = Box::pin(pool.sleep_until(start + Duration::from_millis(300)));
        assert!(futures::poll!(first.as_mut()).is_pending());
        drop(first);
        assert_eq!(pooled(pool), 1);
        // Taken again with a later deadline: it fires at that one, not at the old one.
        tokio::time::advance(Duration::from_millis(200)).await;
        let second = pool.sleep_until(Instant::now() + Duration::from_millis(300));
        assert_eq!(pooled(pool), 1, "taken at the first poll, not before");
        second.await;
        assert_eq!(start.elapsed(), Duration::from_millis(500));
        assert_eq!(pooled(pool), 1);
        // An earlier deadline than the one registered is registered anew.
        let mut later = Box::pin(pool.sleep_until(Instant::now() + Duration::from_secs(60)));
        assert!(futures::poll!(later.as_mut()).is_pending());
        drop(later);
        let started = Instant::now();
        pool.sleep_until(started + Duration::from_millis(10)).await;
        assert_eq!(started.elapsed(), Duration::from_millis(10));
    }

    #[tokio::test(start_paused = true)]
    async fn each_timeout_is_its_own() {
        let pool = SleepPool::upstream_calls();
        for round in 0..3 {
            let fast = std::pin::pin!(async { round });
            assert_eq!(
                pool.timeout(Duration::from_millis(300), fast).await,
                Ok(round)
            );
            let started = Instant::now();
            let quick = std::pin::pin!(tokio::time::sleep(Duration::from_millis(100)));
            assert_eq!(
                pool.timeout(Duration::from_millis(300), quick).await,
                Ok(())
            );
            let slow = std::pin::pin!(tokio::time::sleep(Duration::from_secs(5)));
            assert_eq!(
                pool.timeout(Duration::from_millis(300), slow).await,
                Err(Elapsed)
            );
            assert_eq!(
                started.elapsed(),
                Duration::from_millis(400),
                "round {round}"
            );
        }
    }

    #[test]
    fn another_owners_timers_are_not_used() {
        let a = SleepPool::upstream_calls();
        let b = SleepPool::upstream_calls();
        for pool in [a, b, a] {
            // A runtime of its own each time: a timer of a runtime that is gone would panic.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut s =
                    std::pin::pin!(pool.sleep_until(Instant::now() + Duration::from_secs(1)));
                assert!(futures::poll!(s.as_mut()).is_pending());
            });
            assert_eq!(pooled(pool), 1);
        }
    }
}
