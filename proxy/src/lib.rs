//! # hookway-proxy
//!
//! The data plane: listeners (HTTP, HTTPS with SNI), routing, upstreams, the plugin hook chain,
//! built-in plugins, metrics, and the standalone mode that compiles a folder of manifests.
#![forbid(unsafe_code)]

pub mod chain;
pub mod plugin;
pub mod plugins;
pub mod source;
