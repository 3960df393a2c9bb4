//! Standalone mode: the proxy compiles a folder of the same YAML manifests a user would
//! `kubectl apply`, with no cluster, and reloads when the folder changes.
//!
//! ```text
//!  DIR/*.yaml|*.yml ──load──► Objects ──compile──► Snapshot ──watch channel──► runtime
//!        ▲                                              │
//!        └──── notify (debounced) ◄─────────────────────┘  (an invalid change keeps the last one)
//! ```

pub mod check;
pub mod load;
pub mod reload;

pub use check::{check, OutputFormat};
pub use load::{compile_dir, load_dir, BrokenFile, Folder, LoadError, Loaded};
pub use reload::watch;

/// Settings shared by loading, checking and watching.
#[derive(Clone, Debug)]
pub struct StandaloneOptions {
    /// Namespace whose GatewayPlugins are cluster-wide.
    pub root_namespace: String,
    /// Namespace given to objects that have none.
    pub default_namespace: String,
}

impl Default for StandaloneOptions {
    fn default() -> Self {
        Self {
            root_namespace: "hookway-system".into(),
            default_namespace: "default".into(),
        }
    }
}
