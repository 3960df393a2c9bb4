//! Helpers for plugin unit tests: build a plugin from JSON, make requests and contexts, run hooks.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{request, response, Request, Response};
use http_body_util::BodyExt;

use hookway_crds::snapshot::{ObjectKey, SecretEntry, Snapshot};

use crate::chain::Link;
use crate::plugin::{BuildEnv, Ctx, Flow, Plugin, ProxyBody};

/// The namespace test plugins live in.
pub const NS: &str = "apps";

/// What the compiler would bind for a config written in [`NS`]: every Secret of `snapshot` in
/// that namespace, by name.
pub fn bindings(snapshot: &Snapshot) -> std::collections::BTreeMap<String, ObjectKey> {
    snapshot
        .secrets
        .iter()
        .filter(|s| s.key.namespace == NS)
        .map(|s| (s.key.name.clone(), s.key.clone()))
        .collect()
}

/// Builds `kind` with `config` against `snapshot`.
pub fn build_with(
    kind: &str,
    config: serde_json::Value,
    snapshot: &Snapshot,
) -> Result<Arc<dyn Plugin>, String> {
    let plugin_ref = ObjectKey::new(NS, kind);
    let bindings = bindings(snapshot);
    let env = BuildEnv {
        snapshot,
        plugin_ref: &plugin_ref,
        alias: kind,
        secrets: &bindings,
        services: &Default::default(),
    };
    super::builtin().build(kind, &config, &env)
}

/// Builds `kind` with `config` against an empty snapshot.
pub fn build(kind: &str, config: serde_json::Value) -> Arc<dyn Plugin> {
    build_with(kind, config, &Snapshot::default()).expect("plugin builds")
}

/// A snapshot holding one Secret `name` in [`NS`].
pub fn snapshot_with_secret(name: &str, data: &[(&str, &str)]) -> Snapshot {
    Snapshot {
        secrets: vec![std::sync::Arc::new(SecretEntry {
            key: ObjectKey::new(NS, name),
            data: data
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })],
        ..Snapshot::default()
    }
}

/// Request parts for `method uri` with `headers`.
pub fn parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> request::Parts {
    let mut b = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap().into_parts().0
}

/// A context for a request from `peer`.
pub fn ctx(peer: &str) -> Ctx {
    let peer: SocketAddr = peer.parse().unwrap();
    Ctx::new(peer, "127.0.0.1:8080".parse().unwrap(), false)
}

/// Runs the request hook; `Ok(None)` for Continue, `Ok(Some(resp))` for an answer.
pub async fn request(
    plugin: &dyn Plugin,
    req: &mut request::Parts,
    ctx: &mut Ctx,
) -> Option<Response<ProxyBody>> {
    match plugin
        .on_request(req, ctx)
        .resolve()
        .await
        .expect("hook ok")
    {
        Flow::Continue => None,
        Flow::Respond(r) => Some(r),
    }
}

/// Runs the response hook on an empty 200 (or on `resp` parts) and returns the parts.
pub async fn response(
    plugin: &dyn Plugin,
    ctx: &mut Ctx,
    resp: Option<response::Parts>,
) -> response::Parts {
    let mut parts = resp.unwrap_or_else(|| Response::new(()).into_parts().0);
    plugin
        .on_response(&mut parts, ctx)
        .resolve()
        .await
        .expect("response hook ok");
    parts
}

/// Collects a body into a string.
pub async fn body_string(resp: Response<ProxyBody>) -> String {
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// A chain link of plugin `kind` with `config`, built through [`super::builtin`].
pub(crate) fn link(kind: &str, config: serde_json::Value) -> Link {
    let snapshot = Snapshot::default();
    let plugin_ref = ObjectKey::new("hookway-system", kind);
    let bindings = bindings(&snapshot);
    let env = BuildEnv {
        snapshot: &snapshot,
        plugin_ref: &plugin_ref,
        alias: kind,
        secrets: &bindings,
        services: &Default::default(),
    };
    let plugin = super::builtin()
        .build(kind, &config, &env)
        .unwrap_or_else(|e| panic!("{kind} config {config}: {e}"));
    Link::new(kind, kind, plugin)
}

/// The compiler's validation error for `config` (panics if it is valid).
pub(crate) fn config_error(kind: &str, config: serde_json::Value) -> String {
    super::builtin()
        .catalogue()
        .validate(kind, &config)
        .err()
        .unwrap_or_else(|| panic!("{kind} config {config} should be refused"))
}
