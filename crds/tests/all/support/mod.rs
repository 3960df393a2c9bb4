//! Test builders for compiler tests: `route("ns", "a").host("x").service("s").plugin("rl", cfg)`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use hookway_crds::api::gateway_plugin::PluginPolicy;
use hookway_crds::api::route::{
    PathMatch, PathMatchType, RouteRule, RouteTls, ValueMatch, ValueMatchType,
};
use hookway_crds::api::service::{BackendRef, Node};
use hookway_crds::catalogue::{PluginConfig, ResolvedSecrets};
use hookway_crds::compiler::{
    compile, Compiled, Fetched, Kind, ObjectId, ObjectReport, Objects, Options,
};
use hookway_crds::snapshot::{ObjectKey, RouteEntry};
use hookway_crds::{
    Catalogue, GatewayPlugin, GatewayPluginSpec, PlatformPolicy, PluginRef, PluginStatus, Route,
    RouteSpec, Service, ServiceSpec,
};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::ByteString;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};

pub const ROOT: &str = "hookway-system";

fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(ns.into()),
        name: Some(name.into()),
        generation: Some(1),
        ..Default::default()
    }
}

// ---- catalogue -------------------------------------------------------------------------------

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtraParams {
    pub params: Vec<Param>,
}
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Param {
    pub name: String,
    pub value: String,
}
impl PluginConfig for ExtraParams {}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    pub second: u32,
}
impl PluginConfig for Limit {
    fn validate(&self) -> Result<(), String> {
        if self.second == 0 {
            return Err("second: must be positive".into());
        }
        Ok(())
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessLog {
    pub output: String,
}
impl PluginConfig for AccessLog {}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Creds {
    #[schemars(extend("x-hookway-ref" = "secret"))]
    pub secret: String,
}
impl PluginConfig for Creds {
    /// A credential whose value is `bad` is refused, as a data plane would refuse a key that
    /// does not parse.
    fn check_secrets(&self, secrets: &ResolvedSecrets) -> Result<(), String> {
        let secret = &secrets[&self.secret];
        match secret.data.iter().find(|(_, v)| *v == "bad") {
            Some((id, _)) => Err(format!("Secret {}: key {id:?} does not parse", secret.key)),
            None => Ok(()),
        }
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Split {
    #[schemars(extend("x-hookway-ref" = "service"))]
    pub service: String,
}
impl PluginConfig for Split {}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("x-hookway-reaches-network" = true))]
pub struct Remote {
    pub address: String,
}
impl PluginConfig for Remote {}

/// `extra_params`, `limit`, `access_log`, `creds` (names a Secret), `split` (names a Service),
/// `remote` (reaches the network), and `wasm` as the built-in document has it (a pinned blob).
pub fn catalogue() -> Catalogue {
    let mut c = Catalogue::new();
    let wasm = Catalogue::builtin().schema("wasm").cloned();
    c.insert_schema("wasm", wasm.expect("the built-in document has wasm"))
        .expect("its schema compiles");
    c.register::<ExtraParams>("extra_params")
        .register::<Limit>("limit")
        .register::<AccessLog>("access_log")
        .register::<Creds>("creds")
        .register::<Split>("split")
        .register::<Remote>("remote");
    c
}

pub fn limit(n: u32) -> Value {
    json!({ "second": n })
}
pub fn params(name: &str, value: &str) -> Value {
    json!({ "params": [{ "name": name, "value": value }] })
}
pub fn log(output: &str) -> Value {
    json!({ "output": output })
}

// ---- GatewayPlugin -----------------------------------------------------------------------------

pub struct PluginB(GatewayPlugin);

/// A GatewayPlugin `ns/alias` of kind `kind` (status enable, order 1000, no config).
pub fn plugin(ns: &str, alias: &str, kind: &str) -> PluginB {
    let mut p = GatewayPlugin::new(
        alias,
        GatewayPluginSpec {
            plugin: kind.into(),
            status: PluginStatus::Enable,
            order: 1000,
            config: None,
            exclude_paths: Vec::new(),
            policy: None,
        },
    );
    p.metadata = meta(ns, alias);
    PluginB(p)
}

impl PluginB {
    pub fn global(mut self, config: Value) -> Self {
        self.0.spec.status = PluginStatus::Global;
        self.0.spec.config = Some(config);
        self
    }
    pub fn status(mut self, s: PluginStatus) -> Self {
        self.0.spec.status = s;
        self
    }
    pub fn config(mut self, config: Value) -> Self {
        self.0.spec.config = Some(config);
        self
    }
    pub fn order(mut self, order: i32) -> Self {
        self.0.spec.order = order;
        self
    }
    pub fn exclude(mut self, path: &str) -> Self {
        self.0.spec.exclude_paths.push(path.into());
        self
    }
    pub fn locked(mut self) -> Self {
        self.0
            .spec
            .policy
            .get_or_insert_with(PluginPolicy::default)
            .locked = true;
        self
    }
    pub fn namespaces(mut self, selector: LabelSelector) -> Self {
        self.0
            .spec
            .policy
            .get_or_insert_with(PluginPolicy::default)
            .namespaces = Some(selector);
        self
    }
    pub fn build(self) -> GatewayPlugin {
        self.0
    }
}

pub fn match_labels(pairs: &[(&str, &str)]) -> LabelSelector {
    LabelSelector {
        match_labels: Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        match_expressions: None,
    }
}

fn cfg_ref(config: Value) -> PluginRef {
    PluginRef {
        disable: false,
        config: Some(config),
        exclude_paths: Vec::new(),
    }
}
fn disabled_ref() -> PluginRef {
    PluginRef {
        disable: true,
        ..Default::default()
    }
}

// ---- Service -----------------------------------------------------------------------------------

pub struct ServiceB(Service);

/// A Service `ns/name` with one static node 127.0.0.1:8080.
pub fn service(ns: &str, name: &str) -> ServiceB {
    let spec: ServiceSpec = serde_json::from_value(json!({
        "nodes": [{ "address": "127.0.0.1", "port": 8080 }]
    }))
    .unwrap();
    let mut s = Service::new(name, spec);
    s.metadata = meta(ns, name);
    ServiceB(s)
}

impl ServiceB {
    pub fn plugin(mut self, alias: &str, config: Value) -> Self {
        self.0.spec.plugins.insert(alias.into(), cfg_ref(config));
        self
    }
    pub fn uses(mut self, alias: &str) -> Self {
        self.0
            .spec
            .plugins
            .insert(alias.into(), PluginRef::default());
        self
    }
    pub fn disable(mut self, alias: &str) -> Self {
        self.0.spec.plugins.insert(alias.into(), disabled_ref());
        self
    }
    pub fn backend(mut self, name: &str, port: i32) -> Self {
        self.0.spec.nodes = None;
        self.0.spec.backend = Some(BackendRef {
            name: name.into(),
            port,
        });
        self
    }
    pub fn nodes(mut self, nodes: Vec<Node>) -> Self {
        self.0.spec.nodes = Some(nodes);
        self
    }
    pub fn spec(mut self, f: impl FnOnce(&mut ServiceSpec)) -> Self {
        f(&mut self.0.spec);
        self
    }
    pub fn build(self) -> Service {
        self.0
    }
}

// ---- Route -------------------------------------------------------------------------------------

pub struct RouteB(Route);

/// A Route `ns/name` to Service `s` with no hosts and no rules.
pub fn route(ns: &str, name: &str) -> RouteB {
    let mut r = Route::new(
        name,
        RouteSpec {
            hosts: Vec::new(),
            rules: Vec::new(),
            service: "s".into(),
            tls: None,
            priority: 0,
            plugins: BTreeMap::new(),
        },
    );
    r.metadata = meta(ns, name);
    RouteB(r)
}

impl RouteB {
    pub fn host(mut self, h: &str) -> Self {
        self.0.spec.hosts.push(h.into());
        self
    }
    pub fn service(mut self, s: &str) -> Self {
        self.0.spec.service = s.into();
        self
    }
    pub fn plugin(mut self, alias: &str, config: Value) -> Self {
        self.0.spec.plugins.insert(alias.into(), cfg_ref(config));
        self
    }
    pub fn uses(mut self, alias: &str) -> Self {
        self.0
            .spec
            .plugins
            .insert(alias.into(), PluginRef::default());
        self
    }
    pub fn disable(mut self, alias: &str) -> Self {
        self.0.spec.plugins.insert(alias.into(), disabled_ref());
        self
    }
    pub fn exclude(mut self, alias: &str, path: &str) -> Self {
        self.0
            .spec
            .plugins
            .entry(alias.into())
            .or_default()
            .exclude_paths
            .push(path.into());
        self
    }
    pub fn path(mut self, kind: PathMatchType, value: &str) -> Self {
        self.0.spec.rules.push(RouteRule {
            path: Some(PathMatch {
                kind,
                value: value.into(),
            }),
            ..Default::default()
        });
        self
    }
    pub fn header(mut self, name: &str, kind: ValueMatchType, value: &str) -> Self {
        if self.0.spec.rules.is_empty() {
            self.0.spec.rules.push(RouteRule::default());
        }
        self.0.spec.rules[0].headers.push(ValueMatch {
            name: name.into(),
            kind,
            value: Some(value.into()),
        });
        self
    }
    pub fn tls(mut self, secret: &str) -> Self {
        self.0.spec.tls = Some(RouteTls {
            secret_name: secret.into(),
        });
        self
    }
    pub fn priority(mut self, p: i32) -> Self {
        self.0.spec.priority = p;
        self
    }
    pub fn created(mut self, secs: i64) -> Self {
        let ts = k8s_openapi::jiff::Timestamp::from_second(secs).unwrap();
        self.0.metadata.creation_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(ts));
        self
    }
    pub fn build(self) -> Route {
        self.0
    }
}

// ---- other objects -------------------------------------------------------------------------------

pub fn namespace(name: &str, labels: &[(&str, &str)]) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        },
        ..Default::default()
    }
}

pub fn secret(ns: &str, name: &str, type_: &str, data: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: meta(ns, name),
        type_: Some(type_.into()),
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    }
}

/// A self-signed certificate and key for `host`, PEM, valid from `from` to `until` (years).
pub fn cert_pair(host: &str, from: i32, until: i32) -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(vec![host.to_string()]).expect("params");
    params.not_before = rcgen::date_time_ymd(from, 1, 1);
    params.not_after = rcgen::date_time_ymd(until, 1, 1);
    let cert = params.self_signed(&key).expect("self-signed");
    (cert.pem(), key.serialize_pem())
}

/// A `kubernetes.io/tls` Secret with a working certificate (valid 2000-2100).
pub fn tls_secret(ns: &str, name: &str) -> Secret {
    let (crt, key) = cert_pair("example.com", 2000, 2100);
    tls_secret_with(ns, name, &crt, &key)
}

/// A `kubernetes.io/tls` Secret holding exactly `crt` and `key`.
pub fn tls_secret_with(ns: &str, name: &str, crt: &str, key: &str) -> Secret {
    secret(
        ns,
        name,
        "kubernetes.io/tls",
        &[("tls.crt", crt), ("tls.key", key)],
    )
}

/// A PlatformPolicy `ns/name` from its spec as JSON.
pub fn platform_policy(ns: &str, name: &str, spec: Value) -> PlatformPolicy {
    PlatformPolicy {
        metadata: meta(ns, name),
        spec: serde_json::from_value(spec).expect("PlatformPolicy spec"),
        status: None,
    }
}

// ---- world -------------------------------------------------------------------------------------

/// A set of objects to compile.
#[derive(Default, Clone)]
pub struct World(pub Objects);

impl World {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn plugin(mut self, p: PluginB) -> Self {
        self.0.plugins.push(Arc::new(p.build()));
        self
    }
    pub fn service(mut self, s: ServiceB) -> Self {
        self.0.services.push(Arc::new(s.build()));
        self
    }
    pub fn route(mut self, r: RouteB) -> Self {
        self.0.routes.push(Arc::new(r.build()));
        self
    }
    pub fn namespace(mut self, n: Namespace) -> Self {
        self.0.namespaces.push(Arc::new(n));
        self
    }
    pub fn secret(mut self, s: Secret) -> Self {
        self.0.secrets.push(Arc::new(s));
        self
    }
    pub fn policy(mut self, p: PlatformPolicy) -> Self {
        self.0.policies.push(Arc::new(p));
        self
    }
    pub fn config_map(mut self, c: ConfigMap) -> Self {
        self.0.config_maps.push(Arc::new(c));
        self
    }
    pub fn fetched(mut self, f: Fetched) -> Self {
        self.0.fetched = Arc::new(f);
        self
    }
    pub fn compile(&self) -> Out {
        Out(compile(&self.0, &Options::default(), &catalogue()))
    }
    /// Compiles with the clock at `now` (unix seconds): certificate expiry is checked.
    pub fn compile_at(&self, now: i64) -> Out {
        let options = Options {
            now: Some(now),
            ..Options::default()
        };
        Out(compile(&self.0, &options, &catalogue()))
    }
}

/// A compile result with lookup helpers.
pub struct Out(pub Compiled);

impl Out {
    pub fn report(&self, kind: Kind, ns: &str, name: &str) -> &ObjectReport {
        let id = ObjectId {
            kind,
            key: ObjectKey::new(ns, name),
        };
        self.0
            .reports
            .get(&id)
            .unwrap_or_else(|| panic!("no report for {kind:?} {ns}/{name}"))
    }
    pub fn route_report(&self, ns: &str, name: &str) -> &ObjectReport {
        self.report(Kind::Route, ns, name)
    }
    pub fn service_report(&self, ns: &str, name: &str) -> &ObjectReport {
        self.report(Kind::Service, ns, name)
    }
    pub fn plugin_report(&self, ns: &str, name: &str) -> &ObjectReport {
        self.report(Kind::GatewayPlugin, ns, name)
    }
    pub fn served(&self, ns: &str, name: &str) -> Option<&RouteEntry> {
        let key = ObjectKey::new(ns, name);
        self.0
            .snapshot
            .routes
            .iter()
            .find(|r| r.key == key)
            .map(|r| &**r)
    }
    /// `alias@tier` of each chain entry in run order; panics when the Route is not served.
    pub fn chain(&self, ns: &str, name: &str) -> Vec<String> {
        self.served(ns, name)
            .unwrap_or_else(|| {
                panic!(
                    "route {ns}/{name} not served: {:?}",
                    self.route_report(ns, name)
                )
            })
            .chain
            .iter()
            .map(|e| format!("{}@{}", e.alias, e.tier.as_str()))
            .collect()
    }
    /// The effective config of `alias` on a served Route.
    pub fn config(&self, ns: &str, name: &str, alias: &str) -> Value {
        self.served(ns, name)
            .and_then(|r| r.chain.iter().find(|e| e.alias == alias))
            .map(|e| e.config.clone())
            .unwrap_or_else(|| panic!("{alias} not in chain of {ns}/{name}"))
    }
}
