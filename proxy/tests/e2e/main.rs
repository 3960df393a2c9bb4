//! End-to-end tests of the data plane: real sockets on 127.0.0.1:0, real HTTP and TLS.

mod support;

mod admin;
mod binary;
mod desync;
#[cfg(feature = "envoy-ext")]
mod envoy_ext;
mod examples;
mod gateway_api;
mod grpc_route;
mod ingress;
mod isolation;
mod lifecycle;
mod limits;
mod plugins;
mod plugins_access;
mod plugins_body;
mod plugins_transform;
mod raw;
mod request_meaning;
mod routing;
mod standalone;
mod standalone_check;
mod tls;
mod upstream_h2;
mod upstreams;
#[cfg(feature = "wasm")]
mod wasm;
