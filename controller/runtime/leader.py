"""Lease-based leader election (coordination.k8s.io/v1), the way client-go does it.

Two replicas run; only the holder of one Lease reconciles, the other stands
by. The design is the simplest one that is safe:

* The standby does not start kopf at all until it holds the Lease, so it
  cannot act, not even by accident (kopf's own peering is off: standalone).
* The leader starts a renewal every `retry_period` (at once after one that
  took longer, such as a timed-out request). If it has not renewed for
  `renew_deadline`, or sees another holder, it exits the process at once
  instead of trying to stop its handlers cleanly; Kubernetes restarts it and
  it becomes the standby. Because `renew_deadline < lease_duration`, a leader
  that lost the apiserver stops acting before anyone else may take over.
* Whether a lease has expired is judged by *when this process last saw it
  change* plus its `leaseDurationSeconds`, on the local monotonic clock, never
  by comparing timestamps written by another machine, so clock skew between
  nodes cannot cause two leaders.
* Writes carry the `resourceVersion` they were based on, so of two standbys
  racing for an expired Lease exactly one wins (the other gets 409).
* On a clean shutdown the leader releases the Lease (empty holder), so the
  standby takes over within one `retry_period` during a rolling update.

Even if two replicas did act for a moment, every status write is guarded by
resourceVersion and every action is idempotent, so the loser of a race
reconciles again from what the winner recorded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import structlog
from kubernetes import client
from kubernetes.client.exceptions import ApiException

log = structlog.get_logger("controller.leader")
LEASES = ("coordination.k8s.io", "v1")


@dataclass(frozen=True)
class LeaseTiming:
    """Seconds, as for kube-controller-manager (defaults 15, 10, 2)."""

    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not self.lease_duration > self.renew_deadline > self.retry_period > 0:
            raise ValueError(
                "leader election needs lease duration > renew deadline > retry period > 0, got "
                f"{self.lease_duration}, {self.renew_deadline}, {self.retry_period}"
            )

    @property
    def request_timeout(self) -> float:
        """Bound on one Lease request, so a hung call cannot outlive the renew deadline."""
        return max(self.retry_period, self.renew_deadline / 2)


def _micro_time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        name: str,
        identity: str,
        timing: LeaseTiming | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.namespace, self.name, self.identity = namespace, name, identity
        self.timing = timing or LeaseTiming()
        # The generic client sends and returns plain JSON: the MicroTime strings go
        # out exactly as written, with no model conversion in between.
        self._leases = client.CustomObjectsApi(api)
        self._clock = clock
        self.is_leader = False
        self.holder: str | None = None
        self.last_contact: float | None = None  # last successful request, monotonic
        self.last_attempt: float | None = None
        self._observed_version: str | None = None
        self._observed_at = 0.0
        self._renewed_at = self._renewal_began = 0.0
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    # -- one attempt -----------------------------------------------------

    def try_acquire_or_renew(self) -> bool:
        """One round trip: take the Lease if free or expired, renew it if ours.

        Two times are kept for a renewal: when it was answered, from which the
        renew deadline runs (as in client-go), and when its attempt began, from
        which the lease itself may run out for a standby (it times the lease
        from when it sees the write, never before the attempt began).
        """
        began = self.last_attempt = self._clock()
        timeout = self.timing.request_timeout
        try:
            lease = self._read(timeout)
        except ApiException as exc:
            if exc.status != 404:
                raise
            return self._create(timeout, began)
        self.last_contact = now = self._clock()
        spec, version = lease.get("spec") or {}, lease["metadata"]["resourceVersion"]
        if version != self._observed_version:
            self._observed_version, self._observed_at = version, now
        holder = spec.get("holderIdentity") or None
        self.holder = holder
        ours = holder == self.identity
        duration = float(spec.get("leaseDurationSeconds") or self.timing.lease_duration)
        if holder is not None and not ours and now < self._observed_at + duration:
            self._set_leader(False)
            return False
        renewed = _micro_time(datetime.now(UTC))
        body = self._body(
            holder=self.identity,
            acquired=spec.get("acquireTime", renewed) if ours else renewed,
            renewed=renewed,
            transitions=int(spec.get("leaseTransitions") or 0) + (0 if ours else 1),
            version=version,
        )
        try:
            self._replace(body, timeout)
        except ApiException as exc:
            if exc.status == 409:  # someone else wrote it first
                self._set_leader(False)
                return False
            raise
        return self._held(began)

    def _held(self, began: float) -> bool:
        """The Lease is ours, as written by the attempt that began at `began`."""
        self.last_contact = self._renewed_at = self._clock()
        self._renewal_began = began
        self.holder = self.identity
        self._set_leader(True)
        return True

    def _create(self, timeout: float, began: float) -> bool:
        now = _micro_time(datetime.now(UTC))
        body = self._body(holder=self.identity, acquired=now, renewed=now, transitions=0)
        try:
            self._leases.create_namespaced_custom_object(
                *LEASES, self.namespace, "leases", body, _request_timeout=timeout
            )
        except ApiException as exc:
            if exc.status == 409:  # created by another replica a moment ago
                return False
            raise
        return self._held(began)

    def _read(self, timeout: float) -> dict[str, Any]:
        lease = self._leases.get_namespaced_custom_object(
            *LEASES, self.namespace, "leases", self.name, _request_timeout=timeout
        )
        return cast(dict[str, Any], lease)

    def _replace(self, body: dict[str, Any], timeout: float) -> None:
        self._leases.replace_namespaced_custom_object(
            *LEASES, self.namespace, "leases", self.name, body, _request_timeout=timeout
        )

    def _body(
        self,
        *,
        holder: str,
        acquired: str,
        renewed: str,
        transitions: int,
        version: str | None = None,
        duration: float | None = None,
    ) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if version is not None:
            metadata["resourceVersion"] = version
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": {
                "holderIdentity": holder,
                "leaseDurationSeconds": max(1, round(duration or self.timing.lease_duration)),
                "acquireTime": acquired,
                "renewTime": renewed,
                "leaseTransitions": transitions,
            },
        }

    def _set_leader(self, leading: bool) -> None:
        if leading != self.is_leader:
            log.info(
                "leadership changed",
                leading=leading,
                lease=f"{self.namespace}/{self.name}",
                identity=self.identity,
                holder=self.holder,
            )
        self.is_leader = leading

    def _attempt(self) -> bool:
        try:
            return self.try_acquire_or_renew()
        except Exception as exc:  # the apiserver is down or slow: try again later
            log.warning("lease request failed", error=str(exc)[:200])
            return False

    # -- loops -----------------------------------------------------------

    def acquire(self) -> bool:
        """Block until this process holds the Lease (True) or `stop()` is called (False)."""
        while not self._stop.is_set():
            if self._attempt():
                return True
            self._stop.wait(self.timing.retry_period)
        return False

    def start_renewing(self, on_lost: Callable[[], None]) -> None:
        """Renew in a daemon thread; call `on_lost` once if leadership cannot be kept.

        A second thread watches the renew deadline on its own: a renewal stuck
        in a slow request must not keep the leader acting past it.
        """
        lost = threading.Lock()

        def lose() -> None:
            if lost.acquire(blocking=False):
                self._set_leader(False)
                on_lost()

        timing = self.timing
        # Stop a little before a standby may take the lease: the slack covers this
        # thread's own polling and the time to exit.
        slack = min(1.0, (timing.lease_duration - timing.renew_deadline) / 2)

        def overdue() -> bool:
            now = self._clock()
            return (
                now - self._renewed_at > timing.renew_deadline
                or now - self._renewal_began > timing.lease_duration - slack
            )

        def renew() -> None:
            # Attempts start every retry_period, as on client-go's ticker: one that
            # timed out is followed at once, not a period later, so a single hung
            # request does not push the next renewal past the deadline.
            began = self._clock()
            while not self._stop.wait(max(0.0, began + timing.retry_period - self._clock())):
                began = self._clock()
                renewed = self._attempt()
                if renewed:
                    continue
                if self.holder not in (None, self.identity) or overdue():
                    lose()
                    return

        def watch_deadline() -> None:
            while not self._stop.wait(min(0.5, self.timing.retry_period / 2)):
                if overdue():
                    lose()
                    return

        self._renewer = threading.Thread(target=renew, name="lease-renewer", daemon=True)
        self._renewer.start()
        threading.Thread(target=watch_deadline, name="lease-deadline", daemon=True).start()

    def stop(self) -> None:
        """End the acquire or renew loop (not the leadership: see `release`)."""
        self._stop.set()
        if self._renewer is not None and self._renewer is not threading.current_thread():
            self._renewer.join(timeout=self.timing.request_timeout + 1)

    def release(self) -> None:
        """Give the Lease up on a clean shutdown, so the standby need not wait for it to expire."""
        self.stop()
        if not self.is_leader:
            return
        try:
            timeout = self.timing.request_timeout
            lease = self._read(timeout)
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") != self.identity:
                return
            now = _micro_time(datetime.now(UTC))
            body = self._body(
                holder="",
                acquired=now,
                renewed=now,
                transitions=int(spec.get("leaseTransitions") or 0),
                version=lease["metadata"]["resourceVersion"],
                duration=1,
            )
            self._replace(body, timeout)
            log.info("lease released", lease=f"{self.namespace}/{self.name}")
        except Exception as exc:  # it simply expires instead
            log.warning("could not release the lease", error=str(exc)[:200])
        finally:
            self._set_leader(False)
