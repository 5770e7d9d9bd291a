"""The PostgreSQL audit provider against a real server: counts, anomalies, and its guard rails."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from pydantic import ValidationError

from controller.adapters.ports import AuditLogRejected, AuditLogUnreachable
from controller.adapters.postgres_audit import APPLICATION_NAME, PostgresAuditLog
from controller.api.auditlog import AuditLog, SqlAuditLog
from controller.auditlog import AuditPlan
from controller.auditlog.detection import detect
from devenv.postgres import free_port
from tests.frozen_postgres import frozen_backend

# Five days of history, then the canary hour 12:00-13:00 of the fifth day, with
# a known anomaly at 12:20-12:50: a burst of deletions and a brand-new action.
DAY5 = datetime(2026, 11, 20, tzinfo=UTC)
WINDOW = (DAY5 + timedelta(hours=12), DAY5 + timedelta(hours=13))
QUIET = (DAY5 + timedelta(hours=10), DAY5 + timedelta(hours=11))
BURST = (DAY5 + timedelta(hours=12, minutes=20), DAY5 + timedelta(hours=12, minutes=50))

SCHEMA = """
CREATE TABLE audit_logs (
    id bigserial PRIMARY KEY,
    created_at timestamptz NOT NULL,
    action text NOT NULL,
    actor text,
    track text
);
CREATE INDEX ON audit_logs (created_at);
"""


def _fill(conn: psycopg.Connection[Any], *, tracked: bool) -> None:
    """Logins every 30s, a deletion every 10 minutes, from 4 days before DAY5 to DAY5 14:00.

    With `tracked`, one event in ten is the canary's (it has one pod in ten).
    """
    start, end = DAY5 - timedelta(days=4), DAY5 + timedelta(hours=14)
    track = "CASE WHEN n %% 10 = 0 THEN 'canary' ELSE 'stable' END" if tracked else "NULL"
    conn.execute(
        f"""
        INSERT INTO audit_logs (created_at, action, actor, track)
        SELECT t, 'user.login', 'user-' || (n %% 50), {track}
        FROM generate_series(%(start)s::timestamptz, %(end)s, interval '30 seconds')
             WITH ORDINALITY AS g(t, n)
        UNION ALL
        SELECT t, 'user.delete', 'admin-' || (n %% 3), {track}
        FROM generate_series(%(start)s::timestamptz, %(end)s, interval '10 minutes')
             WITH ORDINALITY AS g(t, n)
        """,
        {"start": start, "end": end},
    )
    burst_track = "'canary'" if tracked else "NULL"
    conn.execute(
        f"""
        INSERT INTO audit_logs (created_at, action, actor, track)
        SELECT t, 'user.delete', 'mallory', {burst_track}
        FROM generate_series(%(start)s::timestamptz, %(end)s, interval '30 seconds') AS g(t)
        WHERE t < %(end)s
        UNION ALL
        SELECT %(start)s::timestamptz + n * interval '1 minute', 'admin.impersonate', 'mallory',
               {burst_track}
        FROM generate_series(1, 4) AS n
        """,
        {"start": BURST[0], "end": BURST[1]},
    )


@pytest.fixture
def audit_db(database: str) -> str:
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(SCHEMA)
        _fill(conn, tracked=False)
    return database


@pytest.fixture
def tracked_db(database: str) -> str:
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(SCHEMA)
        _fill(conn, tracked=True)
    return database


def _config(**sql: Any) -> AuditLog:
    raw = {"secretRef": {"name": "db", "key": "dsn"}, "actorColumn": "actor", **sql}
    return AuditLog.model_validate({"sql": raw})


def _source(dsn: str, config: AuditLog) -> PostgresAuditLog:
    assert config.sql is not None
    return PostgresAuditLog(dsn, config.sql)


def _plan(window: tuple[datetime, datetime], *, by_track: bool = False) -> AuditPlan:
    return AuditPlan(window[0], window[1], by_track=by_track, baseline_days=7)


def test_counts_per_action_and_the_days_the_log_reaches_back(audit_db: str) -> None:
    sample = _source(audit_db, _config()).fetch(_plan(WINDOW))
    assert sample.canary["user.login"] == 120  # every 30s for an hour, end excluded
    assert sample.canary["user.delete"] == 6 + 60  # the usual six, and the burst
    assert sample.canary["admin.impersonate"] == 4
    assert sample.actors["user.delete"] == 4  # three admins and mallory
    assert len(sample.baseline) == 4  # the log starts 4 days before DAY5
    assert all(day == {"user.login": 120, "user.delete": 6} for day in sample.baseline)
    assert sample.seen_before == {"user.login", "user.delete"}


def test_the_known_anomaly_is_found_at_its_known_time(audit_db: str) -> None:
    config = _config()
    plan = _plan(WINDOW)
    sample = _source(audit_db, config).fetch(plan)
    report = detect(config, plan, sample, canary_share=None, now=WINDOW[1])
    assert report.verdict == "fail" and report.comparison == "seasonal"
    found = {f.action: f for f in report.anomalies}
    assert set(found) == {"user.delete", "admin.impersonate"}
    assert found["admin.impersonate"].kind == "new" and found["admin.impersonate"].count == 4
    rise = found["user.delete"]
    assert rise.kind == "rise" and rise.count == 66 and rise.expected == pytest.approx(6.0)
    assert rise.actors == 4


def test_an_hour_without_the_anomaly_passes(audit_db: str) -> None:
    config = _config()
    plan = _plan(QUIET)
    report = detect(
        config, plan, _source(audit_db, config).fetch(plan), canary_share=None, now=QUIET[1]
    )
    assert report.verdict == "pass" and report.actions_tested == 2


def test_canary_against_stable_by_the_track_column(tracked_db: str) -> None:
    config = _config(trackColumn="track")
    plan = _plan(WINDOW, by_track=True)
    sample = _source(tracked_db, config).fetch(plan)
    assert sample.stable is not None
    assert sample.canary["user.login"] + sample.stable["user.login"] == 120
    report = detect(config, plan, sample, canary_share=0.1, now=WINDOW[1])
    assert report.verdict == "fail" and report.comparison == "track"
    assert {f.action for f in report.anomalies} == {"user.delete", "admin.impersonate"}
    quiet = _plan(QUIET, by_track=True)
    calm = detect(
        config, quiet, _source(tracked_db, config).fetch(quiet), canary_share=0.1, now=QUIET[1]
    )
    assert calm.verdict == "pass"


def test_a_version_column_is_matched_with_the_release_tags(database: str) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(SCHEMA.replace("track text", "app_version text"))
        conn.execute(
            "INSERT INTO audit_logs (created_at, action, app_version) VALUES "
            "(%(t)s, 'user.login', '2.4.0'), (%(t)s, 'user.login', '2.3.9'),"
            "(%(t)s, 'user.login', '2.3.9')",
            {"t": WINDOW[0]},
        )
    config = _config(
        trackColumn="app_version",
        trackValues={"canary": "{{canaryTag}}", "stable": "{{stableTag}}"},
    )
    plan = AuditPlan(
        WINDOW[0], WINDOW[1], by_track=True, baseline_days=3, canary_tag="2.4.0", stable_tag="2.3.9"
    )
    sample = _source(database, config).fetch(plan)
    assert sample.canary == {"user.login": 1} and sample.stable == {"user.login": 2}


def test_identifiers_are_quoted_mixed_case_and_schema_qualified(database: str) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute('CREATE SCHEMA "Audit"')
        conn.execute('CREATE TABLE "Audit"."Events" ("When" timestamp, "What" text)')
        conn.execute(
            """INSERT INTO "Audit"."Events" VALUES (%s, 'order.create'), (%s, 'order.create')""",
            [WINDOW[0].replace(tzinfo=None), WINDOW[0].replace(tzinfo=None) + timedelta(hours=2)],
        )
    config = AuditLog.model_validate(
        {
            "sql": {
                "secretRef": {"name": "db", "key": "dsn"},
                "table": "Audit.Events",
                "timestampColumn": "When",
                "actionColumn": "What",
            }
        }
    )
    sample = _source(database, config).fetch(_plan(WINDOW))
    # a timestamp without time zone is read as UTC: only the first row is in the window
    assert sample.canary == {"order.create": 1}


def test_names_that_would_need_escaping_are_refused_by_the_spec() -> None:
    with pytest.raises(ValidationError):
        SqlAuditLog.model_validate(
            {"secretRef": {"name": "db", "key": "dsn"}, "table": "audit_logs; DROP TABLE users"}
        )
    with pytest.raises(ValidationError):
        SqlAuditLog.model_validate(
            {"secretRef": {"name": "db", "key": "dsn"}, "actionColumn": 'action"--'}
        )


def test_the_transaction_is_read_only_even_if_the_table_is_a_trap(database: str) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(SCHEMA)
        conn.execute("CREATE TABLE side_effects (n int)")
        conn.execute(
            """
            CREATE FUNCTION sneaky() RETURNS SETOF audit_logs LANGUAGE plpgsql AS $$
            BEGIN
                INSERT INTO side_effects VALUES (1);
                RETURN QUERY SELECT * FROM audit_logs;
            END $$;
            CREATE VIEW trapped AS SELECT * FROM sneaky();
            """
        )
    with pytest.raises(AuditLogRejected, match="read-only transaction"):
        _source(database, _config(table="trapped")).fetch(_plan(WINDOW))
    with psycopg.connect(database) as conn:
        assert conn.execute("SELECT count(*) FROM side_effects").fetchone() == (0,)


def _slow_view(database: str, seconds: int) -> None:
    """`slow_logs`: the audit table, after `seconds` of sleep in the server."""
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(SCHEMA)
        conn.execute(
            f"""
            CREATE FUNCTION slow() RETURNS SETOF audit_logs LANGUAGE sql AS $$
                SELECT pg_sleep({seconds}); SELECT * FROM audit_logs;
            $$;
            CREATE VIEW slow_logs AS SELECT * FROM slow();
            """.encode()
        )


def test_a_slow_query_hits_the_statement_timeout_and_is_not_a_breach(database: str) -> None:
    _slow_view(database, 5)
    source = _source(database, _config(table="slow_logs", statementTimeout="300ms"))
    with pytest.raises(AuditLogUnreachable, match="statement timeout"):
        source.fetch(_plan(WINDOW))


def test_a_server_that_stops_answering_is_unreachable_within_the_timeout(database: str) -> None:
    """Its own statement_timeout cannot fire: the client gives up by itself, in seconds."""
    _slow_view(database, 60)
    source = _source(database, _config(table="slow_logs", statementTimeout="1s"))
    with frozen_backend(database, APPLICATION_NAME, "slow_logs") as frozen:
        began = time.monotonic()
        with pytest.raises(AuditLogUnreachable, match=r"no answer within 3 s"):
            source.fetch(_plan(WINDOW))
        waited = time.monotonic() - began
    assert frozen  # the backend really was frozen while the query ran
    assert waited < 60  # not the minute the query takes, nor TCP's quarter of an hour


def test_a_missing_table_is_a_configuration_error(database: str) -> None:
    with pytest.raises(AuditLogRejected, match="does not exist"):
        _source(database, _config(table="no_such_table")).fetch(_plan(WINDOW))


def test_a_database_that_is_down_is_unreachable_not_an_error() -> None:
    dsn = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    with pytest.raises(AuditLogUnreachable, match=r"refused|failed"):
        _source(dsn, _config(connectTimeout="2s")).fetch(_plan(WINDOW))


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://app:hunter2pw@[::1/audit",
        "host=db user=app password=hunter2pw dbname=audit sslmode",
        "host=db user=app password=pw hunter2pw dbname=audit",
    ],
)
def test_a_connection_string_libpq_cannot_read_is_refused_without_its_password(dsn: str) -> None:
    """libpq's own message quotes the string, password and all; status and logs must not."""
    plan = AuditPlan(WINDOW[0], WINDOW[1], by_track=True, baseline_days=7)
    with pytest.raises(AuditLogRejected, match="not valid libpq syntax") as refused:
        _source(dsn, _config()).fetch(plan)
    assert "hunter2pw" not in str(refused.value)
