"""PostgreSQL for the gates: information_schema, migration history, backup times.

Every query runs in its own READ ONLY transaction with a statement timeout,
so a gate can never write, and a slow catalogue can never stall the
controller. The connection string comes from a Secret (never from the CR)
and is never put in a message: libpq's errors name the host and user, and
anything that looks like the password is cut out regardless.

A refused connection or a timeout is `DatabaseUnreachable`; any other error
(no such table, permission denied) is `QueryFailed`. Both block the gate.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import psycopg
from pglast import parse_sql
from pglast.parser import ParseError
from psycopg.conninfo import conninfo_to_dict

from controller.adapters.gate_ports import DatabaseUnreachable, QueryFailed
from controller.adapters.postgres_sessions import connect, read_only_transaction
from controller.gates.schema import ColumnFact

APPLICATION_NAME = "canary-controller-gates"
MAX_ROWS = 10_000

_COLUMNS = """
SELECT table_schema, table_name, column_name, data_type, udt_name,
       character_maximum_length, numeric_precision, numeric_scale, datetime_precision
FROM information_schema.columns
WHERE (table_schema, table_name) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
"""
_TABLES = """
SELECT table_schema, table_name FROM information_schema.tables
WHERE (table_schema, table_name) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
"""


class PostgresGates:
    def __init__(
        self,
        dsn: str,
        *,
        statement_timeout: timedelta = timedelta(seconds=5),
        connect_timeout: timedelta = timedelta(seconds=5),
    ) -> None:
        self._dsn = dsn
        self._statement_ms = max(1, int(statement_timeout.total_seconds() * 1000))
        self._connect_s = max(1, round(connect_timeout.total_seconds()))
        try:
            self._secret = str(conninfo_to_dict(dsn).get("password") or "")
        except psycopg.ProgrammingError:
            self._secret = ""

    def _clean(self, exc: BaseException) -> str:
        text = " ".join(str(exc).split()) or type(exc).__name__
        if self._secret:
            text = text.replace(self._secret, "***")
        return text[:500]

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection[Any]]:
        try:
            conn = connect(
                self._dsn,
                connect_s=self._connect_s,
                statement_s=self._statement_ms / 1000,
                application_name=APPLICATION_NAME,
            )
        except psycopg.ProgrammingError as exc:
            # A malformed connection string: its text may hold the password, so say no more.
            raise QueryFailed("the connection string is not valid libpq syntax") from exc
        except psycopg.OperationalError as exc:
            raise DatabaseUnreachable(self._clean(exc)) from exc
        try:
            with conn, read_only_transaction(conn, self._statement_ms):
                yield conn
        except psycopg.errors.QueryCanceled as exc:
            raise QueryFailed(f"statement timeout ({self._statement_ms} ms)") from exc
        except psycopg.OperationalError as exc:
            raise DatabaseUnreachable(self._clean(exc)) from exc
        except psycopg.Error as exc:
            raise QueryFailed(self._clean(exc)) from exc

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if not params:
            # Without parameters psycopg uses the simple query protocol, which runs every
            # statement in the text: "COMMIT; DROP ..." would end READ ONLY and write.
            try:
                statements = parse_sql(sql)
            except ParseError as exc:
                raise QueryFailed(f"the query does not parse: {exc.args[0]}") from exc
            if len(statements) != 1:
                raise QueryFailed(f"the query must be one statement, not {len(statements)}")
        with self._transaction() as conn:
            cursor = conn.execute(sql.encode(), list(params) or None)
            return list(cursor.fetchmany(MAX_ROWS)) if cursor.description else []

    def tables(self, names: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        schemas, tables = [s for s, _ in names], [t for _, t in names]
        return {(str(r[0]), str(r[1])) for r in self.rows(_TABLES, [schemas, tables])}

    def columns(self, names: Sequence[tuple[str, str]]) -> list[ColumnFact]:
        schemas, tables = [s for s, _ in names], [t for _, t in names]
        return [
            ColumnFact(
                schema=r[0],
                table=r[1],
                column=r[2],
                data_type=r[3],
                udt_name=r[4],
                character_maximum_length=r[5],
                numeric_precision=r[6],
                numeric_scale=r[7],
                datetime_precision=r[8],
            )
            for r in self.rows(_COLUMNS, [schemas, tables])
        ]
