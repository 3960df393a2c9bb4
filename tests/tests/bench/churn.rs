//! Endpoint churn in the background: one EndpointSlice patched on a fixed schedule, several
//! patches in flight, so the rate does not depend on how long the API server takes to answer.

use std::time::{Duration, Instant};

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Patch, PatchParams};
use kube::Api;
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

/// Endpoints per Service.
pub const ENDPOINTS: usize = 10;
/// Patches in flight at most; a tick that finds this many still waiting waits for one of them,
/// and the ticks missed meanwhile are made up at once, so the average rate holds as long as the
/// API server can take it at this concurrency.
pub const IN_FLIGHT: usize = 32;

/// The endpoints of core Service `b{j}`: endpoint `k` has an address of its own per
/// generation `generations[k]` (not loopback, which a real API server refuses; no traffic goes
/// there).
pub fn endpoints(j: usize, generations: &[u64]) -> serde_json::Value {
    let list: Vec<serde_json::Value> = generations
        .iter()
        .enumerate()
        .map(|(k, g)| {
            let host = 1 + k as u64 * 20 + g % 20;
            json!({"addresses": [format!("10.{}.{}.{host}", j / 200, j % 200 + 1)],
                   "conditions": {"ready": true}})
        })
        .collect();
    json!(list)
}

/// What the churn did.
#[derive(Debug, Default)]
pub struct Churned {
    /// Patches sent.
    pub sent: u64,
    /// Patches the API server applied (answered 2xx) before the stop.
    pub applied: u64,
    /// Patches sent before the stop and applied after it.
    pub applied_after: u64,
    /// Patches that failed.
    pub failed: u64,
    /// The first failure.
    pub first_error: Option<String>,
    /// Ticks that found [`IN_FLIGHT`] patches still waiting (and waited for one).
    pub waited: u64,
    /// From the first tick until the stop.
    pub elapsed: Duration,
}

impl Churned {
    /// Changes applied per second before the stop.
    pub fn rate(&self) -> f64 {
        self.applied as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn record(
        &mut self,
        done: Result<Result<(), kube::Error>, tokio::task::JoinError>,
        stopped: bool,
    ) {
        match done {
            Ok(Ok(())) if stopped => self.applied_after += 1,
            Ok(Ok(())) => self.applied += 1,
            Ok(Err(e)) => {
                self.failed += 1;
                self.first_error.get_or_insert_with(|| e.to_string());
            }
            Err(e) => {
                self.failed += 1;
                self.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

impl std::fmt::Display for Churned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} endpoint changes applied in {:?} ({:.1}/s), {} more sent before the stop and \
             applied after it; {} sent, {} failed; {} ticks found {IN_FLIGHT} in flight and waited",
            self.applied,
            self.elapsed,
            self.rate(),
            self.applied_after,
            self.sent,
            self.failed,
            self.waited
        )?;
        if let Some(e) = &self.first_error {
            write!(f, "; first failure: {e}")?;
        }
        Ok(())
    }
}

/// Changes one endpoint of one EndpointSlice (`b{j}-1` in `namespace`, round-robin over
/// `services`) `per_second` times a second, until `stop` turns true. Ticks missed while the
/// runtime was busy or [`IN_FLIGHT`] patches were waiting are made up at once (`Burst`), so the
/// schedule keeps its average rate; patches already sent when the stop comes are waited for and
/// counted apart.
pub async fn churn(
    client: kube::Client,
    namespace: String,
    services: usize,
    per_second: u64,
    mut stop: watch::Receiver<bool>,
) -> Churned {
    let slices: Api<EndpointSlice> = Api::namespaced(client, &namespace);
    let mut generations = vec![[0u64; ENDPOINTS]; services];
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / per_second));
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut in_flight = JoinSet::new();
    let mut churned = Churned::default();
    let started = Instant::now();
    loop {
        tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => break,
            _ = tick.tick() => {}
        }
        while let Some(done) = in_flight.try_join_next() {
            churned.record(done, false);
        }
        if in_flight.len() >= IN_FLIGHT {
            churned.waited += 1;
            tokio::select! {
                biased;
                _ = stop.wait_for(|stop| *stop) => break,
                Some(done) = in_flight.join_next() => churned.record(done, false),
            }
        }
        let n = churned.sent;
        let j = (n % services as u64) as usize;
        let k = ((n / services as u64) % ENDPOINTS as u64) as usize;
        generations[j][k] += 1;
        let patch = json!({"endpoints": endpoints(j, &generations[j])});
        let slices = slices.clone();
        in_flight.spawn(async move {
            slices
                .patch(
                    &format!("b{j}-1"),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
                .map(drop)
        });
        churned.sent += 1;
    }
    churned.elapsed = started.elapsed();
    while let Some(done) = in_flight.join_next().await {
        churned.record(done, true);
    }
    churned
}
