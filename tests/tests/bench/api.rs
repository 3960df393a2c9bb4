//! The API server the benchmark runs against: the in-process fake (default), or a real
//! kube-apiserver (`HOOKWAY_BENCH_API=real`: started for the run in a temp folder with
//! `../shared/k8s/start.sh` and stopped afterwards; `HOOKWAY_BENCH_KUBECONFIG=PATH`: one already
//! running).

use std::path::PathBuf;
use std::time::Duration;

use hookway_tests::fake_api::FakeApi;
use hookway_tests::real_api::{apply, repo_root, server, wait};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::config::{KubeConfigOptions, Kubeconfig};

use super::heap;

/// Selects a real API server started for the run.
pub const API_ENV: &str = "HOOKWAY_BENCH_API";
/// Names the kubeconfig of a real API server already running.
pub const KUBECONFIG_ENV: &str = "HOOKWAY_BENCH_KUBECONFIG";

/// Where the objects live.
pub enum Backend {
    /// The in-process fake API server (its objects and watch history are in this process).
    Fake(FakeApi),
    /// A real kube-apiserver with etcd, in processes of their own.
    Real {
        /// The server started for this run (stopped when dropped); `None` for one given by
        /// kubeconfig.
        server: Option<server::ApiServer>,
        /// Its admin kubeconfig.
        kubeconfig: PathBuf,
    },
}

impl Backend {
    /// The backend the environment asks for; `None` (after one line on stderr) when a real API
    /// server is asked for but `../shared/k8s` is absent.
    pub async fn from_env() -> Option<Self> {
        if let Some(kubeconfig) = std::env::var_os(KUBECONFIG_ENV) {
            let kubeconfig = PathBuf::from(kubeconfig);
            assert!(
                kubeconfig.is_file(),
                "{KUBECONFIG_ENV}={} is not a file",
                kubeconfig.display()
            );
            return Some(Self::Real {
                server: None,
                kubeconfig,
            });
        }
        match std::env::var(API_ENV).as_deref() {
            Err(_) | Ok("" | "fake") => Some(Self::Fake(FakeApi::start().await)),
            Ok("real") => {
                let location = match server::Location::find() {
                    Ok(location) => location,
                    Err(missing) => {
                        eprintln!("controller benchmark on a real API server skipped: {missing}");
                        return None;
                    }
                };
                // `start.sh` waits for /readyz (a few seconds): off the runtime's workers.
                let server = tokio::task::block_in_place(|| server::ApiServer::start(location))
                    .expect("the real API server starts");
                let kubeconfig = server.kubeconfig.clone();
                Some(Self::Real {
                    server: Some(server),
                    kubeconfig,
                })
            }
            Ok(other) => panic!("{API_ENV}={other}: expected `fake` or `real`"),
        }
    }

    /// What the run is against, for the report.
    pub fn describe(&self) -> String {
        match self {
            Self::Fake(_) => "the in-process fake API server".into(),
            Self::Real {
                server: Some(_), ..
            } => {
                "a real kube-apiserver + etcd started for this run (../shared/k8s/start.sh)".into()
            }
            Self::Real { kubeconfig, .. } => {
                format!("the real API server of {}", kubeconfig.display())
            }
        }
    }

    /// Whether this is a real API server.
    pub fn is_real(&self) -> bool {
        matches!(self, Self::Real { .. })
    }

    /// An admin client.
    pub async fn client(&self) -> kube::Client {
        match self {
            Self::Fake(fake) => fake.client().await,
            Self::Real { kubeconfig, .. } => {
                let kubeconfig = Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
                let config =
                    kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                        .await
                        .expect("kubeconfig usable");
                kube::Client::try_from(config).expect("client")
            }
        }
    }

    /// A namespace no earlier run used (a real server keeps what earlier runs left, and cannot
    /// delete a namespace: it has no namespace controller).
    pub fn namespace(&self) -> String {
        match self {
            Self::Fake(_) => "bench".into(),
            Self::Real { .. } => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                format!("bench-{}-{}", now.as_secs(), std::process::id())
            }
        }
    }

    /// Makes hookway's kinds served: a real server gets the chart's CRDs (server-side apply) and
    /// is waited on until each is Established.
    pub async fn install_crds(&self, client: &kube::Client) {
        if !self.is_real() {
            return;
        }
        let applied = apply::apply_path(client, &repo_root().join("charts/hookway/crds"))
            .await
            .expect("hookway's CRDs apply");
        let crds: kube::Api<CustomResourceDefinition> = kube::Api::all(client.clone());
        for crd in applied {
            let name = crd.object.metadata.name.unwrap_or_default();
            wait::until(
                &format!("CRD {name} is Established"),
                Duration::from_secs(60),
                || async {
                    let crd = crds.get(&name).await.map_err(|e| e.to_string())?;
                    let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
                    match conditions.iter().find(|c| c.type_ == "Established") {
                        Some(c) if c.status == "True" => Ok(()),
                        other => Err(format!("{other:?}")),
                    }
                },
            )
            .await
            .expect("hookway's CRDs are established");
        }
    }

    /// Live heap of this process, MiB, after the fake API server (if it is the one) forgot its
    /// watch history (events with whole objects, which would otherwise be counted against
    /// whoever runs at the time).
    pub fn live_mib(&self) -> f64 {
        if let Self::Fake(fake) = self {
            fake.compact();
        }
        heap::live_mib()
    }

    /// The API server's own processes (`kube-apiserver`, `etcd`) and their pids, when they are
    /// known (from the pid files `start.sh` writes beside the kubeconfig).
    pub fn processes(&self) -> Vec<(&'static str, String)> {
        let Self::Real { kubeconfig, .. } = self else {
            return Vec::new();
        };
        let dir = kubeconfig.parent().map(PathBuf::from).unwrap_or_default();
        ["kube-apiserver", "etcd"]
            .into_iter()
            .filter_map(|name| {
                let pid = std::fs::read_to_string(dir.join(format!("{name}.pid"))).ok()?;
                Some((name, pid.trim().to_string()))
            })
            .collect()
    }

    /// RSS of the API server's processes, for the report (empty for the fake).
    pub fn rss(&self) -> String {
        self.processes()
            .iter()
            .map(|(name, pid)| format!("{name} {:.0} MiB", heap::rss_mib(pid)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// CPU seconds used so far by the API server's processes (0 for the fake, whose work is
    /// in this process).
    pub fn cpu_seconds(&self) -> f64 {
        self.processes()
            .iter()
            .map(|(_, pid)| heap::cpu_seconds(pid))
            .sum()
    }
}
