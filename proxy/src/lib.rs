//! # hookway-proxy
//!
//! The data plane: listeners (HTTP, HTTPS with SNI), routing, upstreams, the plugin hook chain,
//! built-in plugins, metrics, and the standalone mode that compiles a folder of manifests.
#![forbid(unsafe_code)]

pub mod admin;
pub mod canonical;
pub mod certs;
pub mod chain;
#[doc(hidden)]
pub mod fuzzing;
pub mod metrics;
pub mod plugin;
pub mod plugins;
pub mod router;
pub mod runtime;
pub mod server;
pub mod source;
pub mod standalone;
pub mod timer;
pub mod upstream;

pub use server::{Limits, ProxyConfig, ProxyServer, RequestRules, ServerError};
