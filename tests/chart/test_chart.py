"""Renders charts/hookway with Helm's real engine (helm-python-sdk binds Helm's Go SDK) and checks
the objects: names and labels consistent, references resolve, RBAC least-privilege, hardening."""

import json
import os
import pathlib
import re

import helm_python as helm
import pytest
import yaml

from render import CHART, NAMESPACE, render

OPERATIONS_DOC = CHART.parents[1] / "docs" / "operations.md"

COMBINATIONS = {
    "defaults": {},
    "daemonset-nodeport": {"proxy": {"kind": "DaemonSet", "service": {"type": "NodePort"}}},
    "hpa-clusterip": {"proxy": {"autoscaling": {"enabled": True}, "service": {"type": "ClusterIP"}}},
    "low-ports-servicemonitor": {
        "proxy": {"bindLowPorts": True, "httpPort": 80, "httpsPort": 443},
        "metrics": {"serviceMonitor": {"enabled": True}, "annotations": False},
        "watchNamespaces": ["team-a", "team-b"],
        "rootNamespace": "platform",
    },
    "no-pdb": {"proxy": {"pdb": {"enabled": False}}, "controller": {"pdb": {"enabled": False}}},
    "monitoring": {"metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True},
                               "grafanaDashboard": {"enabled": True}}},
}


def by_kind(objects, kind):
    return [o for o in objects if o["kind"] == kind]


def pod_specs(objects):
    for o in objects:
        if o["kind"] in ("Deployment", "DaemonSet"):
            yield o, o["spec"]["template"]["spec"]


@pytest.mark.parametrize("values", COMBINATIONS.values(), ids=COMBINATIONS.keys())
def test_lint_is_clean(values):
    report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE)
    errors = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert errors == []


@pytest.mark.parametrize("values", COMBINATIONS.values(), ids=COMBINATIONS.keys())
def test_every_reference_resolves(values):
    objects = render(values)
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    for workload, spec in pod_specs(objects):
        assert ("ServiceAccount", spec["serviceAccountName"]) in names, workload["metadata"]["name"]
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                assert ("Secret", volume["secret"]["secretName"]) in names
            if "configMap" in volume:
                assert ("ConfigMap", volume["configMap"]["name"]) in names
    for binding in by_kind(objects, "ClusterRoleBinding") + by_kind(objects, "RoleBinding"):
        role_kind = binding["roleRef"]["kind"]
        assert (role_kind, binding["roleRef"]["name"]) in names
        for subject in binding["subjects"]:
            assert ("ServiceAccount", subject["name"]) in names


@pytest.mark.parametrize("values", COMBINATIONS.values(), ids=COMBINATIONS.keys())
def test_services_and_pdbs_select_their_pods(values):
    objects = render(values)
    pod_labels = [spec_owner["spec"]["template"]["metadata"]["labels"] for spec_owner, _ in pod_specs(objects)]
    selectors = [s["spec"]["selector"] for s in by_kind(objects, "Service")]
    selectors += [p["spec"]["selector"]["matchLabels"] for p in by_kind(objects, "PodDisruptionBudget")]
    for selector in selectors:
        assert any(selector.items() <= labels.items() for labels in pod_labels), selector
    for o in objects:
        assert o["metadata"]["labels"]["app.kubernetes.io/instance"] == "hookway"


@pytest.mark.parametrize("values", COMBINATIONS.values(), ids=COMBINATIONS.keys())
def test_every_container_is_hardened(values):
    low_ports = values.get("proxy", {}).get("bindLowPorts", False)
    for workload, spec in pod_specs(render(values)):
        assert spec["securityContext"]["runAsNonRoot"] is True
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert sc["seccompProfile"]["type"] == "RuntimeDefault"
            added = sc["capabilities"].get("add", [])
            is_proxy = workload["metadata"]["labels"]["app.kubernetes.io/component"] == "proxy"
            assert added == (["NET_BIND_SERVICE"] if (low_ports and is_proxy) else [])
            assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_proxy_has_no_api_rights():
    objects = render({})
    proxy_sa = "hookway-proxy"
    sa = next(o for o in by_kind(objects, "ServiceAccount") if o["metadata"]["name"] == proxy_sa)
    assert sa["automountServiceAccountToken"] is False
    for binding in by_kind(objects, "ClusterRoleBinding") + by_kind(objects, "RoleBinding"):
        assert all(s["name"] != proxy_sa for s in binding["subjects"])


def test_controller_rbac_is_least_privilege():
    objects = render({})
    cluster_rules = by_kind(objects, "ClusterRole")[0]["rules"]
    grants = {(g, r, v) for rule in cluster_rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    # Status is the only thing written to hookway objects; nothing is written to core objects.
    writes = {(g, r, v) for (g, r, v) in grants if v not in ("get", "list", "watch")}
    assert writes == {
        ("hookway.dev", "gatewayplugins/status", "patch"),
        ("hookway.dev", "services/status", "patch"),
        ("hookway.dev", "routes/status", "patch"),
        ("gateway.networking.k8s.io", "gatewayclasses/status", "patch"),
        ("gateway.networking.k8s.io", "gateways/status", "patch"),
        ("gateway.networking.k8s.io", "httproutes/status", "patch"),
        ("gateway.networking.k8s.io", "grpcroutes/status", "patch"),
        ("networking.k8s.io", "ingresses/status", "patch"),
        ("events.k8s.io", "events", "create"),
        ("events.k8s.io", "events", "patch"),
    }
    assert ("", "secrets", "get") not in grants
    # Core objects are listed and watched only (Secrets and ConfigMaps with selectors, see
    # controller/src/watch.rs), never fetched one by one.
    core_reads = {(r, v) for (g, r, v) in grants if g == ""}
    assert core_reads == {
        (r, v) for r in ("services", "namespaces", "secrets", "configmaps") for v in ("list", "watch")
    }
    ingress_reads = {(r, v) for (g, r, v) in grants if g == "networking.k8s.io" and "/" not in r}
    assert ingress_reads == {(r, v) for r in ("ingresses", "ingressclasses") for v in ("list", "watch")}
    # The Gateway API is read (list/watch), never written but for status.
    gateway_reads = {(r, v) for (g, r, v) in grants if g == "gateway.networking.k8s.io" and "/" not in r}
    assert gateway_reads == {
        (r, v)
        for r in ("gatewayclasses", "gateways", "httproutes", "grpcroutes", "referencegrants")
        for v in ("list", "watch")
    }
    # Leases only in the release namespace; PlatformPolicies only in the root namespace (the
    # release namespace by default), read and their status patched.
    roles = by_kind(objects, "Role")
    assert [r["metadata"]["namespace"] for r in roles] == [NAMESPACE, NAMESPACE]
    assert {res for rule in roles[0]["rules"] for res in rule["resources"]} == {"leases"}
    policy_grants = {(r, v) for rule in roles[1]["rules"] for r in rule["resources"] for v in rule["verbs"]}
    assert policy_grants == {
        ("platformpolicies", "get"), ("platformpolicies", "list"), ("platformpolicies", "watch"),
        ("platformpolicies/status", "patch"),
    }
    # Leader election (get/create/update) and the proxy registry (patch = server-side apply,
    # list/watch the other replicas' Leases, delete its own on shutdown).
    assert {v for rule in roles[0]["rules"] for v in rule["verbs"]} == {
        "get", "list", "watch", "create", "update", "patch", "delete",
    }


def test_stream_secret_has_token_and_tls():
    secret = by_kind(render({}), "Secret")[0]
    assert set(secret["data"]) == {"token", "ca.crt", "tls.crt", "tls.key"}
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_crds_are_the_generated_ones():
    chart = helm.Chart.load(CHART)
    names = sorted(pathlib.PurePath(c["name"]).name for c in chart.crds)
    assert names == [
        "gatewayplugins.hookway.dev.yaml", "platformpolicies.hookway.dev.yaml",
        "routes.hookway.dev.yaml", "services.hookway.dev.yaml",
    ]


@pytest.mark.parametrize(
    "values, needle",
    [
        ({"proxy": {"kind": "Pod"}}, "/proxy/kind"),
        ({"proxy": {"service": {"type": "Ingress"}}}, "/proxy/service/type"),
        ({"logFormat": "xml"}, "/logFormat"),
        ({"controller": {"replicas": 0}}, "/controller/replicas"),
        ({"proxy": {"httpPort": 70000}}, "/proxy/httpPort"),
        ({"proxy": {"requestRules": {"escapedSlashes": "maybe"}}}, "/proxy/requestRules/escapedSlashes"),
        ({"typo": True}, "typo"),
    ],
)
def test_schema_rejects_wrong_values(values, needle):
    with pytest.raises(helm.HelmValuesError) as err:
        helm.Chart.load(CHART).validate_schema(values)
    assert needle in str(err.value)


@pytest.mark.parametrize(
    "rules, expected",
    [
        ({}, ["--merge-slashes=true", "--escaped-slashes=reject"]),
        (
            {"mergeSlashes": False, "escapedSlashes": "keep", "trustedProxies": ["10.0.0.0/8", "192.0.2.1"]},
            ["--merge-slashes=false", "--escaped-slashes=keep", "--trusted-proxies=10.0.0.0/8,192.0.2.1"],
        ),
    ],
    ids=["defaults", "set"],
)
def test_request_rules_reach_the_proxy(rules, expected):
    objects = render({"proxy": {"requestRules": rules}} if rules else {})
    [proxy] = [o for o in objects if o["kind"] in ("Deployment", "DaemonSet") and "proxy" in o["metadata"]["name"]]
    args = proxy["spec"]["template"]["spec"]["containers"][0]["args"]
    for arg in expected:
        assert arg in args
    if not rules.get("trustedProxies"):
        assert not any(a.startswith("--trusted-proxies") for a in args)


# --- Monitoring: PrometheusRule and Grafana dashboard -----------------------------------------

MONITORING = {"metrics": {"prometheusRule": {"enabled": True, "labels": {"release": "kps"}},
                          "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "Ingress"}}}}
RULES_FILE = CHART / "files" / "prometheus-rules.yaml"
DASHBOARD_FILE = CHART / "files" / "grafana-dashboard.json"
METRIC_NAME = re.compile(r"\bhookway_[a-z_]+\b")


def dashboard_exprs(dashboard):
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def rule_exprs(groups):
    return [r["expr"] for g in groups for r in g["rules"]]


def test_monitoring_objects_are_off_by_default():
    kinds = {o["kind"] for o in render({})}
    assert "PrometheusRule" not in kinds
    assert "ConfigMap" not in kinds


def test_prometheus_rule_renders_the_rules_file_when_enabled():
    objects = render(MONITORING)
    [rule] = by_kind(objects, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kps"
    assert rule["spec"] == yaml.safe_load(RULES_FILE.read_text())
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    # The alerts docs/operations.md describes, each by name.
    documented = set(re.findall(r"`(Hookway[A-Za-z0-9]+)`", OPERATIONS_DOC.read_text()))
    assert alerts == documented
    for r in (r for g in rule["spec"]["groups"] for r in g["rules"]):
        assert r["labels"]["severity"] in ("info", "warning", "critical"), r["alert"]
        assert r["annotations"]["summary"], r["alert"]


def test_grafana_dashboard_configmap_carries_the_sidecar_label_when_enabled():
    objects = render(MONITORING)
    [cm] = by_kind(objects, "ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Ingress"}
    assert cm["metadata"]["namespace"] == NAMESPACE
    dashboard = json.loads(cm["data"]["hookway.json"])
    assert dashboard == json.loads(DASHBOARD_FILE.read_text())
    titles = " | ".join(p["title"] for p in dashboard["panels"]).lower()
    for topic in ("by route", "error ratio", "latency", "plugin hook time", "snapshot version",
                  "rejections", "proxies connected"):
        assert topic in titles, topic
    # Every query uses the dashboard's data source variable.
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]


def test_grafana_dashboard_namespace_can_be_grafanas():
    values = {"metrics": {"grafanaDashboard": {"enabled": True, "namespace": "monitoring"}}}
    [cm] = by_kind(render(values), "ConfigMap")
    assert cm["metadata"]["namespace"] == "monitoring"


def test_service_monitors_keep_the_metrics_service_label():
    objects = render({"metrics": {"serviceMonitor": {"enabled": True}}})
    for monitor in by_kind(objects, "ServiceMonitor"):
        assert all(e["honorLabels"] is True for e in monitor["spec"]["endpoints"])


def exported_series_names():
    """Series names in the real /metrics scrapes that scripts/check-metrics.sh keeps in
    $HOOKWAY_METRICS_DIR (scripts/test.sh sets it): `# TYPE` lines, histograms expanded."""
    folder = os.environ.get("HOOKWAY_METRICS_DIR")
    if not folder:
        pytest.skip("HOOKWAY_METRICS_DIR unset: run scripts/test.sh (check-metrics.sh writes the scrapes)")
    names = set()
    for scrape in ("proxy.prom", "controller.prom"):
        for line in (pathlib.Path(folder) / scrape).read_text().splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split()
                names |= {name + s for s in ("_bucket", "_sum", "_count")} if kind == "histogram" else {name}
    return names


def test_rules_and_dashboard_use_only_exported_metric_names():
    exported = exported_series_names()
    used = {}
    for expr in rule_exprs(yaml.safe_load(RULES_FILE.read_text())["groups"]):
        used.update({name: "rules" for name in METRIC_NAME.findall(expr)})
    for expr in dashboard_exprs(json.loads(DASHBOARD_FILE.read_text())):
        used.update({name: "dashboard" for name in METRIC_NAME.findall(expr)})
    assert len(used) > 15
    unknown = {name: where for name, where in used.items() if name not in exported}
    assert unknown == {}


def test_controller_knows_the_proxy_service_for_gateway_addresses():
    objects = render({})
    controller = next(o for o in by_kind(objects, "Deployment") if o["metadata"]["name"] == "hookway-controller")
    args = controller["spec"]["template"]["spec"]["containers"][0]["args"]
    proxy_service = next(o for o in by_kind(objects, "Service") if o["metadata"]["name"] == "hookway-proxy")
    assert f"--proxy-service={NAMESPACE}/{proxy_service['metadata']['name']}" in args


GATEWAY_API_FILE = CHART / "files/gateway-api/standard-install-v1.6.1.yaml"


def test_gateway_api_crds_are_optional_unmodified_and_kept_on_uninstall():
    def gateway_objects(objects):
        return [o for o in objects if "gateway.networking.k8s.io" in (o.get("metadata") or {}).get("name", "")
                or o.get("kind", "").startswith("ValidatingAdmissionPolicy")]

    assert gateway_objects(render({})) == [], "installed without gatewayAPI.installCRDs"
    rendered = gateway_objects(render({"gatewayAPI": {"installCRDs": True}}))
    upstream = [d for d in yaml.safe_load_all(GATEWAY_API_FILE.read_text()) if d]
    assert len(rendered) == len(upstream) == 12
    names = {o["metadata"]["name"] for o in rendered if o["kind"] == "CustomResourceDefinition"}
    for plural in ("gatewayclasses", "gateways", "httproutes", "grpcroutes", "referencegrants"):
        assert f"{plural}.gateway.networking.k8s.io" in names
    for got, want in zip(rendered, upstream):
        annotations = got["metadata"]["annotations"]
        assert annotations.pop("helm.sh/resource-policy") == "keep", got["metadata"]["name"]
        assert got == want, f"{got['metadata']['name']} differs from the upstream file"
    # The chart's copy is the upstream release file, byte for byte (when the workspace has it).
    shared = CHART.parent.parent.parent / "shared/gateway-api/standard-install-v1.6.1.yaml"
    if shared.exists():
        assert GATEWAY_API_FILE.read_bytes() == shared.read_bytes()
