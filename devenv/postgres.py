"""A real, throwaway PostgreSQL 15 server for tests and the demo.

The controller keeps its state in PostgreSQL; transaction semantics (isolation,
read-only transactions, constraint errors) are exactly what a fake gets wrong,
so tests run the real server. It is tuned for start-up speed, not durability
(fsync off, tiny buffers), and listens on 127.0.0.1 and on a unix socket
inside its base directory. Postgres refuses to run as root, so when we are root
it runs as the ``postgres`` system user.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
import time
from typing import Any

import psycopg
from psycopg import sql

from devenv.ports import free_port

PG_BIN = pathlib.Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
SYSTEM_USER = "postgres"
SUPERUSER = "postgres"

_START_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 30.0
_START_ATTEMPTS = 3
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes, minus "/.s.PGSQL.NNNNN"
_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "16MB",
    "max_connections": "100",
    "max_wal_size": "256MB",
    "logging_collector": "off",
    "log_min_messages": "warning",
}


class PostgresError(RuntimeError):
    """The server failed to initialise or start."""


def _run_as() -> dict[str, Any]:
    """Popen kwargs to drop to the postgres user when we are root."""
    if os.geteuid() != 0:
        return {}
    return {"user": SYSTEM_USER, "group": pwd.getpwnam(SYSTEM_USER).pw_gid, "extra_groups": []}


def _give_to_postgres(path: pathlib.Path) -> None:
    """Make ``path`` owned by and reachable for the postgres user (root only).

    pytest's base temp dir (``/tmp/pytest-of-root``) is mode 0700, so ancestors
    get the search bit (o+x, not read) -- enough to reach, not to list.
    """
    if os.geteuid() != 0:
        return
    entry = pwd.getpwnam(SYSTEM_USER)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


class PostgresServer:
    """A running ``postgres`` postmaster; create with :meth:`start`."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        port: int,
        base_dir: pathlib.Path,
        socket_dir: pathlib.Path,
        owns_socket_dir: bool,
    ) -> None:
        self.process = process
        self.port = port
        self.base_dir = base_dir
        self.socket_dir = socket_dir
        self._owns_socket_dir = owns_socket_dir

    @property
    def data_dir(self) -> pathlib.Path:
        """The cluster's PGDATA."""
        return self.base_dir / "data"

    @property
    def log_path(self) -> pathlib.Path:
        """Server log (stderr of the postmaster)."""
        return self.base_dir / "postgres.log"

    # ------------------------------------------------------------------ life

    @classmethod
    def start(cls, base_dir: pathlib.Path | str) -> PostgresServer:
        """initdb (if needed) into ``base_dir/data`` and start on a free port.

        Reusing a ``base_dir`` keeps its data. Trust auth: only loopback and the
        private socket directory can reach it.
        """
        base_dir = pathlib.Path(base_dir).absolute()
        base_dir.mkdir(parents=True, exist_ok=True)
        _give_to_postgres(base_dir)
        if not (base_dir / "data" / "PG_VERSION").exists():
            _initdb(base_dir / "data", base_dir / "initdb.log")
        socket_dir, owns = _socket_dir(base_dir)
        last_error: Exception | None = None
        for _ in range(_START_ATTEMPTS):
            try:
                return cls._start_once(base_dir, socket_dir, owns)
            except PostgresError as exc:
                last_error = exc
        if owns:
            shutil.rmtree(socket_dir, ignore_errors=True)
        raise PostgresError(f"postgres did not start: {last_error}")

    @classmethod
    def _start_once(
        cls, base_dir: pathlib.Path, socket_dir: pathlib.Path, owns_socket_dir: bool
    ) -> PostgresServer:
        """One start attempt on a fresh port; the process is stopped on failure."""
        port = free_port()
        args = [str(PG_BIN / "postgres"), "-D", str(base_dir / "data"), "-p", str(port)]
        args += ["-c", f"unix_socket_directories={socket_dir}"]
        for key, value in _SETTINGS.items():
            args += ["-c", f"{key}={value}"]
        log = (base_dir / "postgres.log").open("ab")
        with log:
            process = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=base_dir,
                **_run_as(),
            )
        server = cls(process, port, base_dir, socket_dir, owns_socket_dir)
        try:
            server._wait_ready()
        except BaseException:
            server._terminate()
            raise
        return server

    def _wait_ready(self) -> None:
        """Poll with a real connection; fail fast with the log tail if it died."""
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PostgresError(f"exited {self.process.returncode}: {self._log_tail()}")
            try:
                with psycopg.connect(self.dsn(), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                time.sleep(0.05)
        raise PostgresError(f"not ready after {_START_TIMEOUT_S}s: {self._log_tail()}")

    def _log_tail(self, lines: int = 20) -> str:
        """Last log lines, for error messages that explain themselves."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "<no log>"

    def _terminate(self) -> None:
        """SIGINT = "fast" shutdown: abort sessions, checkpoint, exit."""
        if self.process.poll() is None:
            self.process.send_signal(2)
            try:
                self.process.wait(_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def stop(self) -> None:
        """Fast shutdown and wait; removes a socket dir created outside ``base_dir``."""
        self._terminate()
        if self._owns_socket_dir:
            shutil.rmtree(self.socket_dir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- access

    def dsn(self, dbname: str = "postgres") -> str:
        """A libpq URI over TCP loopback (works for any client, any user)."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """Create an empty database and return its DSN."""
        _check_name(name)
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting any sessions a test left open."""
        _check_name(name)
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _check_name(name: str) -> None:
    """Database names are test-generated; reject anything needing quoting."""
    if not _DB_NAME.match(name):
        raise ValueError(f"invalid database name {name!r}")


def _socket_dir(base_dir: pathlib.Path) -> tuple[pathlib.Path, bool]:
    """``base_dir/sock`` unless that path is too long for a unix socket.

    Returns the directory and whether it lives outside ``base_dir`` (and so must
    be removed on stop).
    """
    inside = base_dir / "sock"
    if len(str(inside)) <= _SOCKET_PATH_MAX:
        inside.mkdir(exist_ok=True)
        _give_to_postgres(inside)
        return inside, False
    outside = pathlib.Path(tempfile.mkdtemp(prefix="pgsock-"))
    _give_to_postgres(outside)
    return outside, True


def _initdb(data_dir: pathlib.Path, log_path: pathlib.Path) -> None:
    """Create the cluster: trust auth, C locale, no fsync (speed over durability)."""
    args = [
        str(PG_BIN / "initdb"),
        "-D",
        str(data_dir),
        "-U",
        SUPERUSER,
        "--auth=trust",
        "--encoding=UTF8",
        "--locale=C",
        "--no-sync",
        "--no-instructions",
    ]
    with log_path.open("wb") as log:
        done = subprocess.run(args, stdout=log, stderr=subprocess.STDOUT, check=False, **_run_as())
    if done.returncode != 0:
        with contextlib.suppress(OSError):
            raise PostgresError(f"initdb failed: {log_path.read_text(errors='replace')}")
        raise PostgresError(f"initdb failed with exit code {done.returncode}")
