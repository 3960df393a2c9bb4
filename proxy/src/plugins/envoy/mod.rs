//! Envoy-compatible external processing: the `ext_authz` and `ext_proc` plugin kinds speak
//! Envoy's gRPC protocols (`envoy.service.auth.v3.Authorization`,
//! `envoy.service.ext_proc.v3.ExternalProcessor`), so servers written for Envoy work unchanged.
//! Behind the default-on cargo feature `envoy-ext`. See `docs/plugins/ext_authz.md` and
//! `docs/plugins/ext_proc.md`.
//!
//! Files: `target` (where the gRPC server is: a hookway Service or a URL; the channels),
//! `headers` (Envoy header maps and mutations ↔ `http` types), `failure` (fail open / closed,
//! the failure counter and log line), `ext_authz`, `ext_proc` (the plugins).

pub mod ext_authz;
pub mod ext_proc;
mod failure;
mod headers;
mod target;

pub use failure::counter as failures_counter;
