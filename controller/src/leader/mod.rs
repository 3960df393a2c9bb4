//! Leader election on a `coordination.k8s.io/v1` Lease: the leader writes status, every
//! replica serves streams.
//!
//! Every `renew_every` the replica reads the Lease and then
//! - creates it when missing (holder = us),
//! - renews it when we hold it,
//! - takes it over when it is free, or when it has not changed for its duration as measured on
//!   this replica's monotonic clock ([`rule`]: client-go's rule; the holder's `renewTime` is
//!   never compared with our wall clock, so skewed clocks cannot elect two leaders),
//! - otherwise follows.
//!
//! Writes use the Lease's `resourceVersion`, so two replicas racing for it cannot both win (the
//! loser gets 409). Leadership is dropped *at once* when another holder is seen, and when we
//! failed to renew for two thirds of the lease duration, counted from the start of our last
//! successful renewal (before anyone else may take over).
//!
//! The wall clock only fills in `acquireTime` / `renewTime` for people reading the Lease.

pub mod rule;
pub mod store;

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::ObjectMeta;
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::metrics::Metrics;
use rule::{decide, duration_of, Decision, Observed, Record};
use store::{LeaseStore, Written};

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

/// The wall clock written into the Lease (injected in tests to skew it).
pub trait WallClock: Send + Sync {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl WallClock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// Runs the election on the API server until `shutdown` fires, then releases the lease if held.
pub async fn run(
    client: Client,
    config: LeaseConfig,
    leader: watch::Sender<bool>,
    metrics: Metrics,
    shutdown: watch::Receiver<bool>,
) {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let metrics = move |is_leader: bool| metrics.leader.set(i64::from(is_leader));
    run_with(&api, &SystemClock, config, leader, metrics, shutdown).await;
}

/// Runs the election on `store`, writing times from `clock` and reporting leadership to
/// `leader` and `report`, until `shutdown` fires; then releases the lease if held.
pub async fn run_with<S: LeaseStore, C: WallClock>(
    store: &S,
    clock: &C,
    config: LeaseConfig,
    leader: watch::Sender<bool>,
    report: impl Fn(bool),
    mut shutdown: watch::Receiver<bool>,
) {
    let mut observed: Option<Observed> = None;
    let mut last_renew: Option<Instant> = None;
    let step_down_after = config.duration.mul_f64(2.0 / 3.0);
    loop {
        let started = Instant::now();
        match round(store, clock, &config, &mut observed).await {
            Ok(true) => {
                last_renew = Some(started);
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
        report(*leader.borrow());
        // While leading, wake up in time to step down even if a round hangs.
        let next = match last_renew {
            Some(t) if *leader.borrow() => config
                .renew_every
                .min((t + step_down_after).saturating_duration_since(Instant::now())),
            _ => config.renew_every,
        };
        tokio::select! {
            _ = tokio::time::sleep(next) => {}
            _ = shutdown.wait_for(|s| *s) => break,
        }
    }
    if leader.send_replace(false) {
        release(store, &config).await;
    }
    report(false);
}

/// One round: `Ok(true)` when we hold the lease afterwards.
async fn round<S: LeaseStore, C: WallClock>(
    store: &S,
    clock: &C,
    config: &LeaseConfig,
    observed: &mut Option<Observed>,
) -> kube::Result<bool> {
    let Some(mut lease) = store.get(&config.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(config.name.clone()),
                namespace: Some(config.namespace.clone()),
                ..Default::default()
            },
            spec: Some(our_spec(config, clock.now(), None)),
        };
        return Ok(store.create(&lease).await? == Written::Done);
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let record = Record::of(lease.metadata.resource_version.as_deref(), &spec);
    match decide(
        observed,
        record,
        duration_of(&spec),
        &config.identity,
        Instant::now(),
    ) {
        Decision::Follow(holder) => {
            debug!(%holder, "following");
            Ok(false)
        }
        Decision::Take { transition } => {
            let mut next = our_spec(config, clock.now(), Some(&spec));
            if !transition {
                next.acquire_time = spec.acquire_time.clone().or(next.acquire_time);
                next.lease_transitions = spec.lease_transitions;
            }
            lease.spec = Some(next);
            Ok(store.replace(&config.name, &lease).await? == Written::Done)
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

async fn release<S: LeaseStore>(store: &S, config: &LeaseConfig) {
    let Ok(Some(mut lease)) = store.get(&config.name).await else {
        return;
    };
    if let Some(spec) = lease.spec.as_mut() {
        if spec.holder_identity.as_deref() == Some(config.identity.as_str()) {
            spec.holder_identity = None;
            spec.renew_time = None;
            match store.replace(&config.name, &lease).await {
                Ok(Written::Done) => info!(identity = %config.identity, "lease released"),
                Ok(Written::Conflict) => warn!("could not release the lease: it changed"),
                Err(e) => warn!(error = %e, "could not release the lease"),
            }
        }
    }
}

#[cfg(test)]
mod tests;
