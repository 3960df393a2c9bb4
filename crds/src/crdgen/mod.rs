//! The CRD manifests, generated from the API types.
//!
//! `hookway-controller crds` prints them; `charts/hookway/crds/` holds the committed copy and a
//! test fails when the two differ.
//!
//! schemars writes what Rust knows; the API server wants what Kubernetes knows. Every schema node
//! of a generated CRD therefore goes through two rewrites before it is written:
//!
//! ```text
//!   GatewayPlugin::crd() ─┐                   ┌─ format::kubernetes_format (uint32 -> int64)
//!   Service::crd()       ─┼─> for_kubernetes ─┤
//!   Route::crd()         ─┤   (every node)    └─ description::paragraphs (wraps joined)
//!   PlatformPolicy::crd()─┘
//! ```

pub mod description;
pub mod format;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
    JSONSchemaPropsOrStringArray,
};
use kube::CustomResourceExt;

use crate::{GatewayPlugin, PlatformPolicy, Route, Service};

/// The CRDs as `(file name, YAML)` pairs, in a fixed order.
pub fn crd_files() -> Vec<(&'static str, String)> {
    vec![
        (
            "gatewayplugins.hookway.dev.yaml",
            to_yaml(&for_kubernetes(GatewayPlugin::crd())),
        ),
        (
            "services.hookway.dev.yaml",
            to_yaml(&for_kubernetes(Service::crd())),
        ),
        (
            "routes.hookway.dev.yaml",
            to_yaml(&for_kubernetes(Route::crd())),
        ),
        (
            "platformpolicies.hookway.dev.yaml",
            to_yaml(&for_kubernetes(PlatformPolicy::crd())),
        ),
    ]
}

/// All CRDs as one multi-document YAML stream.
pub fn all_crds_yaml() -> String {
    crd_files()
        .into_iter()
        .map(|(_, y)| format!("---\n{y}"))
        .collect()
}

/// Rewrites every schema node of a generated CRD for the Kubernetes API server: only formats it
/// recognises (see [`format::kubernetes_format`]) and descriptions as paragraphs (see
/// [`description::paragraphs`]).
pub fn for_kubernetes(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            rewrite(schema);
        }
    }
    crd
}

/// Rewrites one schema node, then every schema below it.
fn rewrite(schema: &mut JSONSchemaProps) {
    format::kubernetes_format(schema);
    if let Some(text) = schema.description.as_deref() {
        schema.description = Some(description::paragraphs(text));
    }
    let maps = [
        schema.properties.as_mut(),
        schema.pattern_properties.as_mut(),
        schema.definitions.as_mut(),
    ];
    for map in maps.into_iter().flatten() {
        map.values_mut().for_each(rewrite);
    }
    let lists = [
        schema.all_of.as_mut(),
        schema.any_of.as_mut(),
        schema.one_of.as_mut(),
    ];
    for list in lists.into_iter().flatten() {
        list.iter_mut().for_each(rewrite);
    }
    if let Some(not) = schema.not.as_deref_mut() {
        rewrite(not);
    }
    match schema.items.as_mut() {
        Some(JSONSchemaPropsOrArray::Schema(s)) => rewrite(s),
        Some(JSONSchemaPropsOrArray::Schemas(list)) => list.iter_mut().for_each(rewrite),
        None => {}
    }
    for extra in [
        schema.additional_properties.as_mut(),
        schema.additional_items.as_mut(),
    ] {
        if let Some(JSONSchemaPropsOrBool::Schema(s)) = extra {
            rewrite(s);
        }
    }
    for dependency in schema.dependencies.iter_mut().flat_map(|d| d.values_mut()) {
        if let JSONSchemaPropsOrStringArray::Schema(s) = dependency {
            rewrite(s);
        }
    }
}

fn to_yaml<T: serde::Serialize>(value: &T) -> String {
    let body = serde_yaml::to_string(value).expect("CRD serializes to YAML");
    format!("# Generated from the hookway-crds types by `hookway-controller crds`. Do not edit.\n{body}")
}
