"""Notifications from the real controller process to local receivers standing in for Slack."""

from __future__ import annotations

import base64
import time
from datetime import datetime
from typing import Any

from kubernetes import client

from controller.adapters.kubernetes import COMMAND_ANNOTATION
from devenv.receiver import Receiver
from tests.e2e.conftest import ControllerFactory
from tests.e2e.helpers import Releases, release, wait_for


def _secret(k8s: client.ApiClient, namespace: str, urls: dict[str, str]) -> None:
    data = {key: base64.b64encode(url.encode()).decode() for key, url in urls.items()}
    client.CoreV1Api(k8s).create_namespaced_secret(
        namespace, {"metadata": {"name": "notify"}, "data": data}
    )


def _with_notifiers(name: str, tag: str, notifiers: list[dict[str, Any]]) -> dict[str, Any]:
    body = release(name, tag, None)
    body["spec"]["notifications"] = notifiers
    return body


def _reasons(receiver: Receiver) -> list[str]:
    return [
        b["reason"] if "reason" in b else b["attachments"][0]["title"] for b in receiver.bodies()
    ]


def test_a_release_notifies_slack_and_a_json_receiver(
    k8s: client.ApiClient, releases: Releases, namespace: str, controller: ControllerFactory
) -> None:
    with Receiver() as slack, Receiver() as hook:
        _secret(k8s, namespace, {"slack": slack.url, "hook": hook.url})
        notifiers = [
            {"name": "team", "type": "slack", "urlSecretRef": {"name": "notify", "key": "slack"}},
            {"name": "audit", "urlSecretRef": {"name": "notify", "key": "hook"}},
        ]
        releases.create_deployment("payments", 4, "registry.example.com/payments:v1")
        releases.create(_with_notifiers("payments", "v1", notifiers))
        controller(namespace)
        releases.wait_phase("payments", "Idle", timeout=30)
        releases.set_tag("payments", "v2")
        releases.wait_phase("payments", "Succeeded", timeout=90)
        milestones = ["ReleaseStarted", "StepAdvanced", "StepAdvanced", "Promoting", "Promoted"]
        wait_for(lambda: _reasons(hook) == milestones, 30, "the milestones, in order")
        wait_for(lambda: _reasons(slack) == milestones, 30, "the same on Slack")

        started = hook.bodies()[0]
        assert started["kind"] == "started" and started["canaryTag"] == "v2"
        assert started["release"] == {"namespace": namespace, "name": "payments"}
        assert started["stableTag"] == "v1" and started["steps"] == 3
        assert [b["kind"] for b in hook.bodies()] == [
            "started",
            "step",
            "step",
            "promotion",
            "promotion",
        ]
        assert slack.bodies()[-1]["text"] == f":white_check_mark: {namespace}/payments: promoted v2"

        # a rollback: start v3, then abort it
        releases.set_tag("payments", "v3")
        releases.wait_phase("payments", "Paused", timeout=60)
        releases.patch("payments", {"metadata": {"annotations": {COMMAND_ANNOTATION: "abort e2e"}}})
        releases.wait_phase("payments", "RolledBack", timeout=30)

        def aborted() -> dict[str, Any] | None:
            return next((b for b in hook.bodies() if b["reason"] == "Aborted"), None)

        body = wait_for(aborted, 30, "the rollback notification")
        assert body["kind"] == "rollback" and "aborted by a human (abort e2e)" in body["message"]
        assert body["phase"] == "RolledBack" and body["canaryTag"] == "v3"


def test_failing_and_hanging_receivers_never_hold_up_the_rollout(
    k8s: client.ApiClient, releases: Releases, namespace: str, controller: ControllerFactory
) -> None:
    """Two releases side by side, one notifying receivers that fail or hang: both finish.

    The durations are printed (run with -s) rather than compared: the machine is
    shared, so a timing assertion would test the machine, not the controller.
    """
    with Receiver("hang") as hanging, Receiver("fail") as failing:
        _secret(k8s, namespace, {"hang": hanging.url, "fail": failing.url})
        notifiers = [
            {"name": "stuck", "urlSecretRef": {"name": "notify", "key": "hang"}},
            {"name": "broken", "type": "slack", "urlSecretRef": {"name": "notify", "key": "fail"}},
        ]
        steps = [{"setWeight": 25}, {"pause": {"duration": "5s"}}, {"setWeight": 100}]
        for name, body in (
            ("payments", _with_notifiers("payments", "v1", notifiers)),
            ("orders", release("orders", "v1", None)),
        ):
            body["spec"]["steps"] = steps
            releases.create_deployment(name, 4, f"registry.example.com/{name}:v1")
            releases.create(body)
        controller(namespace)
        for name in ("payments", "orders"):
            releases.wait_phase(name, "Idle", timeout=30)
        began = time.monotonic()
        for name in ("payments", "orders"):
            releases.set_tag(name, "v2")
        took = {}
        for name in ("payments", "orders"):
            releases.wait_phase(name, "Succeeded", timeout=120)
            took[name] = time.monotonic() - began
        wait_for(lambda: hanging.requests and failing.requests, 30, "both receivers tried")
        durations = {
            name: _release_seconds(releases.status(name)) for name in ("payments", "orders")
        }
        print(f"\nwall time to Succeeded: {took}; by status history: {durations}")
        assert releases.status("payments")["stableTag"] == "v2"


def _release_seconds(status: dict[str, Any]) -> float:
    last = status["history"][-1]
    started = datetime.fromisoformat(last["startedAt"])
    return (datetime.fromisoformat(last["finishedAt"]) - started).total_seconds()
