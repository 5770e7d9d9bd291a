"""The audit table in PostgreSQL, read with psycopg 3.

Everything runs in one READ ONLY transaction with a statement timeout, so a
misconfigured table name can never write and a slow query can never stall the
controller (nor can a server that stops answering: postgres_sessions.py).
Table and column names come from the spec and are quoted with
psycopg.sql.Identifier, never pasted into the text; values are parameters.
Timestamps without a time zone are read as UTC (the transaction sets it).

A connection failure or a timeout is `AuditLogUnreachable` (the release
holds); any other database error (no such table or column, permission
denied) is `AuditLogRejected`, a configuration problem to report.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from controller.adapters.ports import AuditLogRejected, AuditLogUnreachable
from controller.adapters.postgres_sessions import connect, read_only_transaction
from controller.api.auditlog import SqlAuditLog
from controller.api.placeholders import fill
from controller.auditlog.samples import AuditPlan, AuditSample

APPLICATION_NAME = "canary-controller"
MAX_ACTIONS = 500
MAX_SEEN = 10_000


def _identifier(dotted: str) -> sql.Identifier:
    return sql.Identifier(*dotted.split("."))


class PostgresAuditLog:
    def __init__(self, dsn: str, config: SqlAuditLog) -> None:
        self._dsn = dsn
        self._config = config

    def fetch(self, plan: AuditPlan) -> AuditSample:
        config = self._config
        timeout_ms = max(1, int(config.statement_timeout_length().total_seconds() * 1000))
        connect_s = max(1, round(config.connect_timeout_length().total_seconds()))
        try:
            conninfo_to_dict(self._dsn)
        except psycopg.ProgrammingError as exc:
            # libpq's parse errors quote the connection string, password and all.
            raise AuditLogRejected("the connection string is not valid libpq syntax") from exc
        try:
            with (
                connect(
                    self._dsn,
                    connect_s=connect_s,
                    statement_s=timeout_ms / 1000,
                    application_name=APPLICATION_NAME,
                ) as conn,
                read_only_transaction(conn, timeout_ms),
            ):
                return self._read(conn, plan)
        except psycopg.OperationalError as exc:  # includes QueryCanceled (statement timeout)
            raise AuditLogUnreachable(_short(exc)) from exc
        except psycopg.Error as exc:
            raise AuditLogRejected(_short(exc)) from exc

    def _read(self, conn: psycopg.Connection[Any], plan: AuditPlan) -> AuditSample:
        values = self._config.track_values
        if plan.by_track:
            canary, actors, truncated = self._counts(
                conn, plan.start, plan.end, values.canary, plan
            )
            stable, _, more = self._counts(conn, plan.start, plan.end, values.stable, plan)
            baseline: tuple[dict[str, float], ...] = ()
            truncated = truncated or more
        else:
            canary, actors, truncated = self._counts(conn, plan.start, plan.end, None, plan)
            stable = None
            earliest = self._earliest(conn)
            days = []
            for back in range(1, plan.baseline_days + 1):
                start, end = plan.baseline_window(back)
                if earliest is None or earliest > start:
                    break  # the log does not reach back this far
                counts, _, more = self._counts(conn, start, end, None, plan)
                days.append(counts)
                truncated = truncated or more
            baseline = tuple(days)
        seen = self._seen(conn, plan.history_start, plan.start)
        return AuditSample(
            canary=canary,
            stable=stable,
            baseline=baseline,
            seen_before=seen,
            actors=actors,
            truncated=truncated,
        )

    def _counts(
        self,
        conn: psycopg.Connection[Any],
        start: datetime,
        end: datetime,
        track: str | None,
        plan: AuditPlan,
    ) -> tuple[dict[str, float], dict[str, int], bool]:
        config = self._config
        action = sql.Identifier(config.action_column)
        stamp = sql.Identifier(config.timestamp_column)
        actors = (
            sql.SQL("count(DISTINCT {})").format(sql.Identifier(config.actor_column))
            if config.actor_column
            else sql.SQL("NULL::bigint")
        )
        where = sql.SQL("{stamp} >= %(start)s AND {stamp} < %(end)s").format(stamp=stamp)
        params: dict[str, Any] = {"start": start, "end": end, "limit": MAX_ACTIONS + 1}
        if track is not None:
            assert config.track_column is not None
            where = sql.SQL("{} AND {}::text = %(track)s").format(
                where, sql.Identifier(config.track_column)
            )
            params["track"] = _render_track(track, plan)
        query = sql.SQL(
            "SELECT {action}::text, count(*), {actors} FROM {table} WHERE {where} "
            "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT %(limit)s"
        ).format(action=action, actors=actors, table=_identifier(config.table), where=where)
        rows = conn.execute(query, params).fetchall()
        counts = {str(r[0]): float(r[1]) for r in rows[:MAX_ACTIONS]}
        distinct = {str(r[0]): int(r[2]) for r in rows[:MAX_ACTIONS] if r[2] is not None}
        return counts, distinct, len(rows) > MAX_ACTIONS

    def _earliest(self, conn: psycopg.Connection[Any]) -> datetime | None:
        query = sql.SQL("SELECT min({}) FROM {}").format(
            sql.Identifier(self._config.timestamp_column), _identifier(self._config.table)
        )
        row = conn.execute(query).fetchone()
        value = row[0] if row else None
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise AuditLogRejected(
                f"column {self._config.timestamp_column} is not a timestamp: {type(value).__name__}"
            )
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)

    def _seen(
        self, conn: psycopg.Connection[Any], start: datetime, end: datetime
    ) -> frozenset[str]:
        config = self._config
        query = sql.SQL(
            "SELECT DISTINCT {action}::text FROM {table} "
            "WHERE {stamp} >= %(start)s AND {stamp} < %(end)s LIMIT %(limit)s"
        ).format(
            action=sql.Identifier(config.action_column),
            table=_identifier(config.table),
            stamp=sql.Identifier(config.timestamp_column),
        )
        rows = conn.execute(query, {"start": start, "end": end, "limit": MAX_SEEN}).fetchall()
        return frozenset(str(r[0]) for r in rows)


def _render_track(value: str, plan: AuditPlan) -> str:
    return fill(value, {"canaryTag": plan.canary_tag or "", "stableTag": plan.stable_tag or ""})


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) < 300 else text[:300] + "..."
