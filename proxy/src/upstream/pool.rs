//! One upstream of the snapshot, ready to call: its nodes, balancer, client and limits.

use std::sync::Arc;
use std::time::Duration;

use http::uri::{Authority, Scheme as UriScheme};
use http::HeaderName;
use prometheus::{Histogram, IntCounter};

use hookway_crds::snapshot::{ObjectKey, Scheme, UpstreamEntry, UpstreamProtocol};

use super::balancer::Balancer;
use super::client::{ClientCache, ClientKey, HttpClient};
use super::endpoint::Endpoint;
use crate::metrics::Metrics;

/// A node: its address and its keep-alive connections.
#[derive(Debug)]
pub struct Node {
    /// `host:port` (IPv6 in brackets).
    pub authority: Authority,
    /// The endpoint with the node's idle connections (shared across snapshots).
    pub endpoint: Arc<Endpoint>,
}

/// An upstream that cannot be prepared.
#[derive(Debug, thiserror::Error)]
#[error("upstream {key}: {message}")]
pub struct PoolError {
    /// Which upstream.
    pub key: ObjectKey,
    /// Why.
    pub message: String,
}

/// A prepared upstream.
pub struct UpstreamPool {
    /// The Service key.
    pub key: ObjectKey,
    /// `http` or `https`.
    pub scheme: UriScheme,
    /// The HTTP version spoken to the nodes (and to a plugin's target).
    pub protocol: UpstreamProtocol,
    /// Nodes in snapshot order.
    pub nodes: Box<[Node]>,
    /// Node selection.
    pub balancer: Balancer,
    /// Header hashed by `header-hash`.
    pub hash_header: Option<HeaderName>,
    /// Response-head timeout.
    pub request_timeout: Duration,
    /// Extra attempts for idempotent requests.
    pub retries: u32,
    /// Statuses that trigger a retry.
    pub retry_on_status: Box<[u16]>,
    /// The client (for targets a plugin chose; nodes hold their endpoints).
    pub client: HttpClient,
    /// `hookway_upstream_duration_seconds{service}` for this upstream.
    pub upstream_duration: Histogram,
    /// `hookway_upstream_connect_errors_total{service}` for this upstream.
    pub connect_errors: IntCounter,
}

/// `host:port` with IPv6 literals bracketed.
pub fn authority(host: &str, port: u16) -> Result<Authority, http::uri::InvalidUri> {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}").parse()
    } else {
        format!("{host}:{port}").parse()
    }
}

/// The URI scheme of a snapshot scheme.
pub fn uri_scheme(scheme: Scheme) -> UriScheme {
    match scheme {
        Scheme::Http => UriScheme::HTTP,
        Scheme::Https => UriScheme::HTTPS,
    }
}

impl UpstreamPool {
    /// Prepares `entry`, taking a client from `clients`.
    pub fn new(
        entry: &UpstreamEntry,
        clients: &ClientCache,
        metrics: &Metrics,
    ) -> Result<Self, PoolError> {
        let fail = |message: String| PoolError {
            key: entry.key.clone(),
            message,
        };
        let client = clients
            .get(&ClientKey {
                connect_timeout_ms: entry.connect_timeout_ms,
                insecure: entry.tls_insecure_skip_verify,
                server_name: entry.tls_server_name.clone(),
            })
            .map_err(fail)?;
        let scheme = uri_scheme(entry.scheme);
        let nodes = entry
            .endpoints
            .iter()
            .map(|e| {
                authority(&e.address, e.port)
                    .map(|authority| Node {
                        endpoint: client.endpoint(&scheme, &authority, entry.protocol),
                        authority,
                    })
                    .map_err(|err| fail(format!("node {}:{}: {err}", e.address, e.port)))
            })
            .collect::<Result<Box<[Node]>, _>>()?;
        let hash_header = entry
            .hash_header
            .as_deref()
            .map(|h| {
                HeaderName::from_bytes(h.as_bytes())
                    .map_err(|e| fail(format!("hash header {h:?}: {e}")))
            })
            .transpose()?;
        let service = entry.key.to_string();
        Ok(Self {
            key: entry.key.clone(),
            scheme,
            protocol: entry.protocol,
            balancer: Balancer::new(entry.balance, &entry.endpoints),
            nodes,
            hash_header,
            request_timeout: Duration::from_millis(entry.request_timeout_ms.max(1)),
            retries: entry.retries,
            retry_on_status: entry.retry_on_status.clone().into_boxed_slice(),
            client,
            upstream_duration: metrics
                .upstream_duration
                .with_label_values(&[service.as_str()]),
            connect_errors: metrics
                .upstream_connect_errors
                .with_label_values(&[service.as_str()]),
        })
    }
}

/// The live pool of one upstream. A snapshot that changes only the upstream (its endpoints:
/// EndpointSlice churn) stores the new pool here, in place, so the router, the Routes and their
/// chains that name the upstream are not rebuilt; requests load the pool once per call.
pub type UpstreamSlot = arc_swap::ArcSwap<UpstreamPool>;

/// Upstreams by key.
pub type Upstreams = std::collections::HashMap<ObjectKey, Arc<UpstreamSlot>>;
