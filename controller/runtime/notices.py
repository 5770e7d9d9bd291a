"""What a notification says: one engine Event, as Slack JSON or as the controller's own JSON.

Notifications are derived from the Events the engine already records, so a
notification and `kubectl describe` never disagree, and the engine stays
unaware of chat tools. Pure: building a payload needs no I/O.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from controller.api.notifications import NotificationKind
from controller.api.status import CanaryReleaseStatus
from controller.engine.actions import RecordEvent

PAYLOAD_VERSION = 1
_KINDS: dict[str, NotificationKind] = {
    "ReleaseStarted": "started",
    "StepAdvanced": "step",
    "Promoting": "promotion",
    "Promoted": "promotion",
    "RollingBack": "rollback",
    "RolledBack": "rollback",
    "Aborted": "rollback",
    "RollbackStalled": "rollback",
    "ReleaseBlocked": "gate",
    "ReleaseWaiting": "gate",
    "PromotionWaiting": "gate",
    "Frozen": "gate",
    "HookFailed": "gate",
}
_SLACK = {
    "started": (":rocket:", "#439fe0"),
    "step": (":arrow_forward:", "#439fe0"),
    "promotion": (":white_check_mark:", "#2eb886"),
    "rollback": (":rotating_light:", "#d50200"),
    "gate": (":no_entry:", "#daa038"),
    "warning": (":warning:", "#daa038"),
}


def kind_of(event: RecordEvent) -> NotificationKind | None:
    """Which milestone an Event is, or None for the ones nobody is paged about."""
    if event.reason in _KINDS:
        return _KINDS[event.reason]
    if event.reason == "Superseded" and event.type == "Warning":
        return "rollback"  # the tag was set back to stable during a canary
    if event.reason.startswith("Gate") and event.reason != "GatesPassed":
        return "gate"
    if event.type == "Warning":
        return "warning"
    return None


@dataclass(frozen=True)
class Notice:
    """One milestone of one release, with the facts a reader needs without opening a shell."""

    kind: NotificationKind
    reason: str
    type: str
    message: str
    time: datetime
    namespace: str
    name: str
    phase: str
    stable_tag: str | None
    canary_tag: str | None
    weight: int
    step: int | None
    steps: int | None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)


def notice_for(
    release: dict[str, Any],
    status: CanaryReleaseStatus,
    event: RecordEvent,
    kind: NotificationKind,
    now: datetime,
    steps: int | None,
) -> Notice:
    meta = release.get("metadata") or {}
    index = status.current_step_index
    return Notice(
        kind=kind,
        reason=event.reason,
        type=event.type,
        message=event.message,
        time=now,
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        phase=status.phase,
        stable_tag=status.stable_tag,
        canary_tag=status.canary_tag,
        weight=status.canary_weight,
        step=None if index is None else index + 1,
        steps=steps,
    )


def json_payload(notice: Notice) -> dict[str, Any]:
    """The generic webhook body; `id` lets a receiver drop a retried duplicate."""
    data = asdict(notice)
    return {
        "version": PAYLOAD_VERSION,
        "id": notice.id,
        "kind": notice.kind,
        "reason": notice.reason,
        "type": notice.type,
        "message": notice.message,
        "time": notice.time.isoformat(),
        "release": {"namespace": notice.namespace, "name": notice.name},
        "phase": notice.phase,
        "stableTag": data["stable_tag"],
        "canaryTag": data["canary_tag"],
        "weight": notice.weight,
        "step": notice.step,
        "steps": notice.steps,
    }


def headline(notice: Notice) -> str:
    release = f"{notice.namespace}/{notice.name}"
    tag = notice.canary_tag or notice.stable_tag or "?"
    return {
        "started": f"{release}: canary of {tag} started",
        "step": f"{release}: {tag} at step {notice.step}/{notice.steps}, {notice.weight}%",
        "promotion": f"{release}: {notice.reason.lower()} {tag}",
        "rollback": f"{release}: {tag} rolled back",
        "gate": f"{release}: held by a gate ({notice.reason})",
        "warning": f"{release}: {notice.reason}",
    }[notice.kind]


def slack_payload(notice: Notice) -> dict[str, Any]:
    """Slack's incoming-webhook JSON: a text line for notifications, an attachment for detail."""
    emoji, colour = _SLACK[notice.kind]
    fields = [
        {"title": "phase", "value": notice.phase, "short": True},
        {"title": "stable", "value": notice.stable_tag or "-", "short": True},
    ]
    if notice.canary_tag:
        fields.append({"title": "canary", "value": notice.canary_tag, "short": True})
        fields.append({"title": "weight", "value": f"{notice.weight}%", "short": True})
    return {
        "text": f"{emoji} {headline(notice)}",
        "attachments": [
            {
                "color": colour,
                "title": notice.reason,
                "text": notice.message,
                "fields": fields,
                "footer": "canary-controller",
                "ts": int(notice.time.timestamp()),
            }
        ],
    }
