"""A real Prometheus server for tests and the demo.

The controller's analysis is only as good as the PromQL it runs, and PromQL has
sharp edges (extrapolation in ``increase()``, lookback/staleness, range
boundaries) that a fake would not reproduce. So tests run the Debian
``prometheus`` binary on a free loopback port, scraping targets listed in a
``file_sd_configs`` file that can be rewritten while the server runs.

For history-dependent tests (baselines over "the last 24 hours") see
:mod:`devenv.backfill`, which turns synthetic counters into TSDB blocks with
``promtool`` and starts a server over them via :meth:`PrometheusServer.start`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import pathlib
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from typing import Any

import requests

from devenv.ports import free_port

PROMETHEUS_BIN = os.environ.get("PROMETHEUS_BIN", shutil.which("prometheus") or "prometheus")
PROMTOOL_BIN = os.environ.get("PROMTOOL_BIN", shutil.which("promtool") or "promtool")

# Backfilled blocks may be years old; retention is measured from the newest
# block, but a long retention keeps a multi-day backfill from being pruned.
RETENTION = "3650d"

_START_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 15.0
_START_ATTEMPTS = 3

QueryTime = float | dt.datetime | None


class PrometheusError(RuntimeError):
    """Prometheus failed to start or rejected a query."""


def _config_yaml(targets_file: pathlib.Path, scrape_interval: str) -> str:
    """Render prometheus.yml.

    JSON is valid YAML, so no YAML library is needed. ``honor_labels`` keeps the
    exporter's own ``namespace``/``app``/``track`` labels authoritative even if
    target labels collide with them.
    """
    config = {
        "global": {
            "scrape_interval": scrape_interval,
            "scrape_timeout": scrape_interval,
            "evaluation_interval": scrape_interval,
        },
        "scrape_configs": [
            {
                "job_name": "traffic",
                "honor_labels": True,
                "file_sd_configs": [
                    {"files": [str(targets_file)], "refresh_interval": "1s"},
                ],
            }
        ],
    }
    return json.dumps(config, indent=2) + "\n"


def _write_atomically(path: pathlib.Path, text: str) -> None:
    """Replace a file in one rename so file_sd never reads a half-written list."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _to_unix(when: QueryTime) -> float | None:
    """Normalise a query time to Unix seconds (naive datetimes are taken as UTC)."""
    if when is None or isinstance(when, float | int):
        return when
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


class PrometheusServer:
    """A running ``prometheus`` process; create with :meth:`start`."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        port: int,
        data_dir: pathlib.Path,
        targets_file: pathlib.Path,
        log_path: pathlib.Path,
    ) -> None:
        self.process = process
        self.port = port
        self.data_dir = data_dir
        self.targets_file = targets_file
        self.log_path = log_path
        self._http = requests.Session()

    # ------------------------------------------------------------------ life

    @classmethod
    def start(
        cls,
        data_dir: pathlib.Path | str,
        scrape_targets_file: pathlib.Path | str | None = None,
        scrape_interval: str = "1s",
        port: int | None = None,
    ) -> PrometheusServer:
        """Start Prometheus with its config in ``data_dir`` and TSDB in ``data_dir/tsdb``.

        Blocks that must be visible (backfill) have to be in ``data_dir/tsdb``
        before this is called: Prometheus only scans for blocks at startup and
        on compaction. Retries on a lost free-port race.
        """
        data_dir = pathlib.Path(data_dir)
        (data_dir / "tsdb").mkdir(parents=True, exist_ok=True)
        targets_file = pathlib.Path(scrape_targets_file or data_dir / "targets.json")
        if not targets_file.exists():
            _write_atomically(targets_file, "[]\n")
        config_file = data_dir / "prometheus.yml"
        config_file.write_text(_config_yaml(targets_file, scrape_interval))
        last_error: Exception | None = None
        for _ in range(_START_ATTEMPTS):
            try:
                return cls._start_once(data_dir, config_file, targets_file, port)
            except PrometheusError as exc:
                last_error = exc
        raise PrometheusError(f"prometheus did not start: {last_error}")

    @classmethod
    def _start_once(
        cls,
        data_dir: pathlib.Path,
        config_file: pathlib.Path,
        targets_file: pathlib.Path,
        port: int | None = None,
    ) -> PrometheusServer:
        """One start attempt (on a fresh port unless one is given); cleans up on failure."""
        port = port or free_port()
        log_path = data_dir / "prometheus.log"
        args = [
            PROMETHEUS_BIN,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={data_dir / 'tsdb'}",
            f"--storage.tsdb.retention.time={RETENTION}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
            "--web.enable-admin-api",
            "--log.level=warn",
        ]
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        server = cls(process, port, data_dir, targets_file, log_path)
        try:
            server._wait_ready()
        except BaseException:
            server.stop()
            raise
        return server

    def _wait_ready(self) -> None:
        """Poll ``/-/ready``; fail fast with the log tail if the process died."""
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PrometheusError(f"exited {self.process.returncode}: {self._log_tail()}")
            with contextlib.suppress(requests.RequestException):
                if self._http.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            time.sleep(0.05)
        raise PrometheusError(f"not ready after {_START_TIMEOUT_S}s: {self._log_tail()}")

    def _log_tail(self, lines: int = 20) -> str:
        """Last log lines, for error messages that explain themselves."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "<no log>"

    def stop(self) -> None:
        """Terminate (SIGTERM flushes the head) and wait; kill if it hangs."""
        self._http.close()
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> PrometheusServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @classmethod
    def start_backfilled(
        cls, openmetrics_text: str, data_dir: pathlib.Path | str
    ) -> PrometheusServer:
        """Write ``openmetrics_text`` as TSDB blocks into ``data_dir``, then start on it."""
        backfill(openmetrics_text, data_dir)
        return cls.start(data_dir)

    # ---------------------------------------------------------------- access

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123``."""
        return f"http://127.0.0.1:{self.port}"

    def add_target(self, host_port: str, labels: Mapping[str, str] | None = None) -> None:
        """Add a scrape target; file_sd picks it up within about a second."""
        groups: list[dict[str, Any]] = json.loads(self.targets_file.read_text() or "[]")
        groups.append({"targets": [host_port], "labels": dict(labels or {})})
        _write_atomically(self.targets_file, json.dumps(groups, indent=2) + "\n")

    def remove_target(self, host_port: str) -> None:
        """Stop scraping a target (its series go stale on the next scrape cycle)."""
        groups: list[dict[str, Any]] = json.loads(self.targets_file.read_text() or "[]")
        kept = [g for g in groups if host_port not in g.get("targets", [])]
        _write_atomically(self.targets_file, json.dumps(kept, indent=2) + "\n")

    def _api(self, path: str, params: Mapping[str, Any]) -> Any:
        """GET an API endpoint and unwrap ``data``, raising on ``status != success``."""
        response = self._http.get(f"{self.url}/api/v1/{path}", params=params, timeout=30)
        body = response.json()
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {dict(params)}: {body.get('error', body)}")
        return body["data"]

    def query(self, promql: str, time: QueryTime = None) -> list[Any]:
        """Instant query; returns ``data.result`` (a vector's list of samples).

        For a scalar/string result the ``[timestamp, "value"]`` pair is returned.
        """
        params: dict[str, Any] = {"query": promql}
        when = _to_unix(time)
        if when is not None:
            params["time"] = when
        result: list[Any] = self._api("query", params)["result"]
        return result

    def query_value(self, promql: str, time: QueryTime = None) -> float | None:
        """Instant query expected to yield at most one sample; its value or None."""
        result = self.query(promql, time)
        if not result:
            return None
        if isinstance(result[0], dict):
            if len(result) != 1:
                raise PrometheusError(f"expected one series, got {len(result)}: {promql}")
            return float(result[0]["value"][1])
        return float(result[1])

    def query_by(self, promql: str, label: str, time: QueryTime = None) -> dict[str, float]:
        """Instant query keyed by one label, e.g. ``{"stable": 0.0, "canary": 0.5}``."""
        return {s["metric"].get(label, ""): float(s["value"][1]) for s in self.query(promql, time)}

    def query_range(
        self, promql: str, start: QueryTime, end: QueryTime, step: float
    ) -> list[dict[str, Any]]:
        """Range query; returns ``data.result`` (a matrix)."""
        params = {"query": promql, "start": _to_unix(start), "end": _to_unix(end), "step": step}
        result: list[dict[str, Any]] = self._api("query_range", params)["result"]
        return result

    def targets(self) -> list[dict[str, Any]]:
        """Active scrape targets as reported by ``/api/v1/targets``."""
        active: list[dict[str, Any]] = self._api("targets", {"state": "active"})["activeTargets"]
        return active

    def wait_for_target(self, host_port: str, timeout: float = 30.0) -> None:
        """Block until ``host_port`` has been scraped successfully at least once."""

        def up() -> bool:
            return any(
                t["labels"].get("instance") == host_port and t["health"] == "up"
                for t in self.targets()
            )

        wait_until(up, timeout, f"target {host_port} up")


def backfill(openmetrics_text: str, data_dir: pathlib.Path | str) -> list[pathlib.Path]:
    """Turn OpenMetrics text into TSDB blocks under ``data_dir/tsdb`` (for :meth:`start`).

    Uses ``promtool tsdb create-blocks-from openmetrics``. The input must end
    with ``# EOF``, timestamps are in *seconds*, and a family's samples must be
    contiguous (see :func:`devenv.backfill.openmetrics`). Must run before the
    server starts; returns the new block directories.
    """
    if not openmetrics_text.rstrip().endswith("# EOF"):
        raise ValueError("OpenMetrics input must end with '# EOF'")
    data_dir = pathlib.Path(data_dir)
    tsdb = data_dir / "tsdb"
    tsdb.mkdir(parents=True, exist_ok=True)
    before = {p.name for p in tsdb.iterdir()}
    source = data_dir / "backfill.om"
    source.write_text(openmetrics_text)
    done = subprocess.run(
        [
            PROMTOOL_BIN,
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            "--quiet",
            str(source),
            str(tsdb),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    source.unlink()
    if done.returncode != 0:
        raise PrometheusError(f"promtool backfill failed: {done.stderr or done.stdout}")
    return sorted(p for p in tsdb.iterdir() if p.is_dir() and p.name not in before)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` every 0.2s; scrapes are asynchronous, so tests must wait."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)
