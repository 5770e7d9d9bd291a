"""Release-tag events from GitHub and GitLab: who sent them, and which tag they carry.

Pure functions over the headers and the raw body, so every rule is testable
without a socket. Authenticity is checked on the exact bytes received, before
the body is parsed, and always in constant time (`hmac.compare_digest`), so
neither a parse error nor the timing of a comparison tells an attacker
anything about the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Provider = Literal["github", "gitlab"]
TAG_REF_PREFIX = "refs/tags/"
_DELETED_SHA = "0" * 40


@dataclass(frozen=True)
class TagEvent:
    """A new release tag in a repository."""

    provider: Provider
    repository: str
    tag: str
    delivery: str | None


@dataclass(frozen=True)
class Ignored:
    """An authentic event that does not announce a new tag (a branch push, a ping...)."""

    reason: str


class Rejected(Exception):
    """Bad input: answered with `status` and the reason, and nothing changes."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)


def provider_of(headers: Mapping[str, str]) -> Provider:
    if _header(headers, "X-GitHub-Event") is not None:
        return "github"
    if _header(headers, "X-Gitlab-Event") is not None:
        return "gitlab"
    raise Rejected(400, "not a GitHub or GitLab webhook (no X-GitHub-Event or X-Gitlab-Event)")


def delivery_id(headers: Mapping[str, str]) -> str | None:
    """The sender's id for this delivery; a redelivery of the same event reuses it."""
    if provider_of(headers) == "github":
        return _header(headers, "X-GitHub-Delivery")
    return _header(headers, "X-Gitlab-Event-UUID")


def github_signature(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def authenticate(headers: Mapping[str, str], body: bytes, secret: bytes) -> None:
    """GitHub: HMAC-SHA256 of the body (X-Hub-Signature-256); GitLab: the token itself."""
    if provider_of(headers) == "github":
        sent = _header(headers, "X-Hub-Signature-256")
        if not sent:
            raise Rejected(401, "missing X-Hub-Signature-256 (set the webhook's secret)")
        expected = github_signature(secret, body)
        if not hmac.compare_digest(sent.strip().encode(), expected.encode()):
            raise Rejected(401, "X-Hub-Signature-256 does not match the body")
        return
    token = _header(headers, "X-Gitlab-Token")
    if not token:
        raise Rejected(401, "missing X-Gitlab-Token (set the webhook's secret token)")
    if not hmac.compare_digest(token.encode(), secret):
        raise Rejected(401, "X-Gitlab-Token is wrong")


def _json(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Rejected(400, f"body is not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise Rejected(400, "body is not a JSON object")
    return payload


def _text(payload: dict[str, Any], *path: str) -> str:
    node: Any = payload
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    if not isinstance(node, str) or not node:
        raise Rejected(400, f"payload has no {'.'.join(path)}")
    return node


def parse(headers: Mapping[str, str], body: bytes) -> TagEvent | Ignored:
    """The tag an authentic delivery announces; call only after `authenticate`."""
    provider = provider_of(headers)
    delivery = delivery_id(headers)
    if provider == "github":
        event = _header(headers, "X-GitHub-Event") or ""
        if event == "ping":
            return Ignored("ping: the webhook is set up")
        payload = _json(body)
        repository = _text(payload, "repository", "full_name")
        if event == "release":
            action = payload.get("action")
            if action != "published":
                return Ignored(f"release action {action!r} (only 'published' starts a release)")
            return TagEvent(provider, repository, _text(payload, "release", "tag_name"), delivery)
        if event == "push":
            return _from_push(provider, repository, payload, delivery)
        return Ignored(f"GitHub event {event!r} is not a release or a push")
    event = _header(headers, "X-Gitlab-Event") or ""
    payload = _json(body)
    if event != "Tag Push Hook" and payload.get("object_kind") != "tag_push":
        return Ignored(f"GitLab event {event!r} is not a tag push")
    repository = _text(payload, "project", "path_with_namespace")
    return _from_push(provider, repository, payload, delivery)


def _from_push(
    provider: Provider, repository: str, payload: dict[str, Any], delivery: str | None
) -> TagEvent | Ignored:
    ref = _text(payload, "ref")
    if not ref.startswith(TAG_REF_PREFIX):
        return Ignored(f"push to {ref} is not a tag")
    if payload.get("deleted") is True or payload.get("after") == _DELETED_SHA:
        return Ignored(f"tag {ref.removeprefix(TAG_REF_PREFIX)} was deleted")
    return TagEvent(provider, repository, ref.removeprefix(TAG_REF_PREFIX), delivery)
