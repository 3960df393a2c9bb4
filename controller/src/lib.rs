//! # hookway-controller
//!
//! Turns cluster state into snapshots, streams them to proxies and writes what happened back
//! onto the objects.
//!
//! ```text
//!  watch.rs (reflectors) ──poke──► compile_loop.rs ──watch<Snapshot>──► stream/ ──► proxies
//!        │ stores          module_fetch.rs ◄┤ url sources; fetched modules   │ acks
//!        │                    (poke)        │ Published (reports)           │
//!        ▼                            ▼                                     ▼
//!   index.rs (Objects)          status_loop.rs ◄──────────────────── proxies.rs
//!                                 │ status.rs (pure diff) + events.rs, only while leader.rs says so
//!                                 ▼
//!                            API server (server-side apply on /status)
//!                            registry.rs: this replica's proxies in its own Lease; the other replicas'
//!                            Leases ─► fleet.rs (merge with proxies.rs) ─► status_loop.rs (Programmed)
//! ```
#![forbid(unsafe_code)]

pub mod admin;
pub mod apply_status;
pub mod compile_loop;
pub mod events;
pub mod fleet;
pub mod gateway_api_discovery;
pub mod gateway_status;
pub mod index;
pub mod ingress_status;
pub mod leader;
pub mod metrics;
pub mod module_fetch;
pub mod origin_failures;
pub mod proxies;
pub mod registry;
pub mod run;
pub mod status;
pub mod status_loop;
pub mod statuses;
pub mod store;
pub mod stream;
pub mod versions;
pub mod watch;

/// Errors of the controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A setting is unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// TLS setup failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// (De)serialization failed.
    #[error("serialization: {0}")]
    Json(#[from] serde_json::Error),
    /// Metrics registration failed.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl Error {
    /// A short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Io { .. } => "io",
            Error::Config(_) => "config",
            Error::Tls(_) => "tls",
            Error::Json(_) => "json",
            Error::Metrics(_) => "metrics",
        }
    }
}

/// The controller's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
