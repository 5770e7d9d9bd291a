"""The migration-history gate: has the database seen the migration the release needs?

Each tool keeps its own history table and its own idea of order:
- Flyway versions are ordered ("1.10" > "1.9"), so "at least" is a comparison,
  and a failed row means a half-applied migration;
- Alembic revisions are hashes in a graph, and alembic_version keeps only the
  heads, so the expected revision must be a current head;
- Django and Prisma record every applied migration by name, so the expected
  one must be among them (and, for Prisma, finished and not rolled back);
- a custom query returns versions, ordered like Flyway's.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from controller.gates.checks import MIGRATION_HISTORY, GateCheck, failed, passed

_DEFAULT_TABLES = {
    "alembic": "alembic_version",
    "flyway": "flyway_schema_history",
    "django": "django_migrations",
    "prisma": "_prisma_migrations",
}
_SELECTS = {
    "alembic": "SELECT version_num FROM {table}",
    "flyway": "SELECT version, success FROM {table} WHERE version IS NOT NULL",
    "django": "SELECT name FROM {table} WHERE app = %s",
    "prisma": (
        "SELECT migration_name, finished_at IS NOT NULL, rolled_back_at IS NOT NULL FROM {table}"
    ),
}
_SHOWN = 5


@dataclass(frozen=True)
class HistoryQuery:
    sql: str
    params: tuple[Any, ...] = ()


def _quoted(table: str) -> str:
    """Quote each part exactly as written; the spec's pattern admits no quote characters."""
    return ".".join(f'"{part}"' for part in table.split("."))


def history_query(
    tool: str, *, table: str | None = None, app: str | None = None, query: str | None = None
) -> HistoryQuery:
    if tool == "custom":
        assert query is not None, "validated by the spec"
        return HistoryQuery(query)
    sql = _SELECTS[tool].format(table=_quoted(table or _DEFAULT_TABLES[tool]))
    return HistoryQuery(sql, (app,) if tool == "django" else ())


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Flyway-style order: parts split on . or _, numbers compared as numbers."""
    parts = [p for p in re.split(r"[._]", version.strip()) if p != ""]
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts)


def _shown(values: Sequence[str]) -> str:
    head = ", ".join(values[-_SHOWN:])
    return head if len(values) <= _SHOWN else f"... {head}"


def judge_history(tool: str, expected: str, rows: Sequence[Sequence[Any]]) -> GateCheck:
    if tool == "flyway":
        return _judge_ordered(expected, [(str(r[0]), bool(r[1])) for r in rows], "flyway")
    if tool == "custom":
        return _judge_ordered(expected, [(str(r[0]), True) for r in rows if r[0] is not None], tool)
    if tool == "alembic":
        heads = sorted(str(r[0]) for r in rows)
        if expected in heads:
            return passed(MIGRATION_HISTORY, f"alembic is at {expected}", heads)
        return failed(
            MIGRATION_HISTORY,
            "MigrationsBehind",
            f"alembic_version is {_shown(heads) or 'empty'}, expected {expected}",
            heads,
        )
    if tool == "prisma":
        applied = sorted(str(r[0]) for r in rows if r[1] and not r[2])
        unfinished = sorted(str(r[0]) for r in rows if not r[1] and not r[2])
        if unfinished:
            return failed(
                MIGRATION_HISTORY,
                "MigrationFailed",
                f"prisma migration {unfinished[0]} started but never finished",
                unfinished,
            )
        return _judge_named(expected, applied, tool)
    return _judge_named(expected, sorted(str(r[0]) for r in rows), tool)


def _judge_named(expected: str, applied: list[str], tool: str) -> GateCheck:
    if expected in applied:
        return passed(
            MIGRATION_HISTORY, f"{tool} migration {expected} is applied", applied[-_SHOWN:]
        )
    return failed(
        MIGRATION_HISTORY,
        "MigrationsBehind",
        f"{tool} migration {expected} is not applied (latest: {_shown(applied) or 'none'})",
        applied[-_SHOWN:],
    )


def _judge_ordered(expected: str, rows: list[tuple[str, bool]], tool: str) -> GateCheck:
    failures = sorted((v for v, ok in rows if not ok), key=version_key)
    if failures:
        return failed(
            MIGRATION_HISTORY,
            "MigrationFailed",
            f"{tool} records a failed migration {failures[-1]}",
            failures[-_SHOWN:],
        )
    versions = sorted((v for v, _ in rows), key=version_key)
    if versions and version_key(versions[-1]) >= version_key(expected):
        return passed(
            MIGRATION_HISTORY, f"{tool} is at {versions[-1]} (>= {expected})", versions[-_SHOWN:]
        )
    return failed(
        MIGRATION_HISTORY,
        "MigrationsBehind",
        f"{tool} is at {versions[-1] if versions else 'no version'}, expected at least {expected}",
        versions[-_SHOWN:],
    )
