//! Test helpers for built-in plugins: build an instance from JSON config, make request and
//! response heads and a [`Ctx`], run hooks and drive body filters chunk by chunk.
#![allow(dead_code)]

use std::sync::Arc;

use bytes::Bytes;
use hookway_crds::snapshot::{ObjectKey, Snapshot};
use http::{request, response};

use crate::plugin::{BodyFilter, Ctx, Flow, Plugin, PluginError};

/// Builds plugin `kind` with `config` through the built-in registry, with the Services it names
/// bound as the compiler binds them for a config written in namespace `default`.
pub fn build(kind: &str, config: serde_json::Value) -> Result<Arc<dyn Plugin>, String> {
    let snapshot = Snapshot::default();
    let plugin_ref = ObjectKey::new("default", kind);
    let bindings = std::collections::BTreeMap::new();
    let services = super::builtin()
        .catalogue()
        .validate(kind, &config)
        .map(|v| v.service_refs)
        .unwrap_or_default()
        .into_iter()
        .map(|written| {
            let key = match written.split_once('/') {
                Some((ns, name)) => ObjectKey::new(ns, name),
                None => ObjectKey::new("default", written.as_str()),
            };
            (written, key)
        })
        .collect();
    let env = crate::plugin::BuildEnv {
        snapshot: &snapshot,
        plugin_ref: &plugin_ref,
        alias: kind,
        secrets: &bindings,
        services: &services,
    };
    super::builtin().build(kind, &config, &env)
}

/// Validates `config` for `kind` through the catalogue.
pub fn validate(kind: &str, config: serde_json::Value) -> Result<(), String> {
    super::builtin()
        .catalogue()
        .validate(kind, &config)
        .map(|_| ())
}

/// A context for a plain-HTTP request from 127.0.0.1.
pub fn ctx() -> Ctx {
    Ctx::new(
        "127.0.0.1:40000".parse().expect("addr"),
        "127.0.0.1:8080".parse().expect("addr"),
        false,
    )
}

/// Request head with `method`, `uri` and headers.
pub fn request(method: &str, uri: &str, headers: &[(&str, &str)]) -> request::Parts {
    let mut b = http::Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).expect("request").into_parts().0
}

/// Response head with `status` and headers.
pub fn response(status: u16, headers: &[(&str, &str)]) -> response::Parts {
    let mut b = http::Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).expect("response").into_parts().0
}

/// Runs `on_request`.
pub async fn on_request(
    plugin: &dyn Plugin,
    req: &mut request::Parts,
    ctx: &mut Ctx,
) -> Result<Flow, PluginError> {
    plugin.on_request(req, ctx).resolve().await
}

/// Runs `on_response`.
pub async fn on_response(
    plugin: &dyn Plugin,
    resp: &mut response::Parts,
    ctx: &mut Ctx,
) -> Result<(), PluginError> {
    plugin.on_response(resp, ctx).resolve().await
}

/// Feeds `chunks` through `filter` and returns what it emitted, chunk by chunk (end last).
pub fn drive(filter: &mut dyn BodyFilter, chunks: &[&[u8]]) -> Result<Vec<Bytes>, PluginError> {
    let mut out = Vec::with_capacity(chunks.len() + 1);
    for c in chunks {
        out.push(filter.on_chunk(Bytes::copy_from_slice(c))?);
    }
    out.push(filter.on_end()?.unwrap_or_default());
    Ok(out)
}

/// Concatenates emitted chunks.
pub fn concat(parts: &[Bytes]) -> Vec<u8> {
    parts.iter().flat_map(|b| b.iter().copied()).collect()
}

/// The body of an early answer.
pub async fn body_of(resp: http::Response<crate::plugin::ProxyBody>) -> (response::Parts, Bytes) {
    use http_body_util::BodyExt;
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    (parts, bytes)
}
