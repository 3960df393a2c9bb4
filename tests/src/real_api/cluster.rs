//! hookway installed on a real API server, as an operator would have it:
//!
//! ```text
//!   start.sh ──> kube-apiserver + etcd (loopback, temp dir)
//!   admin:  apply charts/hookway/crds (warnings kept) ─> wait Established
//!           render the chart with Helm's engine ─> apply it to hookway-system
//!           TokenRequest for the chart's controller ServiceAccount
//!   controller (in-process) ── that token, RBAC for real ──> API server
//!        │  stream: the chart's stream token; TLS from a test CA (no cluster DNS here)
//!        ├──> proxy hookway-proxy-0 (in-process, plain HTTP on 127.0.0.1)
//!        └──> proxy hookway-proxy-1
//!   admin:  apply examples/quickstart and examples/multi-tenant
//! ```
//!
//! One [`Cluster`] per test binary ([`super::cluster`]); its tasks run on a runtime of its own so
//! every test (a plain `#[test]`) can use it through [`Cluster::run`].

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hookway_controller::compile_loop::Debounce;
use hookway_controller::run::{default_compile, Config, Controller};
use hookway_controller::stream::{tls, Token};
use hookway_crds::Snapshot;
use http_body_util::{BodyExt, Full};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kube::Client;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::apply::apply_path;
use super::chart::{self, Installed};
use super::server::{repo_root, ApiServer};
use super::{wait, Error};
use crate::pki::Pki;
use crate::proxy::{self, RunningProxy};

/// How long setup waits for the API server to catch up (CRDs established, kinds served).
const SETUP: Duration = Duration::from_secs(60);

/// The identity the in-process controller holds the Lease with.
pub const CONTROLLER_IDENTITY: &str = "hookway-controller-0";

/// The example folders applied at setup, relative to the repository root.
pub const EXAMPLES: [&str; 2] = ["examples/quickstart", "examples/multi-tenant"];
/// The Gateway API standard channel CRDs (upstream v1.6.1, unmodified), relative to the repository.
pub const GATEWAY_API_CRDS: &str = "../shared/gateway-api/standard-install-v1.6.1.yaml";

/// hookway on a real API server: chart installed, controller and two proxies running, the
/// examples applied.
pub struct Cluster {
    /// The chart as installed.
    pub chart: Installed,
    /// The `Warning` headers the API server sent while the chart's CRDs were applied.
    pub crd_warnings: Vec<String>,
    /// The ServiceAccount token the controller runs with.
    pub controller_token: String,
    /// The controller's admin listener (`/healthz`, `/readyz`, `/metrics`).
    pub controller_admin: SocketAddr,
    /// The controller's latest compiled snapshot.
    pub snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
    /// The controller's metrics (`fleet_proxies`: how many proxies its status pass counted).
    pub controller_metrics: hookway_controller::metrics::Metrics,
    /// The proxies' plain-HTTP listeners.
    pub proxies: Vec<SocketAddr>,
    running: Mutex<(Option<Controller>, Vec<RunningProxy>)>,
    _pki: Pki,
    runtime: tokio::runtime::Runtime,
    /// The API server (dropped last).
    pub server: ApiServer,
}

impl Cluster {
    /// Sets everything up on `server` (see the module docs), the Gateway API's CRDs (when the
    /// workspace has them) before the controller starts.
    pub fn start(server: ApiServer) -> Result<Self, Error> {
        Self::start_with(server, GatewayApiCrds::BeforeController)
    }

    /// [`Cluster::start`], with the Gateway API's CRDs applied as `crds` says.
    pub fn start_with(server: ApiServer, crds: GatewayApiCrds) -> Result<Self, Error> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Error::io(std::path::Path::new("tokio runtime"), e))?;
        let setup = runtime.block_on(setup(&server, crds));
        let parts = setup.map_err(|e| Error::Setup {
            source: Box::new(e),
            log: server.log_tail(15),
        })?;
        Ok(Self {
            chart: parts.chart,
            crd_warnings: parts.crd_warnings,
            controller_token: parts.controller_token,
            controller_admin: parts.controller.admin_addr,
            snapshots: parts.controller.snapshots.clone(),
            controller_metrics: parts.controller.metrics.clone(),
            proxies: parts.proxies.iter().map(|p| p.http).collect(),
            running: Mutex::new((Some(parts.controller), parts.proxies)),
            _pki: parts.pki,
            runtime,
            server,
        })
    }

    /// Runs `test` on the cluster's runtime (call it from a plain `#[test]`, not from inside
    /// another runtime).
    pub fn run<F: std::future::Future>(&self, test: F) -> F::Output {
        self.runtime.block_on(test)
    }

    /// A client with the admin kubeconfig (`system:masters`).
    pub async fn admin(&self) -> Client {
        self.server.admin_client().await.expect("admin client")
    }

    /// A client with the controller's ServiceAccount token.
    pub async fn as_controller(&self) -> Client {
        self.server
            .client_with_token(&self.controller_token)
            .await
            .expect("controller client")
    }

    /// `GET path` with `Host: host` and extra `headers` on proxy number `proxy`: status,
    /// response headers and body.
    pub async fn get(
        &self,
        proxy: usize,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<(u16, http::HeaderMap, String), Error> {
        let addr = self.proxies[proxy];
        let failed = |e: &dyn std::fmt::Display| Error::Traffic(format!("{addr}{path}: {e}"));
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| failed(&e))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| failed(&e))?;
        tokio::spawn(conn);
        let mut request = http::Request::get(path).header("host", host);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::new()))
            .map_err(|e| failed(&e))?;
        let response = sender.send_request(request).await.map_err(|e| failed(&e))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| failed(&e))?
            .to_bytes();
        Ok((status, headers, String::from_utf8_lossy(&body).into_owned()))
    }

    /// Waits (at most `timeout`) until the controller's snapshot serves a Route for `host`;
    /// whether it did.
    pub async fn wait_host_compiled(&self, host: &str, timeout: Duration) -> bool {
        let mut snapshots = self.snapshots.clone();
        let serves = |s: &Option<Arc<Snapshot>>| {
            s.as_ref()
                .is_some_and(|s| s.routes.iter().any(|r| r.hosts.iter().any(|h| h == host)))
        };
        let served = tokio::time::timeout(timeout, snapshots.wait_for(serves))
            .await
            .is_ok_and(|r| r.is_ok());
        served
    }

    /// Stops the controller and the proxies (the API server stops when the cluster is dropped or
    /// the process ends).
    pub fn stop(&self) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.1.clear();
        if let Some(controller) = running.0.take() {
            self.runtime.block_on(controller.shutdown());
        }
    }
}

/// When the cluster gets the Gateway API's CRDs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GatewayApiCrds {
    /// Applied (and Established) before the controller starts, when the workspace has them.
    BeforeController,
    /// Not applied: the test applies them later ([`install_gateway_api_crds`]).
    Later,
}

/// Applies the Gateway API's standard-channel CRDs ([`GATEWAY_API_CRDS`]) and waits until each
/// is Established.
pub async fn install_gateway_api_crds(admin: &Client) -> Result<(), Error> {
    for applied in apply_path(admin, &repo_root().join(GATEWAY_API_CRDS)).await? {
        if applied.object.types.as_ref().map(|t| t.kind.as_str())
            == Some("CustomResourceDefinition")
        {
            established(
                admin,
                applied.object.metadata.name.as_deref().unwrap_or_default(),
            )
            .await?;
        }
    }
    Ok(())
}

struct Parts {
    chart: Installed,
    crd_warnings: Vec<String>,
    controller_token: String,
    controller: Controller,
    proxies: Vec<RunningProxy>,
    pki: Pki,
}

async fn setup(server: &ApiServer, gateway_api_crds: GatewayApiCrds) -> Result<Parts, Error> {
    let admin = server.admin_client().await?;
    let root = repo_root();

    let crds = apply_path(&admin, &root.join("charts/hookway/crds")).await?;
    let crd_warnings = crds.iter().flat_map(|a| a.warnings.clone()).collect();
    for crd in &crds {
        established(
            &admin,
            crd.object.metadata.name.as_deref().unwrap_or_default(),
        )
        .await?;
    }

    // The Gateway API's standard channel, when the workspace has it, before the controller
    // starts (unless the test installs it later: the controller notices through discovery).
    if gateway_api_crds == GatewayApiCrds::BeforeController && root.join(GATEWAY_API_CRDS).exists()
    {
        install_gateway_api_crds(&admin).await?;
    }

    let chart = chart::install(&admin, &json!({})).await?;
    // What the chart passes as `--proxy-service`.
    let proxy_service = chart
        .objects
        .iter()
        .filter(|o| o["kind"] == "Deployment")
        .flat_map(|o| {
            o["spec"]["template"]["spec"]["containers"][0]["args"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .find_map(|a| {
            a.as_str()?
                .strip_prefix("--proxy-service=")
                .map(String::from)
        });

    // The controller runs as the chart's ServiceAccount: whatever its RBAC lacks fails here.
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), &chart.namespace);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..Default::default()
        }),
        ..Default::default()
    };
    let controller_token = accounts
        .create_token_request(
            &chart.controller_service_account,
            &PostParams::default(),
            &request,
        )
        .await?
        .status
        .and_then(|s| s.token)
        .ok_or_else(|| Error::Chart("the TokenRequest has no status".into()))?;
    let controller_client = server.client_with_token(&controller_token).await?;

    // The stream's bearer token is the one the chart generated into its Secret.
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &chart.namespace);
    let secret = secrets.get(&chart.stream_secret).await?;
    let stream_token = secret
        .data
        .as_ref()
        .and_then(|d| d.get("token"))
        .map(|t| String::from_utf8_lossy(&t.0).into_owned())
        .ok_or_else(|| Error::Chart(format!("Secret {} has no token", chart.stream_secret)))?;
    let mut pki = Pki::new_in(server.dir.join("pki"), "real-api");
    std::fs::write(&pki.token_file, &stream_token).map_err(|e| Error::io(&pki.token_file, e))?;
    pki.token = stream_token;

    let bind = |what: &'static str| async move {
        TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| Error::io(std::path::Path::new(what), e))
    };
    let config = Config {
        namespaces: vec![],
        root_namespace: chart.root_namespace.clone(),
        stream_listener: bind("stream listener").await?,
        admin_listener: bind("admin listener").await?,
        token: Token::new(&pki.token).map_err(|e| Error::Controller(e.to_string()))?,
        tls: tls::server_config(pki.cert_pem.as_bytes(), pki.key_pem.as_bytes())
            .map_err(|e| Error::Controller(e.to_string()))?,
        identity: CONTROLLER_IDENTITY.into(),
        lease_duration: Duration::from_secs(15),
        debounce: Debounce::default(),
        gateway_api_recheck: Duration::from_secs(1),
        fetch: Default::default(),
        proxy_service,
        compile: default_compile(&chart.root_namespace),
    };
    let controller = Controller::start(controller_client, config)
        .await
        .map_err(|e| Error::Controller(e.to_string()))?;
    let mut proxies = Vec::new();
    for id in ["hookway-proxy-0", "hookway-proxy-1"] {
        proxies.push(proxy::start(&pki, controller.stream_addr, id).await);
    }

    for example in EXAMPLES {
        apply_path(&admin, &root.join(example)).await?;
    }
    Ok(Parts {
        chart,
        crd_warnings,
        controller_token,
        controller,
        proxies,
        pki,
    })
}

/// Waits until CRD `name` is `Established` (its kind is served).
async fn established(client: &Client, name: &str) -> Result<(), Error> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    wait::until(&format!("CRD {name} is Established"), SETUP, || async {
        let crd = api.get(name).await.map_err(|e| e.to_string())?;
        let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
        match conditions.iter().find(|c| c.type_ == "Established") {
            Some(c) if c.status == "True" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}
