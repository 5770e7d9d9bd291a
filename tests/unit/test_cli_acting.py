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


def test_retry_is_refused_while_failed_since_the_controller_never_answers_it() -> None:
    # Failed = target missing or spec invalid: the reconcile decides nothing, so
    # `status.lastCommand` never moves and `retry --wait` would time out.
    for reason in ("TargetNotFound", "InvalidSpec"):
        with pytest.raises(Refused, match="continues by itself"):
            check_command(_release(phase="Failed", reason=reason, stableTag="v1"), "retry")
    check_command(_release(phase="RolledBack", stableTag="v1", canaryTag="v2"), "retry")
