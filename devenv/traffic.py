"""A traffic simulator: a Prometheus exporter whose counters grow at settable rates.

Canary analysis needs request, error and latency metrics per track, and tests
need to *change* them mid-run ("the canary starts failing now"). Real load
would be slow and noisy, so this exporter computes counter values lazily at
scrape time by integrating per-(namespace, app, track) rates over wall-clock
time. A 1s scrape therefore sees smooth, exactly predictable counters.

Exposed series (labels ``namespace``, ``app``, ``track``):

* ``http_requests_total``
* ``http_request_errors_total``
* ``http_request_duration_seconds`` histogram -- latencies are log-normal with
  the configured median, so ``histogram_quantile`` gives plausible answers.

Rates can be changed in-process (:meth:`TrafficSimulator.set_rate`) or from
another process via ``POST /rates`` with JSON
``{"namespace", "app", "track", "rps", "errorRatio", "latencySeconds"}``
(``GET /rates`` lists them). CLI: ``python -m devenv.traffic serve --port N`` and
``python -m devenv.traffic set --url http://127.0.0.1:N ...``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

LABELS = ("namespace", "app", "track")
BUCKETS: tuple[float, ...] = (
    0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0,
)  # fmt: skip
"""Histogram upper bounds, dense over the 50-500 ms range canaries care about."""

DEFAULT_SIGMA = 0.25
"""Log-normal shape: p95 is about 1.5x the median."""

Key = tuple[str, str, str]


@dataclass
class _Stream:
    """Accumulated counters for one (namespace, app, track) and its current rates."""

    rps: float
    error_ratio: float
    latency_s: float
    updated: float
    requests: float = 0.0
    errors: float = 0.0
    latency_sum: float = 0.0
    buckets: list[float] = field(default_factory=lambda: [0.0] * len(BUCKETS))

    def advance(self, now: float, sigma: float) -> None:
        """Integrate the current rates from ``updated`` to ``now``."""
        elapsed = max(0.0, now - self.updated)
        self.updated = now
        if elapsed == 0.0 or self.rps == 0.0:
            return
        n = self.rps * elapsed
        self.requests += n
        self.errors += n * self.error_ratio
        # Mean of a log-normal is median * exp(sigma^2 / 2).
        self.latency_sum += n * self.latency_s * math.exp(sigma * sigma / 2)
        for i, upper in enumerate(BUCKETS):
            self.buckets[i] += n * _lognormal_cdf(upper, self.latency_s, sigma)


def _lognormal_cdf(x: float, median: float, sigma: float) -> float:
    """P(latency <= x) for a log-normal with the given median and shape."""
    if median <= 0:
        return 1.0
    if sigma <= 0:
        return 1.0 if x >= median else 0.0
    return 0.5 * (1.0 + math.erf(math.log(x / median) / (sigma * math.sqrt(2.0))))


class _RateCollector(Collector):
    """Custom collector: snapshots all streams at scrape time."""

    def __init__(self, sim: TrafficSimulator) -> None:
        self._sim = sim

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("http_requests", "Simulated requests.", labels=LABELS)
        errors = CounterMetricFamily("http_request_errors", "Simulated 5xx.", labels=LABELS)
        latency = HistogramMetricFamily(
            "http_request_duration_seconds", "Simulated latency.", labels=LABELS
        )
        for key, s in self._sim.snapshot().items():
            labels = list(key)
            requests.add_metric(labels, s.requests)
            errors.add_metric(labels, s.errors)
            cumulative = [(_le(b), c) for b, c in zip(BUCKETS, s.buckets, strict=True)]
            cumulative.append(("+Inf", s.requests))
            latency.add_metric(labels, cumulative, s.latency_sum)
        yield requests
        yield errors
        yield latency


def _le(bound: float) -> str:
    """Bucket label as Prometheus clients render it (``0.1``, ``1.0``)."""
    return repr(float(bound))


class TrafficSimulator:
    """Exporter + control endpoint on ``127.0.0.1:<port>``; create with :meth:`start`."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        latency_sigma: float = DEFAULT_SIGMA,
    ) -> None:
        """Build without serving (useful for unit tests with a fake ``clock``)."""
        self._clock = clock
        self._sigma = latency_sigma
        self._lock = threading.Lock()
        self._streams: dict[Key, _Stream] = {}
        self.registry = CollectorRegistry()
        self.registry.register(_RateCollector(self))
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def start(cls, port: int = 0, host: str = "127.0.0.1") -> TrafficSimulator:
        """Serve ``/metrics`` and ``/rates`` from a daemon thread (port 0 = any free)."""
        sim = cls()
        sim.serve(port, host)
        return sim

    def serve(self, port: int = 0, host: str = "127.0.0.1") -> None:
        """Bind and start the HTTP thread; binding port 0 directly avoids port races."""
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},  # stop() waits up to one poll interval
            name="traffic-simulator",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self._server = self._thread = None

    def __enter__(self) -> TrafficSimulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def address(self) -> str:
        """``host:port`` as a Prometheus target (and the ``instance`` label)."""
        if self._server is None:
            raise RuntimeError("simulator is not serving")
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    @property
    def url(self) -> str:
        """Base URL for ``/metrics`` and ``/rates``."""
        return f"http://{self.address}"

    # ----------------------------------------------------------------- rates

    def set_rate(
        self,
        namespace: str,
        app: str,
        track: str,
        rps: float,
        error_ratio: float,
        latency_s: float = 0.1,
    ) -> None:
        """Change a stream's rates from now on (counters keep what they accrued)."""
        if rps < 0 or not 0.0 <= error_ratio <= 1.0 or latency_s <= 0:
            raise ValueError("need rps >= 0, 0 <= error_ratio <= 1, latency_s > 0")
        key = (namespace, app, track)
        with self._lock:
            now = self._clock()
            stream = self._streams.get(key)
            if stream is None:
                self._streams[key] = _Stream(rps, error_ratio, latency_s, now)
                return
            stream.advance(now, self._sigma)
            stream.rps, stream.error_ratio, stream.latency_s = rps, error_ratio, latency_s

    def remove(self, namespace: str, app: str, track: str) -> None:
        """Stop exporting a stream (Prometheus marks it stale on the next scrape)."""
        with self._lock:
            self._streams.pop((namespace, app, track), None)

    def rates(self) -> list[dict[str, Any]]:
        """Current rate settings, in the ``POST /rates`` JSON shape."""
        with self._lock:
            return [
                {
                    "namespace": k[0],
                    "app": k[1],
                    "track": k[2],
                    "rps": s.rps,
                    "errorRatio": s.error_ratio,
                    "latencySeconds": s.latency_s,
                }
                for k, s in self._streams.items()
            ]

    def snapshot(self) -> dict[Key, _Stream]:
        """Advance every stream to now and return copies (consistent per scrape)."""
        with self._lock:
            now = self._clock()
            out: dict[Key, _Stream] = {}
            for key, stream in self._streams.items():
                stream.advance(now, self._sigma)
                out[key] = dataclasses.replace(stream, buckets=list(stream.buckets))
            return out

    def metrics_text(self) -> bytes:
        """The Prometheus text exposition a scrape would see."""
        return generate_latest(self.registry)

    def apply_json(self, body: dict[str, Any]) -> None:
        """Apply one ``POST /rates`` document; omitted fields keep their current value.

        So the demo can flip just ``errorRatio`` without restating the rps.
        """
        key = (str(body["namespace"]), str(body["app"]), str(body["track"]))
        with self._lock:
            current = self._streams.get(key)
            rps, ratio, latency = (
                (current.rps, current.error_ratio, current.latency_s)
                if current
                else (0.0, 0.0, 0.1)
            )
        self.set_rate(
            *key,
            rps=float(body.get("rps", rps)),
            error_ratio=float(body.get("errorRatio", ratio)),
            latency_s=float(body.get("latencySeconds", latency)),
        )


def _handler_for(sim: TrafficSimulator) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to one simulator."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] == "/metrics":
                self._reply(200, sim.metrics_text(), "text/plain; version=0.0.4")
            elif self.path == "/rates":
                self._reply(200, json.dumps(sim.rates()).encode(), "application/json")
            else:
                self._reply(404, b"not found\n", "text/plain")

        def do_POST(self) -> None:
            if self.path != "/rates":
                self._reply(404, b"not found\n", "text/plain")
                return
            try:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                for item in body if isinstance(body, list) else [body]:
                    sim.apply_json(item)
            except (KeyError, TypeError, ValueError) as exc:
                self._reply(400, f"{exc}\n".encode(), "text/plain")
                return
            self._reply(200, json.dumps(sim.rates()).encode(), "application/json")

        def _reply(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Silence per-request logging; 1s scrapes would flood test output."""

    return Handler


# ----------------------------------------------------------------------- CLI


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devenv.traffic", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the exporter until interrupted")
    serve.add_argument("--port", type=int, default=0)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument(
        "--rate",
        action="append",
        default=[],
        metavar="NS/APP/TRACK=RPS[:ERROR_RATIO[:LATENCY_S]]",
        help="initial rate, repeatable",
    )
    set_ = sub.add_parser("set", help="change a rate on a running simulator")
    set_.add_argument("--url", required=True, help="e.g. http://127.0.0.1:9100")
    for name in LABELS:
        set_.add_argument(f"--{name}", required=True)
    set_.add_argument("--rps", type=float, help="omit to keep the current value")
    set_.add_argument("--error-ratio", type=float, help="omit to keep the current value")
    set_.add_argument("--latency", type=float, help="median seconds; omit to keep")
    return parser.parse_args(argv)


def _parse_rate(spec: str) -> tuple[Key, float, float, float]:
    """``ns/app/track=rps:err:lat`` -> key and rates."""
    target, _, values = spec.partition("=")
    namespace, app, track = target.split("/")
    parts = [float(v) for v in values.split(":")] + [0.0, 0.1][len(values.split(":")) - 1 :]
    return (namespace, app, track), parts[0], parts[1], parts[2]


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point for the demo."""
    args = _parse_args(argv)
    if args.command == "set":
        import requests

        fields = {
            "namespace": args.namespace,
            "app": args.app,
            "track": args.track,
            "rps": args.rps,
            "errorRatio": args.error_ratio,
            "latencySeconds": args.latency,
        }
        body = {k: v for k, v in fields.items() if v is not None}
        response = requests.post(f"{args.url.rstrip('/')}/rates", json=body, timeout=10)
        print(response.text.strip())
        return 0 if response.ok else 1
    sim = TrafficSimulator()
    for spec in args.rate:
        key, rps, err, lat = _parse_rate(spec)
        sim.set_rate(*key, rps, err, lat)
    sim.serve(args.port, args.host)
    print(f"traffic simulator on {sim.url} (/metrics, /rates)", flush=True)
    done = threading.Event()
    # The demo stops us with SIGTERM; handle it (and ^C) to close the socket cleanly.
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    while not done.wait(0.5):
        pass
    sim.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
