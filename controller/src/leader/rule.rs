//! The election rule, after client-go's `leaderelection`: a Lease held by someone else is
//! expired only once it has **not changed for its whole duration, measured on this replica's
//! monotonic clock**. The remote `renewTime` is never compared with the local wall clock, so a
//! replica whose clock is ahead (or behind) cannot see a live Lease as expired.
//!
//! ```text
//!  read Lease ─▶ changed since last seen? (resourceVersion, holder, renewTime)
//!                 yes ─▶ remember it, seen_at = now (monotonic)
//!  holder = us ─▶ renew          holder empty ─▶ take
//!  other holder ─▶ now - seen_at >= leaseDurationSeconds ? take : follow
//! ```
//!
//! This assumes, as client-go does, that clocks *run* at the same rate (no assumption on what
//! time they show); the leader gives up leadership after failing to renew for two thirds of the
//! duration, before any follower may take over.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::LeaseSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use tokio::time::Instant;

/// Duration assumed when a Lease does not say (`leaseDurationSeconds` absent).
pub const DEFAULT_DURATION: Duration = Duration::from_secs(15);

/// What identifies one version of the Lease's record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// `metadata.resourceVersion`.
    pub resource_version: Option<String>,
    /// `spec.holderIdentity`.
    pub holder: Option<String>,
    /// `spec.renewTime`, as written by the holder (compared for equality only).
    pub renew_time: Option<MicroTime>,
}

impl Record {
    /// The record of a Lease.
    pub fn of(resource_version: Option<&str>, spec: &LeaseSpec) -> Self {
        Self {
            resource_version: resource_version.map(str::to_string),
            holder: spec.holder_identity.clone().filter(|h| !h.is_empty()),
            renew_time: spec.renew_time.clone(),
        }
    }
}

/// The last record this replica saw, and when (its monotonic clock).
#[derive(Clone, Debug)]
pub struct Observed {
    /// The record.
    pub record: Record,
    /// When it was first seen.
    pub at: Instant,
}

/// What one election round decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Write the Lease with us as holder (`transition`: we were not the holder).
    Take {
        /// Whether holderIdentity changes.
        transition: bool,
    },
    /// Someone else holds a Lease that has not expired.
    Follow(String),
}

/// Updates `observed` with the Lease just read at `now` and decides.
pub fn decide(
    observed: &mut Option<Observed>,
    record: Record,
    duration: Duration,
    identity: &str,
    now: Instant,
) -> Decision {
    if observed.as_ref().is_none_or(|o| o.record != record) {
        *observed = Some(Observed {
            record: record.clone(),
            at: now,
        });
    }
    let seen_at = observed.as_ref().map_or(now, |o| o.at);
    match record.holder.as_deref() {
        Some(holder) if holder == identity => Decision::Take { transition: false },
        None => Decision::Take { transition: true },
        Some(holder) if now.saturating_duration_since(seen_at) < duration => {
            Decision::Follow(holder.to_string())
        }
        Some(_) => Decision::Take { transition: true },
    }
}

/// The Lease's duration (`leaseDurationSeconds`, else [`DEFAULT_DURATION`]).
pub fn duration_of(spec: &LeaseSpec) -> Duration {
    spec.lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map_or(DEFAULT_DURATION, Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn record(rv: &str, holder: Option<&str>, renewed: i64) -> Record {
        Record {
            resource_version: Some(rv.into()),
            holder: holder.map(String::from),
            renew_time: Some(MicroTime(Timestamp::from_second(renewed).unwrap())),
        }
    }

    /// (name, reads as (seconds after the start, record), decision of the last read).
    type Case = (&'static str, Vec<(u64, Record)>, Decision);

    #[test]
    fn expiry_is_measured_on_the_local_clock_only() {
        let d = Duration::from_secs(15);
        let t0 = Instant::now();
        let s = Duration::from_secs;
        // (steps of (seconds after t0, record read), expected decision of the last step)
        let take = Decision::Take { transition: true };
        let follow = Decision::Follow("other".into());
        let cases: Vec<Case> = vec![
            (
                "ours",
                vec![(0, record("1", Some("me"), 0))],
                Decision::Take { transition: false },
            ),
            ("free", vec![(0, record("1", None, 0))], take.clone()),
            // A renewTime from 1970 (the holder's clock is far behind) is not "expired": the
            // Lease was first seen just now.
            (
                "ancient renewTime, just seen",
                vec![(0, record("1", Some("other"), 0))],
                follow.clone(),
            ),
            // A renewTime in the future (clock ahead) does not hold the Lease forever.
            (
                "future renewTime, unchanged for the duration",
                vec![
                    (0, record("1", Some("other"), 4_000_000_000)),
                    (15, record("1", Some("other"), 4_000_000_000)),
                ],
                take.clone(),
            ),
            (
                "unchanged for less than the duration",
                vec![
                    (0, record("1", Some("other"), 5)),
                    (14, record("1", Some("other"), 5)),
                ],
                follow.clone(),
            ),
            (
                "renewed in between: the wait starts over",
                vec![
                    (0, record("1", Some("other"), 5)),
                    (10, record("2", Some("other"), 5)),
                    (24, record("2", Some("other"), 5)),
                ],
                follow.clone(),
            ),
            (
                "renewed, then silent for the duration",
                vec![
                    (0, record("1", Some("other"), 5)),
                    (10, record("2", Some("other"), 5)),
                    (25, record("2", Some("other"), 5)),
                ],
                take.clone(),
            ),
        ];
        for (name, steps, expected) in cases {
            let mut observed = None;
            let mut last = None;
            for (at, rec) in steps {
                last = Some(decide(&mut observed, rec, d, "me", t0 + s(at)));
            }
            assert_eq!(last.unwrap(), expected, "{name}");
        }
    }
}
