//! The upstream timeout, with one timer per client connection.
//!
//! `tokio::time::timeout` arms a new timer for every upstream call: it is put into the runtime's
//! timer wheel when first polled and taken out again when the call ends, each under the timer
//! driver's lock (about 600 instructions a request, measured with callgrind, bench/RESULTS.md).
//! A client connection's requests come one after another (HTTP/1.1), so one timer serves them
//! all: each call moves its deadline, which, while the timer is armed and the new deadline is
//! later (as it is when the timeouts are equal), is a compare-and-swap; the wheel sees the entry
//! again only when its old deadline comes. A call that finds the timer lent to another one (HTTP/2
//! requests at the same time) arms its own, as before.

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::{Mutex, PoisonError};
use std::task::Poll;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// A client connection's timer for the upstream calls of its requests.
#[derive(Debug, Default)]
pub struct UpstreamTimer(Mutex<Slot>);

#[derive(Debug, Default)]
enum Slot {
    /// No call has needed it yet.
    #[default]
    Unused,
    /// Here, for the next call.
    Here(Pin<Box<Sleep>>),
    /// A call has it.
    Lent,
}

/// The timer lent to one call; given back when the call ends, however it ends.
struct Lent<'a> {
    timer: &'a UpstreamTimer,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        if let Some(sleep) = self.sleep.take() {
            *self.timer.lock() = Slot::Here(sleep);
        }
    }
}

impl UpstreamTimer {
    fn lock(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `fut` for at most `after`: `None` when the time ran out first (what
    /// `tokio::time::timeout` does, with this connection's timer).
    pub async fn timeout<F: Future>(&self, after: Duration, fut: F) -> Option<F::Output> {
        let deadline = Instant::now() + after;
        // The guard goes at the end of this statement, before anything is awaited.
        let taken = std::mem::replace(&mut *self.lock(), Slot::Lent);
        let sleep = match taken {
            Slot::Here(mut sleep) => {
                sleep.as_mut().reset(deadline);
                sleep
            }
            Slot::Unused => Box::pin(tokio::time::sleep_until(deadline)),
            Slot::Lent => return tokio::time::timeout_at(deadline, fut).await.ok(),
        };
        let mut lent = Lent {
            timer: self,
            sleep: Some(sleep),
        };
        let mut fut = pin!(fut);
        poll_fn(|cx| {
            if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                return Poll::Ready(Some(out));
            }
            match lent.sleep.as_mut() {
                Some(sleep) => sleep.as_mut().poll(cx).map(|()| None),
                None => Poll::Pending,
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn calls_one_after_another_share_the_timer_and_each_gets_its_own_deadline() {
        let timer = UpstreamTimer::default();
        let ms = Duration::from_millis;
        // (timeout, how long the call takes, finished in time)
        let table = [
            (ms(100), ms(10), true),
            (ms(100), ms(150), false),
            (ms(100), ms(99), true),
            (ms(50), ms(60), false),
            (ms(300), ms(200), true),
            (ms(20), ms(10), true),
            (ms(20), ms(30), false),
        ];
        for (i, (after, takes, in_time)) in table.into_iter().enumerate() {
            let started = Instant::now();
            let out = timer
                .timeout(after, async {
                    tokio::time::sleep(takes).await;
                    i
                })
                .await;
            assert_eq!(out, in_time.then_some(i), "call {i}");
            let ended = if in_time { takes } else { after };
            let took = started.elapsed();
            assert!(
                took >= ended && took <= ended + ms(2),
                "call {i}: {took:?}, not {ended:?}"
            );
            assert!(matches!(*timer.lock(), Slot::Here(_)), "given back after call {i}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_while_the_timer_is_lent_arms_its_own_and_a_dropped_call_gives_it_back() {
        let timer = UpstreamTimer::default();
        let ms = Duration::from_millis;
        let slow = timer.timeout(ms(100), tokio::time::sleep(ms(500)));
        let fast = timer.timeout(ms(100), async {
            tokio::time::sleep(ms(5)).await;
            7
        });
        let mut slow = Box::pin(slow);
        // The first call takes the timer; the second finds it lent.
        assert!(futures::poll!(slow.as_mut()).is_pending());
        assert!(matches!(*timer.lock(), Slot::Lent));
        assert_eq!(fast.await, Some(7));
        drop(slow);
        assert!(matches!(*timer.lock(), Slot::Here(_)), "given back on drop");
        let out = timer.timeout(ms(30), tokio::time::sleep(ms(40))).await;
        assert_eq!(out, None);
    }
}
