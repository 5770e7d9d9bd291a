"""`python -m controller replay` with every source the controller reads, all real.

A backfilled Prometheus holds both tracks' requests; a PostgreSQL holds the
application's audit_logs table with three days of history and a burst of
deletions plus a never-seen action in the canary window. Replay must roll
back on the audit log, naming the action, as the controller would; and a
query Prometheus rejects, or a window it holds nothing for, must end replay
with an error rather than with "no decision".
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import yaml

from devenv.backfill import request_series
from devenv.prometheus import PrometheusServer
from tests.fixtures_servers import BackfillFactory
from tests.replay_releases import errors_metric, web_release

DAY = datetime(2026, 11, 20, tzinfo=UTC)
START = DAY + timedelta(hours=12)
BURST = START + timedelta(minutes=20)


def _release(**analysis: Any) -> dict[str, Any]:
    return web_release([errors_metric()], pause="2h", **analysis)


@pytest.fixture
def traffic(backfilled_prometheus: BackfillFactory) -> PrometheusServer:
    """Both tracks healthy, 1% errors, for the whole afternoon."""
    start, end = (DAY + timedelta(hours=10)).timestamp(), (DAY + timedelta(hours=16)).timestamp()
    series = [
        s
        for track, rps in (("stable", 90.0), ("canary", 10.0))
        for s in request_series(
            "shop", "web", track, start=start, end=end, step_s=15.0,
            rps=lambda _t, r=rps: r, error_ratio=lambda _t: 0.01,
        )
    ]  # fmt: skip
    return backfilled_prometheus(series)


@pytest.fixture
def audit_db(database: str) -> str:
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(
            """
            CREATE TABLE audit_logs (
                id bigserial PRIMARY KEY, created_at timestamptz NOT NULL,
                action text NOT NULL, actor text
            )
            """
        )
        conn.execute(
            """
            INSERT INTO audit_logs (created_at, action, actor)
            SELECT t, a, 'user-' || (extract(minute FROM t)::int %% 7)
            FROM generate_series(%(from)s::timestamptz, %(to)s, interval '1 minute') AS t,
                 unnest(ARRAY['user.login', 'user.login', 'order.create']) AS a
            UNION ALL
            SELECT %(burst)s::timestamptz + n * interval '10 seconds', 'user.delete', 'mallory'
            FROM generate_series(1, 60) AS n
            """,
            {"from": DAY - timedelta(days=3), "to": DAY + timedelta(hours=16), "burst": BURST},
        )
    return database


def _replay(
    tmp_path: pathlib.Path, release: dict[str, Any], *args: str
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "release.yaml"
    path.write_text(yaml.safe_dump(release))
    return subprocess.run(
        [sys.executable, "-m", "controller", "replay", "-f", str(path), "-o", "json", *args],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_replay_rolls_back_on_the_sql_audit_log_naming_the_action(
    traffic: PrometheusServer, audit_db: str, tmp_path: pathlib.Path
) -> None:
    audit = {"sql": {"secretRef": {"name": "db", "key": "dsn"}, "actorColumn": "actor"}}
    release = _release(auditLog=audit)
    window = ("--from", START.isoformat(), "--for", "1h", "--prometheus", traffic.url)
    refused = _replay(tmp_path, release, *window)
    assert refused.returncode == 2 and "--audit-dsn" in refused.stderr
    done = _replay(tmp_path, release, *window, "--audit-dsn", audit_db)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["outcome"]["phase"] == "RolledBack", result["outcome"]
    assert "user.delete" in result["outcome"]["message"]
    rolled = datetime.fromisoformat(result["outcome"]["at"])
    assert BURST < rolled <= BURST + timedelta(minutes=5)
    judged = [look["auditLog"] for look in result["timeline"] if look["auditLog"]]
    assert judged and judged[-1].startswith("fail")
    # before the burst the audit log passed: the metrics alone were no reason to roll back
    assert all(look["metrics"][0]["verdict"] != "fail" for look in result["timeline"])


def test_a_query_prometheus_rejects_ends_replay_with_an_error(
    traffic: PrometheusServer, tmp_path: pathlib.Path
) -> None:
    release = _release()
    release["spec"]["analysis"]["metrics"][0]["errors"] = "sum(increase(http_request_errors_total["
    done = _replay(tmp_path, release, "--from", START.isoformat(), "--for", "2h",
                   "--prometheus", traffic.url)  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "could not judge: metric errors" in done.stderr and "parse error" in done.stderr
    assert len(json.loads(done.stdout)["timeline"]) == 1  # stopped at the first look


def test_a_window_prometheus_holds_nothing_for_ends_replay_with_an_error(
    traffic: PrometheusServer, tmp_path: pathlib.Path
) -> None:
    before = (DAY - timedelta(days=30)).isoformat()
    done = _replay(tmp_path, _release(), "--from", before, "--for", "30m",
                   "--prometheus", traffic.url)  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "retention" in done.stderr
    assert json.loads(done.stdout)["outcome"]["phase"] == "NotJudged"
