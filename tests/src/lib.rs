//! End-to-end test support: a fake API server, test PKI, and a stand-in compiler.

pub mod fake_api;
pub mod pki;
