//! The crate's integration tests, one binary (`cargo test -p hookway-crds --test all [FILTER]`).

mod support;

mod compiler_props;
mod compiler_rules;
mod crd_drift;
mod declared_schemas;
mod gateway_api;
mod pinned_blobs;
mod tenancy_rules;
mod upstream_protocol;
mod wire_format;
