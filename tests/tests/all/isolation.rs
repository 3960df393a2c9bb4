//! Failure stays local, tenants stay apart — the real controller (reflectors, compiler, status
//! writer, events, stream server) against the fake API server, with a real proxy stream client.
//!
//! Tenant `team-b` applies, one after the other, a TLS Secret whose key does not match its
//! certificate, a JWT key that is not a key, two consumers with the same api key, a Route for
//! `team-a`'s host and a `traffic_splitting` into a namespace that granted nothing. Each lands on
//! its own object's status (and an Event), is left out of the snapshot, and every later change
//! by anyone still reaches the proxy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hookway_controller::compile_loop::Debounce;
use hookway_controller::run::{default_compile, Config, Controller};
use hookway_controller::stream::{tls, Token};
use hookway_crds::{GatewayPlugin, PlatformPolicy, Route, Service, Snapshot};
use hookway_proxy::source::controller::{self as source, Backoff, ControllerSourceConfig};
use hookway_tests::fake_api::FakeApi;
use hookway_tests::pki::Pki;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub(crate) const WAIT: Duration = Duration::from_secs(10);
pub(crate) const ROOT: &str = "hookway-system";

pub(crate) struct Env {
    pub(crate) client: Client,
    _fake: FakeApi,
    pki: Pki,
}

impl Env {
    pub(crate) async fn new() -> Self {
        Self::named("isolation").await
    }

    /// An environment whose PKI files live under a folder named for `name` (tests of one
    /// process running at once need distinct names).
    pub(crate) async fn named(name: &str) -> Self {
        let fake = FakeApi::start().await;
        let client = fake.client().await;
        let nss: Api<Namespace> = Api::all(client.clone());
        for ns in [ROOT, "team-a", "team-b", "shared"] {
            nss.create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
            )
            .await
            .unwrap();
        }
        Self {
            client,
            _fake: fake,
            pki: Pki::new(name),
        }
    }

    pub(crate) async fn controller(&self) -> Controller {
        let config = Config {
            namespaces: vec![],
            root_namespace: ROOT.into(),
            stream_listener: TcpListener::bind("127.0.0.1:0").await.unwrap(),
            admin_listener: TcpListener::bind("127.0.0.1:0").await.unwrap(),
            token: Token::new(&self.pki.token).unwrap(),
            tls: tls::server_config(self.pki.cert_pem.as_bytes(), self.pki.key_pem.as_bytes())
                .unwrap(),
            identity: "controller-0".into(),
            lease_duration: Duration::from_secs(3),
            debounce: Debounce::default(),
            gateway_api_recheck: Duration::from_secs(1),
            fetch: Default::default(),
            proxy_service: None,
            compile: default_compile(ROOT),
        };
        Controller::start(self.client.clone(), config)
            .await
            .unwrap()
    }

    pub(crate) fn proxy(&self, controller: &Controller) -> watch::Receiver<Option<Arc<Snapshot>>> {
        let mut config = ControllerSourceConfig::new(
            format!("https://127.0.0.1:{}", controller.stream_addr.port()),
            self.pki.ca_file.clone(),
            self.pki.token_file.clone(),
            "proxy-0",
        );
        config.backoff = Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(500),
        };
        let (tx, rx) = watch::channel(None);
        tokio::spawn(async move {
            let _ = source::run(config, tx, None).await;
        });
        rx
    }

    pub(crate) async fn create<K>(&self, ns: &str, object: Value)
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), ns);
        let object: K = serde_json::from_value(object).unwrap();
        api.create(&PostParams::default(), &object).await.unwrap();
    }

    pub(crate) async fn service(&self, ns: &str, name: &str) {
        self.create::<Service>(
            ns,
            json!({"apiVersion": "hookway.dev/v1alpha1", "kind": "Service",
                   "metadata": {"name": name},
                   "spec": {"nodes": [{"address": "10.0.0.1", "port": 8080}]}}),
        )
        .await;
    }

    pub(crate) async fn route(&self, ns: &str, name: &str, spec: Value) {
        self.create::<Route>(
            ns,
            json!({"apiVersion": "hookway.dev/v1alpha1", "kind": "Route",
                   "metadata": {"name": name}, "spec": spec}),
        )
        .await;
    }

    pub(crate) async fn plugin(&self, ns: &str, name: &str, kind: &str, config: Value) {
        self.create::<GatewayPlugin>(
            ns,
            json!({"apiVersion": "hookway.dev/v1alpha1", "kind": "GatewayPlugin",
                   "metadata": {"name": name},
                   "spec": {"plugin": kind, "status": "enable", "config": config}}),
        )
        .await;
    }

    pub(crate) async fn secret(&self, ns: &str, name: &str, type_: &str, data: Value) {
        self.create::<Secret>(
            ns,
            json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": name, "labels": {"hookway.dev/credentials": "true"}},
                   "type": type_, "stringData": data}),
        )
        .await;
    }

    /// Waits until Events with every one of `reasons` are recorded in `ns`.
    pub(crate) async fn wait_events(&self, ns: &str, reasons: &[&str]) {
        let events: Api<Event> = Api::namespaced(self.client.clone(), ns);
        let deadline = Instant::now() + WAIT;
        loop {
            let seen: Vec<String> = events
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .filter_map(|e| e.reason)
                .collect();
            if reasons.iter().all(|w| seen.iter().any(|r| r == w)) {
                return;
            }
            assert!(Instant::now() < deadline, "no {reasons:?} Events: {seen:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `ns/name`'s condition `type_` is `status` with `reason`; returns its message.
    pub(crate) async fn wait_condition<K>(
        &self,
        ns: &str,
        name: &str,
        type_: &str,
        status: &str,
        reason: &str,
    ) -> String
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), ns);
        let deadline = Instant::now() + WAIT;
        loop {
            let found = api.get(name).await.ok().and_then(|o| {
                let v = serde_json::to_value(o).ok()?;
                v["status"]["conditions"]
                    .as_array()?
                    .iter()
                    .find(|c| c["type"] == type_)
                    .cloned()
            });
            if let Some(c) = &found {
                if c["status"] == status && c["reason"] == reason {
                    return c["message"].as_str().unwrap_or_default().to_string();
                }
            }
            assert!(
                Instant::now() < deadline,
                "{ns}/{name} {type_}: {found:?}, want {status} {reason}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub(crate) async fn wait_snapshot(
    rx: &mut watch::Receiver<Option<Arc<Snapshot>>>,
    what: &str,
    f: impl Fn(&Snapshot) -> bool,
) -> Arc<Snapshot> {
    let got = tokio::time::timeout(WAIT, rx.wait_for(|s| s.as_ref().is_some_and(|s| f(s))))
        .await
        .map(|r| r.map(|s| s.clone()));
    match got {
        Ok(Ok(Some(s))) => s,
        _ => {
            let held = rx.borrow().as_ref().map(|s| {
                let routes: Vec<String> = s.routes.iter().map(|r| r.key.to_string()).collect();
                (s.version, routes)
            });
            panic!("the proxy never got a snapshot where {what}; it holds {held:?}")
        }
    }
}

pub(crate) fn served(s: &Snapshot, ns: &str, name: &str) -> bool {
    s.routes
        .iter()
        .any(|r| r.key.namespace == ns && r.key.name == name)
}

fn cert_pair(host: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![host.to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenants_broken_objects_stay_on_their_own_status() {
    let env = Env::new().await;
    let controller = env.controller().await;
    let mut proxy = env.proxy(&controller);

    for (ns, name) in [("team-a", "web"), ("team-b", "web"), ("shared", "canary")] {
        env.service(ns, name).await;
    }
    env.route(
        "team-a",
        "site",
        json!({"hosts": ["a.example.com"], "service": "web"}),
    )
    .await;
    env.route(
        "team-b",
        "ok",
        json!({"hosts": ["b.example.com"], "service": "web"}),
    )
    .await;
    wait_snapshot(&mut proxy, "both tenants are served", |s| {
        served(s, "team-a", "site") && served(s, "team-b", "ok")
    })
    .await;

    // A TLS Secret whose key does not match its certificate.
    let (crt, _) = cert_pair("b-tls.example.com");
    let (_, other_key) = cert_pair("b-tls.example.com");
    env.secret(
        "team-b",
        "b-tls",
        "kubernetes.io/tls",
        json!({"tls.crt": crt, "tls.key": other_key}),
    )
    .await;
    env.route(
        "team-b",
        "tls",
        json!({"hosts": ["b-tls.example.com"], "service": "web", "tls": {"secretName": "b-tls"}}),
    )
    .await;
    let message = env
        .wait_condition::<Route>(
            "team-b",
            "tls",
            "ResolvedRefs",
            "False",
            "InvalidCertificate",
        )
        .await;
    assert!(message.contains("does not match"), "{message}");
    assert!(message.contains("plain HTTP only"), "{message}");

    // Secrets whose key material is broken (a JWT key that is not a key, two consumers with
    // one api key) are found by the proxies, which link the plugin code: see
    // traffic::a_tenant_that_breaks_a_proxy_build_freezes_no_one_else.

    // team-a's host.
    env.route(
        "team-b",
        "hijack",
        json!({"hosts": ["a.example.com"], "service": "web"}),
    )
    .await;
    let message = env
        .wait_condition::<Route>("team-b", "hijack", "Accepted", "False", "HostConflict")
        .await;
    assert!(message.contains("team-a/site"), "{message}");

    // A reference into a namespace that granted nothing.
    env.plugin(
        ROOT,
        "split",
        "traffic_splitting",
        json!({"service": "canary", "weight": 100}),
    )
    .await;
    env.route(
        "team-b",
        "split",
        json!({"hosts": ["b-split.example.com"], "service": "web",
               "plugins": {"split": {"config": {"service": "shared/canary", "weight": 100}}}}),
    )
    .await;
    env.wait_condition::<Route>(
        "team-b",
        "split",
        "ResolvedRefs",
        "False",
        "RefNotPermitted",
    )
    .await;

    // Every later change still reaches the proxy; nothing broken does.
    env.route(
        "team-a",
        "later",
        json!({"hosts": ["a2.example.com"], "service": "web"}),
    )
    .await;
    let s = wait_snapshot(&mut proxy, "team-a's later Route is served", |s| {
        served(s, "team-a", "later")
    })
    .await;
    for (ns, name, want) in [
        ("team-a", "site", true),
        ("team-b", "ok", true),
        ("team-b", "tls", true),
        ("team-b", "hijack", false),
        ("team-b", "split", false),
    ] {
        assert_eq!(served(&s, ns, name), want, "{ns}/{name}");
    }
    assert!(
        s.certificates.is_empty(),
        "no certificate from a broken Secret: {:?}",
        s.certificates.iter().map(|c| &c.key).collect::<Vec<_>>()
    );
    assert!(
        s.secrets.is_empty(),
        "no unusable credential Secret is shipped"
    );
    env.wait_condition::<Route>("team-a", "later", "Accepted", "True", "Accepted")
        .await;

    // Each rejection is an Event on the object at fault.
    env.wait_events(
        "team-b",
        &["InvalidCertificate", "HostConflict", "RefNotPermitted"],
    )
    .await;

    // The platform grants the reference and shares the host: both are served.
    env.create::<PlatformPolicy>(
        ROOT,
        json!({"apiVersion": "hookway.dev/v1alpha1", "kind": "PlatformPolicy",
               "metadata": {"name": "platform"},
               "spec": {"referenceGrants": [{"from": ["team-b"], "to": "shared", "services": ["canary"]}],
                        "sharedHosts": [{"hosts": ["a.example.com"], "namespaces": ["team-b"]}]}}),
    )
    .await;
    let s = wait_snapshot(&mut proxy, "the granted Routes are served", |s| {
        served(s, "team-b", "split") && served(s, "team-b", "hijack")
    })
    .await;
    let split = s.routes.iter().find(|r| r.key.name == "split").unwrap();
    assert_eq!(
        split.chain[0].services["shared/canary"].to_string(),
        "shared/canary"
    );
    env.wait_condition::<PlatformPolicy>(ROOT, "platform", "Accepted", "True", "Accepted")
        .await;

    controller.shutdown().await;
}
