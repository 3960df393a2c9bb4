//! The end-to-end tests, one binary (`cargo test -p hookway-tests --test all [FILTER]`).
//! `bench.rs` stays a binary of its own: it installs a counting global allocator.

mod e2e;
mod gateway_api_discovery;
mod isolation;
mod prometheus;
mod real_api;
mod real_api_gateway;
mod real_api_ingress;
mod stream;
mod synthetic_failures;
mod traffic;
mod wasm_sources;
