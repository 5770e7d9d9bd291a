"""What `canaryctl` refuses before sending: the engine's own rules, one round trip sooner."""

from __future__ import annotations

from typing import Any

import pytest

from controller.cli.acting import Refused, check_command


def _release(**status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "app"}, "spec": {"release": {"tag": "v2"}}, "status": status}


def test_a_quick_rollback_is_neither_aborted_nor_paused() -> None:
    rolling_back = _release(phase="Promoting", reason="RollbackRequested", canaryTag="v1")
    for verb in ("abort", "pause"):
        with pytest.raises(Refused, match=r"quick rollback .* is not stopped"):
            check_command(rolling_back, verb)
    check_command(_release(phase="Promoting", canaryTag="v2"), "abort")  # a promotion: may


def test_a_promotion_cannot_be_paused_but_a_canary_can() -> None:
    with pytest.raises(Refused, match="does nothing in phase Promoting"):
        check_command(_release(phase="Promoting", canaryTag="v2"), "pause")
    check_command(_release(phase="Paused", canaryTag="v2"), "pause")
    with pytest.raises(Refused, match="already paused"):
        check_command(_release(phase="Paused", pausedAt="2026-12-03T10:00:00Z"), "pause")
