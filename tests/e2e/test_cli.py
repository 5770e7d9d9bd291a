"""`canaryctl` against the real apiserver, steering a release the real controller runs."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from controller.cli.main import main
from devenv.cluster import LocalCluster
from devenv.prometheus import PrometheusServer
from devenv.traffic import TrafficSimulator
from tests.e2e.conftest import ControllerFactory
from tests.e2e.helpers import CapacityWatch, Releases, healthy_traffic, release, wait_for

IMAGE = "registry.example.com/payments:{}"
LONG_PAUSE = [{"setWeight": 25}, {"pause": {"duration": "10m"}}, {"setWeight": 100}]


class Cli:
    """Runs `canaryctl` in-process against the test cluster and namespace."""

    def __init__(self, cluster: LocalCluster, namespace: str, capsys: pytest.CaptureFixture[str]):
        self.base = ["--kubeconfig", str(cluster.kubeconfig), "-n", namespace]
        self.capsys = capsys

    def __call__(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main([*args, *self.base])
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err

    def json(self, *args: str) -> Any:
        code, out, err = self(*args, "-o", "json")
        assert code == 0, err
        return json.loads(out)


@pytest.fixture
def cli(cluster: LocalCluster, namespace: str, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(cluster, namespace, capsys)


def _image(releases: Releases) -> str:
    dep = releases.deployment("payments")
    assert dep is not None
    return next(c.image for c in dep.spec.template.spec.containers if c.name == "app")


def test_status_list_promote_history_and_quick_rollback(
    cli: Cli,
    releases: Releases,
    namespace: str,
    controller: ControllerFactory,
    traffic: TrafficSimulator,
    prometheus: PrometheusServer,
) -> None:
    healthy_traffic(traffic, namespace)
    releases.create_deployment("payments", 4, IMAGE.format("v1"))
    releases.create(release("payments", "v1", prometheus.url, steps=LONG_PAUSE, interval="1s"))
    controller(namespace)
    releases.wait_phase("payments", "Idle", timeout=30)

    code, out, _ = cli("start", "payments", "--tag", "v2")
    assert code == 0 and "release tag v1 -> v2" in out
    releases.wait_phase("payments", "Paused", timeout=60)

    def measured_twice() -> dict[str, Any] | None:
        view = cli.json("status", "payments")
        metric = view["metrics"][0]
        return view if len(metric["trend"]) >= 2 and metric["canary"] is not None else None

    view = wait_for(measured_twice, 60, "two measurements in the trend")
    assert view["phase"] == "Paused" and view["weight"] == 25 and view["canaryTag"] == "v2"
    assert view["step"]["number"] == 2 and view["step"]["description"] == "pause 10m"
    assert 0 < view["step"]["secondsLeft"] <= 600
    metric = view["metrics"][0]
    assert metric["name"] == "error-rate" and metric["bound"] == "<= 0.05; <= 3x stable"
    assert metric["verdict"] == "pass" and metric["stable"] is not None

    code, out, _ = cli("status", "payments")
    assert code == 0
    for fact in ("Paused", "2/3: pause 10m", "time left", "error-rate"):
        assert fact in out, (fact, out)
    assert any(ch in out for ch in "▁▂▃▄▅▆▇█"), out  # the trend's sparkline

    rows = cli.json("list")
    assert [(r["name"], r["phase"], r["step"]) for r in rows] == [("payments", "Paused", "2/3")]
    code, out, _ = cli("list")
    assert "payments" in out and "Paused" in out and "25%" in out

    code, out, _ = cli("promote", "payments", "--wait")
    assert code == 0 and "promote sent" in out
    done = releases.wait_phase("payments", "Succeeded", timeout=90)
    assert done["previousStableTag"] == "v1"
    history = cli.json("history", "payments")
    assert [(h["tag"], h["outcome"]) for h in history] == [("v2", "Succeeded")]

    # the quick rollback: v1 back on every replica, without a canary, capacity kept
    wait_for(lambda: releases.deployment("payments-canary") is None, 30, "canary removed")
    canary_seen = threading.Event()

    def watch_canary(stop: threading.Event) -> None:
        while not stop.is_set():
            if releases.deployment("payments-canary") is not None:
                canary_seen.set()
            stop.wait(0.1)

    stop = threading.Event()
    watcher = threading.Thread(target=watch_canary, args=(stop,), daemon=True)
    with CapacityWatch(releases, "payments") as capacity:
        watcher.start()
        code, out, err = cli("rollback", "payments", "--wait")
        assert code == 0, err
        assert "rolling back from v2 to v1" in out
        rolled = releases.wait_phase("payments", "RolledBack", timeout=60)
        stop.set()
        watcher.join()
    assert rolled["reason"] == "RollbackRequested" and rolled["stableTag"] == "v1"
    assert _image(releases) == IMAGE.format("v1")
    assert releases.get("payments")["spec"]["release"]["tag"] == "v1"
    assert not canary_seen.is_set(), "the quick rollback must not create a canary"
    assert min(capacity.samples) >= 4, f"capacity dipped: {min(capacity.samples)}"
    view = cli.json("status", "payments")
    assert view["rollback"]["reason"] == "RollbackRequested"
    assert "rolled back from v2 to v1 by a human" in view["rollback"]["message"]
    history = cli.json("history", "payments")
    assert [(h["tag"], h["outcome"]) for h in history][:2] == [
        ("v2", "RolledBack"),
        ("v2", "Succeeded"),
    ]
    code, _, err = cli("rollback", "payments")
    assert code == 1 and "no previous stable tag" in err
    releases.wait_events("payments", "RollingBack")


def test_pause_resume_abort_and_retry(
    cli: Cli, releases: Releases, namespace: str, controller: ControllerFactory
) -> None:
    releases.create_deployment("payments", 4, IMAGE.format("v1"))
    releases.create(release("payments", "v1", None, steps=LONG_PAUSE))
    controller(namespace)
    releases.wait_phase("payments", "Idle", timeout=30)
    code, _, err = cli("promote", "payments")
    assert code == 1 and "no release is in progress" in err

    assert cli("start", "payments", "--tag", "v2")[0] == 0
    releases.wait_phase("payments", "Paused", timeout=60)

    code, out, _ = cli("pause", "payments", "--wait")
    assert code == 0 and "paused by a human" in out
    paused = cli.json("status", "payments")
    assert paused["paused"] is True
    left = paused["step"]["secondsLeft"]
    code, _, err = cli("pause", "payments")
    assert code == 1 and "already paused" in err
    time.sleep(2)  # the step's clock is stopped while paused
    assert cli.json("status", "payments")["step"]["secondsLeft"] == left

    code, out, _ = cli("resume", "payments", "--wait")
    assert code == 0
    assert cli.json("status", "payments")["paused"] is False

    code, out, _ = cli("abort", "payments", "--wait")
    assert code == 0 and "now RolledBack" in out
    aborted = releases.wait_phase("payments", "RolledBack", timeout=30)
    assert aborted["reason"] == "Aborted"
    wait_for(lambda: releases.deployment("payments-canary") is None, 30, "canary removed")
    code, _, err = cli("start", "payments", "--tag", "v2")
    assert code == 1 and "canaryctl retry payments" in err

    result = cli.json("retry", "payments", "--wait")
    assert result["refused"] is None and result["command"].startswith("retry ")
    releases.wait_phase("payments", "Paused", timeout=60)
    assert releases.status("payments")["canaryTag"] == "v2"

    code, out, _ = cli("promote", "payments", "--full", "--wait")
    assert code == 0
    assert releases.wait_phase("payments", "Succeeded", timeout=60)["stableTag"] == "v2"
    releases.wait_events("payments", "Paused", "Resumed", "Aborted", "PromoteRequested", "Promoted")


def test_unknown_release_and_status_yaml(cli: Cli, releases: Releases) -> None:
    code, _, err = cli("status", "nothing-here")
    assert code == 1 and "not found" in err
    releases.create(release("payments", "v1", None))
    code, out, _ = cli("status", "payments", "-o", "yaml")
    view = yaml.safe_load(out)
    assert code == 0 and view["name"] == "payments" and view["gates"] is None


def test_kubectl_plugin(cluster: LocalCluster, releases: Releases, namespace: str) -> None:
    plugin = Path(sys.executable).parent / "kubectl-canary"
    assert plugin.exists(), "install the package (pip install -e .) for the kubectl plugin"
    releases.create(release("payments", "v1", None))
    env = cluster.env()
    env["PATH"] = f"{plugin.parent}{os.pathsep}{env['PATH']}"
    result = subprocess.run(
        ["kubectl", "canary", "-n", namespace, "list", "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert [r["name"] for r in json.loads(result.stdout)] == ["payments"]


def test_commands_go_through_rbac(
    cluster: LocalCluster,
    k8s: client.ApiClient,
    releases: Releases,
    namespace: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A viewer may read releases but not steer them: the apiserver says no, not the CLI."""
    releases.create(release("payments", "v1", None))
    core, rbac = client.CoreV1Api(k8s), client.RbacAuthorizationV1Api(k8s)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "viewer"}})
    rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "release-viewer"},
            "rules": [
                {
                    "apiGroups": ["canary.dev"],
                    "resources": ["canaryreleases"],
                    "verbs": ["get", "list"],
                }
            ],
        },
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "release-viewer"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "release-viewer",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "viewer", "namespace": namespace}],
        },
    )
    token = core.create_namespaced_service_account_token(
        "viewer", namespace, {"spec": {"expirationSeconds": 600}}
    ).status.token
    kubeconfig = _token_kubeconfig(cluster, token, tmp_path)
    base = ["--kubeconfig", str(kubeconfig), "-n", namespace]

    def as_viewer(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main([*args, *base])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    def can_read() -> bool:
        return as_viewer("status", "payments", "-o", "json")[0] == 0

    wait_for(can_read, 30, "the viewer's Role to take effect")
    code, _, err = as_viewer("start", "payments", "--tag", "v9")
    assert code == 1 and "403" in err and "RBAC" in err
    assert releases.get("payments")["spec"]["release"]["tag"] == "v1"


def _token_kubeconfig(cluster: LocalCluster, token: str, tmp_path: Path) -> Path:
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    server = admin["clusters"][0]["cluster"]
    ca = (
        server.get("certificate-authority-data")
        or base64.b64encode(Path(server["certificate-authority"]).read_bytes()).decode()
    )
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {"server": server["server"], "certificate-authority-data": ca},
            }
        ],
        "users": [{"name": "viewer", "user": {"token": token}}],
        "contexts": [{"name": "viewer", "context": {"cluster": "local", "user": "viewer"}}],
        "current-context": "viewer",
    }
    path = tmp_path / "viewer.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path
