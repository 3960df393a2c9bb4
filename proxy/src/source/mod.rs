//! Where a proxy's snapshots come from (besides the standalone folder of manifests).

pub mod controller;
