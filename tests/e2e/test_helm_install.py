"""The chart installed on the real control plane, and its RBAC proven by a whole canary.

kwok plays the kubelet, so the chart's pods never run our code; what is
checked is what the apiserver and controllers decide: admission under the
`restricted` Pod Security profile, Deployment availability, the PDB, the
metrics Service's endpoints. The controller itself then runs as a local
process with a token of the chart's ServiceAccount (TokenRequest API):
completing a canary proves the granted verbs are enough, and the refused
ones prove they are not more.
"""

from __future__ import annotations

import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes import config as kube_config
from kubernetes.client.exceptions import ApiException

from controller.api.spec import GROUP, PLURAL, VERSION
from devenv.cluster import LocalCluster
from devenv.controller import ControllerProcess
from devenv.prometheus import PrometheusServer
from devenv.traffic import TrafficSimulator
from tests.e2e.helpers import Releases, release, wait_for
from tests.fixtures_cluster import namespace_name

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "canary-controller"
IMAGE = "registry.example.com/payments:{}"


class Install:
    """One `helm install` of the chart; uninstalled (cluster-scoped objects too) afterwards."""

    def __init__(self, cluster: LocalCluster, namespace: str, *sets: str) -> None:
        self.cluster, self.namespace = cluster, namespace
        self.name = f"cc-{uuid.uuid4().hex[:6]}"
        self.fullname = f"{self.name}-canary-controller"
        flags = [f for s in sets for f in ("--set", s)]
        self._helm(
            "install", self.name, str(CHART), "-n", namespace, "--wait", "--timeout", "180s", *flags
        )

    def _helm(self, *args: str) -> str:
        result = subprocess.run(
            ["helm", *args],
            env=self.cluster.env(),
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def uninstall(self) -> None:
        self._helm("uninstall", self.name, "-n", self.namespace, "--wait", "--timeout", "120s")

    def token(self, hours: int = 2) -> str:
        result = self.cluster.kubectl(
            "create", "token", self.fullname, "-n", self.namespace, f"--duration={hours}h"
        )
        return result.stdout.strip()

    def kubeconfig(self, path: Path) -> Path:
        """The cluster's kubeconfig with the ServiceAccount's token instead of the admin cert."""
        config = yaml.safe_load(self.cluster.kubeconfig.read_text())
        for user in config["users"]:
            user["user"] = {"token": self.token()}
        path.write_text(yaml.safe_dump(config))
        return path


@pytest.fixture
def restricted_namespace(k8s: client.ApiClient, namespace: str) -> str:
    """The test namespace under the `restricted` Pod Security Standard, enforced."""
    client.CoreV1Api(k8s).patch_namespace(
        namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    )
    return namespace


@pytest.fixture
def other_namespace(k8s: client.ApiClient, request: pytest.FixtureRequest) -> Iterator[str]:
    core = client.CoreV1Api(k8s)
    name = namespace_name(request.node.name + "-apps")
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))

    def service_account() -> bool:
        try:
            return bool(core.read_namespaced_service_account("default", name))
        except ApiException as exc:
            if exc.status == 404:
                return False  # (wait_for would take the exception itself as done)
            raise

    wait_for(service_account, 30, "the default ServiceAccount")
    yield name
    core.delete_namespace(name, propagation_policy="Background")


def _available(apps: client.AppsV1Api, namespace: str, name: str) -> bool:
    dep = apps.read_namespaced_deployment(name, namespace)
    conditions = {c.type: c.status for c in (dep.status.conditions or [])}
    return conditions.get("Available") == "True" and dep.status.ready_replicas == 2


def test_helm_install_creates_a_working_locked_down_install(
    cluster: LocalCluster, k8s: client.ApiClient, restricted_namespace: str, crd: str
) -> None:
    ns = restricted_namespace
    install = Install(cluster, ns)
    try:
        apps, core = client.AppsV1Api(k8s), client.CoreV1Api(k8s)
        rbac = client.RbacAuthorizationV1Api(k8s)
        wait_for(lambda: _available(apps, ns, install.fullname), 120, "Deployment Available")
        pods = core.list_namespaced_pod(
            ns, label_selector=f"app.kubernetes.io/instance={install.name}"
        ).items
        assert len(pods) == 2  # admitted under the restricted profile
        assert {p.spec.service_account_name for p in pods} == {install.fullname}
        assert rbac.read_cluster_role(install.fullname).rules
        assert rbac.read_cluster_role_binding(install.fullname).subjects[0].namespace == ns
        assert rbac.read_namespaced_role(f"{install.fullname}-leader-election", ns).rules
        core.read_namespaced_service_account(install.fullname, ns)

        def pdb_allows_one() -> bool:
            pdb = client.PolicyV1Api(k8s).read_namespaced_pod_disruption_budget(
                install.fullname, ns
            )
            return pdb.status is not None and pdb.status.disruptions_allowed == 1

        wait_for(pdb_allows_one, 60, "PDB: one disruption allowed")

        def ready_endpoints() -> int:
            slices = client.DiscoveryV1Api(k8s).list_namespaced_endpoint_slice(
                ns, label_selector=f"kubernetes.io/service-name={install.fullname}-metrics"
            )
            return sum(
                1
                for s in slices.items
                for e in s.endpoints or []
                if e.conditions and e.conditions.ready
            )

        wait_for(lambda: ready_endpoints() == 2, 60, "both replicas behind the metrics Service")
    finally:
        install.uninstall()
    with pytest.raises(ApiException) as gone:
        client.RbacAuthorizationV1Api(k8s).read_cluster_role(install.fullname)
    assert gone.value.status == 404


def test_plain_manifests_apply_and_become_available(cluster: LocalCluster, crd: str) -> None:
    manifests = str(REPO / "manifests" / "install.yaml")
    cluster.kubectl("apply", "-f", manifests, timeout=120)
    try:
        wait_for(
            lambda: (
                cluster.kubectl(
                    "-n",
                    "canary-system",
                    "get",
                    "deployment",
                    "canary-controller",
                    "-o",
                    "jsonpath={.status.conditions[?(@.type=='Available')].status}",
                ).stdout
                == "True"
            ),
            120,
            "canary-controller Available from plain manifests",
        )
    finally:
        cluster.kubectl("delete", "-f", manifests, "--wait=false", check=False, timeout=120)


def _forbidden(call: Any, *args: Any, **kwargs: Any) -> bool:
    try:
        call(*args, **kwargs)
    except ApiException as exc:
        return exc.status == 403
    return False


@pytest.mark.parametrize("mode", ["cluster-wide", "namespaced"])
def test_the_service_account_can_run_a_whole_canary_and_nothing_more(
    mode: str,
    cluster: LocalCluster,
    k8s: client.ApiClient,
    namespace: str,
    other_namespace: str,
    crd: str,
    tmp_path: Path,
    traffic: TrafficSimulator,
    prometheus: PrometheusServer,
) -> None:
    apps_ns = other_namespace  # the releases live apart from the controller's namespace
    sets = ["rbac.secretRefs=false"] + (
        [f"watchNamespaces={{{apps_ns}}}"] if mode == "namespaced" else []
    )
    install = Install(cluster, namespace, *sets)
    proc = None
    try:
        kubeconfig = install.kubeconfig(tmp_path / "sa-kubeconfig")
        releases = Releases(k8s, apps_ns)
        for track in ("stable", "canary"):
            traffic.set_rate(apps_ns, "payments", track, rps=50, error_ratio=0.002)
        releases.create_deployment("payments", 4, IMAGE.format("v1"))
        steps = [{"setWeight": 25}, {"pause": {"duration": "4s"}}, {"setWeight": 100}]
        releases.create(release("payments", "v1", prometheus.url, steps=steps))
        env = {
            "CANARY_LEADER_ELECT": "true",
            "CANARY_LEADER_ELECTION_NAMESPACE": namespace,
            "CANARY_LEADER_ELECTION_ID": install.fullname,
        }
        watched = (apps_ns,) if mode == "namespaced" else ()
        if mode == "cluster-wide":
            _wait_for_other_tests_to_be_cleaned_up(k8s)
        proc = ControllerProcess(kubeconfig, tmp_path / "controller.log", watched, env).start()
        releases.wait_phase("payments", "Idle", timeout=60)
        releases.set_tag("payments", "v2")
        done = releases.wait_phase("payments", "Succeeded", timeout=180)
        assert [(h["tag"], h["outcome"]) for h in done["history"]] == [("v2", "Succeeded")]
        releases.wait_events("payments", "ReleaseStarted", "Promoted")
        lease = client.CoordinationV1Api(k8s).read_namespaced_lease(install.fullname, namespace)
        assert lease.spec.holder_identity  # it led, with the chart's Lease permissions
        log = proc.log_tail(100_000)
        # every refused call carries "Forbidden"; a bare "403" also matches ids and versions
        assert "Forbidden" not in log, log[-3000:]
        with urllib.request.urlopen(f"{proc.metrics_url}/metrics", timeout=10) as response:
            exported = response.read().decode()
        assert 'code="403"' not in exported
        assert f'canary_promotions_total{{namespace="{apps_ns}",release="payments"}} 1.0' in (
            exported
        )
        # what the chart's alerts select on (the exposition sorts the labels)
        labels = f'namespace="{apps_ns}",reason="Found",release="payments"'
        found = f'canary_release_condition{{{labels},status="True",type="TargetFound"}} 1.0'
        assert found in exported

        sa = kube_config.new_client_from_config(config_file=str(kubeconfig))
        try:
            _assert_refused(sa, apps_ns, namespace, mode)
        finally:
            sa.close()
    finally:
        if proc is not None:
            proc.stop()
            if proc.process is not None and proc.process.returncode not in (0, None):
                print(proc.log_tail(80))
        install.uninstall()


def _wait_for_other_tests_to_be_cleaned_up(k8s: client.ApiClient) -> None:
    """A cluster-wide controller also sees what earlier tests left in namespaces being deleted.

    Writing there is refused with 403 ("being terminated"), which this test
    would take for an RBAC refusal; so it starts once those namespaces are gone.
    """
    core = client.CoreV1Api(k8s)

    def none_terminating() -> bool:
        return all(ns.status.phase != "Terminating" for ns in core.list_namespace().items)

    wait_for(none_terminating, timeout=180, what="earlier tests' namespaces to be deleted")


def _assert_refused(sa: client.ApiClient, apps_ns: str, own_ns: str, mode: str) -> None:
    core, apps = client.CoreV1Api(sa), client.AppsV1Api(sa)
    rbac, custom = client.RbacAuthorizationV1Api(sa), client.CustomObjectsApi(sa)
    leases = client.CoordinationV1Api(sa)
    # a sanity check that the token works at all: what it needs, it gets
    assert apps.read_namespaced_deployment("payments", apps_ns).metadata.name == "payments"
    with pytest.raises(ApiException) as missing:  # allowed (pruning hook Jobs), so not 403
        client.BatchV1Api(sa).delete_namespaced_job("no-such-hook-job", apps_ns)
    assert missing.value.status == 404
    refused = {
        "read a Secret (rbac.secretRefs=false)": (core.read_namespaced_secret, "x", apps_ns),
        "list Secrets": (core.list_namespaced_secret, apps_ns),
        "delete a Secret": (core.delete_namespaced_secret, "x", apps_ns),
        "delete a pod": (core.delete_namespaced_pod, "x", apps_ns),
        "scale a Deployment through its subresource": (
            apps.patch_namespaced_deployment_scale,
            "payments",
            apps_ns,
            {"spec": {"replicas": 1}},
        ),
        "delete a CanaryRelease": (
            custom.delete_namespaced_custom_object,
            GROUP,
            VERSION,
            apps_ns,
            PLURAL,
            "payments",
        ),
        "create a ClusterRole": (
            rbac.create_cluster_role,
            client.V1ClusterRole(metadata=client.V1ObjectMeta(name="escalate"), rules=[]),
        ),
        "read another Lease": (leases.read_namespaced_lease, "someone-else", own_ns),
        "delete its own Lease": (leases.delete_namespaced_lease, "any", own_ns),
    }
    if mode == "namespaced":
        refused["list Deployments outside the watched namespaces"] = (
            apps.list_namespaced_deployment,
            own_ns,
        )
        refused["read a Deployment outside the watched namespaces"] = (
            apps.read_namespaced_deployment,
            "payments",
            own_ns,
        )
        refused["list CanaryReleases cluster-wide"] = (
            custom.list_cluster_custom_object,
            GROUP,
            VERSION,
            PLURAL,
        )
    allowed = [what for what, (call, *args) in refused.items() if not _forbidden(call, *args)]
    assert not allowed, f"the ServiceAccount may {allowed}, but must not"
