//! The Gateway API's CRDs installed after the controller started (the chart's
//! `gatewayAPI.installCRDs` racing the controller, or a later `kubectl apply` of the upstream
//! file): discovery is asked again every `recheck` until every kind is served, and the kinds
//! that appeared are watched from then on, GRPCRoutes separately (an older install without
//! them, upgraded later).
//!
//! ```text
//!  every recheck: GET /apis/gateway.networking.k8s.io/v1 ─► core kinds now served?
//!     └─► start their reflectors ─► wait for their first list ─► GatewayApiSlot::set ─► poke
//!  (then GRPCRoutes alike; the loop ends when both are watched)
//! ```
//!
//! Cheap and bounded: one discovery request per interval while something is missing, nothing
//! once everything is watched. No RBAC beyond what every authenticated client has (discovery).

use std::time::Duration;

use kube::Client;
use tokio::task::JoinSet;
use tracing::{debug, info};

use crate::compile_loop::Poke;
use crate::index::GatewayApiSlot;
use crate::watch::{self, Scope};

/// Re-checks discovery every `recheck` until the Gateway API (with GRPCRoutes) is watched,
/// starting the reflectors of what appears; then holds them until the task is aborted (the
/// reflectors it started end with it).
pub async fn recheck(
    client: Client,
    scope: Scope,
    poke: Poke,
    slot: GatewayApiSlot,
    recheck: Duration,
) {
    let mut watchers = JoinSet::new();
    loop {
        let watched = slot.get();
        if watched.as_ref().is_some_and(|g| g.grpc_routes.is_some()) {
            break;
        }
        tokio::time::sleep(recheck).await;
        let served = match watch::gateway_api_kinds(&client).await {
            Ok(served) => served,
            Err(e) => {
                debug!(error = %e, "Gateway API still not served");
                continue;
            }
        };
        match watched {
            None if served.core => {
                info!(
                    grpc_routes = served.grpc_routes,
                    "Gateway API CRDs installed; watching them"
                );
                let stores = watch::gateway_api_stores(
                    &client,
                    &scope,
                    &poke,
                    &mut watchers,
                    served.grpc_routes,
                );
                if !stores.wait_until_ready().await {
                    return;
                }
                slot.set(stores);
                poke.poke();
            }
            Some(mut stores) if served.grpc_routes => {
                info!("GRPCRoute CRD installed; watching GRPCRoutes");
                let grpc = watch::grpc_route_store(&client, &scope, &poke, &mut watchers);
                if !grpc.wait_until_ready().await {
                    return;
                }
                stores.grpc_routes = Some(grpc);
                slot.set(stores);
                poke.poke();
            }
            _ => debug!(?served, "Gateway API not (fully) served yet"),
        }
    }
    // Everything is watched: keep the reflectors started here running.
    while watchers.join_next().await.is_some() {}
    std::future::pending::<()>().await
}
