"""The watched read-only transaction against a real PostgreSQL: every round trip is bounded.

The adapters' own tests freeze the server mid-query; these freeze it at the
transaction's edges (BEGIN, COMMIT, and an error inside the block), where a
transaction block run by psycopg itself would wait as long as TCP does.
"""

from __future__ import annotations

import contextlib
import time

import psycopg
import pytest

from controller.adapters.postgres_sessions import (
    GRACE_S,
    GuardedConnection,
    NoAnswer,
    connect,
    read_only_transaction,
)
from tests.frozen_postgres import frozen_pid

STATEMENT_MS = 500
BOUND_S = STATEMENT_MS / 1000 + GRACE_S


def _connect(dsn: str) -> GuardedConnection:
    return connect(dsn, connect_s=5, statement_s=STATEMENT_MS / 1000, application_name="sessions")


def _timed_out(began: float) -> float:
    waited = time.monotonic() - began
    assert BOUND_S - 0.1 <= waited < BOUND_S + 5, waited
    return waited


def test_a_server_frozen_before_begin_is_given_up_on(database: str) -> None:
    with _connect(database) as conn, frozen_pid(database, conn.info.backend_pid):
        began = time.monotonic()
        with pytest.raises(NoAnswer), read_only_transaction(conn, STATEMENT_MS):
            pytest.fail("the body ran although BEGIN had no answer")
        _timed_out(began)
        assert conn.closed


def test_a_server_frozen_before_commit_is_given_up_on(database: str) -> None:
    with _connect(database) as conn, contextlib.ExitStack() as thaw:
        with pytest.raises(NoAnswer), read_only_transaction(conn, STATEMENT_MS):
            assert conn.execute("SELECT 1").fetchone() == (1,)
            thaw.enter_context(frozen_pid(database, conn.info.backend_pid))
            began = time.monotonic()
        _timed_out(began)
        assert conn.closed


def test_an_error_in_the_block_closes_the_connection_instead_of_waiting_for_rollback(
    database: str,
) -> None:
    """psycopg's own block would send ROLLBACK here, and wait on the frozen server for it."""
    with _connect(database) as conn, contextlib.ExitStack() as thaw:
        with pytest.raises(LookupError), read_only_transaction(conn, STATEMENT_MS):
            thaw.enter_context(frozen_pid(database, conn.info.backend_pid))
            began = time.monotonic()
            raise LookupError("the caller's own error")
        assert time.monotonic() - began < 1.0
        assert conn.closed


def test_the_transaction_is_read_only_and_its_settings_do_not_outlive_it(database: str) -> None:
    with _connect(database) as conn:
        with (
            pytest.raises(psycopg.errors.ReadOnlySqlTransaction),
            read_only_transaction(conn, STATEMENT_MS),
        ):
            conn.execute("CREATE TABLE written (id int)")
        assert conn.closed
    with _connect(database) as conn:
        default = conn.execute("SHOW statement_timeout").fetchone()
        with read_only_transaction(conn, STATEMENT_MS):
            assert conn.execute("SHOW statement_timeout").fetchone() == ("500ms",)
            assert conn.execute("SHOW TimeZone").fetchone() == ("UTC",)
        # committed: the connection is idle again, with the server's own settings
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert conn.execute("SHOW statement_timeout").fetchone() == default
