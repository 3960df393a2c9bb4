//! The Gateway API against a real kube-apiserver: the upstream v1.6.1 standard-channel CRDs are
//! installed before the controller starts (`real_api::cluster`), a GatewayClass of
//! `hookway.dev/gateway-controller`, a Gateway and HTTPRoutes are applied, and the statuses the
//! controller wrote under the chart's RBAC are read back: GatewayClass `Accepted`, Gateway
//! `Accepted`/`Programmed` with the proxy Service's address and `attachedRoutes`, HTTPRoute
//! parents with `Accepted`/`ResolvedRefs` and the spec's reasons (a parent that names no
//! listener of the Gateway is `NoMatchingParent`; a route whose parent Gateway does not exist gets
//! no entry from hookway, since no controller can tell it is theirs), GRPCRoute parents likewise
//! (and `HostConflict` for a GRPCRoute on the host of an older HTTPRoute of the same listener,
//! as the spec says). The compiled snapshot serves the attached routes' hosts.

use hookway_crds::gateway_api::{GatewayClass, CONTROLLER_NAME};
use hookway_tests::real_api::{self, apply, wait, WAIT};
use kube::api::{Api, ApiResource, DynamicObject};
use kube::Client;
use serde_json::{json, Value};

const MANIFESTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: gw-infra}
---
apiVersion: v1
kind: Namespace
metadata: {name: gw-app}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: hookway}
spec:
  controllerName: hookway.dev/gateway-controller
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: someone-else}
spec:
  controllerName: example.com/another-controller
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: public, namespace: gw-infra}
spec:
  gatewayClassName: hookway
  listeners:
  - name: http
    protocol: HTTP
    port: 80
    allowedRoutes:
      namespaces: {from: All}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: gw-app}
spec:
  ports:
  - {name: http, port: 80, targetPort: 8080}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: gw-app}
spec:
  parentRefs:
  - {name: public, namespace: gw-infra}
  hostnames: [web.gateway.example]
  rules:
  - matches:
    - path: {type: PathPrefix, value: /}
    backendRefs:
    - {name: web, port: 80}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: missing-backend, namespace: gw-app}
spec:
  parentRefs:
  - {name: public, namespace: gw-infra}
  hostnames: [missing.gateway.example]
  rules:
  - backendRefs:
    - {name: nowhere, port: 80}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: no-parent, namespace: gw-app}
spec:
  parentRefs:
  - {name: public, namespace: gw-infra, sectionName: no-such-listener}
  rules:
  - backendRefs:
    - {name: web, port: 80}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: grpc, namespace: gw-app}
spec:
  parentRefs:
  - {name: public, namespace: gw-infra}
  hostnames: [grpc.gateway.example]
  rules:
  - matches:
    - method: {service: shop.Inventory, method: Get}
    backendRefs:
    - {name: web, port: 80}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: grpc-missing-backend, namespace: gw-app}
spec:
  parentRefs:
  - {name: public, namespace: gw-infra}
  hostnames: [grpc-missing.gateway.example]
  rules:
  - backendRefs:
    - {name: nowhere, port: 80}
---
# Same listener and host as HTTPRoute web, and never older than it (same second: `web` sorts
# first): refused.
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: zz-grpc-on-web, namespace: gw-app}
spec:
  parentRefs:
  - {name: public, namespace: gw-infra}
  hostnames: [web.gateway.example]
  rules:
  - backendRefs:
    - {name: web, port: 80}
"#;

fn cluster_api<K: kube::Resource<DynamicType = ()>>(client: &Client) -> Api<DynamicObject> {
    Api::all_with(client.clone(), &ApiResource::erase::<K>(&()))
}

fn namespaced(client: &Client, namespace: &str, plural: &str) -> Api<DynamicObject> {
    let resource = ApiResource {
        group: "gateway.networking.k8s.io".into(),
        version: "v1".into(),
        api_version: "gateway.networking.k8s.io/v1".into(),
        kind: String::new(),
        plural: plural.into(),
    };
    Api::namespaced_with(client.clone(), namespace, &resource)
}

/// `(type, status, reason)` of each condition in `conditions`.
fn summary(conditions: &Value) -> Vec<(String, String, String)> {
    conditions
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
            (s("type"), s("status"), s("reason"))
        })
        .collect()
}

fn has(conditions: &Value, type_: &str, status: &str, reason: &str) -> bool {
    summary(conditions)
        .iter()
        .any(|(t, s, r)| t == type_ && s == status && r == reason)
}

/// Waits until `check` accepts the object's `status`; returns it.
async fn wait_status(
    api: &Api<DynamicObject>,
    name: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    wait::until(&format!("{name}'s status"), WAIT, || async {
        let object = api.get(name).await.map_err(|e| e.to_string())?;
        let status = object.data["status"].clone();
        if check(&status) {
            Ok(status)
        } else {
            Err(format!("status {status}"))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Our entry of an HTTPRoute's `status.parents`, if any.
fn our_parent(status: &Value) -> Option<&Value> {
    status["parents"]
        .as_array()?
        .iter()
        .find(|p| p["controllerName"] == CONTROLLER_NAME)
}

#[test]
fn gateway_api_statuses_are_written_as_the_spec_says() {
    let Some(cluster) = real_api::cluster() else {
        return;
    };
    if !real_api::repo_root()
        .join(real_api::GATEWAY_API_CRDS)
        .exists()
    {
        real_api::say_once("SKIPPING Gateway API cases: ../shared/gateway-api is absent");
        return;
    }
    cluster.run(async {
        let admin = cluster.admin().await;
        apply::apply_yaml(&admin, MANIFESTS)
            .await
            .unwrap_or_else(|e| panic!("{e}"));

        let classes = cluster_api::<GatewayClass>(&admin);
        let class = wait_status(&classes, "hookway", |s| {
            has(&s["conditions"], "Accepted", "True", "Accepted")
                && has(
                    &s["conditions"],
                    "SupportedVersion",
                    "True",
                    "SupportedVersion",
                )
        })
        .await;
        assert!(
            class["supportedFeatures"]
                .as_array()
                .is_some_and(|f| f.iter().any(|f| f["name"] == "HTTPRoute")
                    && f.iter().any(|f| f["name"] == "GRPCRoute")),
            "{class}"
        );
        // Another controller's class is left alone.
        let other = classes.get("someone-else").await.unwrap();
        assert!(
            other.data["status"]["conditions"]
                .as_array()
                .is_none_or(|c| c
                    .iter()
                    .all(|c| c["reason"] != "Accepted" || c["status"] != "True")),
            "{:?}",
            other.data["status"]
        );

        let gateways = namespaced(&admin, "gw-infra", "gateways");
        let gateway = wait_status(&gateways, "public", |s| {
            has(&s["conditions"], "Accepted", "True", "Accepted")
                && has(&s["conditions"], "Programmed", "True", "Programmed")
                && s["listeners"][0]["attachedRoutes"] == json!(4)
        })
        .await;
        let address = gateway["addresses"][0]["value"]
            .as_str()
            .unwrap_or_default();
        assert!(
            address.parse::<std::net::IpAddr>().is_ok(),
            "the proxy Service's cluster IP: {gateway}"
        );
        let listener = &gateway["listeners"][0];
        let kinds: Vec<&str> = listener["supportedKinds"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|k| k["kind"].as_str())
            .collect();
        assert_eq!(kinds, ["HTTPRoute", "GRPCRoute"], "{listener}");
        for type_ in ["Accepted", "Programmed", "ResolvedRefs"] {
            assert!(
                summary(&listener["conditions"])
                    .iter()
                    .any(|(t, s, _)| t == type_ && s == "True"),
                "{type_}: {listener}"
            );
        }

        let routes = namespaced(&admin, "gw-app", "httproutes");
        let web = wait_status(&routes, "web", |s| {
            our_parent(s).is_some_and(|p| {
                has(&p["conditions"], "Accepted", "True", "Accepted")
                    && has(&p["conditions"], "ResolvedRefs", "True", "ResolvedRefs")
            })
        })
        .await;
        assert_eq!(our_parent(&web).unwrap()["parentRef"]["name"], "public");
        wait_status(&routes, "missing-backend", |s| {
            our_parent(s).is_some_and(|p| {
                has(&p["conditions"], "Accepted", "True", "Accepted")
                    && has(&p["conditions"], "ResolvedRefs", "False", "BackendNotFound")
            })
        })
        .await;
        wait_status(&routes, "no-parent", |s| {
            our_parent(s)
                .is_some_and(|p| has(&p["conditions"], "Accepted", "False", "NoMatchingParent"))
        })
        .await;

        let grpc_routes = namespaced(&admin, "gw-app", "grpcroutes");
        wait_status(&grpc_routes, "grpc", |s| {
            our_parent(s).is_some_and(|p| {
                has(&p["conditions"], "Accepted", "True", "Accepted")
                    && has(&p["conditions"], "ResolvedRefs", "True", "ResolvedRefs")
            })
        })
        .await;
        wait_status(&grpc_routes, "grpc-missing-backend", |s| {
            our_parent(s).is_some_and(|p| {
                has(&p["conditions"], "Accepted", "True", "Accepted")
                    && has(&p["conditions"], "ResolvedRefs", "False", "BackendNotFound")
            })
        })
        .await;
        let conflict = wait_status(&grpc_routes, "zz-grpc-on-web", |s| {
            our_parent(s)
                .is_some_and(|p| has(&p["conditions"], "Accepted", "False", "HostConflict"))
        })
        .await;
        assert!(
            conflict.to_string().contains("HTTPRoute gw-app/web"),
            "{conflict}"
        );

        // The attached routes are in the snapshot the proxies get.
        assert!(
            cluster
                .wait_host_compiled("grpc.gateway.example", WAIT)
                .await,
            "grpc.gateway.example is never compiled"
        );
        assert!(
            cluster
                .wait_host_compiled("web.gateway.example", WAIT)
                .await,
            "web.gateway.example is never compiled"
        );
    });
}

/// The Gateway API's CRDs applied after the controller started (the chart's
/// `gatewayAPI.installCRDs` racing it, or a later `kubectl apply`): the controller's discovery
/// re-check notices them and starts watching, GRPCRoutes included, without a restart. Its own
/// API server (the shared cluster has the CRDs from the start).
#[test]
fn gateway_api_crds_installed_after_the_controller_started_are_served() {
    let Ok(location) = real_api::server::Location::find() else {
        real_api::say_once("SKIPPING late Gateway API CRDs: no kube-apiserver");
        return;
    };
    if !real_api::repo_root()
        .join(real_api::GATEWAY_API_CRDS)
        .exists()
    {
        real_api::say_once("SKIPPING late Gateway API CRDs: ../shared/gateway-api is absent");
        return;
    }
    let server = real_api::server::ApiServer::start(location).unwrap_or_else(|e| panic!("{e}"));
    let cluster = real_api::Cluster::start_with(server, real_api::GatewayApiCrds::Later)
        .unwrap_or_else(|e| panic!("{e}"));
    cluster.run(async {
        let admin = cluster.admin().await;
        // The controller is up and has compiled (the examples are served) without them.
        let mut snapshots = cluster.snapshots.clone();
        assert!(
            tokio::time::timeout(WAIT, snapshots.wait_for(|s| s.is_some()))
                .await
                .is_ok_and(|r| r.is_ok()),
            "the controller never compiled"
        );
        real_api::install_gateway_api_crds(&admin)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        apply::apply_yaml(&admin, MANIFESTS)
            .await
            .unwrap_or_else(|e| panic!("{e}"));

        let classes = cluster_api::<GatewayClass>(&admin);
        wait_status(&classes, "hookway", |s| {
            has(&s["conditions"], "Accepted", "True", "Accepted")
        })
        .await;
        let routes = namespaced(&admin, "gw-app", "httproutes");
        wait_status(&routes, "web", |s| {
            our_parent(s).is_some_and(|p| {
                has(&p["conditions"], "Accepted", "True", "Accepted")
                    && has(&p["conditions"], "ResolvedRefs", "True", "ResolvedRefs")
            })
        })
        .await;
        let grpc_routes = namespaced(&admin, "gw-app", "grpcroutes");
        wait_status(&grpc_routes, "grpc", |s| {
            our_parent(s).is_some_and(|p| has(&p["conditions"], "Accepted", "True", "Accepted"))
        })
        .await;
        assert!(
            cluster
                .wait_host_compiled("web.gateway.example", WAIT)
                .await,
            "web.gateway.example is never compiled"
        );
    });
    cluster.stop();
}
