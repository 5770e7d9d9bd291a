"""The Helm chart rendered by the real helm binary: lint, modes, security, schema, drift.

Installing it, and proving its RBAC with a whole canary, is in
tests/e2e/test_helm_install.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

from controller.runtime import metrics  # noqa: F401  (registers the families)
from devenv.cluster import resolve_bin_dir
from devenv.prometheus import PROMTOOL_BIN, PrometheusError, PrometheusServer

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "canary-controller"
ALERTS = CHART / "alerts" / "canary-controller.rules.yaml"
KUBE_VERSION = "1.35.4"  # the local helm is built without a default Kubernetes version


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(resolve_bin_dir() / "helm"), *args],
        capture_output=True,
        text=True,
        check=check,
        timeout=120,
    )


def render(*sets: str, namespace: str = "canary-system") -> list[dict[str, Any]]:
    flags = [f for s in sets for f in ("--set", s)]
    out = helm(
        "template", "cc", str(CHART), "-n", namespace, "--kube-version", KUBE_VERSION, *flags
    )
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def refusal(*sets: str) -> str:
    """What helm says when it refuses to render these values (it must refuse)."""
    flags = [f for s in sets for f in ("--set", s)]
    result = helm("template", "cc", str(CHART), "--kube-version", KUBE_VERSION, *flags, check=False)
    assert result.returncode != 0, "rendered, but should have been refused"
    return result.stderr


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = by_kind(docs, "Deployment")
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(only)


def test_helm_lint_is_clean_in_strict_mode() -> None:
    result = helm("lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION)
    assert "0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout


def test_default_install_is_cluster_wide_with_two_replicas_and_leader_election() -> None:
    docs = render()
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
        ]
    )
    (deployment,) = by_kind(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    args = container(docs)["args"]
    assert "--leader-elect" in args and "--lease-duration=15" in args
    assert not [a for a in args if a.startswith("--namespace")]
    (pdb,) = by_kind(docs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]


def test_the_pod_is_locked_down() -> None:
    docs = render()
    (deployment,) = by_kind(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    ctx = container(docs)["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    c = container(docs)
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    (service,) = by_kind(docs, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "http-metrics"
    assert {p["name"] for p in c["ports"]} == {"http-metrics"}


def _verbs(rules: list[dict[str, Any]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for rule in rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                key = f"{group or 'core'}/{resource}"
                out.setdefault(key, set()).update(rule["verbs"])
    return out


def test_rbac_grants_exactly_the_documented_verbs() -> None:
    (role,) = by_kind(render(), "ClusterRole")
    verbs = _verbs(role["rules"])
    assert verbs == {
        "canary.dev/canaryreleases": {"get", "list", "watch", "patch"},
        "canary.dev/canaryreleases/status": {"update"},
        "canary.dev/canaryreleases/finalizers": {"update"},
        "apps/deployments": {"get", "list", "watch", "create", "patch", "delete"},
        "core/pods": {"list", "watch"},
        "autoscaling/horizontalpodautoscalers": {"list", "watch"},
        "core/events": {"create"},
        "core/secrets": {"get"},
        "core/configmaps": {"get"},
        "batch/jobs": {"get", "list", "create", "delete"},
        "batch/cronjobs": {"get"},
        "core/pods/log": {"get"},
        "snapshot.storage.k8s.io/volumesnapshots": {"get", "list"},
        "core/services": {"get", "create", "patch"},
        "networking.k8s.io/ingresses": {"get", "create", "patch"},
        "gateway.networking.k8s.io/httproutes": {"get", "patch"},
        "networking.istio.io/virtualservices": {"get", "patch"},
        "networking.istio.io/destinationrules": {"get"},
    }
    assert not any("*" in r["verbs"] or "*" in r["resources"] for r in role["rules"])
    # and every rule is in the table of docs/install.md
    table = (REPO / "docs" / "install.md").read_text()
    for key, granted in verbs.items():
        resource = key.split("/", 1)[1]
        for verb in granted:
            assert re.search(rf"\| `{re.escape(resource)}` .*\| `{verb}` \|", table), (
                resource,
                verb,
            )


def test_optional_rbac_can_be_turned_off() -> None:
    docs = render("rbac.secretRefs=false", "rbac.gates=false", "rbac.routers=false")
    (role,) = by_kind(docs, "ClusterRole")
    assert set(_verbs(role["rules"])) == {
        "canary.dev/canaryreleases",
        "canary.dev/canaryreleases/status",
        "canary.dev/canaryreleases/finalizers",
        "apps/deployments",
        "core/pods",
        "autoscaling/horizontalpodautoscalers",
        "core/events",
    }


def test_leases_are_limited_to_the_one_lease_by_name() -> None:
    docs = render()
    (role,) = [
        r for r in by_kind(docs, "Role") if r["metadata"]["name"].endswith("leader-election")
    ]
    assert role["metadata"]["namespace"] == "canary-system"
    named = [r for r in role["rules"] if r.get("resourceNames")]
    assert named == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["cc-canary-controller"],
            "verbs": ["get", "update"],
        }
    ]
    assert "--leader-election-id=cc-canary-controller" in container(docs)["args"]


def test_namespaced_mode_has_a_role_per_namespace_and_nothing_cluster_wide() -> None:
    docs = render("watchNamespaces={team-a,team-b}")
    assert not by_kind(docs, "ClusterRole") and not by_kind(docs, "ClusterRoleBinding")
    roles = {r["metadata"]["namespace"]: r for r in by_kind(docs, "Role")}
    assert set(roles) == {"team-a", "team-b", "canary-system"}
    assert _verbs(roles["team-a"]["rules"]) == _verbs(roles["team-b"]["rules"])
    for binding in by_kind(docs, "RoleBinding"):
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "cc-canary-controller", "namespace": "canary-system"}
        ]
    args = container(docs)["args"]
    assert [a for a in args if a.startswith("--namespace")] == [
        "--namespace=team-a",
        "--namespace=team-b",
    ]


def test_service_monitor_and_dashboard_are_optional() -> None:
    assert not by_kind(render(), "ServiceMonitor")
    docs = render("metrics.serviceMonitor.enabled=true", "grafanaDashboard.enabled=true")
    (monitor,) = by_kind(docs, "ServiceMonitor")
    (service,) = by_kind(docs, "Service")
    assert monitor["spec"]["endpoints"][0]["port"] == "http-metrics"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    (dashboard,) = by_kind(docs, "ConfigMap")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["canary-controller.json"])["uid"] == "canary-controller"


def test_webhook_is_off_by_default_and_wired_when_enabled() -> None:
    default = render()
    assert not any(a.startswith("--webhook") for a in container(default)["args"])
    assert [s["metadata"]["name"] for s in by_kind(default, "Service")] == [
        "cc-canary-controller-metrics"
    ]

    docs = render(
        "webhook.enabled=true", "webhook.secretName=hooks", "notifications.secretName=notes"
    )
    app = container(docs)
    assert "--webhook-port=9443" in app["args"]
    assert "--webhook-secret-file=/etc/canary-webhook/secret" in app["args"]
    assert {"name": "webhook-secret", "mountPath": "/etc/canary-webhook", "readOnly": True} in app[
        "volumeMounts"
    ]
    (deployment,) = by_kind(docs, "Deployment")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["webhook-secret"]["secret"]["secretName"] == "hooks"
    (hook_service,) = [
        s for s in by_kind(docs, "Service") if s["metadata"]["name"].endswith("-webhook")
    ]
    assert hook_service["spec"]["ports"][0]["targetPort"] == "http-webhook"
    env = {e["name"]: e for e in app["env"]}
    slack = env["CANARY_NOTIFY_SLACK_URL"]["valueFrom"]["secretKeyRef"]
    assert slack == {"name": "notes", "key": "slack-url", "optional": True}


def test_webhook_without_a_secret_is_refused() -> None:
    assert "webhook.secretName is required" in refusal("webhook.enabled=true")


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("replicaCount=two", "got string, want integer"),
        ("watchNamespaces={Team_A}", "watchNamespaces/0"),
        ("image.pullPolicy=Sometimes", "pullPolicy"),
        ("controller.logLevel=LOUD", "logLevel"),
        ("metrics.port=70000", "metrics/port"),
        ("leaderElection.leaseDuration=-1", "leaseDuration"),
        ("unknownKey=1", "unknownKey"),
        ("livenessProbe.successThreshold=2", "successThreshold"),
        ("startupProbe.successThreshold=3", "successThreshold"),
    ],
)
def test_the_schema_rejects_bad_values(setting: str, complaint: str) -> None:
    assert complaint in refusal(setting)


def test_two_replicas_without_leader_election_are_refused() -> None:
    assert "needs leaderElection.enabled" in refusal("leaderElection.enabled=false")
    single = render("leaderElection.enabled=false", "replicaCount=1")
    assert "--leader-elect" not in container(single)["args"]
    assert not by_kind(single, "PodDisruptionBudget")  # one replica cannot keep one available


def test_the_webhook_and_metrics_cannot_share_a_port() -> None:
    shared = "webhook.enabled=true,webhook.secretName=s,webhook.port=8080,metrics.port=8080"
    assert "must differ" in refusal(shared)


def test_a_long_release_name_still_gives_valid_service_names() -> None:
    """Service names are DNS labels: 63 characters at most, or the apiserver refuses them."""
    out = helm(
        "template",
        "payments-platform-progressive-delivery-production-eu",
        str(CHART),
        "--kube-version",
        KUBE_VERSION,
        "--set",
        "webhook.enabled=true,webhook.secretName=s",
    )
    docs = [doc for doc in yaml.safe_load_all(out.stdout) if doc]
    names = {d["metadata"]["name"] for d in by_kind(docs, "Service")}
    assert len(names) == 2 and {n.rsplit("-", 1)[1] for n in names} == {"metrics", "webhook"}
    label = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
    assert all(len(n) <= 63 and label.match(n) for n in names), names


def test_plain_manifests_are_the_rendered_chart() -> None:
    result = subprocess.run(
        [str(REPO / "hack" / "render-manifests.sh"), "--check"],
        env={"HELM": str(resolve_bin_dir() / "helm"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    docs = [d for d in yaml.safe_load_all((REPO / "manifests" / "install.yaml").read_text()) if d]
    (namespace,) = by_kind(docs, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def _exported_metric_names() -> set[str]:
    exported = {
        sample_name
        for family in REGISTRY.collect()
        for sample_name in [family.name, *(s.name for s in family.samples)]
    }
    # histograms and counters expose suffixed series
    exported |= {f"{n}_bucket" for n in exported} | {f"{n}_count" for n in exported}
    return exported | {f"{n}_total" for n in exported}


def _metric_names(exprs: list[str]) -> set[str]:
    return {
        name for expr in exprs for name in re.findall(r"\b((?:canary|process)_[a-z_]+)\b", expr)
    }


def test_the_dashboard_queries_only_metrics_the_controller_exports() -> None:
    dashboard = json.loads((CHART / "dashboards" / "canary-controller.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert len(exprs) >= 10
    used = _metric_names(exprs)
    missing = sorted(used - _exported_metric_names())
    assert not missing, f"the dashboard queries metrics nobody exports: {missing}"
    assert {"canary_releases", "canary_rollbacks_total", "canary_analysis_verdicts_total"} <= used


def test_every_dashboard_query_is_valid_promql(prometheus: PrometheusServer) -> None:
    """Each panel's query, with Grafana's variables filled in, as a real Prometheus parses it."""
    dashboard = json.loads((CHART / "dashboards" / "canary-controller.json").read_text())
    grafana = {"$__rate_interval": "1m", "$__range": "1h", "$job": ".*"}
    grafana |= {"$namespace": ".*", "$release": ".*"}
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    refused = {}
    for expr in exprs:
        promql = expr
        for variable, value in grafana.items():
            promql = promql.replace(variable, value)
        assert "$" not in promql, promql
        try:
            prometheus.query(promql)
        except PrometheusError as exc:
            refused[expr] = str(exc)
    assert not refused, refused


def _alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_the_alerts_pass_promtool_and_their_unit_tests(tmp_path: Path) -> None:
    """promtool checks the rules, then runs tests/integration/alerts.test.yaml against them."""
    for source in (ALERTS, Path(__file__).with_name("alerts.test.yaml")):
        shutil.copy(source, tmp_path / source.name)
    for args in (("check", "rules", ALERTS.name), ("test", "rules", "alerts.test.yaml")):
        done = subprocess.run(
            [PROMTOOL_BIN, *args], cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stdout + done.stderr
    tested = set(re.findall(r"alertname: (\w+)", (tmp_path / "alerts.test.yaml").read_text()))
    assert tested == {rule["alert"] for rule in _alert_rules()}, "every alert has a test"


def test_the_alerts_select_what_the_controller_exports() -> None:
    rules = _alert_rules()
    missing = sorted(_metric_names([r["expr"] for r in rules]) - _exported_metric_names())
    assert not missing, f"the alerts select metrics nobody exports: {missing}"
    selected = {
        (kind, reason)
        for rule in rules
        for kind, reason in re.findall(
            r'type="(\w+)"(?:, status="\w+")?(?:, reason="(\w+)")?', rule["expr"]
        )
    }
    engine = (REPO / "controller" / "engine").glob("*.py")
    source = "\n".join(path.read_text() for path in engine)
    for kind, reason in selected:
        assert f'"{kind}"' in source, f"no condition type {kind} in the engine"
        assert not reason or f'"{reason}"' in source, f"no reason {reason} in the engine"


def test_the_prometheus_rule_is_the_rule_file_and_optional() -> None:
    assert not by_kind(render(), "PrometheusRule")
    docs = render("metrics.prometheusRule.enabled=true", "metrics.prometheusRule.labels.team=sre")
    (rule,) = by_kind(docs, "PrometheusRule")
    assert rule["metadata"]["labels"]["team"] == "sre"
    leader = "sum(canary_controller_leader)"
    scoped = 'sum(canary_controller_leader{namespace="canary-system"})'
    assert rule["spec"] == yaml.safe_load(ALERTS.read_text().replace(leader, scoped))
    summaries = [r["annotations"]["summary"] for g in rule["spec"]["groups"] for r in g["rules"]]
    assert any("{{ $labels.release }}" in summary for summary in summaries)


def test_no_leader_is_judged_per_install() -> None:
    """Two installs (say one per team, namespaced): one's leader must not hide the other's none."""
    docs = render("metrics.prometheusRule.enabled=true", namespace="team-b-system")
    (rule,) = by_kind(docs, "PrometheusRule")
    (expr,) = [
        r["expr"]
        for g in rule["spec"]["groups"]
        for r in g["rules"]
        if r.get("alert") == "CanaryControllerNotLeading"
    ]
    assert 'canary_controller_leader{namespace="team-b-system"}' in expr


def test_without_leader_election_the_old_pod_stops_before_the_new_one_starts() -> None:
    """No Lease: a surge pod would reconcile next to the old one during every upgrade."""
    (single,) = by_kind(render("leaderElection.enabled=false", "replicaCount=1"), "Deployment")
    assert single["spec"]["strategy"] == {"type": "Recreate"}
    (elected,) = by_kind(render(), "Deployment")
    assert elected["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}


def _notes(tmp_path: Path, *sets: str) -> str:
    """NOTES.txt as `helm install` prints it (helm template does not render it)."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    shutil.copy(chart / "templates" / "NOTES.txt", chart / "notes-src.txt")
    (chart / "templates" / "notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n"
        'data: {notes: {{ tpl (.Files.Get "notes-src.txt") . | quote }}}\n'
    )
    flags = [f for s in sets for f in ("--set", s)]
    out = helm(
        "template",
        "cc",
        str(chart),
        "-n",
        "canary-system",
        "--kube-version",
        KUBE_VERSION,
        "--show-only",
        "templates/notes.yaml",
        *flags,
    )
    return str(yaml.safe_load(out.stdout)["data"]["notes"])


def test_the_notes_name_a_lease_only_when_there_is_one(tmp_path: Path) -> None:
    assert "get lease cc-canary-controller" in _notes(tmp_path / "a")
    single = _notes(tmp_path / "b", "leaderElection.enabled=false", "replicaCount=1")
    assert "get lease" not in single
