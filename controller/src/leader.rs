//! Leader election on a `coordination.k8s.io/v1` Lease: the leader writes status, every
//! replica serves streams.
//!
//! Every `renew_every` the replica reads the Lease and then
//! - creates it when missing (holder = us),
//! - renews it when we hold it,
//! - takes it over when it expired (`renewTime + leaseDurationSeconds` in the past) or is free,
//! - otherwise follows.
//!
//! Writes use the Lease's `resourceVersion`, so two replicas racing for it cannot both win (the
//! loser gets 409). Leadership is dropped *at once* when another holder is seen, and when we
//! failed to renew for two thirds of the lease duration (before anyone else may take over).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::metrics::Metrics;

/// Lease settings.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Lease name.
    pub name: String,
    /// Lease namespace.
    pub namespace: String,
    /// This replica's identity (pod name).
    pub identity: String,
    /// `leaseDurationSeconds`.
    pub duration: Duration,
    /// How often to renew / retry.
    pub renew_every: Duration,
}

/// What one election round decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Write the Lease with us as holder (`transition`: we were not the holder).
    Take {
        /// Whether holderIdentity changes.
        transition: bool,
    },
    /// Someone else holds a valid lease.
    Follow(String),
}

/// Pure election rule for an existing Lease.
pub fn decide(spec: &LeaseSpec, identity: &str, now: Timestamp) -> Decision {
    match spec.holder_identity.as_deref() {
        Some(holder) if holder == identity => Decision::Take { transition: false },
        None | Some("") => Decision::Take { transition: true },
        Some(holder) => {
            let duration =
                SignedDuration::from_secs(spec.lease_duration_seconds.unwrap_or(15).into());
            let renewed = spec
                .renew_time
                .as_ref()
                .or(spec.acquire_time.as_ref())
                .map(|t| t.0);
            match renewed {
                Some(t) if t + duration > now => Decision::Follow(holder.to_string()),
                _ => Decision::Take { transition: true },
            }
        }
    }
}

/// Runs the election until `shutdown` fires, then releases the lease if held.
pub async fn run(
    client: Client,
    config: LeaseConfig,
    leader: watch::Sender<bool>,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let mut last_renew: Option<Instant> = None;
    let step_down_after = config.duration.mul_f64(2.0 / 3.0);
    loop {
        match round(&api, &config).await {
            Ok(true) => {
                last_renew = Some(Instant::now());
                if !*leader.borrow() {
                    info!(identity = %config.identity, lease = %config.name, "became leader");
                }
                leader.send_if_modified(|l| !std::mem::replace(l, true));
            }
            Ok(false) => {
                last_renew = None;
                if leader.send_if_modified(|l| std::mem::replace(l, false)) {
                    warn!(identity = %config.identity, "lost the lease; status writes stopped");
                }
            }
            Err(e) => {
                warn!(identity = %config.identity, error = %e, "lease round failed");
                if last_renew.is_some_and(|t| t.elapsed() >= step_down_after)
                    && leader.send_if_modified(|l| std::mem::replace(l, false))
                {
                    warn!(identity = %config.identity, "could not renew the lease in time; status writes stopped");
                }
            }
        }
        metrics.leader.set(i64::from(*leader.borrow()));
        tokio::select! {
            _ = tokio::time::sleep(config.renew_every) => {}
            _ = shutdown.wait_for(|s| *s) => break,
        }
    }
    if leader.send_replace(false) {
        release(&api, &config).await;
    }
    metrics.leader.set(0);
}

/// One round: `Ok(true)` when we hold the lease afterwards.
async fn round(api: &Api<Lease>, config: &LeaseConfig) -> kube::Result<bool> {
    let now = Timestamp::now();
    let Some(mut lease) = api.get_opt(&config.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(config.name.clone()),
                namespace: Some(config.namespace.clone()),
                ..Default::default()
            },
            spec: Some(our_spec(config, now, None)),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.clone().unwrap_or_default();
    match decide(&spec, &config.identity, now) {
        Decision::Follow(holder) => {
            debug!(%holder, "following");
            Ok(false)
        }
        Decision::Take { transition } => {
            let mut next = our_spec(config, now, Some(&spec));
            if !transition {
                next.acquire_time = spec.acquire_time.clone().or(next.acquire_time);
                next.lease_transitions = spec.lease_transitions;
            }
            lease.spec = Some(next);
            match api
                .replace(&config.name, &PostParams::default(), &lease)
                .await
            {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
    }
}

fn our_spec(config: &LeaseConfig, now: Timestamp, previous: Option<&LeaseSpec>) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(config.identity.clone()),
        lease_duration_seconds: Some(config.duration.as_secs().max(1) as i32),
        acquire_time: Some(MicroTime(now)),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(previous.and_then(|p| p.lease_transitions).unwrap_or(0) + 1),
        ..Default::default()
    }
}

async fn release(api: &Api<Lease>, config: &LeaseConfig) {
    let Ok(Some(mut lease)) = api.get_opt(&config.name).await else {
        return;
    };
    if let Some(spec) = lease.spec.as_mut() {
        if spec.holder_identity.as_deref() == Some(config.identity.as_str()) {
            spec.holder_identity = None;
            spec.renew_time = None;
            match api
                .replace(&config.name, &PostParams::default(), &lease)
                .await
            {
                Ok(_) => info!(identity = %config.identity, "lease released"),
                Err(e) => warn!(error = %e, "could not release the lease"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: Option<&str>, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(String::from),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(Timestamp::from_second(renewed).unwrap())),
            ..Default::default()
        }
    }

    #[test]
    fn election_rules() {
        let now = Timestamp::from_second(1000).unwrap();
        assert_eq!(
            decide(&spec(Some("me"), 999), "me", now),
            Decision::Take { transition: false }
        );
        assert_eq!(
            decide(&spec(None, 999), "me", now),
            Decision::Take { transition: true }
        );
        assert_eq!(
            decide(&spec(Some("other"), 990), "me", now),
            Decision::Follow("other".into())
        );
        assert_eq!(
            decide(&spec(Some("other"), 980), "me", now),
            Decision::Take { transition: true }
        );
    }
}
