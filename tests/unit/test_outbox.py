"""Transition Events and their notifications: at least once, even across a crash.

The in-memory cluster of test_reconcile_interrupts stands in for the
apiserver; what is tested is the order of writes and sends in the runtime,
and what a restarted process (an empty memory) does with the status it finds.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from controller.adapters.kubernetes import COMMAND_ANNOTATION
from controller.api.status import CanaryReleaseStatus
from controller.engine.actions import RecordEvent
from controller.runtime import outbox
from controller.runtime.reconcile import reconcile
from tests.unit.test_reconcile_interrupts import NOW, Cluster, Source


class Flaky(Cluster):
    """Creating an Event fails `failures` times (a 403, a timeout, a kill mid-send)."""

    def __init__(self, failures: int = 0) -> None:
        super().__init__()
        self.failures = failures
        self.events: list[str] = []

    def record_event(
        self, release: dict[str, Any], event: RecordEvent, key: str | None = None
    ) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError("apiserver: connection reset")
        self.events.append(event.reason)

    def write_status(self, namespace: str, name: str, version: str, status: Any) -> None:
        super().write_status(namespace, name, version, status)
        assert self.release is not None
        stored = copy.deepcopy(self.release)
        stored["status"] = status.model_dump(by_alias=True, mode="json", exclude_none=True)
        self.release = stored  # what the watch would hand the next pass


class Notifier:
    """The notifier's side: what was queued, and whether its receivers were handled yet."""

    def __init__(self, answer_at_once: bool = True) -> None:
        self.sent: list[tuple[str, str | None]] = []
        self.waiting: list[Callable[[], None]] = []
        self.answer_at_once = answer_at_once

    def __call__(
        self,
        _release: Any,
        _spec: Any,
        _status: Any,
        event: RecordEvent,
        notice_id: str | None = None,
        on_handled: Callable[[], None] | None = None,
    ) -> None:
        self.sent.append((event.reason, notice_id))
        assert on_handled is not None
        if self.answer_at_once:
            on_handled()
        else:
            self.waiting.append(on_handled)


def _new_process(monkeypatch: pytest.MonkeyPatch, notifier: Notifier) -> Notifier:
    monkeypatch.setattr(outbox, "_sending", type(outbox._sending)())
    monkeypatch.setattr(outbox, "notify", notifier)
    return notifier


@pytest.fixture(autouse=True)
def _fresh_process(monkeypatch: pytest.MonkeyPatch) -> Notifier:
    return _new_process(monkeypatch, Notifier())


def _abort(cluster: Cluster) -> None:
    assert cluster.release is not None
    cluster.release["metadata"]["annotations"] = {COMMAND_ANNOTATION: "abort"}
    cluster.release["metadata"]["uid"] = "uid-1"


def _pass(cluster: Cluster) -> CanaryReleaseStatus:
    outcome = reconcile(cluster, lambda _: Source(), "shop", "payments", NOW)  # type: ignore[arg-type]
    assert outcome is not None and outcome.status is not None
    return outcome.status


def test_an_event_that_could_not_be_sent_is_sent_by_the_next_pass(
    _fresh_process: Notifier,
) -> None:
    cluster = Flaky(failures=1)
    _abort(cluster)
    status = _pass(cluster)
    assert status.phase == "RolledBack" and cluster.events == []
    (pending,) = cluster.written[-1].pending_events  # written with the rollback itself
    assert pending.reason == "Aborted"
    assert cluster.applied  # the rollback's actions still ran
    _pass(cluster)
    assert cluster.events == ["Aborted"]
    # one notification, queued the first time, with an id a receiver can dedupe on
    assert _fresh_process.sent == [("Aborted", f"uid-1/{pending.id}")]
    _pass(cluster)
    assert cluster.written[-1].pending_events == []  # sent, then dropped from status
    assert cluster.events == ["Aborted"]


def test_a_restart_between_the_status_write_and_the_event_sends_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cluster = Flaky()
    _abort(cluster)
    monkeypatch.setattr(outbox, "deliver", lambda *a, **k: None)  # killed right after the write
    _pass(cluster)
    assert cluster.events == [] and cluster.written[-1].pending_events
    monkeypatch.undo()
    restarted = _new_process(monkeypatch, Notifier())  # a new process: nothing in memory
    _pass(cluster)
    assert cluster.events == ["Aborted"] and [r for r, _ in restarted.sent] == ["Aborted"]


def test_an_entry_stays_until_its_notification_was_handled(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kill while the receiver is still being tried would lose the page otherwise."""
    cluster = Flaky()
    _abort(cluster)
    slow = _new_process(monkeypatch, Notifier(answer_at_once=False))
    _pass(cluster)
    _pass(cluster)
    assert cluster.events == ["Aborted"] and len(slow.sent) == 1  # sent once, not per pass
    assert cluster.written[-1].pending_events  # still there: a restart would send it again
    slow.waiting.pop()()  # the receiver answered (or the notifier gave up on it)
    _pass(cluster)
    assert cluster.written[-1].pending_events == []


def test_an_event_the_apiserver_keeps_refusing_is_given_up() -> None:
    cluster = Flaky(failures=100)
    _abort(cluster)
    for _ in range(outbox.ATTEMPTS + 1):
        _pass(cluster)
    assert cluster.events == [] and cluster.written[-1].pending_events == []
