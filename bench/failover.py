"""Leader failover, measured with the chart's default timings (lease 15 s, renew 10 s, retry 2 s).

What is measured, and why:

- SIGKILL of the leader (a crashed node): the time from the leader's last
  renewal to the standby's acquisition, as recorded in the Lease. It must
  be at least the lease duration (never two leaders) and at most lease
  duration plus one retry period (plus scheduling), the bound
  docs/install.md promises;
- SIGTERM of the leader (a rolling update or a drain): the time from the
  signal until the standby holds the Lease; the leader releases it on the
  way out, so this should be about one retry period, not a lease duration;
- the resident memory of a leader and of a standby, idle.

Usage: python -m bench.failover [--rounds 3]
Uses the cluster of CANARY_KUBECONFIG if set, else starts one.
Writes bench/results/failover.json.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes import config as kube_config

from bench.harness import run_on_a_cluster
from devenv.cluster import LocalCluster
from devenv.controller import ControllerProcess

RESULTS = Path(__file__).resolve().parent / "results" / "failover.json"
LEASE = "canary-controller"
TIMING = {"lease": 15.0, "renew_deadline": 10.0, "retry": 2.0}


def _lease(api: client.ApiClient, namespace: str) -> Any:
    try:
        return client.CoordinationV1Api(api).read_namespaced_lease(LEASE, namespace).spec
    except client.ApiException:
        return None


def _wait_holder(api: client.ApiClient, namespace: str, holder: str, timeout: float = 60) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        spec = _lease(api, namespace)
        if spec is not None and spec.holder_identity == holder:
            return time.monotonic()
        time.sleep(0.05)
    raise TimeoutError(f"{holder} never took the lease")


def _wait_standby(proc: ControllerProcess, leader: str, timeout: float = 120) -> None:
    """Until /readyz says it stands by: a standby that is still importing is not one yet."""
    expected = f"standby: leader is {leader}\n"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{proc.metrics_url}/readyz", timeout=5) as response:
                if response.read().decode() == expected:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{proc.log_path.name} never stood by")


def _rss_mib(proc: ControllerProcess) -> float:
    assert proc.process is not None
    for line in Path(f"/proc/{proc.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _start(kubeconfig: Path, logs: Path, namespace: str, name: str) -> ControllerProcess:
    env = {
        "CANARY_LEADER_ELECT": "true",
        "CANARY_LEADER_ELECTION_NAMESPACE": namespace,
        "CANARY_LEADER_ELECTION_IDENTITY": name,
    }
    return ControllerProcess(kubeconfig, logs / f"{name}.log", [namespace], env).start()


def measure(cluster: LocalCluster, rounds: int) -> dict[str, Any]:
    api = kube_config.new_client_from_config(config_file=str(cluster.kubeconfig))
    namespace = f"bench-failover-{os.getpid()}"
    client.CoreV1Api(api).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace))
    )
    logs = Path(tempfile.mkdtemp(prefix="failover-"))
    kills: list[float] = []
    handovers: list[float] = []
    rss: dict[str, list[float]] = {"leader": [], "standby": []}
    startups: list[float] = []
    serial = 0

    def next_name() -> str:
        nonlocal serial
        serial += 1
        return f"replica-{serial}"

    leader_name = next_name()
    leader = _start(cluster.kubeconfig, logs, namespace, leader_name)
    _wait_holder(api, namespace, leader_name)
    procs = [leader]
    try:
        for kind in ["kill"] * rounds + ["term"] * rounds:
            standby_name = next_name()
            started = time.monotonic()
            standby = _start(cluster.kubeconfig, logs, namespace, standby_name)
            procs.append(standby)
            _wait_standby(standby, leader_name)
            startups.append(time.monotonic() - started)
            time.sleep(3 * TIMING["retry"])  # the standby has watched a few renewals
            rss["leader"].append(_rss_mib(leader))
            rss["standby"].append(_rss_mib(standby))
            assert leader.process is not None
            if kind == "kill":
                leader.kill()
                last_renewal: datetime = _lease(api, namespace).renew_time
                _wait_holder(api, namespace, standby_name)
                acquired: datetime = _lease(api, namespace).acquire_time
                kills.append((acquired - last_renewal).total_seconds())
            else:
                sent = time.monotonic()
                leader.process.send_signal(signal.SIGTERM)
                handovers.append(_wait_holder(api, namespace, standby_name) - sent)
                leader.process.wait(timeout=30)
            leader, leader_name = standby, standby_name
    finally:
        for proc in procs:
            proc.stop()
        client.CoreV1Api(api).delete_namespace(namespace)
        api.close()

    def summary(xs: list[float]) -> dict[str, float]:
        return {
            "min": round(min(xs), 2),
            "median": round(statistics.median(xs), 2),
            "max": round(max(xs), 2),
        }

    return {
        "timing_s": TIMING,
        "rounds": rounds,
        "start_to_standby_ready_s": summary(startups),
        "sigkill_last_renewal_to_takeover_s": summary(kills),
        "sigterm_signal_to_takeover_s": summary(handovers),
        "idle_rss_mib": {role: summary(values) for role, values in rss.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    run_on_a_cluster(lambda cluster: measure(cluster, args.rounds), RESULTS)


if __name__ == "__main__":
    main()
