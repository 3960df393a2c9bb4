//! `Service`: an upstream — a core Kubernetes Service resolved through its EndpointSlices, or a
//! list of static nodes — with balancing, timeouts, retries and plugin references.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Conditions, PluginRefs};

/// An upstream that Routes send traffic to (`kubectl get hsvc`; `kubectl get services` keeps
/// meaning core Services).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "hookway.dev",
    version = "v1alpha1",
    kind = "Service",
    doc = "A hookway Service: an upstream (core Service or static nodes) with balancing, timeouts, retries and plugins.",
    namespaced,
    status = "ServiceStatus",
    shortname = "hsvc",
    category = "hookway",
    printcolumn = r#"{"name":"Backend","type":"string","jsonPath":".spec.backend.name"}"#,
    printcolumn = r#"{"name":"Port","type":"integer","jsonPath":".spec.backend.port"}"#,
    printcolumn = r#"{"name":"Endpoints","type":"integer","jsonPath":".status.endpoints"}"#,
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "(has(self.backend) ? 1 : 0) + (has(self.backends) ? 1 : 0) + (has(self.nodes) ? 1 : 0) == 1", "message": "exactly one of backend, backends or nodes must be set"},
    {"rule": "self.balance != 'header-hash' || has(self.hashHeader)", "message": "hashHeader is required when balance is header-hash"}
]))]
pub struct ServiceSpec {
    /// A core Service in the same namespace; its ready endpoints (from EndpointSlices) become
    /// the upstream's nodes. Exactly one of `backend`, `backends` and `nodes` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<BackendRef>,
    /// Several core Services of the same namespace sharing the traffic by `weight` (each
    /// Service gets `weight / sum of weights` of the requests, however many endpoints it has;
    /// weight 0 gets none). `balance` must be left at `round-robin` or set to `weighted`.
    /// Exactly one of `backend`, `backends` and `nodes` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 16))]
    pub backends: Option<Vec<WeightedBackendRef>>,
    /// Static upstream nodes (what standalone mode uses). Exactly one of `backend`, `backends`
    /// and `nodes` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub nodes: Option<Vec<Node>>,
    /// Protocol spoken to the upstream.
    #[serde(default)]
    pub scheme: Scheme,
    /// HTTP/2 towards the upstream. `auto`: over `https`, offer `h2` and `http/1.1` by ALPN and
    /// speak what the upstream picks; over `http`, HTTP/1.1 unless the backend port's
    /// `appProtocol` is `kubernetes.io/h2c`. `always`: HTTP/2 only (ALPN `h2` over `https`,
    /// cleartext HTTP/2 with prior knowledge, h2c, over `http`). `never`: HTTP/1.1 only.
    #[serde(default)]
    pub http2: Http2,
    /// How a node is chosen for each request.
    #[serde(default)]
    pub balance: Balance,
    /// Request header whose value is hashed when `balance` is `header-hash`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub hash_header: Option<String>,
    /// Connect and request timeouts.
    #[serde(default)]
    pub timeout: Timeouts,
    /// Retries of idempotent requests on connect failure or a 502/503/504 answer.
    #[serde(default)]
    pub retries: Retries,
    /// TLS settings towards the upstream when `scheme` is `https`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<UpstreamTls>,
    /// Plugin references: alias (GatewayPlugin name) → `{disable, config, excludePaths}`.
    /// Applies to every Route that targets this Service unless the Route says otherwise.
    #[serde(default, skip_serializing_if = "PluginRefs::is_empty")]
    pub plugins: PluginRefs,
}

/// A core Service and one of its ports.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendRef {
    /// Name of the core Service, in the same namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The Service port (`spec.ports[].port`); traffic goes to the matching endpoint port.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
}

/// A core Service, one of its ports and its share of the traffic.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WeightedBackendRef {
    /// Name of the core Service, in the same namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The Service port (`spec.ports[].port`).
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Relative share of the requests (0: none).
    #[serde(default = "default_weight")]
    #[schemars(range(min = 0, max = 1000000))]
    pub weight: u32,
}

/// A static upstream node.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Node {
    /// Host name, IPv4 or IPv6 address (without brackets).
    #[schemars(length(min = 1, max = 253))]
    pub address: String,
    /// TCP port.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Relative weight for `weighted` balancing (0 takes the node out of rotation).
    #[serde(default = "default_weight")]
    #[schemars(range(min = 0, max = 1000))]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

/// `http | https`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// Plain HTTP (HTTP/1.1, or h2c as `http2` says).
    #[default]
    Http,
    /// HTTP over TLS (HTTP/2 when the upstream offers it by ALPN, as `http2` says).
    Https,
}

/// Whether HTTP/2 is spoken to the upstream.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Http2 {
    /// HTTP/2 when the upstream offers it by ALPN (`https`) or its backend port's `appProtocol`
    /// is `kubernetes.io/h2c` (`http`); HTTP/1.1 otherwise.
    #[default]
    Auto,
    /// HTTP/2 only: ALPN `h2` over `https`, prior knowledge (h2c) over `http`.
    Always,
    /// HTTP/1.1 only (ALPN offers `http/1.1` alone).
    Never,
}

/// Load-balancing algorithm.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Balance {
    /// Each node in turn, ignoring weights.
    #[default]
    RoundRobin,
    /// Smooth weighted round-robin by `nodes[].weight`.
    Weighted,
    /// The node with the fewest requests in flight (ties: round-robin).
    LeastRequest,
    /// A stable node per client IP address.
    IpHash,
    /// A stable node per value of the `hashHeader` request header.
    HeaderHash,
}

/// Timeouts, as durations like `500ms`, `5s`, `1m`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Timeouts {
    /// Time allowed to open a connection to a node (default `5s`).
    #[serde(default = "default_connect")]
    #[schemars(regex(pattern = r"^([0-9]{1,5}(h|m|s|ms)){1,4}$"))]
    pub connect: String,
    /// Time allowed for the upstream to answer with its response head (default `30s`).
    #[serde(default = "default_request")]
    #[schemars(regex(pattern = r"^([0-9]{1,5}(h|m|s|ms)){1,4}$"))]
    pub request: String,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: default_connect(),
            request: default_request(),
        }
    }
}

fn default_connect() -> String {
    "5s".into()
}
fn default_request() -> String {
    "30s".into()
}

/// Retry budget for idempotent requests (GET, HEAD, OPTIONS, PUT, DELETE, TRACE).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Retries {
    /// Extra attempts after the first (0 disables retries).
    #[serde(default = "default_attempts")]
    #[schemars(range(min = 0, max = 5))]
    pub attempts: u32,
    /// Upstream answers that trigger a retry, in addition to connect failures.
    #[serde(default = "default_retry_on")]
    pub on_status: Vec<u16>,
}

impl Default for Retries {
    fn default() -> Self {
        Self {
            attempts: default_attempts(),
            on_status: default_retry_on(),
        }
    }
}

fn default_attempts() -> u32 {
    1
}
fn default_retry_on() -> Vec<u16> {
    vec![502, 503, 504]
}

/// TLS towards an `https` upstream.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpstreamTls {
    /// Server name to send and verify (default: the node address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// Skip certificate verification (testing only; logged as a warning).
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// Observed state of a Service.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    /// `Accepted`, `ResolvedRefs`, `Programmed`.
    #[serde(default)]
    pub conditions: Conditions,
    /// Ready endpoints currently resolved.
    #[serde(default)]
    pub endpoints: u32,
    /// Non-fatal findings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}
