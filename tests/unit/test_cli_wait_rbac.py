"""`--wait` with the rights cli.md documents (get, list, patch on canaryreleases) but not events."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from controller.cli import main as cli

FORBIDDEN = (
    'events is forbidden: User "system:serviceaccount:shop:oncall" cannot list resource '
    '"events" in API group "" in the namespace "shop"'
)


class _Client:
    """A release the controller handles at once; Events may not be listed."""

    def __init__(self) -> None:
        self.release: dict[str, Any] = {
            "metadata": {
                "name": "payments",
                "namespace": "shop",
                "resourceVersion": "1",
                "generation": 2,
            },
            "spec": {"release": {"tag": "v2"}},
            "status": {
                "phase": "Paused",
                "canaryTag": "v2",
                "stableTag": "v1",
                "observedGeneration": 2,
            },
        }

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        return self.release

    def send_command(self, namespace: str, name: str, verb: str) -> str:
        value = f"{verb} 2026-12-03T10:00:00.000000Z"
        self.release["status"]["lastCommand"] = value  # handled by the controller
        return value

    def events(self, namespace: str, name: str) -> list[Any]:
        exc = ApiException(status=403, reason="Forbidden")
        exc.body = json.dumps({"message": FORBIDDEN})
        raise exc


def test_a_handled_command_is_not_reported_as_failed_when_events_are_forbidden(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = _Client()
    monkeypatch.setattr(cli, "_connect", lambda args: (fake, "shop"))
    out = io.StringIO()
    code = cli.main(["-n", "shop", "abort", "payments", "--wait"], out=out)
    assert code == 0, capsys.readouterr().err
    assert "abort sent to shop/payments" in out.getvalue()


def test_a_403_on_events_does_not_ask_for_rights_on_canaryreleases() -> None:
    exc = ApiException(status=403, reason="Forbidden")
    exc.body = json.dumps({"message": FORBIDDEN})
    assert "canaryreleases" not in cli._api_error(exc)
