//! Tests against a real Kubernetes API server (kube-apiserver + etcd on loopback).
//!
//! The binary comes from `$HOOKWAY_KUBE_APISERVER` (default `../shared/k8s/bin/kube-apiserver`
//! from the repository root) and is started by `../shared/k8s/start.sh`. Without them,
//! [`cluster`] prints one line saying the real-API-server tests were skipped and returns `None`,
//! so a clone of the project outside its workspace still passes.
//!
//! - [`server`]: start/stop one API server in a temp folder, admin and token clients.
//! - [`apply`]: server-side apply of any manifest, returning the API server's warnings.
//! - [`chart`]: the Helm chart rendered by Helm's engine, installed.
//! - [`cluster`]: hookway installed and running (controller as its ServiceAccount, two proxies,
//!   the examples applied) — one per test binary, shared by its tests.
//! - [`status`] and [`wait`]: read conditions back; wait for a state with a deadline.
//!
//! A new case (a broken TLS Secret, a host conflict…) takes the shared cluster, applies its own
//! objects in a namespace of its own with [`apply::apply_yaml`], and waits for the conditions it
//! expects with [`status::wait_condition`]:
//!
//! ```rust,ignore
//! # use hookway_tests::real_api::{self, apply, status};
//! #[test]
//! fn my_case() {
//!     let Some(cluster) = real_api::cluster() else { return };
//!     cluster.run(async {
//!         let admin = cluster.admin().await;
//!         let namespace = "apiVersion: v1\nkind: Namespace\nmetadata: {name: my-case}\n";
//!         apply::apply_yaml(&admin, namespace).await.unwrap();
//!         // ... apply Services/Routes in my-case, then:
//!         // status::wait_condition::<hookway_crds::Route>(&admin, "my-case", "r", "Accepted",
//!         //     "True", "Accepted", real_api::WAIT).await.unwrap();
//!     });
//! }
//! ```

pub mod apply;
pub mod chart;
mod cluster;
pub mod server;
pub mod status;
pub mod wait;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

pub use cluster::{
    install_gateway_api_crds, Cluster, GatewayApiCrds, CONTROLLER_IDENTITY, EXAMPLES,
    GATEWAY_API_CRDS,
};
pub use server::{repo_root, say_once};

/// How long a test waits for the controller to write a status (generous: a shared 2-core box).
pub const WAIT: Duration = Duration::from_secs(30);

/// Errors of the real-API-server harness.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server did not start.
    #[error("starting the API server: {0}")]
    Start(String),
    /// Setup failed; the API server's last log lines are attached.
    #[error("{source}\nlast lines of the API server's log:\n{log}")]
    Setup {
        /// What failed.
        #[source]
        source: Box<Error>,
        /// The log tail.
        log: String,
    },
    /// A file or process could not be used.
    #[error("{path}: {source}")]
    Io {
        /// The file, folder or program.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A kubeconfig could not be read or used.
    #[error("kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    /// A request to the API server failed.
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
    /// The API server refused an apply.
    #[error("applying {what}: {code} {message}")]
    Refused {
        /// `Kind namespace/name`.
        what: String,
        /// HTTP status.
        code: u16,
        /// The Status message.
        message: String,
    },
    /// A manifest is not a Kubernetes object.
    #[error("manifest: {0}")]
    Manifest(String),
    /// A YAML stream could not be parsed.
    #[error("YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    /// The chart could not be rendered or lacks what the tests need.
    #[error("chart: {0}")]
    Chart(String),
    /// The controller did not start.
    #[error("controller: {0}")]
    Controller(String),
    /// A request to a proxy failed.
    #[error("traffic: {0}")]
    Traffic(String),
    /// A state was not reached in time.
    #[error("timed out after {timeout:?} waiting until {what}; last seen: {seen}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        timeout: Duration,
        /// The last state seen.
        seen: String,
    },
}

impl Error {
    fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The cluster shared by this test binary's tests, started by the first caller; `None` (after
/// one line on stderr) when the API server binary or its scripts are absent (a panic when
/// `$HOOKWAY_KUBE_APISERVER` names a binary that is not there). Panics with the
/// cause when it is present but setup failed (every test that asks reports the same cause).
pub fn cluster() -> Option<&'static Cluster> {
    static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
    let location = match server::Location::find() {
        Ok(location) => location,
        Err(missing) if std::env::var_os(server::BINARY_ENV).is_some() => {
            panic!("{} is set, but {missing}", server::BINARY_ENV)
        }
        Err(missing) => {
            server::say_once(&format!(
                "real-API-server tests skipped: {missing} \
                 (set {} to a kube-apiserver binary to run them)",
                server::BINARY_ENV
            ));
            return None;
        }
    };
    let cluster = CLUSTER.get_or_init(|| {
        server::ApiServer::start(location)
            .and_then(Cluster::start)
            .map_err(|e| e.to_string())
    });
    match cluster {
        Ok(cluster) => Some(cluster),
        Err(e) => panic!("the real-API-server cluster did not start: {e}"),
    }
}
