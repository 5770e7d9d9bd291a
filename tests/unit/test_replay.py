"""Replay's loop over a recorded past: what it replays, what it leaves out, when it cannot judge.

The metrics here come from functions of time (a pure-logic test); replay
against a real, backfilled Prometheus and PostgreSQL is in
tests/integration/test_judge_prometheus.py and test_replay_sources.py.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from controller.adapters.ports import MetricsUnreachable, QueryRejected
from controller.api.spec import CanaryReleaseSpec
from controller.replay import cli
from controller.replay.replaying import replay
from devenv.ports import free_port
from tests.unit.world import MetricFn, breaking_at, healthy, make_spec

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
STEPS = [{"setWeight": 10}, {"pause": {"duration": "30m"}}, {"setWeight": 100}]


class _Recorded:
    """A recorded Prometheus as a function of (query, track, time); None is no data."""

    def __init__(self, metric: MetricFn, fail: Exception | None = None) -> None:
        self.metric, self.fail, self.asked = metric, fail, 0

    def query(self, promql: str, at: datetime) -> float | None:
        self.asked += 1
        if self.fail is not None:
            raise self.fail
        track = "canary" if 'track="canary"' in promql else "stable"
        return self.metric(promql, track, at)

    def query_vector(self, promql: str, at: datetime) -> list[tuple[dict[str, str], float]]:
        value = self.query(promql, at)
        return [] if value is None else [({}, value)]


def _spec(**extra: object) -> CanaryReleaseSpec:
    raw = make_spec(steps=STEPS).model_dump(by_alias=True, exclude_none=True)
    return CanaryReleaseSpec.model_validate({**raw, **extra})


def _replay(spec: CanaryReleaseSpec, source: _Recorded, hours: float = 3):  # type: ignore[no-untyped-def]
    return replay(
        spec, source, start=T0, end=T0 + timedelta(hours=hours), every=timedelta(minutes=1)
    )


def test_gates_and_hooks_are_left_out_and_said_so() -> None:
    """They read the live cluster: taken as passed, and named."""
    spec = _spec(
        gates={"environment": {"required": ["DATABASE_URL"]}},
        hooks={"preRollout": {"job": {"template": {"spec": {"containers": []}}}}},
    )
    timeline = _replay(spec, _Recorded(healthy))
    assert timeline.outcome == "Succeeded", timeline.final.message
    assert [part.split(" ")[0] for part in timeline.not_replayed] == ["gates", "hooks"]
    assert timeline.to_json()["notReplayed"] == list(timeline.not_replayed)
    assert _replay(_spec(), _Recorded(healthy)).not_replayed == ()


def test_deploy_windows_are_replayed() -> None:
    """Monday 09:00: the release waits for the 10:00 start window, passes its analysis by
    about 10:31 and is promoted when the 12:00 promote window opens."""
    windows = {
        "start": [{"schedule": "0 10 * * 1-5", "duration": "8h"}],
        "promote": [{"schedule": "0 12 * * 1-5", "duration": "1h"}],
    }
    environment = {"environment": {"required": ["DATABASE_URL"]}}
    timeline = _replay(_spec(gates={"windows": windows, **environment}), _Recorded(healthy), 5)
    assert timeline.outcome == "Succeeded", timeline.final.message
    assert [part.split(" ")[0] for part in timeline.not_replayed] == ["gates"]
    reasons = [(e.at, e.reason) for e in timeline.events]
    assert reasons[0] == (T0, "ReleaseWaiting")
    started = next(at for at, reason in reasons if reason == "ReleaseStarted")
    assert started == T0 + timedelta(hours=1)
    held = next(at for at, reason in reasons if reason == "PromotionWaiting")
    promoting = next(at for at, reason in reasons if reason == "Promoting")
    assert started < held < T0 + timedelta(hours=2) and promoting == T0 + timedelta(hours=3)
    only_windows = _replay(_spec(gates={"windows": windows}), _Recorded(healthy), 5)
    assert only_windows.not_replayed == () and only_windows.outcome == "Succeeded"
    # a range the start window never opens in: no decision, and no data problem either
    early = _replay(_spec(gates={"windows": windows}), _Recorded(healthy), 0.5)
    assert (early.outcome, early.problem) == ("Undecided", None)
    assert "OutsideDeployWindow" in (early.final.reason or "")
    assert "may start at 2026-11-02T10:00" in (early.final.message or "")


def test_the_watch_after_promotion_is_replayed_and_can_roll_back() -> None:
    promoted_by = T0 + timedelta(minutes=40)
    watch = {
        "duration": "2h",
        "interval": "1m",
        "metrics": [
            {
                "name": "stable-errors",
                "query": 'sum(errors{track="{{track}}"})',
                "threshold": {"max": 0.05},
            }
        ],
    }

    def stable_breaks_later(_: str, track: str, now: datetime) -> float | None:
        return 0.2 if track == "stable" and now >= promoted_by + timedelta(minutes=30) else 0.01

    timeline = _replay(_spec(postPromotion=watch), _Recorded(stable_breaks_later))
    assert timeline.outcome == "RolledBack", timeline.final.message
    assert timeline.decided_at is not None and timeline.decided_at > promoted_by
    assert timeline.watch and timeline.watch[-1].metrics[0].verdict == "fail"
    assert timeline.to_json()["watch"][-1]["metrics"][0]["name"] == "stable-errors"
    assert [e.reason for e in timeline.events if e.reason in ("Promoted", "RolledBack")] == [
        "Promoted",
        "RolledBack",
    ]
    # the same release without the breach: promoted, and only decided once the watch passed
    calm = _replay(_spec(postPromotion=watch), _Recorded(healthy))
    assert calm.outcome == "Succeeded" and calm.decided_at is not None
    assert calm.final.post_promotion is not None and calm.final.post_promotion.state == "Passed"
    assert calm.decided_at >= calm.final.post_promotion.until


def test_a_breach_of_the_canary_is_still_found() -> None:
    timeline = _replay(_spec(), _Recorded(breaking_at(T0 + timedelta(minutes=10))))
    assert timeline.outcome == "RolledBack" and timeline.problem is None


def test_an_unreachable_prometheus_ends_the_replay_at_the_first_look() -> None:
    source = _Recorded(healthy, MetricsUnreachable("connection refused", connection=True))
    timeline = _replay(_spec(), source)
    assert timeline.outcome == "NotJudged"
    assert timeline.problem is not None and "did not answer" in timeline.problem
    assert len(timeline.looks) == 1 and source.asked == 1  # not a day of timeouts


def test_a_query_that_times_out_is_held_as_the_controller_holds_it() -> None:
    """Only a refused connection ends replay; a slow Prometheus answers the next look."""
    slow = MetricsUnreachable("read timed out")

    class Slow(_Recorded):
        def query(self, promql: str, at: datetime) -> float | None:
            self.asked += 1
            if self.asked <= 2:
                raise slow  # the first look times out
            return healthy(promql, "", at)

    timeline = _replay(_spec(), Slow(healthy))
    assert timeline.problem is None and timeline.outcome == "Succeeded"
    assert timeline.looks[0].metrics[0].verdict == "inconclusive"
    always = _replay(_spec(), _Recorded(healthy, slow), hours=0.5)
    assert always.problem is not None and "went unanswered" in always.problem


def test_a_rejected_query_ends_the_replay_naming_the_metric() -> None:
    timeline = _replay(_spec(), _Recorded(healthy, QueryRejected("parse error: unexpected '{'")))
    assert timeline.outcome == "NotJudged" and len(timeline.looks) == 1
    assert timeline.problem == "metric error-rate: query failed: parse error: unexpected '{'"


def test_a_window_without_data_is_not_a_decision() -> None:
    timeline = _replay(_spec(), _Recorded(lambda *_: None), hours=1)
    assert timeline.outcome == "NotJudged"
    assert timeline.problem is not None and "retention" in timeline.problem


def test_a_window_in_the_future_is_refused_before_asking_anyone(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "release.yaml"
    path.write_text(yaml.safe_dump(_spec().model_dump(by_alias=True, exclude_none=True)))
    soon = (datetime.now(UTC) + timedelta(minutes=30)).isoformat()
    assert cli.main(["-f", str(path), "--from", soon, "--for", "1h"]) == 2
    assert "is in the future" in capsys.readouterr().err
    earlier = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    assert cli.main(["-f", str(path), "--from", earlier, "--to", soon]) == 2
    assert "is in the future" in capsys.readouterr().err


def test_a_release_that_started_today_replays_up_to_now(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The default --for 24h runs past now: replay stops at now instead of refusing."""
    path = tmp_path / "release.yaml"
    path.write_text(yaml.safe_dump(_spec().model_dump(by_alias=True, exclude_none=True)))
    earlier = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens: refused at the first look
    assert cli.main(["-f", str(path), "--from", earlier, "--prometheus", nobody]) == 1
    err = capsys.readouterr().err
    assert "up to now" in err and "could not judge: Prometheus did not answer" in err


def test_replay_of_a_release_with_traffic_routing_judges_the_metrics() -> None:
    """Replay 'runs the analysis on the real engine'; a trafficRouting release must not be
    rolled back for 'canary pods not Ready' whatever the recorded data says."""
    routed = _spec(trafficRouting={"stableService": "app", "gatewayAPI": {"httpRoute": "app"}})
    healthy_run = _replay(routed, _Recorded(healthy))
    assert healthy_run.outcome == "Succeeded", healthy_run.final.message
    breach = _replay(routed, _Recorded(breaking_at(T0 + timedelta(minutes=10))))
    assert "error-rate" in (breach.final.message or ""), breach.final.message


@pytest.mark.parametrize(
    "args",
    [
        ["--from", "inf"],
        ["--from", "1e20"],
        ["--from", "2024-01-01", "--for", "100000000d"],
        ["--from", "2024-01-01", "--every", "foo"],
    ],
)
def test_replay_bad_time_arguments_are_bad_usage_not_a_traceback(
    tmp_path: Any, args: list[str]
) -> None:
    path = tmp_path / "release.yaml"
    path.write_text(yaml.safe_dump(_spec().model_dump(by_alias=True, exclude_none=True)))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "controller",
            "replay",
            "-f",
            str(path),
            "--prometheus",
            "http://127.0.0.1:1",
            *args,
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-300:]
