//! `kubectl apply --server-side`, for tests: any manifest, with the API server's warnings.
//!
//! Each document is sent as a server-side apply patch (field manager `hookway-tests`, forced)
//! to the URL that discovery gives for its kind, so anything the API server serves can be applied
//! (core kinds, RBAC, CRDs, hookway's own kinds once their CRDs are established). The response's
//! `Warning` headers are returned with the stored object, which is how `kubectl` learns the
//! warnings it prints.

use std::path::Path;
use std::time::Duration;

use kube::api::{DynamicObject, Patch, PatchParams};
use kube::client::Body;
use kube::core::{GroupVersionKind, Resource};
use kube::discovery::{self, Scope};
use kube::Client;
use serde_json::Value;

use super::{wait, Error};

/// The field manager of every apply made by the tests.
pub const FIELD_MANAGER: &str = "hookway-tests";

/// How long an apply waits for its kind to be served (a CRD applied just before).
const DISCOVERY: Duration = Duration::from_secs(30);

/// What the API server answered to one applied document.
#[derive(Debug)]
pub struct Applied {
    /// The object as stored.
    pub object: DynamicObject,
    /// The `Warning` response headers, as sent (e.g. `299 - "unrecognized format \"uint32\""`).
    pub warnings: Vec<String>,
}

/// Applies one manifest (a JSON/YAML object with `apiVersion`, `kind` and `metadata.name`;
/// namespaced kinds default to the `default` namespace).
pub async fn apply(client: &Client, doc: &Value) -> Result<Applied, Error> {
    apply_in(client, doc, "default").await
}

/// Like [`apply`], with namespaced kinds defaulting to `namespace` (as `kubectl apply -n`).
pub async fn apply_in(client: &Client, doc: &Value, namespace: &str) -> Result<Applied, Error> {
    let what = describe(doc);
    let (api_version, kind, name) = match (
        doc["apiVersion"].as_str(),
        doc["kind"].as_str(),
        doc["metadata"]["name"].as_str(),
    ) {
        (Some(a), Some(k), Some(n)) => (a, k, n),
        _ => {
            return Err(Error::Manifest(format!(
                "{what}: no apiVersion, kind or metadata.name"
            )))
        }
    };
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let (resource, capabilities) = wait::until(&format!("{what} is served"), DISCOVERY, || async {
        discovery::pinned_kind(client, &gvk)
            .await
            .map_err(|e| e.to_string())
    })
    .await?;
    let namespace = match capabilities.scope {
        Scope::Namespaced => Some(doc["metadata"]["namespace"].as_str().unwrap_or(namespace)),
        Scope::Cluster => None,
    };
    let url = DynamicObject::url_path(&resource, namespace);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let request = kube::core::Request::new(url)
        .patch(name, &params, &Patch::Apply(doc))
        .map_err(|e| Error::Manifest(format!("{what}: {e}")))?;
    let response = client.send(request.map(Body::from)).await?;
    let warnings = response
        .headers()
        .get_all("warning")
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    let status = response.status();
    let body = response.into_body().collect_bytes().await?;
    if !status.is_success() {
        let message = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|s| s["message"].as_str().map(String::from))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        return Err(Error::Refused {
            what,
            code: status.as_u16(),
            message,
        });
    }
    let object = serde_json::from_slice(&body)
        .map_err(|e| Error::Manifest(format!("{what}: the API server answered {e}")))?;
    Ok(Applied { object, warnings })
}

/// Applies every document of a YAML stream, in order.
pub async fn apply_yaml(client: &Client, yaml: &str) -> Result<Vec<Applied>, Error> {
    let mut applied = Vec::new();
    for doc in documents(yaml)? {
        applied.push(apply(client, &doc).await?);
    }
    Ok(applied)
}

/// Applies a YAML file, or every `.yaml`/`.yml` file of a folder in name order (as
/// `kubectl apply -f DIR` does).
pub async fn apply_path(client: &Client, path: &Path) -> Result<Vec<Applied>, Error> {
    let mut files = Vec::new();
    if path.is_dir() {
        for entry in std::fs::read_dir(path).map_err(|e| Error::io(path, e))? {
            let file = entry.map_err(|e| Error::io(path, e))?.path();
            if matches!(
                file.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            ) {
                files.push(file);
            }
        }
        files.sort();
    } else {
        files.push(path.to_path_buf());
    }
    let mut applied = Vec::new();
    for file in files {
        let yaml = std::fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
        applied.extend(apply_yaml(client, &yaml).await?);
    }
    Ok(applied)
}

/// The non-empty documents of a YAML stream, as JSON values.
pub fn documents(yaml: &str) -> Result<Vec<Value>, Error> {
    let mut docs = Vec::new();
    for document in serde_yaml::Deserializer::from_str(yaml) {
        let value = <Value as serde::Deserialize>::deserialize(document)?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

/// `Kind namespace/name` of a manifest, for messages.
pub fn describe(doc: &Value) -> String {
    let kind = doc["kind"].as_str().unwrap_or("?");
    let name = doc["metadata"]["name"].as_str().unwrap_or("?");
    match doc["metadata"]["namespace"].as_str() {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}
