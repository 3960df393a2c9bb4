//! The Helm chart, rendered by Helm's own engine and applied like `helm install` would.
//!
//! Rendering goes through `tests/chart/render.py` in the project's Python venv
//! (`scripts/ensure-python.sh` makes it, from PyPI: helm-python-sdk binds Helm's Go SDK), the
//! same path the chart tests in `tests/chart/` take.

use std::process::{Command, Stdio};

use kube::Client;
use serde_json::{json, Value};

use super::apply::{apply, apply_in, documents};
use super::server::repo_root;
use super::Error;

/// The release's namespace, as in the README's `helm install … -n hookway-system`.
pub const NAMESPACE: &str = "hookway-system";

/// What the tests need to know of an installed chart, read from its rendered objects.
#[derive(Clone, Debug)]
pub struct Installed {
    /// The release namespace.
    pub namespace: String,
    /// The controller's ServiceAccount (its Deployment's `serviceAccountName`).
    pub controller_service_account: String,
    /// The Secret holding the stream token and certificates (mounted by the controller).
    pub stream_secret: String,
    /// The controller's `--root-namespace`.
    pub root_namespace: String,
    /// Every rendered object.
    pub objects: Vec<Value>,
}

/// Renders the chart with `values` for namespace [`NAMESPACE`].
pub fn render(values: &Value) -> Result<Vec<Value>, Error> {
    let root = repo_root();
    let python = run(&mut Command::new(root.join("scripts/ensure-python.sh")))?;
    let python = python.lines().last().unwrap_or_default().trim().to_string();
    let mut render = Command::new(python);
    render
        .arg(root.join("tests/chart/render.py"))
        .arg(values.to_string());
    documents(&run(&mut render)?)
}

/// Creates the release namespace and applies the chart rendered with `values` (CRDs excluded:
/// apply them first, as Helm does from the chart's `crds/`).
pub async fn install(client: &Client, values: &Value) -> Result<Installed, Error> {
    let objects = render(values)?;
    let namespace =
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}});
    apply(client, &namespace).await?;
    for object in &objects {
        apply_in(client, object, NAMESPACE).await?;
    }
    let controller = objects
        .iter()
        .find(|o| {
            o["kind"] == "Deployment"
                && o["metadata"]["labels"]["app.kubernetes.io/component"] == "controller"
        })
        .ok_or_else(|| Error::Chart("no controller Deployment".into()))?;
    let pod = &controller["spec"]["template"]["spec"];
    let text = |v: &Value, what: &str| {
        v.as_str()
            .map(String::from)
            .ok_or_else(|| Error::Chart(format!("the controller Deployment has no {what}")))
    };
    let controller_service_account = text(&pod["serviceAccountName"], "serviceAccountName")?;
    let stream_volume = pod["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == "stream")
        .cloned()
        .unwrap_or_default();
    let stream_secret = text(&stream_volume["secret"]["secretName"], "stream Secret")?;
    let root_namespace = pod["containers"][0]["args"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find_map(|a| a.strip_prefix("--root-namespace="))
        .unwrap_or(NAMESPACE)
        .to_string();
    Ok(Installed {
        namespace: NAMESPACE.into(),
        controller_service_account,
        stream_secret,
        root_namespace,
        objects,
    })
}

/// Runs `command`, returning its stdout, or its stderr in the error.
fn run(command: &mut Command) -> Result<String, Error> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Chart(format!("{command:?}: {e}")))?;
    if !output.status.success() {
        return Err(Error::Chart(format!(
            "{command:?} exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
