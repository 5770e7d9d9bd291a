"""The notification dispatcher against real HTTP receivers and real Secrets."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from controller.adapters.secrets import SecretReader
from controller.api.spec import CanaryReleaseSpec
from controller.api.status import CanaryReleaseStatus
from controller.engine.actions import RecordEvent
from controller.runtime.notices import notice_for
from controller.runtime.notifying import Delivery, Dispatcher, SendPolicy, Sink
from devenv.receiver import Receiver
from tests.e2e.helpers import wait_for

RELEASE = {"metadata": {"namespace": "shop", "name": "payments"}}
STATUS = CanaryReleaseStatus(phase="RolledBack", stable_tag="v1", canary_tag="v2")
ROLLED_BACK = RecordEvent("Warning", "RolledBack", "MetricBreach: metric error-rate: 0.4 > 0.05")
STARTED = RecordEvent("Normal", "ReleaseStarted", "canary of v2 started (stable: v1)")
FAST = SendPolicy(timeout_s=1.0, attempts=3, max_backoff_s=0.2, cooldown_s=300, queue_size=16)


def _count(result: str, type_: str = "webhook") -> float:
    value = REGISTRY.get_sample_value(
        "canary_notifications_total", {"type": type_, "result": result}
    )
    return value or 0.0


def _counter(result: str, type_: str = "webhook") -> Callable[[], float]:
    before = _count(result, type_)
    return lambda: _count(result, type_) - before


def _rollback_then_start(hook: Receiver, policy: SendPolicy) -> tuple[Dispatcher, list[str]]:
    """Both notices published to `hook`; the list fills as each one is handled."""
    handled: list[str] = []
    dispatcher = Dispatcher(None, sinks=[Sink("webhook", "hook", url=hook.url)], policy=policy)
    for event in (ROLLED_BACK, STARTED):
        on_handled = lambda reason=event.reason: handled.append(reason)  # noqa: E731
        dispatcher.publish(RELEASE, None, STATUS, event, on_handled=on_handled)
    return dispatcher, handled


def test_slack_and_json_receivers_get_their_payloads() -> None:
    with Receiver() as slack, Receiver() as hook:
        dispatcher = Dispatcher(
            None,
            sinks=[Sink("slack", "slack", url=slack.url), Sink("webhook", "hook", url=hook.url)],
            policy=FAST,
        )
        assert dispatcher.publish(RELEASE, None, STATUS, ROLLED_BACK) == 2
        assert dispatcher.drain(30)
        dispatcher.stop()
    [to_slack] = slack.requests
    assert to_slack.body["text"] == ":rotating_light: shop/payments: v2 rolled back"
    assert "0.4 > 0.05" in to_slack.body["attachments"][0]["text"]
    [to_hook] = hook.requests
    assert to_hook.headers["X-Canary-Event"] == "rollback"
    body = to_hook.body
    assert (body["kind"], body["reason"], body["phase"]) == ("rollback", "RolledBack", "RolledBack")
    assert body["release"] == {"namespace": "shop", "name": "payments"}
    assert to_hook.headers["X-Canary-Delivery"] == body["id"]


def test_transient_failures_are_retried_with_backoff() -> None:
    with Receiver("fail-then-ok", failures=2) as hook:
        sent = _counter("sent")
        dispatcher = Dispatcher(None, sinks=[Sink("webhook", "hook", url=hook.url)], policy=FAST)
        dispatcher.publish(RELEASE, None, STATUS, ROLLED_BACK)
        assert dispatcher.drain(30)
        dispatcher.stop()
    assert len(hook.requests) == 3  # two 500s, then accepted
    assert len({r.body["id"] for r in hook.requests}) == 1  # the same notice each time
    assert sent() == 1


def test_a_dead_receiver_gets_bounded_retries_then_a_cool_down() -> None:
    with Receiver("fail") as hook:
        failed, deferred = _counter("failed"), _counter("deferred")
        dispatcher, handled = _rollback_then_start(hook, FAST)
        assert dispatcher.drain(30)
        dispatcher.stop()
    assert len(hook.requests) == FAST.attempts  # the second notice was not even tried
    assert failed() == 1 and deferred() == 2  # both wait for the cool-down to end
    assert handled == []  # so their outbox entries stay in status


def test_notices_wait_out_a_receivers_cool_down_and_are_sent_in_order() -> None:
    """The receiver is down for its first three requests (one notice's every retry):
    the rollback page, and the notice after it, reach it once the cool-down ends."""
    policy = replace(FAST, cooldown_s=1.0)
    with Receiver("fail-then-ok", failures=FAST.attempts) as hook:
        dispatcher, handled = _rollback_then_start(hook, policy)
        wait_for(lambda: len(handled) == 2, 30, "both notices to be handled")
        dispatcher.stop()
    reasons = [b["reason"] for b in hook.bodies()]
    assert reasons == ["RolledBack"] * (FAST.attempts + 1) + ["ReleaseStarted"]
    assert handled == ["RolledBack", "ReleaseStarted"]


def test_a_notice_arriving_as_the_cool_down_ends_goes_after_those_that_waited() -> None:
    """The worker takes a fresh notice off the queue before it sends the waiting ones
    (driven by hand here, on a clock the test moves)."""
    now = [0.0]
    with Receiver("fail-then-ok", failures=FAST.attempts) as hook:
        sink = Sink("webhook", "hook", url=hook.url)
        dispatcher = Dispatcher(None, sinks=[sink], policy=FAST, clock=lambda: now[0])
        first, second = (
            Delivery(notice_for(RELEASE, STATUS, e, "rollback", datetime.now(UTC), None), sink)
            for e in (ROLLED_BACK, STARTED)
        )
        assert not dispatcher._deliver(first)  # every retry failed: it waits
        now[0] += FAST.cooldown_s + 1
        assert not dispatcher._deliver(second)  # the cool-down is over, but the first waits
        dispatcher._send_deferred()
    reasons = [b["reason"] for b in hook.bodies()]
    assert reasons == ["RolledBack"] * (FAST.attempts + 1) + ["ReleaseStarted"]


def test_a_notice_the_receiver_rejects_is_not_retried_and_holds_nothing_up() -> None:
    """A 400 says this payload (or the URL) is wrong for good: no retry, no cool-down."""
    with Receiver("reject-first") as hook:
        failed, deferred = _counter("failed"), _counter("deferred")
        dispatcher, handled = _rollback_then_start(hook, FAST)
        assert dispatcher.drain(30)
        dispatcher.stop()
    assert [b["reason"] for b in hook.bodies()] == ["RolledBack", "ReleaseStarted"]
    assert handled == ["RolledBack", "ReleaseStarted"]
    assert failed() == 1 and deferred() == 0


def test_a_notice_that_waited_too_long_is_given_up() -> None:
    policy = replace(FAST, cooldown_s=0.3, max_defer_s=2.0)
    with Receiver("fail") as hook:
        given_up = _counter("given_up")
        handled: list[str] = []
        dispatcher = Dispatcher(None, sinks=[Sink("webhook", "hook", url=hook.url)], policy=policy)
        dispatcher.publish(
            RELEASE, None, STATUS, ROLLED_BACK, on_handled=lambda: handled.append("x")
        )
        wait_for(lambda: handled, 30, "the notice to be given up")
        dispatcher.stop()
    assert given_up() == 1
    tries = len(hook.requests)  # a round of retries per cool-down, for about two seconds
    assert FAST.attempts * 2 <= tries <= FAST.attempts * 5, tries


def test_a_hanging_receiver_never_blocks_publish_and_overflow_is_dropped() -> None:
    """publish() returns while the receiver holds every request: if it waited on the
    network this test would hang (and fail on the timeout) instead of reaching the asserts."""
    policy = SendPolicy(timeout_s=60, attempts=1, queue_size=2)
    with Receiver("hang") as hook:
        dropped = _counter("dropped")
        dispatcher = Dispatcher(None, sinks=[Sink("webhook", "hook", url=hook.url)], policy=policy)
        queued = [dispatcher.publish(RELEASE, None, STATUS, ROLLED_BACK) for _ in range(6)]
        wait_for(lambda: hook.requests, 30, "the first request to reach the receiver")
        # one in flight (held by the receiver), two queued, the rest dropped
        assert sum(queued) in (2, 3) and dropped() == 6 - sum(queued)
        hook.release.set()
        assert dispatcher.drain(30)
        dispatcher.stop()


def test_events_nobody_is_paged_about_are_not_sent() -> None:
    with Receiver() as hook:
        dispatcher = Dispatcher(
            None,
            sinks=[Sink("webhook", "hook", url=hook.url, kinds=frozenset({"rollback"}))],
            policy=FAST,
        )
        assert dispatcher.publish(RELEASE, None, STATUS, STARTED) == 0
        paused = RecordEvent("Normal", "Paused", "paused by a human")
        assert dispatcher.publish(RELEASE, None, STATUS, paused) == 0
        assert dispatcher.publish(RELEASE, None, STATUS, ROLLED_BACK) == 1
        assert dispatcher.drain(30)
        dispatcher.stop()
    assert [b["reason"] for b in hook.bodies()] == ["RolledBack"]


def test_release_notifiers_read_their_url_from_a_secret(
    k8s: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(k8s)
    spec = _spec_with_notifiers(
        [
            {"name": "team", "type": "slack", "urlSecretRef": {"name": "hooks", "key": "slack"}},
            {"name": "missing", "urlSecretRef": {"name": "no-such-secret"}},
        ]
    )
    release = {"metadata": {"namespace": namespace, "name": "payments"}}
    with Receiver() as slack:
        core.create_namespaced_secret(
            namespace,
            {
                "metadata": {"name": "hooks"},
                "data": {"slack": base64.b64encode(slack.url.encode()).decode()},
            },
        )
        no_url = _counter("no_url")
        dispatcher = Dispatcher(SecretReader(k8s), policy=FAST)
        assert dispatcher.publish(release, spec, STATUS, ROLLED_BACK) == 2
        assert dispatcher.drain(30)
        dispatcher.stop()
    [received] = slack.requests
    assert received.body["text"].startswith(":rotating_light:")
    assert no_url() == 1  # the Secret that does not exist: logged and counted, nothing sent


def _spec_with_notifiers(notifiers: list[dict[str, Any]]) -> CanaryReleaseSpec:
    return CanaryReleaseSpec.model_validate(
        {
            "targetRef": {"name": "payments"},
            "release": {"tag": "v2", "image": "registry.example.com/payments:{tag}"},
            "notifications": notifiers,
        }
    )


def test_a_notice_is_reported_handled_only_after_every_receiver_was_tried() -> None:
    """The outbox keeps a milestone in status until then, so a kill mid-retry resends it."""
    handled: list[str] = []
    with Receiver("fail-then-ok", failures=2) as hook, Receiver() as slack:
        sinks = [Sink("webhook", "hook", url=hook.url), Sink("slack", "slack", url=slack.url)]
        dispatcher = Dispatcher(None, sinks=sinks, policy=FAST)
        dispatcher.publish(
            RELEASE,
            None,
            STATUS,
            ROLLED_BACK,
            notice_id="uid-1/abc",
            on_handled=lambda: handled.append("rollback"),
        )
        dispatcher.publish(  # nobody is paged about this one: handled at once
            RELEASE, None, STATUS, RecordEvent("Normal", "Paused", "paused by a human"),
            on_handled=lambda: handled.append("step"),
        )  # fmt: skip
        assert handled == ["step"]
        wait_for(lambda: handled == ["step", "rollback"], 30, "both receivers to be handled")
        assert len(hook.requests) == 3 and len(slack.requests) == 1  # after the retries
        dispatcher.stop()
    assert {r.body["id"] for r in hook.requests} == {"uid-1/abc"}  # the id the outbox gave


def test_a_receiver_url_never_reaches_the_log() -> None:
    """The URL is the credential (a Slack hook's path is its token): logs name the notifier."""
    token = "T000/B000/XXXXSECRETTOKEN"
    policy = replace(FAST, attempts=1)
    with Receiver(mode="reject") as revoked, capture_logs() as logs:
        for url in (f"{revoked.url}/services/{token}", f"http://127.0.0.1:1/services/{token}"):
            dispatcher = Dispatcher(None, sinks=[Sink("slack", "ops", url=url)], policy=policy)
            dispatcher.publish(RELEASE, None, STATUS, ROLLED_BACK)
            assert dispatcher.drain(30)
            dispatcher.stop()
    said = [entry for entry in logs if entry["event"].startswith("notification")]
    assert {"notification refused", "notification failed"} <= {entry["event"] for entry in said}
    assert not any(token in str(entry) for entry in said), said


def test_a_receiver_trickling_its_answer_holds_the_notifier_no_longer_than_its_timeout() -> None:
    with Receiver(mode="trickle") as slow:
        policy = replace(FAST, timeout_s=0.5, attempts=1)
        dispatcher = Dispatcher(None, sinks=[Sink("webhook", "hook", url=slow.url)], policy=policy)
        sent = _counter("sent")
        dispatcher.publish(RELEASE, None, STATUS, ROLLED_BACK)
        assert dispatcher.drain(5)  # the whole answer would take 20 s
        assert sent() == 1  # only the status matters, and it was 200
        dispatcher.stop()
