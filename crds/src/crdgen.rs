//! The CRD manifests, generated from the API types.
//!
//! `hookway-controller crds` prints them; `charts/hookway/crds/` holds the committed copy and a
//! test fails when the two differ.

use kube::CustomResourceExt;

use crate::{GatewayPlugin, Route, Service};

/// The three CRDs as `(file name, YAML)` pairs, in a fixed order.
pub fn crd_files() -> Vec<(&'static str, String)> {
    vec![
        (
            "gatewayplugins.hookway.dev.yaml",
            to_yaml(&GatewayPlugin::crd()),
        ),
        ("services.hookway.dev.yaml", to_yaml(&Service::crd())),
        ("routes.hookway.dev.yaml", to_yaml(&Route::crd())),
    ]
}

/// All CRDs as one multi-document YAML stream.
pub fn all_crds_yaml() -> String {
    crd_files()
        .into_iter()
        .map(|(_, y)| format!("---\n{y}"))
        .collect()
}

fn to_yaml<T: serde::Serialize>(value: &T) -> String {
    let body = serde_yaml::to_string(value).expect("CRD serializes to YAML");
    format!("# Generated from the hookway-crds types by `hookway-controller crds`. Do not edit.\n{body}")
}
