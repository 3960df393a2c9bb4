//! The crate's integration tests, one binary (`cargo test -p hookway-controller --test all [FILTER]`).

mod metrics_exposition;
