//! End-to-end test support: a fake API server, a real one (`real_api`), test PKI, a real proxy
//! fed by a controller, and an echoing upstream.

pub mod fake_api;
pub mod fragile;
pub mod pki;
pub mod proxy;
pub mod real_api;
pub mod upstream;
