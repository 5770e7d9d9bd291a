"""Sending notifications without ever holding up a rollout.

The reconcile only enqueues (`publish` never blocks and never raises): a
bounded queue feeds one worker thread, which resolves the webhook URL from
its Secret, posts, and retries with bounded exponential backoff. When the
queue is full the notice is dropped, logged and counted. A destination that
failed every retry cools down: its notices (the failed one too) wait aside,
so one dead receiver cannot hold up the healthy ones, and are sent in order
once the cool-down ends. A receiver down for a few minutes still gets the
page; one down for longer than `max_defer_s` (or with a full backlog) loses
the notices that waited that long, logged and counted as given up. One
worker keeps each release's notices in order.

Destinations come from `spec.notifications` (URLs in Secrets of the
release's namespace) and, controller-wide, from CANARY_NOTIFY_SLACK_URL and
CANARY_NOTIFY_WEBHOOK_URL (the chart fills them from a Secret). Nothing is
sent unless the runtime called `enable()`: tools that reuse the reconcile
(replay, tests) stay silent.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import requests
import structlog
from prometheus_client import Counter, Gauge
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from controller.api.notifications import DEFAULT_KINDS, NOTIFICATION_KINDS, NotificationKind
from controller.api.spec import CanaryReleaseSpec
from controller.api.status import CanaryReleaseStatus
from controller.engine.actions import RecordEvent
from controller.runtime.notices import Notice, json_payload, kind_of, notice_for, slack_payload

log = structlog.get_logger("controller.notifications")

SENT = Counter(
    "canary_notifications_total",
    "Notifications by destination type and result "
    "(sent, failed, deferred, given_up, dropped, no_url)",
    ["type", "result"],
)
QUEUED = Gauge("canary_notifications_queued", "Notifications waiting to be sent")

SinkType = Literal["slack", "webhook"]


class SecretSource(Protocol):
    def read(self, namespace: str, name: str, key: str) -> str: ...


@dataclass(frozen=True)
class Sink:
    """One destination: a URL given outright (controller-wide) or a Secret key (per release)."""

    type: SinkType
    label: str
    url: str | None = None
    secret: tuple[str, str, str] | None = None  # namespace, name, key
    kinds: frozenset[NotificationKind] = DEFAULT_KINDS


@dataclass(frozen=True)
class Delivery:
    notice: Notice
    sink: Sink
    handled: Countdown | None = None
    since: float | None = None
    """When it was first tried (the dispatcher's clock); None until then."""


class Countdown:
    """Calls `then` once all of a notice's deliveries are handled (sent or given up)."""

    def __init__(self, count: int, then: Callable[[], None]) -> None:
        self._left, self._then, self._lock = count, then, threading.Lock()
        if count <= 0:
            then()

    def one_done(self) -> None:
        with self._lock:
            self._left -= 1
            finished = self._left == 0
        if finished:
            self._then()


class _Retryable(Exception):
    """A 429 or 5xx: the receiver may accept it on another try."""


class _Refused(Exception):
    """Any other 4xx; its text must not carry the URL, which is a secret."""


_TRANSIENT = (requests.ConnectionError, requests.Timeout, _Retryable)


@dataclass(frozen=True)
class SendPolicy:
    timeout_s: float = 5.0
    attempts: int = 3
    max_backoff_s: float = 4.0
    cooldown_s: float = 60.0
    queue_size: int = 256
    max_defer_s: float = 900.0

    @classmethod
    def from_environment(cls) -> SendPolicy:
        env = os.environ.get
        return cls(
            timeout_s=float(env("CANARY_NOTIFY_TIMEOUT") or 5.0),
            attempts=int(env("CANARY_NOTIFY_ATTEMPTS") or 3),
            max_backoff_s=float(env("CANARY_NOTIFY_MAX_BACKOFF") or 4.0),
            cooldown_s=float(env("CANARY_NOTIFY_COOLDOWN") or 60.0),
            queue_size=int(env("CANARY_NOTIFY_QUEUE") or 256),
            max_defer_s=float(env("CANARY_NOTIFY_MAX_DEFER") or 900.0),
        )


def controller_wide_sinks() -> list[Sink]:
    env = os.environ.get
    listed = [k.strip() for k in (env("CANARY_NOTIFY_EVENTS") or "").split(",") if k.strip()]
    kinds = frozenset(k for k in NOTIFICATION_KINDS if k in listed) if listed else DEFAULT_KINDS
    sinks = []
    if env("CANARY_NOTIFY_SLACK_URL"):
        sinks.append(
            Sink("slack", "controller/slack", url=env("CANARY_NOTIFY_SLACK_URL"), kinds=kinds)
        )
    if env("CANARY_NOTIFY_WEBHOOK_URL"):
        sinks.append(
            Sink("webhook", "controller/webhook", url=env("CANARY_NOTIFY_WEBHOOK_URL"), kinds=kinds)
        )
    return sinks


def release_sinks(namespace: str, spec: CanaryReleaseSpec | None) -> list[Sink]:
    if spec is None:
        return []
    return [
        Sink(
            n.type,
            f"{namespace}/{n.name}",
            secret=(namespace, n.url_secret_ref.name, n.url_secret_ref.key),
            kinds=frozenset(n.events) if n.events is not None else DEFAULT_KINDS,
        )
        for n in spec.notifications
    ]


class Dispatcher:
    def __init__(
        self,
        secrets: SecretSource | None,
        *,
        sinks: list[Sink] | None = None,
        policy: SendPolicy | None = None,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._secrets = secrets
        self._global = list(sinks or [])
        self._policy = policy or SendPolicy()
        self._queue: queue.Queue[Delivery | None] = queue.Queue(self._policy.queue_size)
        self._session = session or requests.Session()
        self._session.headers["User-Agent"] = "canary-controller"
        self._clock = clock
        self._down_until: dict[str, float] = {}
        self._deferred: dict[str, deque[Delivery]] = {}  # by destination; the worker's own
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- the reconcile's side: never blocks -------------------------------------------

    def publish(
        self,
        release: dict[str, Any],
        spec: CanaryReleaseSpec | None,
        status: CanaryReleaseStatus,
        event: RecordEvent,
        now: datetime | None = None,
        notice_id: str | None = None,
        on_handled: Callable[[], None] | None = None,
    ) -> int:
        """Queue the event for every destination that wants it; return how many were queued.

        `on_handled` is called (from the notifier's thread, or at once) when every
        destination has been sent to, or given up on.
        """
        kind = kind_of(event)
        namespace = str((release.get("metadata") or {}).get("namespace", ""))
        sinks = [s for s in [*self._global, *release_sinks(namespace, spec)] if kind in s.kinds]
        handled = Countdown(len(sinks), on_handled or (lambda: None))  # no kind: no sinks
        if kind is None or not sinks:
            return 0
        steps = len(spec.steps) if spec is not None else None
        notice = notice_for(release, status, event, kind, now or datetime.now(UTC), steps)
        if notice_id is not None:
            notice = replace(notice, id=notice_id)
        self._ensure_worker()
        queued = 0
        for sink in sinks:
            try:
                self._queue.put_nowait(Delivery(notice, sink, handled))
                queued += 1
            except queue.Full:
                handled.one_done()
                SENT.labels(sink.type, "dropped").inc()
                log.warning(
                    "notification dropped: queue full",
                    destination=sink.label,
                    reason=notice.reason,
                    release=f"{notice.namespace}/{notice.name}",
                )
        QUEUED.set(self._queue.qsize())
        return queued

    # -- the worker's side ------------------------------------------------------------

    def _ensure_worker(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="notifier", daemon=True)
                self._thread.start()

    def _work(self) -> None:
        while True:
            self._send_deferred()
            try:
                delivery = self._queue.get(timeout=self._next_wake())
            except queue.Empty:
                continue  # a cool-down ended
            try:
                if delivery is None:
                    return
                self._finish(delivery)
            finally:
                self._queue.task_done()
                QUEUED.set(self._queue.qsize())

    def _finish(self, delivery: Delivery) -> None:
        finished = True
        try:
            finished = self._deliver(delivery)
        except Exception:  # a bug in one delivery must not stop the next ones
            with contextlib.suppress(Exception):  # nor a log that cannot be written
                log.exception("notification failed unexpectedly")
        if finished and delivery.handled is not None:
            delivery.handled.one_done()

    def _next_wake(self) -> float | None:
        """Seconds until the first destination with notices waiting ends its cool-down."""
        ends = [self._down_until.get(label, 0.0) for label in self._deferred]
        return max(0.05, min(ends) - self._clock()) if ends else None

    def _send_deferred(self) -> None:
        """Send, in order, what waited for a destination whose cool-down is over."""
        now = self._clock()
        for label in [k for k in self._deferred if now >= self._down_until.get(k, 0.0)]:
            for delivery in self._deferred.pop(label):
                self._finish(delivery)  # the first to fail starts a cool-down again

    def _url(self, sink: Sink) -> str:
        if sink.url is not None:
            return sink.url
        assert sink.secret is not None and self._secrets is not None
        return self._secrets.read(*sink.secret)

    def _deliver(self, delivery: Delivery) -> bool:
        """Send it; False when it waits for its destination's cool-down (not handled yet)."""
        sink, notice = delivery.sink, delivery.notice
        context = {"destination": sink.label, "reason": notice.reason, "id": notice.id}
        if delivery.since is None:
            delivery = replace(delivery, since=self._clock())
        if sink.label in self._deferred or self._clock() < self._down_until.get(sink.label, 0.0):
            return self._defer(delivery, context)  # behind those waiting: in order
        try:
            url = self._url(sink)
        except (LookupError, AssertionError) as exc:
            SENT.labels(sink.type, "no_url").inc()
            log.warning("notification not sent: no URL", error=str(exc), **context)
            return True
        body = slack_payload(notice) if sink.type == "slack" else json_payload(notice)
        try:
            self._post(url, body, notice)
        except _TRANSIENT as exc:
            self._down_until[sink.label] = self._clock() + self._policy.cooldown_s
            SENT.labels(sink.type, "failed").inc()
            log.warning("notification failed", error=_short(exc, url), **context)
            return self._defer(delivery, context)
        except Exception as exc:  # another 4xx: the URL or this payload is wrong, for good
            SENT.labels(sink.type, "failed").inc()
            log.warning("notification refused", error=_short(exc, url), **context)
            return True
        self._down_until.pop(sink.label, None)
        SENT.labels(sink.type, "sent").inc()
        log.info("notification sent", **context)
        return True

    def _defer(self, delivery: Delivery, context: dict[str, str]) -> bool:
        """Keep it for after the cool-down, unless it waited too long or too many wait."""
        sink, policy = delivery.sink, self._policy
        waiting = self._deferred.setdefault(sink.label, deque())
        assert delivery.since is not None
        if (
            self._clock() - delivery.since >= policy.max_defer_s
            or len(waiting) >= policy.queue_size
        ):
            if not waiting:
                del self._deferred[sink.label]
            SENT.labels(sink.type, "given_up").inc()
            log.warning("notification given up: destination failing too long", **context)
            return True
        waiting.append(delivery)
        SENT.labels(sink.type, "deferred").inc()
        log.info("notification deferred: destination cooling down", **context)
        return False

    def _post(self, url: str, body: dict[str, Any], notice: Notice) -> None:
        policy = self._policy
        headers = {"X-Canary-Event": notice.kind, "X-Canary-Delivery": notice.id}
        for attempt in Retrying(
            retry=retry_if_exception_type(_TRANSIENT),
            stop=stop_after_attempt(policy.attempts),
            wait=wait_exponential(multiplier=0.5, max=policy.max_backoff_s),
            reraise=True,
        ):
            with attempt:
                # stream: only the status is wanted, so a receiver cannot hold the worker
                # by trickling a body (requests' read timeout is per recv, not in total).
                response = self._session.post(
                    url, json=body, headers=headers, timeout=(3.0, policy.timeout_s), stream=True
                )
                response.close()
                if response.status_code == 429 or response.status_code >= 500:
                    raise _Retryable(f"HTTP {response.status_code}")
                if response.status_code >= 400:  # any other 4xx: the URL or payload is wrong
                    raise _Refused(f"HTTP {response.status_code} {response.reason}")

    def drain(self, timeout: float) -> bool:
        """Wait until everything queued so far was handled or set aside for a destination's
        cool-down (for shutdown and tests). What is set aside at shutdown is not sent:
        its outbox entry stays in status, so the next leader sends it."""
        deadline = self._clock() + timeout
        while self._queue.unfinished_tasks:
            if self._clock() > deadline:
                return False
            time.sleep(0.05)
        return True

    def stop(self) -> None:
        with self._lock:
            thread = self._thread
        if thread is not None and thread.is_alive():
            try:
                self._queue.put_nowait(None)
            except queue.Full:
                return  # a daemon thread; it dies with the process
            thread.join(timeout=1)


def _short(exc: BaseException, url: str | None = None) -> str:
    text = str(exc)
    if url:  # the URL is a credential (a Slack hook's path is its token): name the host only
        parts = urlsplit(url)
        for secret in (url, parts.path, parts.query):
            if secret and secret != "/":
                text = text.replace(secret, "/<redacted>")
    return text if len(text) <= 200 else text[:200] + "..."


# -- the runtime's single dispatcher ------------------------------------------------------

_dispatcher: Dispatcher | None = None


def enable(secrets: SecretSource) -> Dispatcher:
    """Called once by the runtime at start-up; until then `notify` does nothing."""
    global _dispatcher
    _dispatcher = Dispatcher(
        secrets, sinks=controller_wide_sinks(), policy=SendPolicy.from_environment()
    )
    return _dispatcher


def notify(
    release: dict[str, Any],
    spec: CanaryReleaseSpec | None,
    status: CanaryReleaseStatus,
    event: RecordEvent,
    notice_id: str | None = None,
    on_handled: Callable[[], None] | None = None,
) -> None:
    """Hand an Event to the notifier; never raises, never waits on the network."""
    dispatcher = _dispatcher
    if dispatcher is None:
        if on_handled is not None:
            on_handled()  # no notifier in this process: nothing to wait for
        return
    try:
        dispatcher.publish(release, spec, status, event, notice_id=notice_id, on_handled=on_handled)
    except Exception:  # notifications must never break a reconcile
        log.exception("could not queue a notification")
        if on_handled is not None:
            on_handled()
