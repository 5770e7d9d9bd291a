"""Smoke tests for the real servers the controller is tested against.

They pin down the PromQL behaviour the analysis relies on (``increase()``
extrapolation, lookback, per-track ratios over a live scrape) and that the
PostgreSQL fixture gives each test a real, isolated database.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from devenv.backfill import (
    Series,
    constant,
    openmetrics,
    prometheus_increase,
    request_series,
    with_step,
)
from devenv.prometheus import PrometheusServer, wait_until
from devenv.traffic import TrafficSimulator
from tests.fixtures_servers import BackfillFactory

HOUR = 3600.0
START = 1_704_067_200.0  # 2024-01-01T00:00:00Z: fixed, so expected values are fixed
END = START + 24 * HOUR
STEP = 60.0
ANOMALY = (START + 13 * HOUR, START + 14 * HOUR)  # canary incident, 13:00-14:00

History = dict[str, list[Series]]


def _history() -> History:
    """A day of traffic: both tracks at 2 rps / 1% errors; the canary spikes at 13:00."""
    stable = request_series(
        "shop", "web", "stable", start=START, end=END, step_s=STEP,
        rps=constant(2.0), error_ratio=constant(0.01),
    )  # fmt: skip
    canary = request_series(
        "shop", "web", "canary", start=START, end=END, step_s=STEP,
        rps=with_step(constant(2.0), 8.0, *ANOMALY),
        error_ratio=with_step(constant(0.01), 0.49, *ANOMALY),
    )  # fmt: skip
    return {"stable": stable, "canary": canary}


@pytest.fixture(scope="module")
def history_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[PrometheusServer, History]]:
    """A Prometheus serving exactly :func:`_history` (no scrapes), shared by this module.

    Module-scoped to pay promtool's ~1s once; the ``backfilled_prometheus``
    factory (per test) is exercised separately below.
    """
    history = _history()
    text = openmetrics(s for series in history.values() for s in series)
    server = PrometheusServer.start_backfilled(text, tmp_path_factory.mktemp("history"))
    try:
        yield server, history
    finally:
        server.stop()


ERROR_RATIO_1H = (
    "sum by (track) (increase(http_request_errors_total{namespace='shop'}[1h]))"
    " / sum by (track) (increase(http_requests_total{namespace='shop'}[1h]))"
)
CANARY_ERROR_RATIO_1H = (
    "sum(increase(http_request_errors_total{namespace='shop',track='canary'}[1h]))"
    " / sum(increase(http_requests_total{namespace='shop',track='canary'}[1h]))"
)


def test_backfilled_increase_over_a_day_is_exact_when_aligned(
    history_server: tuple[PrometheusServer, History],
) -> None:
    server, history = history_server
    got = server.query_by("increase(http_requests_total{namespace='shop'}[24h])", "track", END)
    # Window [END-24h, END] is closed in Prometheus 2.x and has samples on both
    # edges, so there is nothing to extrapolate: the exact integral.
    assert got["stable"] == pytest.approx(2.0 * 24 * HOUR, rel=1e-9)
    assert got["canary"] == pytest.approx(2.0 * 24 * HOUR + 8.0 * HOUR, rel=1e-9)
    model = prometheus_increase(history["stable"][0].samples, START, END)
    assert got["stable"] == pytest.approx(model)


def test_backfilled_increase_extrapolates_when_unaligned(
    history_server: tuple[PrometheusServer, History],
) -> None:
    server, history = history_server
    at = END - 30.0
    got = server.query_value(
        "increase(http_requests_total{namespace='shop',track='stable'}[24h])", at
    )
    # Samples START .. END-60 lie in [START-30, END-30]: 86340s sampled. The
    # start is not extrapolated (the counter starts at 0, so "time to zero" is
    # 0); the end is extrapolated by 30s (< 1.1 x 60s): 2/s * 86370s.
    assert got == pytest.approx(2.0 * 86_370, rel=1e-9)
    model = prometheus_increase(history["stable"][0].samples, at - 24 * HOUR, at)
    assert got == pytest.approx(model)
    assert got != pytest.approx(2.0 * 24 * HOUR)  # i.e. increase() is not "the true increase"


def test_backfilled_anomaly_shows_in_its_hour_only(
    history_server: tuple[PrometheusServer, History],
) -> None:
    server, _ = history_server
    during = server.query_by(ERROR_RATIO_1H, "track", ANOMALY[1])
    before = server.query_by(ERROR_RATIO_1H, "track", ANOMALY[0])
    assert during["canary"] == pytest.approx(0.5, rel=1e-9)
    assert during["stable"] == pytest.approx(0.01, rel=1e-9)
    assert before["canary"] == pytest.approx(0.01, rel=1e-9)
    canary_requests = "increase(http_requests_total{namespace='shop',track='canary'}[1h])"
    assert server.query_value(canary_requests, ANOMALY[1]) == pytest.approx(10.0 * HOUR)
    assert server.query_value(canary_requests, ANOMALY[0]) == pytest.approx(2.0 * HOUR)

    # Scanning the day hour by hour finds exactly the incident hour.
    (canary,) = server.query_range(CANARY_ERROR_RATIO_1H, START + HOUR, END, HOUR)
    bad_hours = [float(t) for t, v in canary["values"] if float(v) > 0.1]
    assert bad_hours == [ANOMALY[1]]


def test_backfilled_data_goes_stale_after_lookback(
    history_server: tuple[PrometheusServer, History],
) -> None:
    server, _ = history_server
    selector = "http_requests_total{namespace='shop',track='stable'}"
    assert server.query_value(selector, END + 4 * 60) == pytest.approx(2.0 * 24 * HOUR)
    # No staleness markers in a backfill; the default 5m lookback ends it.
    assert server.query(selector, END + 6 * 60) == []


def test_backfilled_prometheus_factory_accepts_raw_openmetrics(
    backfilled_prometheus: BackfillFactory,
) -> None:
    text = (
        "# TYPE jobs counter\n"
        'jobs_total{queue="a"} 0 1704067200\n'
        'jobs_total{queue="a"} 30 1704067230\n'
        'jobs_total{queue="a"} 60 1704067260\n'
        "# EOF\n"
    )
    server = backfilled_prometheus(text)
    assert server.query_value("increase(jobs_total[1m])", 1_704_067_260) == pytest.approx(60)
    assert server.query_value("rate(jobs_total[1m])", 1_704_067_260) == pytest.approx(1.0)


def test_simulator_error_ratio_seen_through_prometheus(
    prometheus: PrometheusServer, traffic: TrafficSimulator
) -> None:
    ns = f"smoke-{uuid.uuid4().hex[:8]}"
    traffic.set_rate(ns, "web", "stable", rps=20, error_ratio=0.0, latency_s=0.1)
    traffic.set_rate(ns, "web", "canary", rps=20, error_ratio=0.5, latency_s=0.3)
    ratio = (
        f"sum by (track) (increase(http_request_errors_total{{namespace='{ns}'}}[5s]))"
        f" / sum by (track) (increase(http_requests_total{{namespace='{ns}'}}[5s]))"
    )

    def ratio_is(canary: float) -> bool:
        got = prometheus.query_by(ratio, "track")
        return set(got) == {"stable", "canary"} and math.isclose(got["canary"], canary)

    wait_until(lambda: ratio_is(0.5), 30, "canary error ratio 0.5")
    got = prometheus.query_by(ratio, "track")
    assert got["stable"] == 0.0
    assert got["canary"] == pytest.approx(0.5, rel=1e-9)

    # A ratio is right from the second scrape on, but rate() over a window that
    # is older than the series under-reads (extrapolation stops at the counter's
    # "zero point"), so wait for the window to fill.
    rps = f"rate(http_requests_total{{namespace='{ns}',track='canary'}}[5s])"
    wait_until(
        lambda: math.isclose(prometheus.query_value(rps) or 0, 20, rel_tol=0.1), 30, "20 rps"
    )
    p50 = prometheus.query_by(
        "histogram_quantile(0.5, sum by (track, le) "
        f"(rate(http_request_duration_seconds_bucket{{namespace='{ns}'}}[5s])))",
        "track",
    )
    assert p50["stable"] == pytest.approx(0.1, abs=0.02)
    assert p50["canary"] == pytest.approx(0.3, abs=0.05)

    # The canary recovers: once the 5s window holds only new samples, the ratio is 0.1.
    traffic.set_rate(ns, "web", "canary", rps=20, error_ratio=0.1, latency_s=0.3)
    wait_until(lambda: ratio_is(0.1), 30, "canary error ratio 0.1")
    assert prometheus.query_by(ratio, "track")["stable"] == 0.0


def test_simulator_integrates_rates_lazily() -> None:
    now = [100.0]
    sim = TrafficSimulator(clock=lambda: now[0])
    sim.set_rate("ns", "web", "canary", rps=10, error_ratio=0.2)
    now[0] += 3
    sim.set_rate("ns", "web", "canary", rps=100, error_ratio=0.0)
    now[0] += 1
    (stream,) = sim.snapshot().values()
    assert stream.requests == pytest.approx(130)
    assert stream.errors == pytest.approx(6)
    text = sim.metrics_text().decode()
    assert 'http_requests_total{app="web",namespace="ns",track="canary"} 130.0' in text


def test_sql_round_trip_in_a_fresh_database(database: str) -> None:
    with psycopg.connect(database) as conn:
        name = conn.execute("SELECT current_database()").fetchone()
        assert name is not None and name[0].startswith("t_")
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        assert tables.fetchone() == (0,)
        conn.execute("CREATE TABLE rollouts (id serial PRIMARY KEY, phase text NOT NULL)")
        conn.execute("INSERT INTO rollouts (phase) VALUES (%s), (%s)", ("Progressing", "Paused"))
        conn.commit()
        rows = conn.execute("SELECT id, phase FROM rollouts ORDER BY id").fetchall()
    assert rows == [(1, "Progressing"), (2, "Paused")]


def test_read_only_transaction_rejects_writes(database: str) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (x int)")
        conn.read_only = True
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction), conn.transaction():
            conn.execute("INSERT INTO t VALUES (1)")
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
