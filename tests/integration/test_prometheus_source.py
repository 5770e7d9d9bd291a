"""The Prometheus adapter against a real Prometheus: values, errors, outages."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from controller.adapters.ports import MetricsUnreachable, QueryRejected
from controller.adapters.prometheus import PrometheusSource
from controller.api.spec import CanaryReleaseSpec
from controller.api.status import CanaryReleaseStatus
from controller.runtime.measuring import measure
from devenv.backfill import constant, openmetrics, request_series, with_step
from devenv.prometheus import PrometheusServer, free_port
from tests.canned_http import canned_http
from tests.concurrent_calls import dropped_connections
from tests.fixtures_servers import BackfillFactory

START = datetime(2026, 11, 1, tzinfo=UTC)
END = START + timedelta(hours=24)
BREACH = START + timedelta(hours=20)


@pytest.fixture
def history(backfilled_prometheus: BackfillFactory) -> PrometheusServer:
    """24h of both tracks at 10 rps; the canary's errors jump from 0.5% to 20% at 20:00."""
    s, e, b = START.timestamp(), END.timestamp(), BREACH.timestamp()
    series = request_series(
        "shop",
        "payments",
        "stable",
        start=s,
        end=e,
        step_s=15,
        rps=constant(10),
        error_ratio=constant(0.005),
    ) + request_series(
        "shop",
        "payments",
        "canary",
        start=s,
        end=e,
        step_s=15,
        rps=constant(10),
        error_ratio=with_step(constant(0.005), 0.195, b, e),
    )
    return backfilled_prometheus(openmetrics(series))


RATIO = (
    'sum(increase(http_request_errors_total{namespace="shop",track="%s"}[1h]))'
    ' / sum(increase(http_requests_total{namespace="shop",track="%s"}[1h]))'
)


def test_query_at_an_explicit_time_reads_history(history: PrometheusServer) -> None:
    source = PrometheusSource(history.url)
    before = source.query(RATIO % ("canary", "canary"), BREACH - timedelta(minutes=5))
    after = source.query(RATIO % ("canary", "canary"), BREACH + timedelta(hours=1))
    stable = source.query(RATIO % ("stable", "stable"), BREACH + timedelta(hours=1))
    assert before == pytest.approx(0.005, rel=1e-6)
    assert after == pytest.approx(0.2, rel=1e-6)
    assert stable == pytest.approx(0.005, rel=1e-6)


def test_empty_and_nan_results_are_no_data(history: PrometheusServer) -> None:
    source = PrometheusSource(history.url)
    assert source.query('sum(http_requests_total{namespace="nowhere"})', END) is None
    zero_by_zero = 'sum(increase(http_requests_total{namespace="shop"}[1h])) * 0 / 0'
    assert source.query(zero_by_zero, END) is None


def test_broken_promql_is_rejected_with_prometheus_own_words(history: PrometheusServer) -> None:
    source = PrometheusSource(history.url)
    with pytest.raises(QueryRejected, match="parse error"):
        source.query("sum(rate(http_requests_total[5m]", END)


def test_many_series_is_a_configuration_error(history: PrometheusServer) -> None:
    source = PrometheusSource(history.url)
    with pytest.raises(QueryRejected, match=r"returned 2 series .*wrap it in sum\(\)"):
        source.query("sum by (track) (http_requests_total)", END)


def test_answers_that_are_not_one_instant_vector_are_rejected(history: PrometheusServer) -> None:
    """Prometheus accepts these at /api/v1/query; a judge cannot read them as one number."""
    source = PrometheusSource(history.url)
    one_series = 'http_requests_total{namespace="shop",track="canary"}'
    with pytest.raises(QueryRejected, match=r"range vector.*increase\(\)"):
        source.query(one_series + "[5m]", END)  # a matrix: the range selector left bare
    with pytest.raises(QueryRejected, match="range vector"):
        source.query_vector(one_series + "[5m]", END)
    with pytest.raises(QueryRejected, match="'hello', not a number"):
        source.query('"hello"', END)  # a string result


def test_a_login_page_at_the_address_is_rejected_clearly() -> None:
    """An auth proxy in front of Prometheus answers 200 with HTML, not the query API's JSON."""
    page = b"<html><body>Sign in</body></html>"
    with (
        canned_http(200, page, {"Content-Type": "text/html"}) as (url, _),
        pytest.raises(QueryRejected, match="other than the Prometheus query API's JSON"),
    ):
        PrometheusSource(url).query("up", END)


def test_unreachable_prometheus_fails_fast_and_clearly() -> None:
    source = PrometheusSource(f"http://127.0.0.1:{free_port()}", timeout_s=1, attempts=3)
    began = time.monotonic()
    with pytest.raises(MetricsUnreachable, match=r"127\.0\.0\.1") as raised:
        source.query("up", END)
    assert time.monotonic() - began < 30  # bounded retries, not a hang
    assert raised.value.connection  # no connection at all: no other query is worth sending


def test_measure_renders_both_tracks_over_the_step_window(history: PrometheusServer) -> None:
    spec = CanaryReleaseSpec.model_validate(
        {
            "targetRef": {"name": "payments"},
            "release": {"tag": "v2", "image": "r/payments:{tag}"},
            "analysis": {
                "prometheus": {"address": history.url},
                "metrics": [
                    {
                        "name": "error-rate",
                        "query": 'sum(increase(http_request_errors_total{namespace="{{namespace}}",'
                        'track="{{track}}"}[{{window}}])) / sum(increase(http_requests_total{'
                        'namespace="{{namespace}}",track="{{track}}"}[{{window}}]))',
                        "threshold": {"max": 0.01},
                    }
                ],
            },
        }
    )
    at = BREACH + timedelta(hours=2)
    status = CanaryReleaseStatus(step_started_at=BREACH, phase="Paused", canary_tag="v2")
    (result,) = measure(
        PrometheusSource(history.url), spec, status, namespace="shop", name="payments", at=at
    )
    assert "[7200s]" in result.query and 'track="canary"' in result.query
    assert result.canary == pytest.approx(0.2, rel=1e-6)
    assert result.stable == pytest.approx(0.005, rel=1e-6)
    assert result.error is None and not result.unreachable


class _Throttling:
    """In front of the real Prometheus: answers 429 with Retry-After to the first query."""

    def __init__(self, upstream: str, retry_after: str) -> None:
        import http.server
        import threading
        import urllib.request

        state = {"refused": 0}

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if state["refused"] == 0:
                    state["refused"] += 1
                    body = b'{"status":"error","error":"too many requests"}'
                    self.send_response(429)
                    self.send_header("Retry-After", retry_after)
                else:
                    with urllib.request.urlopen(upstream + self.path, timeout=10) as r:
                        body = r.read()
                    self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


def test_retry_after_from_prometheus_holds_every_query(history: PrometheusServer) -> None:
    from controller.adapters.ratelimit import RateLimiter

    slept: list[float] = []
    clock = [0.0]

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    limiter = RateLimiter(0.0, 1, clock=lambda: clock[0], sleep=sleep)
    proxy = _Throttling(history.url, retry_after="7")
    try:
        source = PrometheusSource(proxy.url, limiter=limiter)
        value = source.query("vector(1)", datetime.now(UTC))
    finally:
        proxy.server.shutdown()
    assert value == 1.0  # answered on the retry
    assert 7.0 in slept  # and the retry waited as long as Prometheus asked


def test_every_worker_keeps_its_connection(
    history: PrometheusServer, caplog: pytest.LogCaptureFixture
) -> None:
    """As many threads as workers, querying at once: no connection is opened only to be dropped.

    With urllib3's default pool of 10, the threads beyond ten each open a new
    connection per query and urllib3 warns "Connection pool is full".
    """
    workers = 16
    source = PrometheusSource(history.url, pool_size=workers + 2)
    at = BREACH + timedelta(hours=1)
    query = RATIO % ("stable", "stable")
    assert not dropped_connections(lambda: source.query(query, at), workers, caplog)
