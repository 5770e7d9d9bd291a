"""The commands that change a release: each one PATCH on the CanaryRelease.

A command is a value of the `canary.dev/command` annotation with a unique
timestamp, handled once by the engine; `start` and `rollback` also set
`spec.release.tag`. Going through the apiserver means RBAC decides who may
steer a release and the audit log records who did.

The phase checks here only spare the user a round trip: the engine applies
the same rules and says `CommandIgnored` in an Event when a command arrives
in a phase where it does nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from controller.adapters.kubernetes import COMMAND_ANNOTATION
from controller.adapters.releases import Release, ReleaseChanged, ReleaseClient, command_value
from controller.api.status import CanaryReleaseStatus
from controller.engine.context import ACTIVE_PHASES
from controller.engine.quick_rollback import QUICK_ROLLBACK, QUICK_ROLLBACK_RUNS
from controller.engine.stalls import stable_rolling_back

# verb -> the phases in which the engine acts on it (None: the paused flag decides)
ALLOWED: dict[str, tuple[str, ...] | None] = {
    "promote": ACTIVE_PHASES,
    "promote-full": ACTIVE_PHASES,
    "abort": ACTIVE_PHASES,
    "pause": ("Progressing", "Paused"),
    "resume": None,
    # Not Failed: a release is Failed only while its target is missing or its spec
    # invalid, when the controller decides nothing (the command would wait unanswered),
    # and it continues by itself once fixed.
    "retry": ("RolledBack",),
}


class Refused(Exception):
    """The command cannot do anything now; the message says why and what to do instead."""


@dataclass(frozen=True)
class Sent:
    namespace: str
    name: str
    command: str | None
    tag: str | None
    summary: str


def _status(release: Release) -> dict[str, Any]:
    return release.get("status") or {}


def check_command(release: Release, verb: str) -> None:
    status = _status(release)
    phase = status.get("phase", "Idle")
    if verb == "resume":
        if not status.get("pausedAt"):
            raise Refused(f"not paused (phase {phase}); nothing to resume")
        return
    if verb == "pause" and status.get("pausedAt"):
        raise Refused("already paused; `canaryctl resume` continues")
    if verb in ("abort", "pause") and status.get("reason") == QUICK_ROLLBACK:
        raise Refused(f"{verb}: {QUICK_ROLLBACK_RUNS}")
    allowed = ALLOWED[verb]
    if allowed is not None and phase not in allowed:
        hint = {
            "retry": "retry runs a rolled-back tag again",
        }.get(verb, "no release is in progress")
        if phase == "Failed":
            hint = (
                f"the controller acts on nothing until {status.get('reason') or 'the cause'} "
                "is fixed; then the release continues by itself"
            )
        raise Refused(f"{verb} does nothing in phase {phase}: {hint}")
    if verb == "retry":
        tag = ((release.get("spec") or {}).get("release") or {}).get("tag")
        if not tag or tag == status.get("stableTag"):
            raise Refused(f"nothing to retry: {tag or 'no tag'} is what stable runs")
        if _stable_rolling_back(status):
            raise Refused(
                f"stable is still rolling back to {status.get('stableTag')}; retry once it "
                "runs there, so the canary is judged against the build stable runs"
            )


def _stable_rolling_back(status: dict[str, Any]) -> bool:
    """The engine's own rule, on the raw status (one a human edited into shape it cannot
    read is left to the engine, which says `CommandIgnored` if need be)."""
    try:
        return stable_rolling_back(CanaryReleaseStatus.model_validate(status))
    except ValidationError:
        return False


def send(client: ReleaseClient, namespace: str, name: str, verb: str) -> Sent:
    check_command(client.get(namespace, name), verb)
    value = client.send_command(namespace, name, verb)
    return Sent(namespace, name, value, None, f"{verb} sent to {namespace}/{name}")


def start(client: ReleaseClient, namespace: str, name: str, tag: str) -> Sent:
    release = client.get(namespace, name)
    status = _status(release)
    current = ((release.get("spec") or {}).get("release") or {}).get("tag")
    if tag == current and status.get("phase") == "RolledBack":
        raise Refused(f"{tag} was rolled back; `canaryctl retry {name}` runs it again")
    if tag == current:
        raise Refused(f"{tag} is already the release tag (phase {status.get('phase', 'Idle')})")
    client.set_tag(namespace, name, tag, based_on=release["metadata"]["resourceVersion"])
    return Sent(namespace, name, None, tag, f"{namespace}/{name}: release tag {current} -> {tag}")


def rollback_patch(release: Release, value: str) -> tuple[dict[str, Any], str, str]:
    """The patch for `rollback`, the tag that will run, and what it does, from what was read.

    During a canary the stable version still runs, so the command alone rolls
    the canary back. After a promotion, the spec's tag goes back to the
    previous stable tag in the same patch as the command: the engine then puts
    that tag on every replica at once instead of starting a canary of it.
    """
    status = _status(release)
    phase = status.get("phase", "Idle")
    annotations = {"metadata": {"annotations": {COMMAND_ANNOTATION: value}}}
    if phase in ACTIVE_PHASES and status.get("reason") == QUICK_ROLLBACK:
        raise Refused(f"a rollback to {status.get('canaryTag')} is already running")
    if phase in ACTIVE_PHASES:
        stable = status.get("stableTag") or "the stable version"
        what = f"canary {status.get('canaryTag')} rolled back; {stable} keeps running"
        return annotations, str(stable), what
    previous = status.get("previousStableTag")
    if not previous:
        raise Refused(
            "no previous stable tag to roll back to (nothing promoted since the last rollback)"
        )
    patch = {**annotations, "spec": {"release": {"tag": previous}}}
    what = f"rolling back from {status.get('stableTag')} to {previous} on all replicas"
    return patch, str(previous), what


def rollback(client: ReleaseClient, namespace: str, name: str, attempts: int = 3) -> Sent:
    for attempt in range(attempts):
        release = client.get(namespace, name)
        value = command_value("rollback")
        patch, tag, what = rollback_patch(release, value)
        try:
            client.patch(namespace, name, patch, based_on=release["metadata"]["resourceVersion"])
        except ReleaseChanged:
            if attempt + 1 == attempts:
                raise
            continue
        return Sent(namespace, name, value, tag, f"{namespace}/{name}: {what}")
    raise AssertionError("unreachable")


def wait_for_acknowledgement(
    client: ReleaseClient,
    sent: Sent,
    timeout: float,
    interval: float = 0.5,
    warn: Callable[[str], object] | None = None,
) -> tuple[Release, str | None]:
    """Wait until the controller has handled the command; return the release and any refusal.

    The refusal is read from the controller's Events. Reading them needs `list`
    on events, which a user with only the documented rights on canaryreleases
    may lack: the command was sent and handled all the same, so that is a
    caveat (passed to `warn`), not a failure.
    """
    deadline = time.monotonic() + timeout
    while True:
        release = client.get(sent.namespace, sent.name)
        status = _status(release)
        handled = sent.command is None or status.get("lastCommand") == sent.command
        if handled and (sent.tag is None or status.get("observedGeneration", 0) >= _gen(release)):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"the controller did not handle the change within {timeout:.0f}s; "
                "is it running and watching this namespace?"
            )
        time.sleep(interval)
    if sent.command is None:
        return release, None
    try:
        events = client.events(sent.namespace, sent.name)
    except ApiException as exc:
        if exc.status != 403:
            raise
        if warn is not None:
            warn(
                "warning: handled, but whether the controller ignored it is in its Events, "
                "which you may not list (RBAC: list on events)"
            )
        return release, None
    for event in reversed(events):
        if event.reason == "CommandIgnored" and sent.command in (event.message or ""):
            return release, event.message
    return release, None


def _gen(release: Release) -> int:
    return int(release["metadata"].get("generation") or 0)
