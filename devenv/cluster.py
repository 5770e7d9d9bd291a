"""A real, local Kubernetes control plane for tests and the demo.

Why: the controller talks to a real API server (watches, status subresources,
RBAC, garbage collection, Deployment/ReplicaSet/Job controllers) and faking
those semantics in Python would test our assumptions, not Kubernetes. There is
no Docker here, so we run the upstream binaries directly: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, and kwok, which plays kubelet for a
few fake nodes (it moves scheduled pods to Running/Ready, completes Job pods,
and on request fails or crash-loops pods; see ``POD_BEHAVIOR_LABEL``). kwok
also serves the kubelet API on loopback, so `kubectl logs` works: every
container's log is ``pod_log_file``.

Python API::

    cluster = LocalCluster.start(state_dir, bin_dir)   # blocks until usable
    cluster.kubeconfig                                  # admin kubeconfig path
    cluster.kubectl("get", "nodes")                     # CompletedProcess[str]
    cluster.stop()                                      # no process left behind

CLI (state in ``<repo>/.cluster``, processes survive the CLI)::

    python -m devenv.cluster up|down|kubeconfig|status
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from devenv.ports import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
CLI_STATE_DIR = REPO_ROOT / ".cluster"
BUILD_SCRIPT = REPO_ROOT / "hack" / "build-binaries.sh"
K8S_VERSION = "v1.35.4"

NODE_NAMES = ("kwok-node-0", "kwok-node-1")
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.1/16"

#: Label on a pod (template) that tells kwok how the fake container behaves.
#: Without it pods become Running+Ready, and Job pods then Succeed. Values:
#:   ``fail``       Running+Ready, then phase Failed (exit code 1) after
#:                  ``POD_DELAY_ANNOTATION`` (default 1s). Job pods -> Job fails.
#:   ``crash-loop`` Running but never Ready; containers wait in CrashLoopBackOff
#:                  and restartCount grows every ~5-8s, like a real kubelet.
#:   ``not-ready``  Running, containers running, readiness never passes.
#:   ``crash-as-stable`` Running+Ready; a pod of a release's stable track
#:                  (label ``canary.dev/track=stable``, set at promotion) then
#:                  crash-loops after ``STABLE_CRASH_DELAY_MS``: a build that
#:                  passes its canary and fails under all the traffic.
POD_BEHAVIOR_LABEL = "kwok.canary.dev/behavior"
#: The same behaviours carried by the image instead: a pod running
#: ``kwok.canary.dev/behavior:crash-loop`` crash-loops. A release whose image
#: is ``kwok.canary.dev/behavior:{tag}`` then runs a broken canary only for
#: that tag, as a bad build would, while stable (any other tag) stays healthy.
BEHAVIOR_IMAGE = "kwok.canary.dev/behavior"
#: How long a ``crash-as-stable`` pod serves before it first crashes: long
#: enough for a promotion of a few replicas to finish first.
STABLE_CRASH_DELAY_MS = 20_000
#: Go duration ("30s") a ``fail`` pod stays Running+Ready before it fails.
POD_DELAY_ANNOTATION = "kwok.canary.dev/delay"

# Start order; stop goes the other way round.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
BINARIES = (*COMPONENTS, "kubectl")


class ClusterError(RuntimeError):
    """The control plane could not be started or is not healthy."""


# --------------------------------------------------------------------------- binaries


def resolve_bin_dir() -> Path:
    """Where the control-plane binaries are.

    ``CANARY_BIN`` (set by the Makefile) wins; otherwise the build script is
    run, which is a cached no-op after the first build and prints the directory
    as its last stdout line.
    """
    env = os.environ.get("CANARY_BIN")
    if env:
        return Path(env)
    out = subprocess.run([str(BUILD_SCRIPT)], check=True, stdout=subprocess.PIPE, text=True).stdout
    lines = [line for line in out.splitlines() if line.strip()]
    if not lines:
        raise ClusterError(f"{BUILD_SCRIPT} printed no bin directory")
    return Path(lines[-1].strip())


def _check_binaries(bin_dir: Path) -> None:
    """Fail early with a readable message instead of a FileNotFoundError later."""
    missing = [b for b in BINARIES if not os.access(bin_dir / b, os.X_OK)]
    if missing:
        raise ClusterError(f"missing binaries in {bin_dir}: {', '.join(missing)}")


# --------------------------------------------------------------------------- PKI


@dataclass(frozen=True)
class Pki:
    """File layout of the cluster's certificates and keys (all ECDSA P-256)."""

    root: Path

    @property
    def ca_crt(self) -> Path:
        return self.root / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    @property
    def apiserver_crt(self) -> Path:
        return self.root / "apiserver.crt"

    @property
    def apiserver_key(self) -> Path:
        return self.root / "apiserver.key"

    @property
    def admin_crt(self) -> Path:
        return self.root / "admin.crt"

    @property
    def admin_key(self) -> Path:
        return self.root / "admin.key"

    @property
    def front_proxy_crt(self) -> Path:
        return self.root / "front-proxy.crt"

    @property
    def front_proxy_key(self) -> Path:
        return self.root / "front-proxy.key"

    @property
    def kubelet_crt(self) -> Path:
        """kwok's serving cert: the apiserver reaches "kubelets" (for pods/log) over TLS."""
        return self.root / "kubelet.crt"

    @property
    def kubelet_key(self) -> Path:
        return self.root / "kubelet.key"

    @property
    def kubelet_client_crt(self) -> Path:
        return self.root / "kubelet-client.crt"

    @property
    def kubelet_client_key(self) -> Path:
        return self.root / "kubelet-client.key"

    @property
    def sa_key(self) -> Path:
        return self.root / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.root / "sa.pub"


def _openssl(*args: str) -> None:
    """Run openssl quietly; its stderr only matters when it fails."""
    proc = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ClusterError(f"openssl {' '.join(args)} failed: {proc.stderr.strip()}")


def _ec_key(path: Path) -> None:
    # EC keys: generated in milliseconds (RSA-2048 costs ~0.1-1s each).
    _openssl(
        "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path)
    )


def _signed_cert(pki: Pki, name: str, subject: str, ext: Sequence[str]) -> None:
    """Issue ``name.crt`` for ``name.key``, signed by the cluster CA."""
    args = ["req", "-x509", "-new", "-key", str(pki.root / f"{name}.key"), "-subj", subject]
    args += ["-CA", str(pki.ca_crt), "-CAkey", str(pki.ca_key), "-days", "3650"]
    for e in ext:
        args += ["-addext", e]
    _openssl(*args, "-out", str(pki.root / f"{name}.crt"))


def generate_pki(root: Path) -> Pki:
    """CA, apiserver serving cert, admin client cert, service-account keys.

    A real CA (not --insecure-skip-tls-verify) so clients verify the server
    exactly as in production, and an admin cert in ``system:masters`` because
    the API server runs with RBAC on.
    """
    root.mkdir(parents=True, exist_ok=True)
    pki = Pki(root)
    for name in ("ca", "apiserver", "admin", "front-proxy", "kubelet", "kubelet-client", "sa"):
        _ec_key(root / f"{name}.key")
    _openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        str(pki.ca_key),
        "-subj",
        "/CN=canary-local-ca",
        "-days",
        "3650",
        "-out",
        str(pki.ca_crt),
    )
    sans = (
        "subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,"
        "DNS:kubernetes.default,DNS:kubernetes.default.svc"
    )
    _signed_cert(
        pki,
        "apiserver",
        "/CN=kube-apiserver",
        [sans, "extendedKeyUsage=serverAuth", "basicConstraints=critical,CA:FALSE"],
    )
    _signed_cert(
        pki,
        "admin",
        "/O=system:masters/CN=canary-admin",
        ["extendedKeyUsage=clientAuth", "basicConstraints=critical,CA:FALSE"],
    )
    _signed_cert(
        pki,
        "front-proxy",
        "/CN=front-proxy-client",
        ["extendedKeyUsage=clientAuth", "basicConstraints=critical,CA:FALSE"],
    )
    _signed_cert(
        pki,
        "kubelet",
        "/CN=kwok-kubelet",
        [
            "subjectAltName=IP:127.0.0.1",
            "extendedKeyUsage=serverAuth",
            "basicConstraints=critical,CA:FALSE",
        ],
    )
    _signed_cert(
        pki,
        "kubelet-client",
        "/O=system:masters/CN=kube-apiserver-kubelet-client",
        ["extendedKeyUsage=clientAuth", "basicConstraints=critical,CA:FALSE"],
    )
    _openssl("pkey", "-in", str(pki.sa_key), "-pubout", "-out", str(pki.sa_pub))
    return pki


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(path: Path, server: str, pki: Pki) -> Path:
    """Admin kubeconfig with the certs embedded, so it can be copied anywhere."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "canary-local",
                "cluster": {"server": server, "certificate-authority-data": _b64(pki.ca_crt)},
            }
        ],
        "users": [
            {
                "name": "canary-admin",
                "user": {
                    "client-certificate-data": _b64(pki.admin_crt),
                    "client-key-data": _b64(pki.admin_key),
                },
            }
        ],
        "contexts": [
            {
                "name": "canary-local",
                "context": {
                    "cluster": "canary-local",
                    "user": "canary-admin",
                    "namespace": "default",
                },
            }
        ],
        "current-context": "canary-local",
    }
    path.write_text(json.dumps(config, indent=2))  # JSON is valid YAML
    path.chmod(0o600)
    return path


# --------------------------------------------------------------------------- kwok stages
# kwok drives pod status through "Stages": a selector, an optional delay and a
# Go template rendered into a strategic-merge patch of the status. kwok drops
# ALL its built-in pod stages once --config holds any pod stage, so the three
# upstream ones (kwok v0.7.0 kustomize/stage/pod/fast) are repeated here next
# to ours. Node stages are not configured, so kwok's defaults (node-initialize,
# node-heartbeat) apply. Among matching stages kwok picks only from those with
# weight > 0 if there are any; ours have weight 1 and upstream ones weight 0.
# Explicit `null`s delete the previous container state in the merge patch.

_NOW = "{{ $now := Now }}\n"
_RUNNING_TAIL = """
hostIP: {{ NodeIPWith .spec.nodeName | Quote }}
podIP: {{ PodIPWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) | Quote }}
phase: Running
startTime: {{ or .status.startTime $now | Quote }}
"""  # noqa: E501


def _conditions(ready: bool, reason: str = "") -> str:
    status = '"True"' if ready else '"False"'
    reason_field = f", reason: {reason}" if reason else ""
    lines = [
        "conditions:",
        '- {type: Initialized, status: "True", lastTransitionTime: {{ $now | Quote }}}',
    ]
    for kind in ("Ready", "ContainersReady"):
        lines.append(
            f"- {{type: {kind}, status: {status}{reason_field}, "
            "lastTransitionTime: {{ $now | Quote }}}"
        )
    return "\n".join(lines) + "\n"


def _containers(body: str, source: str = ".spec.containers") -> str:
    """A containerStatuses entry per container; ``body`` sees $item and $index."""
    return (
        f"{{{{ range $index, $item := {source} }}}}\n"
        "- image: {{ $item.image | Quote }}\n  name: {{ $item.name | Quote }}\n"
        f"{body}{{{{ end }}}}\n"
    )


_POD_READY = (
    _NOW + _conditions(ready=True) + "{{ range .spec.readinessGates }}\n"
    '- {type: {{ .conditionType | Quote }}, status: "True", '
    "lastTransitionTime: {{ $now | Quote }}}\n"
    "{{ end }}\n"
    + "containerStatuses:\n"
    + _containers(
        "  ready: true\n  restartCount: 0\n  started: true\n"
        "  state: {running: {startedAt: {{ $now | Quote }}}}\n"
    )
    + "initContainerStatuses:\n"
    + _containers(
        "  ready: true\n  restartCount: 0\n"
        '  {{ if eq $item.restartPolicy "Always" }}\n'
        "  started: true\n  state: {running: {startedAt: {{ $now | Quote }}}}\n"
        "  {{ else }}\n"
        "  state: {terminated: {exitCode: 0, reason: Completed, "
        "startedAt: {{ $now | Quote }}, finishedAt: {{ $now | Quote }}}}\n"
        "  {{ end }}\n",
        source=".spec.initContainers",
    )
    + _RUNNING_TAIL
)

_POD_COMPLETE = (
    _NOW
    + "containerStatuses:\n"
    + _containers(
        "  ready: false\n  restartCount: 0\n  started: false\n"
        "  state:\n    running: null\n"
        "    terminated: {exitCode: 0, reason: Completed, "
        "startedAt: {{ $now | Quote }}, finishedAt: {{ $now | Quote }}}\n"
    )
    + "phase: Succeeded\n"
)

_POD_FAIL = (
    _NOW
    + _conditions(ready=False, reason="PodFailed")
    + "containerStatuses:\n"
    + _containers(
        "  ready: false\n  restartCount: 0\n  started: false\n"
        "  state:\n    running: null\n    waiting: null\n"
        "    terminated: {exitCode: 1, reason: Error, "
        "startedAt: {{ $now | Quote }}, finishedAt: {{ $now | Quote }}}\n"
    )
    + "phase: Failed\n"
)

# Used for the first crash and for every restart: restartCount grows by one.
_POD_CRASH_LOOP = (
    _NOW
    + "{{ $root := . }}\n"
    + _conditions(ready=False, reason="ContainersNotReady")
    + "containerStatuses:\n"
    + _containers(
        "  {{ $restarts := 0 }}\n"
        "  {{ with $root.status.containerStatuses }}{{ if lt $index (len .) }}"
        "{{ $restarts = (index . $index).restartCount }}{{ end }}{{ end }}\n"
        "  ready: false\n  started: false\n  restartCount: {{ add1 $restarts }}\n"
        "  lastState: {terminated: {exitCode: 1, reason: Error, "
        "startedAt: {{ $now | Quote }}, finishedAt: {{ $now | Quote }}}}\n"
        "  state:\n    running: null\n    terminated: null\n"
        "    waiting: {reason: CrashLoopBackOff, "
        'message: "back-off restarting failed container"}\n'
    )
    + _RUNNING_TAIL
)

_POD_NOT_READY = (
    _NOW
    + _conditions(ready=False, reason="ContainersNotReady")
    + "containerStatuses:\n"
    + _containers(
        "  ready: false\n  restartCount: 0\n  started: true\n"
        "  state: {running: {startedAt: {{ $now | Quote }}}}\n"
    )
    + _RUNNING_TAIL
)


def _expr(key: str, operator: str, *values: str) -> dict[str, Any]:
    expr: dict[str, Any] = {"key": key, "operator": operator}
    if values:
        expr["values"] = list(values)
    return expr


_NOT_DELETED = _expr(".metadata.deletionTimestamp", "DoesNotExist")
_NO_POD_IP = _expr(".status.podIP", "DoesNotExist")
_RUNNING = _expr(".status.phase", "In", "Running")
_OWNED_BY_JOB = _expr(".metadata.ownerReferences.[].kind", "In", "Job")


def _behaviors(value: str) -> list[tuple[str, dict[str, Any]]]:
    """The two ways a pod asks for `value`: (stage name suffix, selector)."""
    return [
        ("", _expr(f'.metadata.labels["{POD_BEHAVIOR_LABEL}"]', "In", value)),
        ("-by-image", _expr(".spec.containers.[].image", "In", f"{BEHAVIOR_IMAGE}:{value}")),
    ]


def _pod_stage(
    name: str,
    match: list[dict[str, Any]],
    nxt: dict[str, Any],
    *,
    weight: int = 0,
    delay: dict[str, Any] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "resourceRef": {"apiGroup": "v1", "kind": "Pod"},
        "selector": {"matchExpressions": match},
        "next": nxt,
    }
    if weight:
        spec["weight"] = weight
    if delay:
        spec["delay"] = delay
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Stage",
        "metadata": {"name": name},
        "spec": spec,
    }


def kwok_stages() -> list[dict[str, Any]]:
    """The pod Stages kwok runs with; see ``POD_BEHAVIOR_LABEL`` for ours."""
    crash = {
        "statusTemplate": _POD_CRASH_LOOP,
        "event": {
            "type": "Warning",
            "reason": "BackOff",
            "message": "Back-off restarting failed container",
        },
    }
    fail_delay = {
        "durationMilliseconds": 1000,
        "durationFrom": {"expressionFrom": f'.metadata.annotations["{POD_DELAY_ANNOTATION}"]'},
    }
    restart_delay = {"durationMilliseconds": 5000, "jitterDurationMilliseconds": 8000}
    serving = [_NOT_DELETED, _RUNNING, _expr(".status.podIP", "Exists")]
    as_stable = _expr('.metadata.labels["canary.dev/track"]', "In", "stable")
    behaviours: list[tuple[str, str, list[dict[str, Any]], dict[str, Any], dict[str, Any] | None]]
    behaviours = [
        (
            "fail",
            "canary-pod-fail",
            [_NOT_DELETED, _RUNNING],
            {"statusTemplate": _POD_FAIL},
            fail_delay,
        ),
        ("crash-loop", "canary-pod-crash-loop", [_NOT_DELETED, _NO_POD_IP], crash, None),
        ("crash-loop", "canary-pod-crash-loop-restart", serving, crash, restart_delay),
        (
            "crash-as-stable",
            "stable-pod-crash-loop",
            [*serving, as_stable],
            crash,
            {"durationMilliseconds": STABLE_CRASH_DELAY_MS},
        ),
        (
            "not-ready",
            "canary-pod-not-ready",
            [_NOT_DELETED, _NO_POD_IP],
            {"statusTemplate": _POD_NOT_READY},
            None,
        ),
    ]
    return [
        _pod_stage("pod-ready", [_NOT_DELETED, _NO_POD_IP], {"statusTemplate": _POD_READY}),
        _pod_stage(
            "pod-complete",
            [_NOT_DELETED, _RUNNING, _OWNED_BY_JOB],
            {"statusTemplate": _POD_COMPLETE},
        ),
        _pod_stage(
            "pod-delete",
            [_expr(".metadata.deletionTimestamp", "Exists")],
            {"finalizers": {"empty": True}, "delete": True},
        ),
    ] + [
        _pod_stage(name + suffix, [selector, *match], nxt, weight=1, delay=delay)
        for value, name, match, nxt, delay in behaviours
        for suffix, selector in _behaviors(value)
    ]


def pod_logs(logs_file: Path) -> dict[str, Any]:
    """Every fake container "prints" `logs_file` (CRI log format, as a runtime writes it).

    kwok serves `kubectl logs` from files: whatever a test writes there is what
    the apiserver returns for any pod's log, through the same pods/log path as
    a real kubelet.
    """
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "ClusterLogs",
        "metadata": {"name": "pod-logs"},
        "spec": {"selector": {}, "logs": [{"logsFile": str(logs_file)}]},
    }


def cri_log(text: str, when: str = "2026-01-01T00:00:00.000000000Z") -> str:
    """`text` as a container runtime stores stdout: one `<time> stdout F <line>` per line."""
    return "".join(f"{when} stdout F {line}\n" for line in text.removesuffix("\n").split("\n"))


def write_kwok_config(path: Path, logs_file: Path | None = None) -> Path:
    """kwok's --config: the stages (and pod logs) as JSON documents (JSON is YAML)."""
    docs = kwok_stages() + ([pod_logs(logs_file)] if logs_file is not None else [])
    path.write_text("\n---\n".join(json.dumps(s, indent=1) for s in docs) + "\n")
    return path


# --------------------------------------------------------------------------- processes


@dataclass
class Proc:
    """A process we started; ``start_ticks`` guards against PID reuse."""

    name: str
    pid: int
    start_ticks: int
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name, or None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw.rsplit(")", 1)[1].split()


def _start_ticks(pid: int) -> int:
    stat = _proc_stat(pid)
    return int(stat[19]) if stat else -1  # field 22 of stat(5)


def is_alive(proc: Proc) -> bool:
    """True if the very process we started still runs (zombies count as dead)."""
    if proc.popen is not None:
        return proc.popen.poll() is None
    stat = _proc_stat(proc.pid)
    return stat is not None and stat[0] != "Z" and int(stat[19]) == proc.start_ticks


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


_libc: ctypes.CDLL | None = None


def _die_with_parent() -> None:
    """preexec_fn: SIGKILL the child when the thread that started it dies.

    So a SIGKILLed pytest cannot leave a control plane behind. SIGKILL, not
    SIGTERM: all components stopping at once makes kube-apiserver wait ~10s
    for its vanished etcd, and the state is throwaway anyway. Only for
    non-detached clusters; the CLI's processes must outlive the CLI.
    """
    if _libc is not None:
        _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def spawn(
    name: str,
    argv: Sequence[str],
    log_dir: Path,
    *,
    detach: bool,
    env: dict[str, str] | None = None,
) -> Proc:
    """Start one component with its output in ``log_dir/<name>.log``.

    Always in its own session, so a Ctrl-C in the terminal reaches only the
    parent, which then stops the cluster in order.
    """
    global _libc
    if not detach and _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)  # load before fork, not in the child
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / f"{name}.log", "ab") as log:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            preexec_fn=None if detach else _die_with_parent,
        )
    return Proc(name, popen.pid, _start_ticks(popen.pid), popen)


def terminate(procs: Sequence[Proc], timeout: float = 15.0) -> None:
    """Stop clients first, then kube-apiserver, then etcd; SIGKILL stragglers.

    The order matters: an apiserver whose etcd is already gone spends ~10s
    timing out on its shutdown writes. Works for our children (reaped with
    Popen.wait) and for processes a previous CLI run started (polled in /proc).
    """
    last = ("kube-apiserver", "etcd")
    groups = [[p for p in procs if p.name not in last]]
    groups += [[p for p in procs if p.name == name] for name in last]
    stuck = [p for group in groups for p in _stop_group(group, timeout)]
    if stuck:
        raise ClusterError(f"could not stop: {[p.name for p in stuck]}")
    _wait_reaped([p for p in procs if p.popen is None])


def _wait_reaped(procs: Sequence[Proc], timeout: float = 5.0) -> None:
    """Best effort: let init reap the zombies of processes that are not our children.

    They are already dead; waiting only makes `down && pgrep kube` reliably
    empty on hosts whose PID 1 reaps lazily.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_start_ticks(p.pid) == p.start_ticks for p in procs):
        time.sleep(0.05)


def _stop_group(procs: Sequence[Proc], timeout: float) -> list[Proc]:
    live = [p for p in procs if is_alive(p)]
    for p in live:
        _signal(p, signal.SIGTERM)
    live = _wait_gone(live, timeout)
    for p in live:
        _signal(p, signal.SIGKILL)
    return _wait_gone(live, 10.0)


def _signal(proc: Proc, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, sig)


def _wait_gone(procs: Sequence[Proc], timeout: float) -> list[Proc]:
    deadline = time.monotonic() + timeout
    live = list(procs)
    while live and time.monotonic() < deadline:
        live = [p for p in live if is_alive(p)]
        if live:
            time.sleep(0.05)
    for p in procs:
        if p.popen is not None and p not in live:
            p.popen.wait()
    return live


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --------------------------------------------------------------------------- API access


class _Api:
    """Minimal JSON client for start-up and health checks.

    The cluster module deliberately avoids the ``kubernetes`` package: the CLI
    starts faster and the start-up path has no moving parts besides urllib.
    """

    def __init__(self, server: str, pki: Pki) -> None:
        self.server = server
        self.ctx = ssl.create_default_context(cafile=str(pki.ca_crt))
        self.ctx.load_cert_chain(str(pki.admin_crt), str(pki.admin_key))

    def request(self, method: str, path: str, body: object = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.server + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, context=self.ctx, timeout=5) as resp:
            raw = resp.read()
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode()

    def ok(self, path: str) -> bool:
        """True if GET path answers 2xx (used for /readyz and friends)."""
        try:
            self.request("GET", path)
        except (OSError, urllib.error.URLError):
            return False
        return True


def _http_ok(url: str) -> bool:
    """Plain GET for etcd and the self-signed KCM/scheduler health ports."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=2) as resp:
            return bool(200 <= resp.status < 300)
    except (OSError, urllib.error.URLError):
        return False


def _node_manifest(name: str) -> dict[str, Any]:
    """A Node kwok will manage (selected by annotation) and nothing else will."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "type": "kwok",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node-role.kubernetes.io/agent": "",
            },
        },
    }


def _node_usable(node: dict[str, Any]) -> bool:
    """Ready, and the node-lifecycle controller has lifted its not-ready taint.

    Until the taint is gone the scheduler will not place pods there, so
    "Ready" alone would make the first test's pods wait.
    """
    conditions = node.get("status", {}).get("conditions", [])
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
    taints = node.get("spec", {}).get("taints", [])
    return ready and not any(t["key"].startswith("node.kubernetes.io/") for t in taints)


# --------------------------------------------------------------------------- the cluster


@dataclass
class Ports:
    etcd: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kubelet: int  # kwok's kubelet API (pods/log), one port for every fake node

    @classmethod
    def pick(cls) -> Ports:
        return cls(*(free_port() for _ in range(6)))


@dataclass
class Memory:
    """RSS of the control-plane processes, in MiB."""

    rss_mib: float  # now
    peak_mib: float  # sum of each process's high-water mark (VmHWM): an upper bound
    per_process_mib: dict[str, float]


class LocalCluster:
    """One local control plane; see the module docstring."""

    def __init__(
        self,
        state_dir: Path,
        bin_dir: Path,
        ports: Ports | None,
        procs: list[Proc] | None = None,
        kubeconfig: Path | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.bin_dir = bin_dir
        self.ports = ports
        self.procs: list[Proc] = procs or []
        self.kubeconfig: Path = kubeconfig or state_dir / "kubeconfig"
        self.pki = Pki(state_dir / "pki")
        self.start_seconds: float | None = None
        self.phase_seconds: dict[str, float] = {}
        self.peak_rss_mib = 0.0

    # ----------------------------------------------------------------- construction

    @classmethod
    def start(
        cls,
        state_dir: Path | str,
        bin_dir: Path | str,
        *,
        detach: bool = False,
        nodes: Sequence[str] = NODE_NAMES,
        timeout: float = 120.0,
    ) -> LocalCluster:
        """Start a fresh control plane in ``state_dir`` and wait until it is usable.

        Usable means: /readyz ok, every kwok node Ready and untainted, and the
        ``default`` ServiceAccount exists (pods are rejected until it does).
        With ``detach=False`` the processes die with the calling thread.
        On any failure everything started so far is stopped again.
        """
        t0 = time.monotonic()
        state_dir, bin_dir = Path(state_dir).resolve(), Path(bin_dir).resolve()
        _check_binaries(bin_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        if any(state_dir.iterdir()):  # old etcd data would not match the new PKI
            raise ClusterError(f"state dir {state_dir} is not empty")
        cluster = cls(state_dir, bin_dir, Ports.pick())
        try:
            cluster._boot(nodes, detach, t0, t0 + timeout)
        except BaseException:
            cluster.stop()
            raise
        cluster.start_seconds = time.monotonic() - t0
        cluster._save_state()
        return cluster

    @classmethod
    def attach(cls, state_dir: Path | str) -> LocalCluster | None:
        """The cluster a previous ``up`` left running in ``state_dir``, if any."""
        path = Path(state_dir) / "state.json"
        if not path.exists():
            return None
        raw = json.loads(path.read_text())
        procs = [Proc(p["name"], p["pid"], p["start_ticks"]) for p in raw["procs"]]
        cluster = cls(Path(state_dir).resolve(), Path(raw["bin_dir"]), Ports(**raw["ports"]), procs)
        cluster.start_seconds = raw.get("start_seconds")
        cluster.peak_rss_mib = raw.get("peak_rss_mib", 0.0)
        return cluster

    @classmethod
    def existing(cls, kubeconfig: Path | str, bin_dir: Path | str) -> LocalCluster:
        """Wrap a cluster someone else runs: kubectl/env work, stop() is a no-op."""
        path = Path(kubeconfig).resolve()
        return cls(path.parent, Path(bin_dir), None, [], kubeconfig=path)

    # ----------------------------------------------------------------- boot steps

    def _boot(self, nodes: Sequence[str], detach: bool, t0: float, deadline: float) -> None:
        assert self.ports is not None
        generate_pki(self.pki.root)
        write_kubeconfig(self.kubeconfig, self.server, self.pki)
        write_kwok_config(self.state_dir / "kwok.yaml", self.pod_log_file)
        etcd_health = f"http://127.0.0.1:{self.ports.etcd}/health"
        self._launch("etcd", detach)
        self._wait(lambda: _http_ok(etcd_health), "etcd /health", deadline)
        self.phase_seconds["etcd"] = time.monotonic() - t0
        self._launch("kube-apiserver", detach)
        api = _Api(self.server, self.pki)
        self._wait(lambda: api.ok("/readyz"), "kube-apiserver /readyz", deadline)
        self.phase_seconds["apiserver"] = time.monotonic() - t0
        for name in COMPONENTS[2:]:
            self._launch(name, detach)
        for node in nodes:
            api.request("POST", "/api/v1/nodes", _node_manifest(node))
        self._wait(lambda: self._nodes_usable(api, nodes), f"nodes {list(nodes)} Ready", deadline)
        self.phase_seconds["nodes"] = time.monotonic() - t0
        self._wait(
            lambda: api.ok("/api/v1/namespaces/default/serviceaccounts/default"),
            "ServiceAccount default/default",
            deadline,
        )

    def restart_apiserver(self, timeout: float = 90.0) -> float:
        """Stop kube-apiserver and start it again on the same port; seconds until /readyz.

        A fault for benchmarks: every watch breaks and every client reconnects.
        """
        t0 = time.monotonic()
        terminate([p for p in self.procs if p.name == "kube-apiserver"])
        self.procs = [p for p in self.procs if p.name != "kube-apiserver"]
        self._launch("kube-apiserver", detach=False)
        api = _Api(self.server, self.pki)
        self._wait(lambda: api.ok("/readyz"), "kube-apiserver /readyz", t0 + timeout)
        return time.monotonic() - t0

    def _launch(self, name: str, detach: bool) -> None:
        env = None
        if name == "kwok":  # kwok also reads ~/.kwok/kwok.yaml; keep the user's out
            home = self.state_dir / "kwok-home"
            home.mkdir(exist_ok=True)
            env = {**os.environ, "HOME": str(home)}
        argv = [str(self.bin_dir / name), *self._args(name)]
        self.procs.append(spawn(name, argv, self.log_dir, detach=detach, env=env))

    def _args(self, name: str) -> list[str]:
        """Command-line flags per component; one place to read the whole setup."""
        assert self.ports is not None
        p, pki, kc, sd = self.ports, self.pki, str(self.kubeconfig), self.state_dir
        peer = f"http://127.0.0.1:{p.etcd_peer}"
        delegated = [
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1",
            "--leader-elect=false",
        ]
        args: dict[str, list[str]] = {
            "etcd": [
                "--name=canary",
                f"--data-dir={sd / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{p.etcd}",
                f"--advertise-client-urls=http://127.0.0.1:{p.etcd}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=canary={peer}",
                "--unsafe-no-fsync",  # throwaway data: fsync only costs time
                "--log-level=warn",
            ],
            "kube-apiserver": [
                f"--etcd-servers=http://127.0.0.1:{p.etcd}",
                "--bind-address=127.0.0.1",
                f"--secure-port={p.apiserver}",
                "--advertise-address=127.0.0.1",
                f"--tls-cert-file={pki.apiserver_crt}",
                f"--tls-private-key-file={pki.apiserver_key}",
                f"--client-ca-file={pki.ca_crt}",
                "--authorization-mode=Node,RBAC",
                # As on OpenShift: an ownerReference with blockOwnerDeletion needs
                # `update` on the owner's finalizers, which the chart must grant.
                "--enable-admission-plugins=OwnerReferencesPermissionEnforcement",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                "--profiling=false",
                # Aggregation-layer (front proxy) settings: the delegated authn of
                # the controller-manager and scheduler expects them, and
                # aggregated APIs (metrics-server...) would need them.
                f"--requestheader-client-ca-file={pki.ca_crt}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={pki.front_proxy_crt}",
                f"--proxy-client-key-file={pki.front_proxy_key}",
                # pods/log goes to kwok's kubelet API, verified like a real kubelet.
                "--kubelet-preferred-address-types=InternalIP",
                f"--kubelet-certificate-authority={pki.ca_crt}",
                f"--kubelet-client-certificate={pki.kubelet_client_crt}",
                f"--kubelet-client-key={pki.kubelet_client_key}",
                # No kubelets exist; without this the apiserver keeps trying to
                # publish a loopback IP as the `kubernetes` endpoint.
                "--endpoint-reconciler-type=none",
            ],
            "kube-controller-manager": [
                *delegated,
                f"--secure-port={p.controller_manager}",
                f"--cert-dir={sd / 'kcm-certs'}",
                f"--service-account-private-key-file={pki.sa_key}",
                f"--root-ca-file={pki.ca_crt}",
                f"--cluster-signing-cert-file={pki.ca_crt}",
                f"--cluster-signing-key-file={pki.ca_key}",
                "--kube-api-qps=200",
                "--kube-api-burst=400",
            ],
            "kube-scheduler": [
                *delegated,
                f"--secure-port={p.scheduler}",
                f"--cert-dir={sd / 'scheduler-certs'}",
            ],
            "kwok": [
                f"--kubeconfig={kc}",
                f"--config={sd / 'kwok.yaml'}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
                # Non-zero: kwok renews node leases and uses the node heartbeat
                # stage, so the node-lifecycle controller never marks nodes NotReady.
                "--node-lease-duration-seconds=40",
                f"--cidr={POD_CIDR}",
                # The kubelet API (pods/log) on loopback, at each node's InternalIP.
                "--node-ip=127.0.0.1",
                f"--node-port={p.kubelet}",
                f"--server-address=127.0.0.1:{p.kubelet}",
                f"--tls-cert-file={pki.kubelet_crt}",
                f"--tls-private-key-file={pki.kubelet_key}",
            ],
        }
        return args[name]

    def _wait(self, check: Callable[[], bool], what: str, deadline: float) -> None:
        """Poll ``check`` until true; fail fast if a component died meanwhile."""
        while True:
            self._sample_memory()
            dead = [p for p in self.procs if not is_alive(p)]
            if dead:
                log = self.log_dir / f"{dead[0].name}.log"
                raise ClusterError(
                    f"{dead[0].name} exited while waiting for {what}; {log}:\n{_log_tail(log)}"
                )
            if check():
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"timed out waiting for {what}; logs in {self.log_dir}")
            time.sleep(0.1)

    @staticmethod
    def _nodes_usable(api: _Api, names: Sequence[str]) -> bool:
        items = api.request("GET", "/api/v1/nodes")["items"]
        usable = {n["metadata"]["name"] for n in items if _node_usable(n)}
        return set(names) <= usable

    def _sample_memory(self) -> None:
        self.peak_rss_mib = max(self.peak_rss_mib, self.memory().rss_mib)

    def _save_state(self) -> None:
        state = {
            "bin_dir": str(self.bin_dir),
            "ports": asdict(self.ports) if self.ports else None,
            "procs": [
                {"name": p.name, "pid": p.pid, "start_ticks": p.start_ticks} for p in self.procs
            ],
            "start_seconds": self.start_seconds,
            "phase_seconds": self.phase_seconds,
            "peak_rss_mib": self.peak_rss_mib,
        }
        (self.state_dir / "state.json").write_text(json.dumps(state, indent=2))

    # ----------------------------------------------------------------- public API

    @property
    def server(self) -> str:
        assert self.ports is not None, "only owned clusters know their ports"
        return f"https://127.0.0.1:{self.ports.apiserver}"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def pod_log_file(self) -> Path:
        """What every fake container's log reads as (write it with `cri_log`)."""
        return self.state_dir / "pod.log"

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run the kubectl built with the cluster against it; output captured as text."""
        argv = [str(self.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args]
        return subprocess.run(
            argv, check=check, input=input, capture_output=True, text=True, timeout=timeout
        )

    def env(self) -> dict[str, str]:
        """os.environ for subprocesses: KUBECONFIG set, the built tools first on PATH."""
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        return env

    def memory(self) -> Memory:
        """Current and peak RSS of our live processes, from /proc."""
        live = [p for p in self.procs if is_alive(p)]
        rss = {p.name: _status_kib(p.pid, "VmRSS") / 1024 for p in live}
        hwm = sum(_status_kib(p.pid, "VmHWM") for p in live) / 1024
        return Memory(
            round(sum(rss.values()), 1), round(hwm, 1), {k: round(v, 1) for k, v in rss.items()}
        )

    def health(self) -> dict[str, bool]:
        """Per-component health: process alive and, where it has one, its health endpoint."""
        alive = {p.name: is_alive(p) for p in self.procs}
        result = {name: alive.get(name, False) for name in COMPONENTS}
        if self.ports is None or not all(result.values()):
            return result
        p = self.ports
        result["etcd"] = _http_ok(f"http://127.0.0.1:{p.etcd}/health")
        api = _Api(self.server, self.pki)
        result["kube-apiserver"] = api.ok("/readyz")
        result["kube-controller-manager"] = _http_ok(
            f"https://127.0.0.1:{p.controller_manager}/healthz"
        )
        result["kube-scheduler"] = _http_ok(f"https://127.0.0.1:{p.scheduler}/healthz")
        if result["kube-apiserver"]:
            result["nodes"] = self._nodes_usable(api, NODE_NAMES)
        return result

    def is_healthy(self) -> bool:
        return bool(self.procs) and all(self.health().values())

    def stop(self, timeout: float = 15.0) -> None:
        """Stop every process this object started (or attached to) and wait for them."""
        terminate(self.procs, timeout)
        self.procs = []
        state = self.state_dir / "state.json"
        if self.ports is not None and state.exists():
            state.unlink()

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- CLI


def _describe_start(cluster: LocalCluster) -> str:
    phases = ", ".join(f"{k} {v:.1f}s" for k, v in cluster.phase_seconds.items())
    mem = cluster.memory()
    return (
        f"cluster up in {cluster.start_seconds:.1f}s ({phases}); "
        f"RSS now {mem.rss_mib:.0f} MiB, peak sampled during start "
        f"{cluster.peak_rss_mib:.0f} MiB; per process {mem.per_process_mib}"
    )


def cmd_up(state_dir: Path) -> int:
    """Idempotent: a healthy cluster is left alone, a broken one is replaced."""
    existing = LocalCluster.attach(state_dir)
    if existing is not None:
        if existing.is_healthy():
            print("cluster already up", file=sys.stderr)
            print(existing.kubeconfig)
            return 0
        print("found an unhealthy cluster; replacing it", file=sys.stderr)
        existing.stop()
    if state_dir.exists():
        shutil.rmtree(state_dir)
    cluster = LocalCluster.start(state_dir, resolve_bin_dir(), detach=True)
    print(_describe_start(cluster), file=sys.stderr)
    print(cluster.kubeconfig)
    return 0


def cmd_down(state_dir: Path) -> int:
    cluster = LocalCluster.attach(state_dir)
    if cluster is None:
        print("no cluster running", file=sys.stderr)
        return 0
    cluster.stop()
    print("cluster stopped", file=sys.stderr)
    return 0


def cmd_kubeconfig(state_dir: Path) -> int:
    path = state_dir / "kubeconfig"
    if not path.exists():
        print("no cluster; run `make cluster-up`", file=sys.stderr)
        return 1
    print(path)
    return 0


def cmd_status(state_dir: Path) -> int:
    cluster = LocalCluster.attach(state_dir)
    if cluster is None:
        print("down")
        return 1
    health = cluster.health()
    for name, ok in health.items():
        print(f"{name:24} {'ok' if ok else 'NOT OK'}")
    mem = cluster.memory()
    print(
        f"{'memory':24} RSS {mem.rss_mib:.0f} MiB now, sum of per-process peaks "
        f"{mem.peak_mib:.0f} MiB {mem.per_process_mib}"
    )
    print(f"{'kubeconfig':24} {cluster.kubeconfig}")
    return 0 if all(health.values()) else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devenv.cluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=["up", "down", "kubeconfig", "status"])
    parser.add_argument("--state-dir", type=Path, default=CLI_STATE_DIR, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    commands = {"up": cmd_up, "down": cmd_down, "kubeconfig": cmd_kubeconfig, "status": cmd_status}
    try:
        return commands[args.command](args.state_dir)
    except ClusterError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
