"""Authenticating and reading GitHub and GitLab tag events, without a socket."""

from __future__ import annotations

import json
from typing import Any

import pytest

from controller.runtime.tag_events import (
    Ignored,
    Rejected,
    TagEvent,
    authenticate,
    github_signature,
    parse,
)

SECRET = b"s3cret"


def _github(
    event: str, payload: dict[str, Any], secret: bytes = SECRET
) -> tuple[dict[str, str], bytes]:
    body = json.dumps(payload).encode()
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": "d-1",
        "X-Hub-Signature-256": github_signature(secret, body),
    }
    return headers, body


def _gitlab(payload: dict[str, Any], token: str = "s3cret") -> tuple[dict[str, str], bytes]:
    headers = {"X-Gitlab-Event": "Tag Push Hook", "X-Gitlab-Token": token}
    headers["X-Gitlab-Event-UUID"] = "u-1"
    return headers, json.dumps(payload).encode()


RELEASE = {
    "action": "published",
    "release": {"tag_name": "v1.4.0"},
    "repository": {"full_name": "acme/payments"},
}
PUSH = {"ref": "refs/tags/v1.4.0", "deleted": False, "repository": {"full_name": "acme/payments"}}
GL_PUSH = {
    "object_kind": "tag_push",
    "ref": "refs/tags/v2.0.0",
    "after": "a" * 40,
    "project": {"path_with_namespace": "acme/platform/payments"},
}


def test_github_release_published_carries_its_tag() -> None:
    headers, body = _github("release", RELEASE)
    authenticate(headers, body, SECRET)
    assert parse(headers, body) == TagEvent("github", "acme/payments", "v1.4.0", "d-1")


def test_github_tag_push_carries_its_tag() -> None:
    headers, body = _github("push", PUSH)
    assert parse(headers, body) == TagEvent("github", "acme/payments", "v1.4.0", "d-1")


def test_gitlab_tag_push_carries_its_tag_and_project_path() -> None:
    headers, body = _gitlab(GL_PUSH)
    authenticate(headers, body, SECRET)
    assert parse(headers, body) == TagEvent("gitlab", "acme/platform/payments", "v2.0.0", "u-1")


def test_a_tampered_body_fails_the_signature() -> None:
    headers, body = _github("release", RELEASE)
    with pytest.raises(Rejected) as caught:
        authenticate(headers, body.replace(b"v1.4.0", b"v9.9.9"), SECRET)
    assert caught.value.status == 401


def test_a_signature_made_with_another_secret_fails() -> None:
    headers, body = _github("release", RELEASE, secret=b"guess")
    with pytest.raises(Rejected, match="does not match"):
        authenticate(headers, body, SECRET)


def test_a_missing_signature_fails() -> None:
    headers, body = _github("release", RELEASE)
    del headers["X-Hub-Signature-256"]
    with pytest.raises(Rejected, match="missing X-Hub-Signature-256"):
        authenticate(headers, body, SECRET)


def test_a_wrong_gitlab_token_fails() -> None:
    headers, body = _gitlab(GL_PUSH, token="nope")
    with pytest.raises(Rejected) as caught:
        authenticate(headers, body, SECRET)
    assert caught.value.status == 401


def test_an_unknown_sender_is_a_bad_request() -> None:
    with pytest.raises(Rejected) as caught:
        authenticate({"Content-Type": "application/json"}, b"{}", SECRET)
    assert caught.value.status == 400


@pytest.mark.parametrize(
    ("event", "payload", "why"),
    [
        ("ping", {"zen": "hi"}, "ping"),
        ("release", {**RELEASE, "action": "created"}, "only 'published'"),
        ("push", {**PUSH, "ref": "refs/heads/main"}, "is not a tag"),
        ("push", {**PUSH, "deleted": True}, "was deleted"),
        ("issues", {"repository": {"full_name": "acme/payments"}}, "not a release or a push"),
    ],
)
def test_authentic_events_without_a_new_tag_are_ignored(
    event: str, payload: dict[str, Any], why: str
) -> None:
    headers, body = _github(event, payload)
    result = parse(headers, body)
    assert isinstance(result, Ignored) and why in result.reason


def test_gitlab_tag_deletion_is_ignored() -> None:
    headers, body = _gitlab({**GL_PUSH, "after": "0" * 40})
    result = parse(headers, body)
    assert isinstance(result, Ignored) and "deleted" in result.reason


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (json.dumps({"action": "published", "release": {}}).encode(), "repository.full_name"),
        (
            json.dumps({"action": "published", "repository": {"full_name": "a/b"}}).encode(),
            "release.tag_name",
        ),
    ],
)
def test_malformed_payloads_are_rejected_with_the_missing_field(body: bytes, why: str) -> None:
    headers = {"X-GitHub-Event": "release"}
    with pytest.raises(Rejected, match=why) as caught:
        parse(headers, body)
    assert caught.value.status == 400
