//! Reading manifests: multi-document YAML (what a user would `kubectl apply`) into typed objects.
//!
//! No I/O here: callers hand in the text and a source name for messages. Unknown kinds are
//! skipped with a note (a folder may hold other manifests); malformed hookway objects are errors
//! naming the document.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service as CoreService};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use serde::Deserialize;

use crate::compiler::Objects;
use crate::gateway_api::{
    GRPCRoute, Gateway, GatewayClass, HTTPRoute, ReferenceGrant, API_VERSION_V1 as GW_V1,
    API_VERSION_V1BETA1 as GW_V1BETA1,
};
use crate::{GatewayPlugin, PlatformPolicy, Route, Service};

/// A document that could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{source_name}: document {index}: {message}")]
pub struct ManifestError {
    /// File (or other source) name.
    pub source_name: String,
    /// 1-based index of the document in the stream.
    pub index: usize,
    /// What went wrong, naming the field where possible.
    pub message: String,
}

#[derive(Deserialize)]
struct TypeMeta {
    #[serde(rename = "apiVersion", default)]
    api_version: String,
    #[serde(default)]
    kind: String,
}

/// Parses every document of `text` into `into`. Returns the documents that were skipped
/// (other kinds) as notes. Objects without a namespace get `default_namespace`.
pub fn parse_into(
    text: &str,
    source_name: &str,
    default_namespace: &str,
    into: &mut Objects,
) -> Result<Vec<String>, Vec<ManifestError>> {
    let mut errors = Vec::new();
    let mut notes = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let index = i + 1;
        let err = |message: String| ManifestError {
            source_name: source_name.to_string(),
            index,
            message,
        };
        let value = match serde_yaml::Value::deserialize(doc) {
            Ok(serde_yaml::Value::Null) => continue,
            Ok(v) => v,
            Err(e) => {
                // A syntax error leaves the YAML stream in an unknown place: stop reading it.
                errors.push(err(e.to_string()));
                break;
            }
        };
        let meta: TypeMeta = match serde_yaml::from_value(value.clone()) {
            Ok(m) => m,
            Err(e) => {
                errors.push(err(e.to_string()));
                continue;
            }
        };
        let result = match (meta.api_version.as_str(), meta.kind.as_str()) {
            (crate::API_VERSION, "GatewayPlugin") => {
                decode::<GatewayPlugin>(value, default_namespace)
                    .map(|o| into.plugins.push(Arc::new(o)))
            }
            (crate::API_VERSION, "Service") => {
                decode::<Service>(value, default_namespace).map(|o| into.services.push(Arc::new(o)))
            }
            (crate::API_VERSION, "Route") => {
                decode::<Route>(value, default_namespace).map(|o| into.routes.push(Arc::new(o)))
            }
            (crate::API_VERSION, "PlatformPolicy") => {
                decode::<PlatformPolicy>(value, default_namespace)
                    .map(|o| into.policies.push(Arc::new(o)))
            }
            (GW_V1, "GatewayClass") | (GW_V1BETA1, "GatewayClass") => {
                decode::<GatewayClass>(value, "").map(|o| into.gateway_classes.push(Arc::new(o)))
            }
            (GW_V1, "Gateway") | (GW_V1BETA1, "Gateway") => {
                decode::<Gateway>(value, default_namespace).map(|o| into.gateways.push(Arc::new(o)))
            }
            (GW_V1, "HTTPRoute") | (GW_V1BETA1, "HTTPRoute") => {
                decode::<HTTPRoute>(value, default_namespace)
                    .map(|o| into.http_routes.push(Arc::new(o)))
            }
            (GW_V1, "GRPCRoute") => decode::<GRPCRoute>(value, default_namespace)
                .map(|o| into.grpc_routes.push(Arc::new(o))),
            (GW_V1, "ReferenceGrant") | (GW_V1BETA1, "ReferenceGrant") => {
                decode::<ReferenceGrant>(value, default_namespace)
                    .map(|o| into.reference_grants.push(Arc::new(o)))
            }
            ("v1", "Secret") => decode::<Secret>(value, default_namespace)
                .map(fold_string_data)
                .map(|o| into.secrets.push(Arc::new(o))),
            ("v1", "ConfigMap") => decode::<ConfigMap>(value, default_namespace)
                .map(|o| into.config_maps.push(Arc::new(o))),
            ("v1", "Service") => decode::<CoreService>(value, default_namespace)
                .map(|o| into.core_services.push(Arc::new(o))),
            ("v1", "Namespace") => {
                decode::<Namespace>(value, "").map(|o| into.namespaces.push(Arc::new(o)))
            }
            ("discovery.k8s.io/v1", "EndpointSlice") => {
                decode::<EndpointSlice>(value, default_namespace)
                    .map(|o| into.endpoint_slices.push(Arc::new(o)))
            }
            ("networking.k8s.io/v1", "Ingress") => decode::<Ingress>(value, default_namespace)
                .map(|o| into.ingresses.push(Arc::new(o))),
            ("networking.k8s.io/v1", "IngressClass") => {
                decode::<IngressClass>(value, "").map(|o| into.ingress_classes.push(Arc::new(o)))
            }
            (api, kind) => {
                notes.push(format!(
                    "{source_name}: document {index}: skipped {api} {kind}"
                ));
                Ok(())
            }
        };
        if let Err(message) = result {
            errors.push(err(message));
        }
    }
    if errors.is_empty() {
        Ok(notes)
    } else {
        Err(errors)
    }
}

/// Moves `stringData` into `data`, as the API server does on write.
fn fold_string_data(mut secret: Secret) -> Secret {
    if let Some(strings) = secret.string_data.take() {
        let data = secret.data.get_or_insert_with(Default::default);
        for (k, v) in strings {
            data.insert(k, k8s_openapi::ByteString(v.into_bytes()));
        }
    }
    secret
}

fn decode<K>(value: serde_yaml::Value, default_namespace: &str) -> Result<K, String>
where
    K: serde::de::DeserializeOwned + kube::Resource,
{
    let mut obj: K = serde_path_to_error::deserialize(value)
        .map_err(|e| format!("{}: {}", e.path(), e.inner()))?;
    let meta = obj.meta_mut();
    if meta.name.as_deref().unwrap_or("").is_empty() {
        return Err("metadata.name is required".into());
    }
    if meta.namespace.is_none() && !default_namespace.is_empty() {
        meta.namespace = Some(default_namespace.to_string());
    }
    if meta.generation.is_none() {
        meta.generation = Some(1);
    }
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCS: &str = r#"
apiVersion: hookway.dev/v1alpha1
kind: GatewayPlugin
metadata: {name: mock, namespace: hookway-system}
spec: {plugin: mock, status: enable}
---
apiVersion: hookway.dev/v1alpha1
kind: Service
metadata: {name: echo}
spec:
  nodes: [{address: 127.0.0.1, port: 8080}]
---
apiVersion: hookway.dev/v1alpha1
kind: Route
metadata: {name: r, namespace: demo}
spec:
  hosts: [example.com]
  service: echo
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: d}
"#;

    #[test]
    fn reads_every_kind_and_defaults_namespace() {
        let mut objects = Objects::default();
        let notes = parse_into(DOCS, "a.yaml", "default", &mut objects).unwrap();
        assert_eq!(objects.plugins.len(), 1);
        assert_eq!(
            objects.services[0].metadata.namespace.as_deref(),
            Some("default")
        );
        assert_eq!(
            objects.routes[0].metadata.namespace.as_deref(),
            Some("demo")
        );
        assert_eq!(
            notes,
            vec!["a.yaml: document 4: skipped apps/v1 Deployment".to_string()]
        );
    }

    #[test]
    fn unknown_field_names_document_and_field() {
        let text = "apiVersion: hookway.dev/v1alpha1\nkind: Route\nmetadata: {name: r}\nspec: {service: s, hostz: [a]}\n";
        let errors = parse_into(text, "bad.yaml", "default", &mut Objects::default()).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0]
                .to_string()
                .starts_with("bad.yaml: document 1: spec"),
            "{}",
            errors[0]
        );
        assert!(errors[0].message.contains("hostz"), "{}", errors[0]);
    }

    #[test]
    fn secret_string_data_becomes_data() {
        let text = "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ntype: kubernetes.io/tls\nstringData: {tls.crt: abc}\ndata: {tls.key: ZGVm}\n";
        let mut objects = Objects::default();
        parse_into(text, "s.yaml", "default", &mut objects).unwrap();
        let data = objects.secrets[0].data.as_ref().unwrap();
        assert_eq!(data["tls.crt"].0, b"abc");
        assert_eq!(data["tls.key"].0, b"def");
        assert!(objects.secrets[0].string_data.is_none());
    }

    #[test]
    fn broken_yaml_is_an_error_not_a_panic() {
        let errors = parse_into(
            "kind: [unclosed",
            "x.yaml",
            "default",
            &mut Objects::default(),
        )
        .unwrap_err();
        assert_eq!(errors[0].index, 1);
    }
}
