//! Ingress v1 against a real kube-apiserver: an IngressClass of `hookway.dev/ingress-controller`
//! and Ingresses applied with `kubectl`-like server-side apply; the controller (under the chart's
//! RBAC) writes `status.loadBalancer` with the proxy Service's address, publishes a `Warning`
//! Event for a snippet annotation that is never executed, leaves another class's Ingress alone,
//! and compiles the Ingress's host into the snapshot.

use hookway_tests::real_api::{self, apply, wait, WAIT};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, ListParams};

const MANIFESTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: ing-app}
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: hookway-real-api}
spec:
  controller: hookway.dev/ingress-controller
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: ing-app}
spec:
  ports:
  - {name: http, port: 80, targetPort: 8080}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  namespace: ing-app
  annotations:
    nginx.ingress.kubernetes.io/configuration-snippet: "more_set_headers 'X-Snippet: yes';"
spec:
  ingressClassName: hookway-real-api
  rules:
  - host: web.ingress.example
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service: {name: web, port: {name: http}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: someone-elses, namespace: ing-app}
spec:
  ingressClassName: nginx
  rules:
  - host: nginx.ingress.example
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service: {name: web, port: {number: 80}}
"#;

#[test]
fn ingress_status_events_and_snapshot_on_a_real_api_server() {
    let Some(cluster) = real_api::cluster() else {
        return;
    };
    cluster.run(async {
        let admin = cluster.admin().await;
        apply::apply_yaml(&admin, MANIFESTS)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let ingresses: Api<Ingress> = Api::namespaced(admin.clone(), "ing-app");

        let address = wait::until("web's status.loadBalancer", WAIT, || async {
            let web = ingresses.get("web").await.map_err(|e| e.to_string())?;
            web.status
                .and_then(|s| s.load_balancer?.ingress?.into_iter().next()?.ip)
                .ok_or_else(|| "no address yet".to_string())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            address.parse::<std::net::IpAddr>().is_ok(),
            "the proxy Service's cluster IP: {address}"
        );

        let events: Api<Event> = Api::namespaced(admin.clone(), "ing-app");
        let note = wait::until("the snippet warning Event", WAIT, || async {
            let list = events
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            list.items
                .into_iter()
                .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("web"))
                .filter(|e| e.type_.as_deref() == Some("Warning"))
                .find_map(|e| e.note.filter(|n| n.contains("configuration-snippet")))
                .ok_or_else(|| "no Event yet".to_string())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(note.contains("never executed"), "{note}");

        assert!(
            cluster
                .wait_host_compiled("web.ingress.example", WAIT)
                .await,
            "web.ingress.example is never compiled"
        );
        // Another class's Ingress: not compiled, no status written.
        let snapshot = cluster.snapshots.borrow().clone().expect("a snapshot");
        assert!(
            !snapshot
                .routes
                .iter()
                .any(|r| r.hosts.iter().any(|h| h == "nginx.ingress.example")),
            "an nginx-class Ingress is served"
        );
        let theirs = ingresses.get("someone-elses").await.unwrap();
        assert!(
            theirs
                .status
                .and_then(|s| s.load_balancer?.ingress)
                .is_none_or(|i| i.is_empty()),
            "status written on another class's Ingress"
        );
    });
}
