"""PostgreSQL sessions that cannot hold a worker longer than their own timeouts.

`statement_timeout` is enforced by the server, so it does nothing once the
server, or the network to it, stops answering after a query was sent: the
client would wait in recv() for as long as TCP lets it (15 minutes to over two
hours), and with it the release's worker, its health checks and a human's
`abort`. Two client-side bounds close that gap:
- TCP keepalives, so a peer that is gone (a node that died, a partition) is
  noticed within seconds of going quiet;
- a watchdog on every statement the adapters send that shuts the socket down
  once the answer is later than the statement timeout plus a grace, so a peer
  that is there but silent (a frozen server, a stuck proxy) is given up on
  too. That includes the BEGIN and COMMIT of a transaction, which is why
  `read_only_transaction` sends them itself rather than through psycopg's
  `transaction()` block (those are not watched), and closes the connection
  on an error rather than sending a ROLLBACK that could hang as well.
Either way the caller sees `psycopg.OperationalError`, which both adapters
already report as "unreachable": a gate or an audit-log check that holds.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg.abc import Params, Query
from psycopg.rows import TupleRow

# Dead peer noticed after about 5 + 2 x 3 = 11 s of silence.
KEEPALIVES: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
}
GRACE_S = 2.0


class NoAnswer(psycopg.OperationalError):
    """The server took the statement and did not answer within the client's deadline."""


class _Watch:
    """One statement's watchdog state: the timer cuts only while the statement runs."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done = self.fired = False


class GuardedConnection(psycopg.Connection[TupleRow]):
    """A connection whose every statement must be answered within `answer_within_s`."""

    answer_within_s: float = 30.0

    def execute(
        self,
        query: Query,
        params: Params | None = None,
        *,
        prepare: bool | None = None,
        binary: bool = False,
    ) -> psycopg.Cursor[TupleRow]:
        watch = _Watch()
        timer = threading.Timer(self.answer_within_s, self._cut, [watch])
        timer.daemon = True
        timer.start()
        try:
            # (the overloads split a template query from one with parameters; passed on as is)
            return super().execute(query, params, prepare=prepare, binary=binary)  # type: ignore[arg-type]
        except psycopg.OperationalError as exc:
            if watch.fired:
                raise NoAnswer(
                    f"no answer within {self.answer_within_s:g} s: the server took the "
                    "connection but stopped answering"
                ) from exc
            raise
        finally:
            with watch.lock:  # a timer already running cannot cut the next statement
                watch.done = True
            timer.cancel()

    def _cut(self, watch: _Watch) -> None:
        """Shut the socket down under libpq's feet: its wait then ends with an error."""
        with watch.lock:
            if watch.done:
                return
            watch.fired = True
            with contextlib.suppress(OSError, psycopg.Error):
                sock = socket.socket(fileno=os.dup(self.fileno()))
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                finally:
                    sock.close()


def connect(
    dsn: str, *, connect_s: int, statement_s: float, application_name: str
) -> GuardedConnection:
    """A connection in autocommit mode, bounded at every step (see the module's docstring)."""
    conn = GuardedConnection.connect(
        dsn,
        connect_timeout=connect_s,
        application_name=application_name,
        autocommit=True,
        **KEEPALIVES,
    )
    conn.answer_within_s = statement_s + GRACE_S
    return conn


@contextlib.contextmanager
def read_only_transaction(conn: GuardedConnection, statement_ms: int) -> Iterator[None]:
    """One READ ONLY transaction whose every round trip is watched.

    The settings are transaction-local (`set_config(..., true)`), so they cannot
    leak into a pooled server session behind PgBouncer. Naive timestamps read as
    UTC. On any error the connection is closed: the server then ends the
    transaction itself, and no ROLLBACK is left to wait for.
    """
    try:
        conn.execute("BEGIN READ ONLY")
        conn.execute(
            "SELECT set_config('statement_timeout', %s, true), set_config('TimeZone', 'UTC', true)",
            [f"{statement_ms}ms"],
        )
        yield
        conn.execute("COMMIT")
    except BaseException:
        conn.close()
        raise
