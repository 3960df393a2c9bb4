//! `limit_conn`: at most `max` requests in flight per client address; the next one is answered
//! 503 until one finishes (nginx `limit_conn`, what ingress-nginx's `limit-connections`
//! annotation sets). A request counts from its request head until its response body is done
//! (or dropped): the count is held by a guard in the request's context. Addresses with nothing
//! in flight take no memory. See `docs/plugins/limit_conn.md`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use http::{request, StatusCode};
use serde::Deserialize;

use hookway_crds::catalogue::PluginConfig;

use crate::plugin::respond::{self, ErrorType};
use crate::plugin::{BuildEnv, Ctx, Flow, Hook, Phases, Plugin, PluginError, PluginFactory};

/// The `limit_conn` plugin kind.
pub struct LimitConn;

/// The `limit_conn` config.
#[derive(Deserialize, Debug, Clone, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitConnConfig {
    /// Requests in flight allowed per client address (at least 1).
    pub max: u32,
    /// `text` or `json` 503 answers.
    #[serde(default)]
    pub error_type: ErrorType,
}

impl PluginConfig for LimitConnConfig {
    fn validate(&self) -> Result<(), String> {
        if self.max == 0 {
            return Err("max: must be at least 1".into());
        }
        Ok(())
    }
}

/// In-flight counts by client address.
type Counts = Arc<Mutex<HashMap<IpAddr, u32>>>;

/// A running `limit_conn`.
pub struct LimitConnPlugin {
    max: u32,
    error_type: ErrorType,
    counts: Counts,
}

impl PluginFactory for LimitConn {
    const NAME: &'static str = "limit_conn";
    type Config = LimitConnConfig;
    const PHASES: Phases = Phases::HEADS;

    fn build(config: LimitConnConfig, _env: &BuildEnv<'_>) -> Result<Arc<dyn Plugin>, String> {
        Ok(Arc::new(LimitConnPlugin {
            max: config.max,
            error_type: config.error_type,
            counts: Arc::default(),
        }))
    }
}

/// One counted request; dropping it (with the request's context) uncounts it.
struct Held {
    counts: Counts,
    ip: IpAddr,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// The guards of every `limit_conn` instance a request passed.
#[derive(Default)]
struct HeldSlots(Vec<Held>);

impl LimitConnPlugin {
    /// Counts a request of `ip`, or `None` when `max` are already in flight.
    fn acquire(&self, ip: IpAddr) -> Option<Held> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let n = counts.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Held {
            counts: Arc::clone(&self.counts),
            ip,
        })
    }

    /// Requests of `ip` in flight.
    #[cfg(test)]
    fn in_flight(&self, ip: IpAddr) -> u32 {
        self.counts.lock().unwrap().get(&ip).copied().unwrap_or(0)
    }
}

impl Plugin for LimitConnPlugin {
    fn phases(&self) -> Phases {
        Phases::HEADS
    }

    fn on_request<'a>(
        &'a self,
        _req: &'a mut request::Parts,
        ctx: &'a mut Ctx,
    ) -> Hook<'a, Result<Flow, PluginError>> {
        match self.acquire(ctx.client_ip) {
            Some(held) => {
                ctx.extensions
                    .get_or_insert_default::<HeldSlots>()
                    .0
                    .push(held);
                Hook::Ready(Ok(Flow::Continue))
            }
            None => Hook::Ready(Ok(Flow::Respond(respond::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many requests in flight from this address",
                self.error_type,
            )))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::harness::{ctx, on_request, request, validate};
    use serde_json::json;

    #[test]
    fn config_table() {
        assert!(validate("limit_conn", json!({"max": 1})).is_ok());
        assert!(validate("limit_conn", json!({"max": 0}))
            .unwrap_err()
            .contains("max"));
        assert!(validate("limit_conn", json!({})).is_err());
    }

    #[tokio::test]
    async fn the_count_is_held_until_the_request_context_is_dropped() {
        let plugin = LimitConnPlugin {
            max: 2,
            error_type: ErrorType::default(),
            counts: Arc::default(),
        };
        let status = |flow: Flow| match flow {
            Flow::Continue => 200,
            Flow::Respond(r) => r.status().as_u16(),
        };
        let mut req = request("GET", "/", &[]);
        let (mut a, mut b, mut c) = (ctx(), ctx(), ctx());
        let ip = a.client_ip;
        assert_eq!(
            status(on_request(&plugin, &mut req, &mut a).await.unwrap()),
            200
        );
        assert_eq!(
            status(on_request(&plugin, &mut req, &mut b).await.unwrap()),
            200
        );
        assert_eq!(
            status(on_request(&plugin, &mut req, &mut c).await.unwrap()),
            503
        );
        assert_eq!(plugin.in_flight(ip), 2);
        drop(a);
        assert_eq!(plugin.in_flight(ip), 1);
        let mut d = ctx();
        assert_eq!(
            status(on_request(&plugin, &mut req, &mut d).await.unwrap()),
            200
        );
        drop((b, c, d));
        assert_eq!(plugin.in_flight(ip), 0);
        assert!(
            plugin.counts.lock().unwrap().is_empty(),
            "no memory for idle addresses"
        );
    }
}
