//! The `wasm` plugin's config: where the module comes from (a file in standalone mode, a Secret
//! or ConfigMap key, or a URL the controller fetches; the compiler resolves and checks all but
//! the file), its pinned `sha256`, the configuration handed to `proxy_on_configure`, and the
//! limits of every instance.

use std::sync::atomic::{AtomicBool, Ordering};

use serde::Deserialize;

use hookway_crds::catalogue::{schema, PluginConfig, ResolvedSecrets};
use hookway_crds::snapshot::{SecretEntry, Snapshot};

/// Whether `file:` module sources may be read (standalone mode only; see
/// [`allow_file_modules`]).
static FILE_MODULES: AtomicBool = AtomicBool::new(false);

/// Lets `file:` sources be read from this process's file system. Standalone mode (`--manifests`)
/// calls it; the controller never does, so a GatewayPlugin cannot make the controller (or a
/// proxy fed by it) read local files.
pub fn allow_file_modules() {
    FILE_MODULES.store(true, Ordering::Relaxed);
}

fn default_max_memory() -> u64 {
    16 << 20
}
fn default_deadline() -> u64 {
    100
}
fn default_max_instances() -> usize {
    256
}
fn default_max_body_bytes() -> usize {
    1 << 20
}
fn default_http_call_timeout() -> u64 {
    5_000
}
fn default_http_call_max_response_bytes() -> usize {
    1 << 20
}
fn default_http_call_max_per_request() -> usize {
    4
}
fn default_max_queue_length() -> usize {
    1024
}

/// An upstream `proxy_http_call` may reach, by the name the filter passes as `upstream`:
/// exactly one of `service` and `address`.
#[derive(Deserialize, Clone, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// A hookway Service (`name`, or `namespace/name` where a grant allows it), called over
    /// plain HTTP/1.1 on its endpoints, round robin.
    #[serde(default)]
    #[schemars(extend("x-hookway-ref" = "service"))]
    pub service: Option<String>,
    /// A URL, `http://host:port` or `https://host:port` (no path): the config chooses where the
    /// proxy connects, so outside the root namespace it needs a `PlatformPolicy` listing `wasm`
    /// under `networkPlugins`.
    #[serde(default)]
    #[schemars(extend("x-hookway-reaches-network" = true))]
    pub address: Option<String>,
    /// Longest call to this upstream, milliseconds (caps the filter's own timeout; default
    /// `http_call_timeout`).
    #[serde(default)]
    #[schemars(range(min = 1, max = 60_000))]
    pub timeout: Option<u64>,
}

/// Config of `wasm`.
#[derive(Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend(
    "x-hookway-configuration-schema" = {"schema": "configuration_schema", "instance": "configuration"}
))]
#[schemars(extend("x-hookway-pinned-blob" = {
    "sha256": "sha256", "key": "key", "file": "file", "secret": "secret",
    "config_map": "config_map", "url": "url"
}))]
pub struct Config {
    /// Standalone mode: path of the `.wasm` file.
    #[serde(default)]
    pub file: Option<String>,
    /// Secret holding the module (with `key`).
    #[serde(default)]
    #[schemars(extend("x-hookway-ref" = "secret"))]
    pub secret: Option<String>,
    /// ConfigMap holding the module (with `key`; labelled `hookway.dev/plugin-data=true` in a
    /// cluster), resolved in the namespace of the object whose config it is.
    #[serde(default)]
    pub config_map: Option<String>,
    /// Key of `secret` (the value base64-encoded: the snapshot carries Secret data as text) or
    /// of `config_map` (`binaryData` as is, or `data` base64-encoded).
    #[serde(default)]
    pub key: Option<String>,
    /// `http://` or `https://` URL the controller fetches the module from (never a proxy).
    /// The controller then calls an address the config chooses: allowed outside the root
    /// namespace only where a PlatformPolicy lists `wasm` under `networkPlugins`.
    #[serde(default)]
    #[schemars(extend("x-hookway-reaches-network" = true), regex(pattern = r"^https?://"))]
    pub url: Option<String>,
    /// Lowercase hex SHA-256 of the module bytes; a mismatch rejects the config.
    #[schemars(pattern(r"^[0-9a-f]{64}$"))]
    pub sha256: String,
    /// Handed to `proxy_on_configure` (a string as is; any other JSON value serialized).
    #[serde(default)]
    pub configuration: serde_json::Value,
    /// JSON Schema `configuration` must be valid against (as written: an object is checked as
    /// an object, a string as a string), checked by the controller and by `--check`; absent:
    /// `configuration` is passed through unchecked.
    #[serde(default)]
    pub configuration_schema: Option<serde_json::Value>,
    /// The root context id the filter registered (`plugin_root_id` property; AssemblyScript
    /// filters need it to match their `registerRootContext` name).
    #[serde(default)]
    pub root_id: String,
    /// Largest linear memory of one instance, bytes.
    #[serde(default = "default_max_memory")]
    #[schemars(range(min = 65_536))]
    pub max_memory: u64,
    /// Longest time one call into the filter may run, milliseconds.
    #[serde(default = "default_deadline")]
    #[schemars(range(min = 1, max = 60_000))]
    pub deadline: u64,
    /// On a trap, deadline or out-of-memory, let the request go on without the filter instead
    /// of answering 500.
    #[serde(default)]
    pub fail_open: bool,
    /// Most instances of this filter alive at once (one per request in flight).
    #[serde(default = "default_max_instances")]
    #[schemars(range(min = 1))]
    pub max_instances: usize,
    /// Most body bytes held while the filter pauses a body (413 on a request, 502 on a
    /// response beyond it).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// The upstreams `proxy_http_call` may reach, by name (the call's `upstream` argument).
    /// Any other name is refused with `BadArgument`.
    #[serde(default)]
    pub clusters: std::collections::BTreeMap<String, Cluster>,
    /// Longest `proxy_http_call`, milliseconds: caps the filter's `timeout_milliseconds` (and
    /// is used when it passes 0).
    #[serde(default = "default_http_call_timeout")]
    #[schemars(range(min = 1, max = 60_000))]
    pub http_call_timeout: u64,
    /// Largest `proxy_http_call` answer body, bytes; a larger one is delivered as a failed
    /// call (no headers).
    #[serde(default = "default_http_call_max_response_bytes")]
    pub http_call_max_response_bytes: usize,
    /// Most `proxy_http_call`s in flight for one request (`InternalFailure` beyond).
    #[serde(default = "default_http_call_max_per_request")]
    #[schemars(range(min = 1))]
    pub http_call_max_per_request: usize,
    /// Most messages one shared queue holds (`proxy_enqueue_shared_queue` answers
    /// `InternalFailure` beyond).
    #[serde(default = "default_max_queue_length")]
    #[schemars(range(min = 1))]
    pub max_queue_length: usize,
}

impl Config {
    /// The configuration bytes for `proxy_on_configure`.
    pub fn configuration_bytes(&self) -> Vec<u8> {
        match &self.configuration {
            serde_json::Value::Null => Vec::new(),
            serde_json::Value::String(s) => s.clone().into_bytes(),
            other => other.to_string().into_bytes(),
        }
    }

    /// Reads a `file:` source and checks its digest.
    pub fn read_file(&self, path: &str) -> Result<Vec<u8>, String> {
        if !FILE_MODULES.load(Ordering::Relaxed) {
            return Err(
                "file: module files are read in standalone mode only; use secret and key".into(),
            );
        }
        let bytes = std::fs::read(path).map_err(|e| format!("file {path:?}: {e}"))?;
        self.check_digest(&bytes)?;
        Ok(bytes)
    }

    /// The module bytes the compiler carried in the snapshot (a ConfigMap or URL source),
    /// digest checked.
    pub fn module_from_snapshot(&self, snapshot: &Snapshot) -> Result<Vec<u8>, String> {
        let blob = snapshot
            .blob(&self.sha256)
            .ok_or_else(|| format!("the module {} is not in the snapshot", self.sha256))?;
        let bytes = blob.bytes()?;
        self.check_digest(&bytes)?;
        Ok(bytes)
    }

    /// The module bytes from a resolved Secret, digest checked.
    pub fn module_from_secret(&self, secret: &SecretEntry) -> Result<Vec<u8>, String> {
        let key = self.key.as_deref().unwrap_or_default();
        let bytes = schema::secret_blob(secret, key)?;
        self.check_digest(&bytes)?;
        Ok(bytes)
    }

    fn check_digest(&self, bytes: &[u8]) -> Result<(), String> {
        schema::check_sha256(bytes, &self.sha256)
    }
}

impl PluginConfig for Config {
    fn validate(&self) -> Result<(), String> {
        let sources = [
            self.file.is_some(),
            self.secret.is_some(),
            self.config_map.is_some(),
            self.url.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() != 1 {
            return Err("set exactly one of file, secret, config_map, url".into());
        }
        if (self.secret.is_some() || self.config_map.is_some()) != self.key.is_some() {
            return Err(match &self.key {
                None => "secret and config_map need key",
                Some(_) => "key goes with secret or config_map",
            }
            .into());
        }
        if let Some(url) = &self.url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err("url: an http:// or https:// URL".into());
            }
        }
        if self.sha256.len() != 64
            || !self
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err("sha256: 64 lowercase hex digits".into());
        }
        if self.deadline == 0 || self.deadline > 60_000 {
            return Err("deadline: 1 to 60000 milliseconds".into());
        }
        if self.max_memory < 65_536 {
            return Err("max_memory: at least 65536 bytes (one Wasm page)".into());
        }
        if self.max_instances == 0 {
            return Err("max_instances: at least 1".into());
        }
        if self.http_call_timeout == 0 || self.http_call_timeout > 60_000 {
            return Err("http_call_timeout: 1 to 60000 milliseconds".into());
        }
        if self.http_call_max_per_request == 0 {
            return Err("http_call_max_per_request: at least 1".into());
        }
        if self.max_queue_length == 0 {
            return Err("max_queue_length: at least 1".into());
        }
        for (name, cluster) in &self.clusters {
            super::http_call::check_cluster(cluster)
                .map_err(|e| format!("clusters.{name}: {e}"))?;
        }
        if let Some(path) = &self.file {
            let bytes = self.read_file(path)?;
            super::engine::validate(&bytes)?;
        }
        Ok(())
    }

    fn check_secrets(&self, secrets: &ResolvedSecrets) -> Result<(), String> {
        let Some(name) = &self.secret else {
            return Ok(());
        };
        let secret = secrets
            .get(name)
            .ok_or_else(|| format!("Secret {name:?} not resolved"))?;
        let bytes = self.module_from_secret(secret)?;
        super::engine::validate(&bytes)
    }
}
