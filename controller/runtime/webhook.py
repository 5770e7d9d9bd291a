"""The release-tag webhook: a Git tag (GitHub or GitLab) sets `spec.release.tag`.

Off unless a port is given. Each delivery goes through the same checks, in an
order chosen so that nothing is learned or changed before it is authentic:
size (413, before reading the body), sender (400), signature or token (401,
constant time), duplicate delivery (200, nothing done), event type (202 when
it announces no tag), then, for every CanaryRelease annotated with the
repository, the tag pattern (422) and the no-downgrade rule (409). Only then
is the tag patched, guarded by the resourceVersion that was judged, so a
concurrent change is judged again rather than overwritten.

A CanaryRelease opts in with annotations:
    canary.dev/repository: org/repo           (GitHub full_name, GitLab path)
    canary.dev/tag-pattern: '^v\\d+\\.\\d+$'    (optional; semver by default)
    canary.dev/allow-downgrade: "true"        (optional; older tags refused otherwise)

It is served by every replica, leader or not: it only patches the spec, which
the leader then acts on.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import structlog
import urllib3
from kubernetes.client.exceptions import ApiException
from prometheus_client import Counter

from controller.adapters.releases import Release, ReleaseChanged, ReleaseClient, ReleaseNotFound
from controller.engine.context import ACTIVE_PHASES
from controller.runtime import tags
from controller.runtime.tag_events import Ignored, Rejected, TagEvent, authenticate, parse
from controller.runtime.tag_events import delivery_id as delivery_of

log = structlog.get_logger("controller.webhook")

REPOSITORY_ANNOTATION = "canary.dev/repository"
TAG_PATTERN_ANNOTATION = "canary.dev/tag-pattern"
ALLOW_DOWNGRADE_ANNOTATION = "canary.dev/allow-downgrade"
PATH = "/webhook"
DEFAULT_MAX_BODY = 1024 * 1024
PATCH_ATTEMPTS = 3

DELIVERIES = Counter(
    "canary_webhook_deliveries_total",
    "Release-tag webhook deliveries, by provider and HTTP status answered",
    ["provider", "code"],
)


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]


@dataclass(frozen=True)
class WebhookSettings:
    port: int
    secret: bytes = field(repr=False)
    address: str = "0.0.0.0"
    max_body: int = DEFAULT_MAX_BODY
    namespaces: tuple[str, ...] = ()


class Deliveries:
    """The last `size` delivery ids handled: a redelivery is answered, not applied twice."""

    def __init__(self, size: int = 4096) -> None:
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def seen(self, delivery: str) -> bool:
        with self._lock:
            if delivery in self._seen:
                self._seen.move_to_end(delivery)
                return True
            return False

    def remember(self, delivery: str) -> None:
        with self._lock:
            self._seen[delivery] = None
            self._seen.move_to_end(delivery)
            while len(self._seen) > self._size:
                self._seen.popitem(last=False)


@dataclass(frozen=True)
class Verdict:
    """What one release does with a tag: `status` 200 to set it, else why not."""

    status: int
    outcome: str
    reason: str


def _annotations(release: Release) -> dict[str, str]:
    return dict((release.get("metadata") or {}).get("annotations") or {})


def repositories_of(release: Release) -> set[str]:
    value = _annotations(release).get(REPOSITORY_ANNOTATION, "")
    return {r.strip().lower() for r in value.split(",") if r.strip()}


def judge_tag(release: Release, tag: str) -> Verdict:
    """Pattern, sameness and the no-downgrade rule for one release; pure."""
    annotations = _annotations(release)
    if not tags.valid_tag(tag):
        return Verdict(422, "refused", f"{tag!r} is not a valid image tag")
    pattern = annotations.get(TAG_PATTERN_ANNOTATION)
    try:
        if not tags.matches(tag, pattern):
            wanted = f"{TAG_PATTERN_ANNOTATION} {pattern!r}" if pattern else "semver (vX.Y.Z)"
            return Verdict(422, "refused", f"tag {tag} does not match {wanted}")
    except tags.BadPattern as exc:
        return Verdict(422, "refused", f"{TAG_PATTERN_ANNOTATION}: {exc}")
    current = ((release.get("spec") or {}).get("release") or {}).get("tag")
    if tag == current:
        return Verdict(200, "unchanged", f"{tag} is already the release tag")
    status = release.get("status") or {}
    running = [status.get("stableTag")]
    if status.get("phase") in ACTIVE_PHASES:
        running.append(status.get("canaryTag"))
    allowed = annotations.get(ALLOW_DOWNGRADE_ANNOTATION, "").lower() == "true"
    for other in (t for t in running if t):
        if tags.is_older(tag, other) and not allowed:
            return Verdict(
                409,
                "refused",
                f"tag {tag} is older than {other}, which runs; "
                f'set {ALLOW_DOWNGRADE_ANNOTATION}: "true" to allow it',
            )
    return Verdict(200, "updated", f"release tag {current} -> {tag}")


class TagRouter:
    """Sets a tag on every CanaryRelease annotated with the event's repository."""

    def __init__(self, releases: ReleaseClient, namespaces: Sequence[str] = ()) -> None:
        self._releases = releases
        self._namespaces = tuple(namespaces)

    def _candidates(self, repository: str) -> list[Release]:
        scopes: Sequence[str | None] = self._namespaces or (None,)
        wanted = repository.lower()
        return [
            release
            for scope in scopes
            for release in self._releases.list_releases(scope)
            if wanted in repositories_of(release)
        ]

    def _apply(self, release: Release, tag: str) -> Verdict:
        meta = release["metadata"]
        for _ in range(PATCH_ATTEMPTS):
            verdict = judge_tag(release, tag)
            if verdict.outcome != "updated":
                return verdict
            try:
                self._releases.set_tag(
                    meta["namespace"], meta["name"], tag, based_on=meta["resourceVersion"]
                )
                return verdict
            except ReleaseChanged:
                try:
                    release = self._releases.get(meta["namespace"], meta["name"])
                except ReleaseNotFound:
                    return Verdict(404, "gone", "the release was deleted while it was updated")
        return Verdict(503, "conflict", "the release kept changing; deliver again")

    def route(self, event: TagEvent) -> Answer:
        candidates = self._candidates(event.repository)
        if not candidates:
            return Answer(
                404,
                {
                    "result": "unknown repository",
                    "reason": f"no CanaryRelease is annotated {REPOSITORY_ANNOTATION}: "
                    f"{event.repository}",
                },
            )
        results = []
        for release in candidates:
            meta = release["metadata"]
            verdict = self._apply(release, event.tag)
            results.append(
                {
                    "namespace": meta["namespace"],
                    "name": meta["name"],
                    "status": verdict.status,
                    "outcome": verdict.outcome,
                    "reason": verdict.reason,
                }
            )
            log.info(
                "release tag webhook",
                repository=event.repository,
                tag=event.tag,
                release=f"{meta['namespace']}/{meta['name']}",
                outcome=verdict.outcome,
                reason=verdict.reason,
            )
        codes = [r["status"] for r in results]
        # A release that must be delivered again (5xx) decides: the host redelivers,
        # the id is not remembered, and those already updated answer "unchanged".
        status = max(codes) if max(codes) >= 500 else (200 if 200 in codes else max(codes))
        updated = [r for r in results if r["outcome"] == "updated"]
        summary = "updated" if updated else ("unchanged" if status == 200 else "refused")
        reason = "; ".join(f"{r['namespace']}/{r['name']}: {r['reason']}" for r in results)
        return Answer(status, {"result": summary, "reason": reason, "releases": results})


class TagWebhook:
    """The whole pipeline for one delivery, without the socket."""

    def __init__(self, secret: bytes, router: TagRouter, deliveries: Deliveries | None = None):
        if not secret:
            raise ValueError("the webhook needs a secret: it never accepts unsigned deliveries")
        self._secret = secret
        self._router = router
        self._deliveries = deliveries or Deliveries()

    def handle(self, headers: Mapping[str, str], body: bytes) -> Answer:
        try:
            authenticate(headers, body, self._secret)
            delivery = delivery_of(headers)
            if delivery and self._deliveries.seen(delivery):
                return Answer(200, {"result": "duplicate", "reason": f"delivery {delivery} seen"})
            event = parse(headers, body)
        except Rejected as exc:
            return Answer(exc.status, {"result": "rejected", "reason": exc.reason})
        if isinstance(event, Ignored):
            answer = Answer(202, {"result": "ignored", "reason": event.reason})
        else:
            try:
                answer = self._router.route(event)
            except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
                # A refusal (ApiException) or no answer at all (a dead apiserver): either
                # way the sender should deliver again later, and says so only on a 5xx.
                reason = exc.reason if isinstance(exc, ApiException) else type(exc).__name__
                log.warning("webhook could not reach the apiserver", error=str(exc)[:300])
                return Answer(503, {"result": "error", "reason": f"apiserver: {reason}"})
        if delivery and answer.status < 500:
            self._deliveries.remember(delivery)
        return answer


def _handler_class(webhook: TagWebhook, max_body: int) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "canary-controller-webhook"
        timeout = 10  # a client that stalls mid-request loses its thread after this
        # ...and one that trickles (a byte every few seconds) after this many timeouts:
        # the socket timeout above is per recv(), so it alone never ends a slow request.
        deadline_timeouts = 3

        def setup(self) -> None:
            super().setup()
            self._watchdog = threading.Timer(self.timeout * self.deadline_timeouts, self._cut)
            self._watchdog.daemon = True
            self._watchdog.start()

        def finish(self) -> None:
            self._watchdog.cancel()
            super().finish()

        def _cut(self) -> None:
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

        def _answer(self, answer: Answer, provider: str = "unknown") -> None:
            DELIVERIES.labels(provider, str(answer.status)).inc()
            data = json.dumps(answer.body).encode()
            self.send_response(answer.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _reject(self, status: int, reason: str) -> None:
            self.close_connection = True
            self._answer(Answer(status, {"result": "rejected", "reason": reason}))

        def do_POST(self) -> None:
            if self.path.split("?", 1)[0] != PATH:
                self._reject(404, f"the webhook listens on {PATH}")
                return
            if self.headers.get("Transfer-Encoding"):
                self._reject(411, "send a Content-Length (chunked bodies are not accepted)")
                return
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                self._reject(411, "Content-Length is required")
                return
            if length > max_body:
                self._reject(413, f"body of {length} bytes is over the {max_body}-byte limit")
                return
            body = self.rfile.read(length) if length > 0 else b""
            headers = {k: v for k, v in self.headers.items()}
            provider = "github" if "x-github-event" in {k.lower() for k in headers} else "gitlab"
            self._answer(webhook.handle(headers, body), provider)

        def do_GET(self) -> None:
            self._reject(405, f"POST release-tag events to {PATH}")

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("webhook request", line=format % args)

    return Handler


class _Server(ThreadingHTTPServer):
    """A thread per connection, as many as `max_connections`: a flood of connections
    (each held up to the 30 s deadline) is refused at the door, not given threads."""

    max_connections = 64

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._slots = threading.BoundedSemaphore(self.max_connections)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            log.warning("webhook connections at their limit; one refused", client=client_address[0])
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection cut (a client gone, or too slow) is one line, not a traceback."""
        error = sys.exc_info()[1]
        log.info("webhook connection ended early", client=client_address[0], error=str(error))


class WebhookServer:
    """The HTTP endpoint in a daemon thread; `stop()` closes it."""

    def __init__(self, webhook: TagWebhook, address: str, port: int, max_body: int) -> None:
        self._http = _Server((address, port), _handler_class(webhook, max_body))
        self._http.daemon_threads = True
        self._thread = threading.Thread(
            target=self._http.serve_forever, name="tag-webhook", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._http.server_address[1])

    def start(self) -> WebhookServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(timeout=5)


def start_webhook(settings: WebhookSettings, releases: ReleaseClient) -> WebhookServer:
    router = TagRouter(releases, settings.namespaces)
    webhook = TagWebhook(settings.secret, router)
    server = WebhookServer(webhook, settings.address, settings.port, settings.max_body).start()
    log.info("serving the release-tag webhook", port=server.port, path=PATH)
    return server


# -- configuration --------------------------------------------------------------------


def add_webhook_flags(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    parser.add_argument(
        "--webhook-port",
        type=int,
        default=int(env("CANARY_WEBHOOK_PORT") or 0) or None,
        help="serve the release-tag webhook on this port (env CANARY_WEBHOOK_PORT; off if unset)",
    )
    parser.add_argument(
        "--webhook-address",
        default=env("CANARY_WEBHOOK_ADDRESS") or "0.0.0.0",
        help="address for the webhook (env CANARY_WEBHOOK_ADDRESS)",
    )
    parser.add_argument(
        "--webhook-secret-file",
        default=env("CANARY_WEBHOOK_SECRET_FILE"),
        help="file holding the webhook secret, e.g. a mounted Secret "
        "(env CANARY_WEBHOOK_SECRET_FILE; or the secret itself in CANARY_WEBHOOK_SECRET)",
    )
    parser.add_argument(
        "--webhook-max-body",
        type=int,
        default=int(env("CANARY_WEBHOOK_MAX_BODY") or DEFAULT_MAX_BODY),
        help=f"largest body accepted, in bytes (default {DEFAULT_MAX_BODY})",
    )


def webhook_settings(args: argparse.Namespace) -> WebhookSettings | None:
    """The settings from the flags, or None when the webhook is off; a port without a
    secret is a configuration error, not an open endpoint."""
    if not args.webhook_port:
        return None
    if args.webhook_secret_file:
        secret = Path(args.webhook_secret_file).read_bytes().strip()
    else:
        secret = os.environ.get("CANARY_WEBHOOK_SECRET", "").encode()
    if not secret:
        raise SystemExit(
            "--webhook-port needs a secret: --webhook-secret-file or CANARY_WEBHOOK_SECRET"
        )
    return WebhookSettings(
        port=args.webhook_port,
        secret=secret,
        address=args.webhook_address,
        max_body=args.webhook_max_body,
        namespaces=tuple(args.namespace or ()),
    )
