"""The release-tag webhook: real HTTP deliveries, the real apiserver, and the real controller."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from kubernetes import client

from controller.adapters.releases import ReleaseChanged, ReleaseClient
from controller.api.spec import GROUP, PLURAL, VERSION
from controller.runtime.tag_events import github_signature
from controller.runtime.webhook import WebhookSettings, start_webhook
from devenv.cluster import free_port
from tests.e2e.conftest import ControllerFactory
from tests.e2e.helpers import Releases, release, wait_for

SECRET = b"webhook-secret-for-tests"
REPO = "acme/payments"


def _annotated(tag: str, **annotations: str) -> dict[str, Any]:
    body = release("payments", tag, None)
    body["metadata"]["annotations"] = {"canary.dev/repository": REPO, **annotations}
    return body


class Sender:
    """Posts signed deliveries the way GitHub and GitLab do."""

    def __init__(self, url: str) -> None:
        self.url = url

    def github(
        self,
        event: str,
        payload: dict[str, Any],
        *,
        secret: bytes = SECRET,
        delivery: str | None = None,
    ) -> requests.Response:
        body = json.dumps(payload).encode()
        headers = {
            "Content-Type": "application/json",
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
            "X-Hub-Signature-256": github_signature(secret, body),
        }
        return requests.post(self.url, data=body, headers=headers, timeout=30)

    def release(self, tag: str, repo: str = REPO, **kwargs: Any) -> requests.Response:
        payload = {
            "action": "published",
            "release": {"tag_name": tag},
            "repository": {"full_name": repo},
        }
        return self.github("release", payload, **kwargs)

    def gitlab(self, tag: str, token: str = SECRET.decode()) -> requests.Response:
        payload = {
            "object_kind": "tag_push",
            "ref": f"refs/tags/{tag}",
            "after": "b" * 40,
            "project": {"path_with_namespace": REPO},
        }
        headers = {
            "X-Gitlab-Event": "Tag Push Hook",
            "X-Gitlab-Token": token,
            "X-Gitlab-Event-UUID": str(uuid.uuid4()),
        }
        return requests.post(self.url, json=payload, headers=headers, timeout=30)


@pytest.fixture
def sender(k8s: client.ApiClient, namespace: str, crd: str) -> Iterator[Sender]:
    settings = WebhookSettings(
        port=0, secret=SECRET, address="127.0.0.1", max_body=64 * 1024, namespaces=(namespace,)
    )
    server = start_webhook(settings, ReleaseClient(k8s))
    try:
        yield Sender(f"http://127.0.0.1:{server.port}/webhook")
    finally:
        server.stop()


def _running(releases: Releases, stable: str) -> None:
    """What the controller would have recorded: `stable` runs (no controller in these tests)."""
    releases.custom.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        releases.namespace,
        PLURAL,
        "payments",
        {"status": {"phase": "Idle", "stableTag": stable}},
    )


def _tag(releases: Releases) -> str:
    return str(releases.get("payments")["spec"]["release"]["tag"])


def test_a_signed_github_release_sets_the_tag(sender: Sender, releases: Releases) -> None:
    releases.create(_annotated("v1.2.0"))
    _running(releases, "v1.2.0")
    response = sender.release("v1.3.0")
    assert response.status_code == 200, response.text
    assert response.json()["result"] == "updated"
    assert _tag(releases) == "v1.3.0"


def test_bad_deliveries_get_a_4xx_with_a_reason_and_change_nothing(
    sender: Sender, releases: Releases
) -> None:
    releases.create(_annotated("v1.2.0"))
    _running(releases, "v1.2.0")
    before = releases.get("payments")["metadata"]["resourceVersion"]

    wrong_secret = sender.release("v1.3.0", secret=b"not-the-secret")
    assert wrong_secret.status_code == 401
    assert "does not match" in wrong_secret.json()["reason"]

    unsigned = requests.post(
        sender.url, json={"x": 1}, headers={"X-GitHub-Event": "release"}, timeout=30
    )
    assert unsigned.status_code == 401 and "missing" in unsigned.json()["reason"]

    assert sender.gitlab("v1.3.0", token="wrong").status_code == 401

    padding = "x" * (64 * 1024)
    oversize = sender.github(
        "release",
        {"action": "published", "release": {"tag_name": "v1.3.0"}, "pad": padding},
    )
    assert oversize.status_code == 413 and "limit" in oversize.json()["reason"]

    not_semver = sender.release("nightly-2026")
    assert not_semver.status_code == 422 and "semver" in not_semver.json()["reason"]

    downgrade = sender.release("v1.1.9")
    assert downgrade.status_code == 409 and "older than v1.2.0" in downgrade.json()["reason"]

    unknown = sender.release("v1.3.0", repo="acme/unknown")
    assert unknown.status_code == 404 and "acme/unknown" in unknown.json()["reason"]

    branch = sender.github("push", {"ref": "refs/heads/main", "repository": {"full_name": REPO}})
    assert branch.status_code == 202 and "not a tag" in branch.json()["reason"]

    assert requests.get(sender.url, timeout=30).status_code == 405
    wrong_path = requests.post(sender.url.replace("/webhook", "/hook"), data=b"{}", timeout=30)
    assert wrong_path.status_code == 404

    after = releases.get("payments")
    assert after["metadata"]["resourceVersion"] == before, "nothing may change"
    assert after["spec"]["release"]["tag"] == "v1.2.0"


def test_a_body_without_a_length_is_refused(sender: Sender, releases: Releases) -> None:
    host, port = sender.url.split("//")[1].split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /webhook HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: release\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        )
        answer = sock.recv(4096).decode()
    assert answer.startswith("HTTP/1.0 411") or answer.startswith("HTTP/1.1 411"), answer


def test_a_duplicate_delivery_is_not_applied_twice(sender: Sender, releases: Releases) -> None:
    releases.create(_annotated("v1.2.0", **{"canary.dev/allow-downgrade": "true"}))
    _running(releases, "v1.2.0")
    first = sender.release("v1.3.0", delivery="delivery-42")
    assert first.status_code == 200 and _tag(releases) == "v1.3.0"
    releases.set_tag("payments", "v1.2.0")  # a human set it back in the meantime
    again = sender.release("v1.3.0", delivery="delivery-42")
    assert again.status_code == 200 and again.json()["result"] == "duplicate"
    assert _tag(releases) == "v1.2.0"


def test_downgrade_allowed_by_annotation_and_a_custom_tag_pattern(
    sender: Sender, releases: Releases
) -> None:
    annotations = {
        "canary.dev/allow-downgrade": "true",
        "canary.dev/tag-pattern": r"\d{4}\.\d{2}\.\d{2}-\d+",
    }
    releases.create(_annotated("2026.11.24-2", **annotations))
    _running(releases, "2026.11.24-2")
    assert sender.release("v1.0.0").status_code == 422
    older = sender.release("2026.11.24-1")
    assert older.status_code == 200 and _tag(releases) == "2026.11.24-1"


def test_a_gitlab_tag_push_sets_the_tag(sender: Sender, releases: Releases) -> None:
    releases.create(_annotated("v1.2.0"))
    _running(releases, "v1.2.0")
    response = sender.gitlab("v2.0.0")
    assert response.status_code == 200, response.text
    assert _tag(releases) == "v2.0.0"


def test_the_controller_serves_the_webhook_and_starts_the_canary(
    releases: Releases, namespace: str, controller: ControllerFactory
) -> None:
    releases.create_deployment("payments", 4, "registry.example.com/payments:v1.2.0")
    releases.create(_annotated("v1.2.0"))
    port = free_port()
    controller(
        namespace,
        CANARY_WEBHOOK_PORT=str(port),
        CANARY_WEBHOOK_ADDRESS="127.0.0.1",
        CANARY_WEBHOOK_SECRET=SECRET.decode(),
    )
    releases.wait_phase("payments", "Idle", timeout=30)
    sender = Sender(f"http://127.0.0.1:{port}/webhook")

    def delivered() -> tuple[int, str] | None:
        try:
            response = sender.github(
                "push",
                {"ref": "refs/tags/v1.3.0", "deleted": False, "repository": {"full_name": REPO}},
            )
        except requests.ConnectionError:
            return None  # not listening yet
        return response.status_code, response.text

    code, text = wait_for(delivered, 30, "the webhook to answer")
    assert code == 200, text
    status = releases.wait_phase("payments", "Succeeded", timeout=90)
    assert status["stableTag"] == "v1.3.0" and status["previousStableTag"] == "v1.2.0"
    releases.wait_events("payments", "ReleaseStarted")


def test_a_patch_based_on_a_stale_read_is_refused(
    k8s: client.ApiClient, releases: Releases
) -> None:
    """The guard every judged patch relies on: the apiserver refuses a stale resourceVersion."""
    releases.create(_annotated("v1.2.0"))
    store = ReleaseClient(k8s)
    read = store.get(releases.namespace, "payments")
    releases.set_tag("payments", "v1.2.1")  # someone else, meanwhile
    with pytest.raises(ReleaseChanged):
        store.set_tag(
            releases.namespace, "payments", "v1.3.0", based_on=read["metadata"]["resourceVersion"]
        )
    assert _tag(releases) == "v1.2.1"


def test_an_unreachable_apiserver_is_a_503_so_the_sender_delivers_again() -> None:
    config = client.Configuration(host=f"http://127.0.0.1:{free_port()}")  # nothing listens
    config.retries = 0
    settings = WebhookSettings(
        port=0, secret=SECRET, address="127.0.0.1", max_body=64 * 1024, namespaces=("shop",)
    )
    server = start_webhook(settings, ReleaseClient(client.ApiClient(config)))
    try:
        sender = Sender(f"http://127.0.0.1:{server.port}/webhook")
        delivery = str(uuid.uuid4())
        answer = sender.release("v1.2.3", delivery=delivery)
        assert answer.status_code == 503
        assert answer.json()["result"] == "error" and "apiserver" in answer.json()["reason"]
        # not remembered as handled: the same delivery, sent again, is tried again
        assert sender.release("v1.2.3", delivery=delivery).status_code == 503
    finally:
        server.stop()
