"""What one CanaryRelease does with a tag from the webhook: pure rules, no server."""

from __future__ import annotations

from typing import Any

from controller.adapters.releases import ReleaseChanged, ReleaseNotFound
from controller.runtime.tag_events import TagEvent, github_signature
from controller.runtime.webhook import (
    Deliveries,
    TagRouter,
    TagWebhook,
    judge_tag,
    repositories_of,
)


def _release(
    tag: str = "v1.2.0",
    *,
    stable: str | None = "v1.2.0",
    canary: str | None = None,
    phase: str = "Succeeded",
    **annotations: str,
) -> dict[str, Any]:
    names = {
        "pattern": "canary.dev/tag-pattern",
        "downgrade": "canary.dev/allow-downgrade",
        "repository": "canary.dev/repository",
    }
    return {
        "metadata": {
            "name": "payments",
            "namespace": "shop",
            "resourceVersion": "7",
            "annotations": {names[k]: v for k, v in annotations.items()},
        },
        "spec": {"release": {"tag": tag}},
        "status": {"phase": phase, "stableTag": stable, "canaryTag": canary},
    }


def test_a_newer_semver_tag_is_set() -> None:
    verdict = judge_tag(_release(), "v1.3.0")
    assert (verdict.status, verdict.outcome) == (200, "updated")
    assert "v1.2.0 -> v1.3.0" in verdict.reason


def test_a_non_semver_tag_is_refused_by_default() -> None:
    verdict = judge_tag(_release(), "nightly")
    assert verdict.status == 422 and "semver" in verdict.reason


def test_the_release_can_set_its_own_pattern() -> None:
    release = _release("2026.11.1", stable="2026.11.1", pattern=r"\d{4}\.\d+\.\d+")
    assert judge_tag(release, "2026.11.2").outcome == "updated"
    refused = judge_tag(release, "v1.0.0")
    assert refused.status == 422 and r"\d{4}" in refused.reason


def test_a_broken_pattern_annotation_is_a_422_with_the_reason() -> None:
    verdict = judge_tag(_release(pattern="v("), "v1.3.0")
    assert verdict.status == 422 and "canary.dev/tag-pattern" in verdict.reason


def test_an_older_tag_than_stable_is_refused() -> None:
    verdict = judge_tag(_release(), "v1.1.9")
    assert verdict.status == 409
    assert "older than v1.2.0" in verdict.reason and "allow-downgrade" in verdict.reason


def test_an_older_tag_than_the_running_canary_is_refused() -> None:
    release = _release("v1.3.0", stable="v1.2.0", canary="v1.3.0", phase="Paused")
    verdict = judge_tag(release, "v1.2.5")
    assert verdict.status == 409 and "older than v1.3.0" in verdict.reason


def test_a_rolled_back_canary_does_not_count_as_running() -> None:
    release = _release("v1.3.0", stable="v1.2.0", canary="v1.3.0", phase="RolledBack")
    assert judge_tag(release, "v1.2.5").outcome == "updated"


def test_a_downgrade_is_allowed_when_the_release_says_so() -> None:
    assert judge_tag(_release(downgrade="true"), "v1.1.9").outcome == "updated"


def test_the_same_tag_again_changes_nothing() -> None:
    verdict = judge_tag(_release(), "v1.2.0")
    assert (verdict.status, verdict.outcome) == (200, "unchanged")


def test_a_tag_the_crd_would_reject_is_refused_first() -> None:
    release = _release(pattern=".*")
    assert judge_tag(release, "v1 2").status == 422


def test_repositories_are_case_insensitive_and_may_be_listed() -> None:
    release = _release(repository="Acme/Payments, acme/payments-mirror")
    assert repositories_of(release) == {"acme/payments", "acme/payments-mirror"}


def test_deliveries_remember_a_bounded_number_of_ids() -> None:
    seen = Deliveries(size=2)
    for delivery in ("a", "b", "c"):
        seen.remember(delivery)
    assert not seen.seen("a")  # the oldest was forgotten
    assert seen.seen("b") and seen.seen("c")


class _DeletedMidUpdate:
    """The apiserver's side of a race: the release changes, then is deleted, between two calls."""

    def __init__(self, release: dict[str, Any]) -> None:
        self.release = release

    def list_releases(self, namespace: str | None) -> list[dict[str, Any]]:
        return [self.release]

    def set_tag(self, namespace: str, name: str, tag: str, *, based_on: str) -> None:
        raise ReleaseChanged(f"{namespace}/{name} changed since {based_on}")

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        raise ReleaseNotFound(f"CanaryRelease {namespace}/{name} not found")


def test_a_release_deleted_while_its_tag_is_set_is_reported_not_raised() -> None:
    race = _DeletedMidUpdate(_release(repository="acme/payments"))
    router = TagRouter(race, ("shop",))  # type: ignore[arg-type]
    answer = router.route(TagEvent("github", "acme/payments", "v1.3.0", None))
    assert answer.status == 404
    (result,) = answer.body["releases"]
    assert result["outcome"] == "gone" and "deleted" in result["reason"]


class _OneKeepsChanging:
    """Two releases for one repository; `b` changes under every patch (a busy object)."""

    def __init__(self) -> None:
        self.patched: list[str] = []

    def list_releases(self, namespace: str | None) -> list[dict[str, Any]]:
        return [self.get("shop", "a"), self.get("shop", "b")]

    def set_tag(self, namespace: str, name: str, tag: str, *, based_on: str) -> None:
        if name == "b":
            raise ReleaseChanged(f"{namespace}/{name} changed since {based_on}")
        self.patched.append(name)

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        release = _release(repository="acme/payments")
        release["metadata"]["name"] = name
        return release


def test_a_release_left_to_deliver_again_decides_the_answer_and_the_id_is_not_kept() -> None:
    """Another release's 200 must not stop the Git host's redelivery, nor make it a duplicate."""
    changing = _OneKeepsChanging()
    secret = b"s3cret"
    webhook = TagWebhook(secret, TagRouter(changing, ("shop",)), Deliveries())  # type: ignore[arg-type]
    body = b'{"ref":"refs/tags/v1.3.0","repository":{"full_name":"acme/payments"}}'
    headers = {
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": "d-1",
        "X-Hub-Signature-256": github_signature(secret, body),
    }
    answer = webhook.handle(headers, body)
    assert answer.status == 503 and changing.patched == ["a"]
    assert {r["name"]: r["status"] for r in answer.body["releases"]} == {"a": 200, "b": 503}
    again = webhook.handle(headers, body)  # the Git host redelivers
    assert again.body["result"] != "duplicate" and changing.patched == ["a", "a"]
