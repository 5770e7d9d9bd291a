"""Pytest plugin: real Prometheus, PostgreSQL and a traffic simulator.

Servers are session-scoped because starting them costs ~0.5-1s each; tests stay
isolated by what they *use* instead: a fresh database per test (``database``)
and, for metrics, a unique ``namespace`` label value per test on the shared
simulator. Every process started here is stopped at session end.

Fixtures:

* ``traffic`` -- :class:`devenv.traffic.TrafficSimulator`, already a scrape
  target of the session Prometheus (requesting it starts Prometheus too).
* ``prometheus`` -- :class:`devenv.prometheus.PrometheusServer` scraping ``traffic``
  every second.
* ``postgres`` -- :class:`devenv.postgres.PostgresServer`.
* ``database`` -- DSN of an empty database, dropped after the test.
* ``backfilled_prometheus`` -- factory: OpenMetrics text (or backfill Series) ->
  a started PrometheusServer over that history, stopped after the test.
"""

from __future__ import annotations

import pathlib
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator

import pytest

from devenv.backfill import Series, openmetrics
from devenv.postgres import PostgresServer
from devenv.prometheus import PrometheusServer
from devenv.traffic import TrafficSimulator

BackfillFactory = Callable[[str | Iterable[Series]], PrometheusServer]


@pytest.fixture(scope="session")
def _session_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """The bare session Prometheus; ``traffic`` registers itself as a target."""
    server = PrometheusServer.start(tmp_path_factory.mktemp("prometheus"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def traffic(_session_prometheus: PrometheusServer) -> Iterator[TrafficSimulator]:
    """Session traffic simulator, scraped by the session Prometheus every 1s.

    Use a unique ``namespace`` per test: series from other tests stay around.
    """
    sim = TrafficSimulator.start()
    try:
        _session_prometheus.add_target(sim.address, {"source": "traffic-simulator"})
        _session_prometheus.wait_for_target(sim.address)
        yield sim
    finally:
        sim.stop()


@pytest.fixture(scope="session")
def prometheus(
    _session_prometheus: PrometheusServer, traffic: TrafficSimulator
) -> PrometheusServer:
    """Session Prometheus, already scraping the ``traffic`` simulator."""
    return _session_prometheus


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """Session PostgreSQL 15 (trust auth on loopback, fsync off).

    Its data lives outside pytest's base temp: the server runs as the `postgres`
    user, and pytest resets its own temp root to mode 0700 whenever another
    session starts, which would cut a running server off from its files.
    """
    base = pathlib.Path(tempfile.mkdtemp(prefix="canary-pg-"))
    server = PostgresServer.start(base)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def _database_name(node_name: str) -> str:
    """A readable, unique, identifier-safe database name for one test."""
    stem = re.sub(r"[^a-z0-9_]+", "_", node_name.lower()).strip("_")[:40]
    return f"t_{stem}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def database(postgres: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """DSN of a fresh, empty database for this test; dropped (forcefully) afterwards."""
    name = _database_name(request.node.name)
    dsn = postgres.create_database(name)
    try:
        yield dsn
    finally:
        postgres.drop_database(name)


@pytest.fixture
def backfilled_prometheus(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[BackfillFactory]:
    """Factory: history (OpenMetrics text or Series) -> a Prometheus serving it.

    Each call gets its own data dir and process; all are stopped after the test.
    The servers scrape nothing, so their data is exactly the backfill.
    """
    started: list[PrometheusServer] = []

    def make(history: str | Iterable[Series]) -> PrometheusServer:
        text = history if isinstance(history, str) else openmetrics(history)
        server = PrometheusServer.start_backfilled(text, tmp_path_factory.mktemp("prom-backfill"))
        started.append(server)
        return server

    try:
        yield make
    finally:
        for server in started:
            server.stop()
