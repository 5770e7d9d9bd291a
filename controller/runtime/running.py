"""Starting the controller: probes and metrics first, then leadership, then kopf.

The order is the point. The HTTP endpoint comes up first so a standby is
probed and scraped like the leader; kopf starts only once this process holds
the Lease, so a standby never reconciles (see `leader.py` for why losing the
Lease exits the process).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from controller.adapters.releases import ReleaseClient
from controller.adapters.secrets import SecretReader
from controller.runtime import metrics, notifying
from controller.runtime.clients import api_client
from controller.runtime.health import Health
from controller.runtime.leader import LeaderElector, LeaseTiming
from controller.runtime.serving import serve
from controller.runtime.webhook import WebhookSettings, start_webhook

log = structlog.get_logger("controller.running")
_SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass(frozen=True)
class LeaderElection:
    namespace: str
    lease_name: str = "canary-controller"
    identity: str = ""
    timing: LeaseTiming = field(default_factory=LeaseTiming)


@dataclass(frozen=True)
class RunOptions:
    namespaces: Sequence[str] = ()
    metrics_address: str = "0.0.0.0"
    metrics_port: int = 8080
    leader_election: LeaderElection | None = None
    liveness: str | None = None  # kopf's own probe endpoint, kept for compatibility
    webhook: WebhookSettings | None = None  # the release-tag webhook; off when None


def default_identity() -> str:
    """The pod name in a cluster (unique; says who leads); host, pid and a nonce elsewhere."""
    pod = os.environ.get("POD_NAME")
    return pod or f"{socket.gethostname()}_{os.getpid()}_{uuid.uuid4().hex[:6]}"


def default_lease_namespace() -> str:
    """The controller's own namespace: from the downward API or the mounted ServiceAccount."""
    env = os.environ.get("POD_NAMESPACE")
    if env:
        return env
    if _SA_NAMESPACE.exists():
        return _SA_NAMESPACE.read_text().strip()
    return "default"


def _exit_on_lost_leadership() -> None:
    log.error("leadership lost: exiting so that this replica restarts as the standby")
    sys.stderr.flush()
    os._exit(1)  # stop acting now; a clean shutdown could still reconcile


class _Stopping(BaseException):
    """SIGTERM or SIGINT while standing by: a BaseException, so no `except Exception` on
    the way (a failed Lease request is logged and retried) can swallow it."""


def _stand_by(elector: LeaderElector) -> bool:
    """Wait for the Lease (True); a SIGTERM or SIGINT meanwhile ends the wait (False).

    In a container this process is PID 1, and the kernel delivers no signal to
    PID 1 that it has no handler for: without one a standby ignored SIGTERM,
    and every rollout, drain or `kubectl delete pod` that reached it waited out
    the grace period for SIGKILL. kopf's own handlers replace this one once it
    runs, which is only after the Lease is held.
    """

    stopping: list[str] = []

    def stop(signum: int, _: object) -> None:
        name = signal.Signals(signum).name
        if stopping:  # a second signal (Ctrl-C twice): let the first one's cleanup finish
            log.info("already stopping", signal=name)
            return
        stopping.append(name)
        raise _Stopping(name)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    try:
        elector.acquire()
    except _Stopping as exc:
        log.info("stopping while standing by", signal=str(exc))
        return False
    return True


def run(options: RunOptions) -> int:
    import kopf

    import controller.runtime.handlers  # noqa: F401  (registers the handlers)

    elector = None
    election = options.leader_election
    if election is not None:
        identity = election.identity or default_identity()
        elector = LeaderElector(
            api_client(limiter=None),
            election.namespace,
            election.lease_name,
            identity,
            election.timing,
        )
    health = Health(elector)
    server = serve(options.metrics_address, options.metrics_port, health)
    log.info("serving /metrics, /healthz and /readyz", port=server.server_address[1])
    hook = start_webhook(options.webhook, ReleaseClient(api_client())) if options.webhook else None
    notifying.enable(SecretReader(api_client()))
    loop = asyncio.new_event_loop()
    try:
        if elector is not None:
            log.info("standing by for the lease", lease=f"{elector.namespace}/{elector.name}")
            if not _stand_by(elector):
                return 0  # (a Lease won just as the signal came is given up below)
            elector.start_renewing(on_lost=_exit_on_lost_leadership)
        metrics.LEADER.set(1)
        health.loop = loop
        kopf.configure(verbose=False, log_format=kopf.LogFormat.JSON)
        kopf.run(
            loop=loop,
            standalone=True,
            clusterwide=not options.namespaces,
            namespaces=list(options.namespaces),
            memo=kopf.Memo(namespaces=tuple(options.namespaces)),
            liveness_endpoint=options.liveness,
            ready_flag=health.kopf_ready,
        )
    except _Stopping as exc:  # after the Lease was won, before kopf took the signals over
        log.info("stopping before reconciling", signal=str(exc))
    finally:
        metrics.LEADER.set(0)
        if elector is not None:
            elector.release()
        loop.close()
        server.shutdown()
        if hook is not None:
            hook.stop()
    return 0
