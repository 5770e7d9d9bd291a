"""Events and notifications that survive a crash between the status write and sending them.

A transition's Event (`RolledBack`, `Promoted`, ...) is decided once, by the
pass that makes the transition: the next pass starts from the new status and
has no reason to say it again. Sent after the status write, it was lost for
good when the process died in between, when the write's answer was lost (the
retry finds the new status already there), or when creating the Event failed;
and with it the page to on-call.

So the Events ride in the status they were decided with (`pendingEvents`), in
the same write. Every pass sends those this process has not sent yet, and a
later write drops them once the Event is recorded and every receiver of the
notification was handled by the notifier: sent to, or given up on (a
receiver that keeps failing is waited for about `max_defer_s`). A
crash before that sends them again after the restart: at least once. The
Event is named after the entry's id, so sending it again records nothing new;
a notification carries the id, so a receiver can drop the repeat. An
Event the apiserver keeps refusing is given up after `ATTEMPTS`, so the
outbox never fills with it.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import structlog

from controller.adapters.ports import Cluster
from controller.api.spec import CanaryReleaseSpec
from controller.api.status import MAX_PENDING_EVENTS, CanaryReleaseStatus, PendingEvent
from controller.engine.actions import RecordEvent
from controller.runtime.notifying import notify

log = structlog.get_logger("controller.outbox")
ATTEMPTS = 3
_REMEMBERED = 10_000


@dataclass
class _Sending:
    """One entry's progress in this process."""

    attempts: int = 0
    recorded: bool = False
    notified: bool = False  # set from the notifier's thread once every receiver is handled

    @property
    def event_settled(self) -> bool:
        """Recorded, or refused too often to try again."""
        return self.recorded or self.attempts >= ATTEMPTS

    @property
    def done(self) -> bool:
        return self.event_settled and self.notified


#: (release uid, entry id) -> its progress; what is not here was not sent by this process.
_sending: OrderedDict[tuple[str, str], _Sending] = OrderedDict()
_lock = threading.Lock()  # workers deliver for different releases at once


def _key(release: dict[str, Any], pending: PendingEvent) -> tuple[str, str]:
    meta = release.get("metadata") or {}
    return (str(meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}"), pending.id)


def _done(key: tuple[str, str]) -> bool:
    sending = _sending.get(key)
    return sending is not None and sending.done


def retrying(release: dict[str, Any], status: CanaryReleaseStatus) -> bool:
    """An entry to record again, or one done and to drop: worth another pass soon.

    Dropping a done entry at once keeps a restart (a leader handover) from
    sending it twice. One that waits only for the notifier is not worth it: a
    slow receiver would have its release reconciled every second, and the next
    ordinary pass drops it.
    """
    for pending in status.pending_events:
        sending = _sending.get(_key(release, pending))
        if sending is None or not sending.event_settled or sending.done:
            return True
    return False


def stage(
    release: dict[str, Any], status: CanaryReleaseStatus, events: Iterable[RecordEvent]
) -> CanaryReleaseStatus:
    """`status` with this pass's Events added to its outbox, and those already sent taken off."""
    kept = [p for p in status.pending_events if not _done(_key(release, p))]
    added = [
        PendingEvent(
            id=uuid.uuid4().hex, type=e.type, reason=e.reason[:128], message=e.message[:1024]
        )
        for e in events
    ]
    pending = [*kept, *added]
    if len(pending) > MAX_PENDING_EVENTS:
        dropped = pending[:-MAX_PENDING_EVENTS]
        log.warning("outbox full: oldest Events dropped", reasons=[p.reason for p in dropped])
        pending = pending[-MAX_PENDING_EVENTS:]
    if pending == status.pending_events:
        return status
    return status.model_copy(update={"pending_events": pending})


def deliver(
    cluster: Cluster,
    release: dict[str, Any],
    spec: CanaryReleaseSpec | None,
    status: CanaryReleaseStatus,
) -> None:
    """Send what this process has not sent of the (written) outbox; never raises.

    An entry is done once its Event is recorded (or refused `ATTEMPTS` times)
    and every receiver of its notification was sent to or given up on; until
    then it stays in status, so a restart sends it again.
    """
    for pending in status.pending_events:
        key = _key(release, pending)
        event = RecordEvent(pending.type, pending.reason, pending.message)
        with _lock:
            sending = _sending.get(key)
            fresh = sending is None
            if sending is None:
                sending = _sending[key] = _Sending()
            _sending.move_to_end(key)
            while len(_sending) > _REMEMBERED:
                _sending.popitem(last=False)
        if fresh:

            def notified(sending: _Sending = sending) -> None:
                sending.notified = True

            notice_id = f"{key[0]}/{pending.id}"  # the same after a restart: receivers dedupe
            notify(release, spec, status, event, notice_id=notice_id, on_handled=notified)
        if sending.event_settled:
            continue
        sending.attempts += 1
        try:
            cluster.record_event(release, event, key=pending.id)
        except Exception as exc:  # an Event must not stop the actions that follow
            log.warning(
                "could not record an Event",
                reason=pending.reason,
                attempt=sending.attempts,
                error=str(exc),
            )
            continue
        sending.recorded = True
