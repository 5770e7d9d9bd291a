"""Prometheus through prometheus-api-client, at an explicit evaluation time.

The explicit time is what lets replay and tests evaluate the same queries
against recorded history. Transport failures are retried with bounded
backoff (tenacity); a rejected query is not retried, because it will not
get better by asking again.

Every query first takes a token from the process-wide Prometheus limiter,
and a 429 or 503 with `Retry-After` holds all queries until then (see
`ratelimit.py`).
"""

from __future__ import annotations

import ast
import contextlib
import json
import math
from datetime import datetime
from typing import Any

import requests
from prometheus_api_client.exceptions import PrometheusApiClientException
from prometheus_api_client.prometheus_connect import PrometheusConnect
from requests.adapters import HTTPAdapter
from tenacity import (
    retry,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)
from urllib3.util.retry import Retry

from controller.adapters.ports import MetricsUnreachable, QueryRejected
from controller.adapters.ratelimit import PROMETHEUS, RateLimiter, retry_after_seconds


class _TransientError(Exception):
    """A 5xx or 429 from Prometheus: worth another try."""


_TRANSIENT = (requests.ConnectionError, requests.Timeout, _TransientError)


class PrometheusSource:
    def __init__(
        self,
        address: str,
        *,
        timeout_s: int = 5,
        attempts: int = 3,
        limiter: RateLimiter = PROMETHEUS,
        pool_size: int = 10,
    ) -> None:
        self.address = address.rstrip("/")
        self._limiter = limiter
        session = requests.Session()
        session.verify = False  # as disable_ssl=True does for the client's own session
        # The environment (proxy variables) is read once here; with trust_env on,
        # requests would also look for ~/.netrc on every query, which profiled
        # at 8% of the controller's time with 1,000 releases.
        session.trust_env = False
        session.proxies.update(requests.utils.get_environ_proxies(self.address))
        session.hooks["response"].append(self._note_retry_after)
        self._client = PrometheusConnect(
            url=self.address,
            disable_ssl=True,
            retry=Retry(total=0),
            timeout=timeout_s,
            session=session,
        )
        # The client mounts an adapter with urllib3's default pool of 10; every
        # worker beyond that would open (and drop) a connection per query.
        session.mount(self.address, HTTPAdapter(max_retries=Retry(total=0), pool_maxsize=pool_size))
        self._attempts = attempts

    def _note_retry_after(self, response: requests.Response, *_: Any, **__: Any) -> None:
        if response.status_code in (429, 503):
            seconds = retry_after_seconds(response.headers.get("Retry-After"))
            if seconds is not None:
                self._limiter.hold_off(seconds)

    def query(self, promql: str, at: datetime) -> float | None:
        try:
            result = self._query_with_retries(promql, at)
        except _TRANSIENT as exc:
            raise _unreachable(self.address, exc) from exc
        return _single_value(result)

    def query_vector(self, promql: str, at: datetime) -> list[tuple[dict[str, str], float]]:
        """Every series of an instant vector with its labels, e.g. audit events by action."""
        try:
            result = self._query_with_retries(promql, at)
        except _TRANSIENT as exc:
            raise _unreachable(self.address, exc) from exc
        if _is_scalar(result):
            return [({}, _number(result[1]))]
        return [(dict(r.get("metric") or {}), _number(_sample(r)[1])) for r in _series(result)]

    def _query_with_retries(self, promql: str, at: datetime) -> Any:
        @retry(
            retry=retry_if_exception_type(_TRANSIENT),
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential(multiplier=0.2, max=2.0),
            reraise=True,
        )
        def attempt() -> Any:
            self._limiter.acquire()
            try:
                return self._client.custom_query(promql, params={"time": at.timestamp()})
            except (ValueError, KeyError, TypeError) as exc:  # 200, but not the query API's JSON
                raise QueryRejected(
                    f"{self.address} answered 200 with something other than the Prometheus "
                    f"query API's JSON ({_short(exc)}); is a proxy or login page at this address?"
                ) from exc
            except PrometheusApiClientException as exc:
                text = str(exc)
                if "HTTP Status Code 4" in text and "Code 429" not in text:
                    raise QueryRejected(_prometheus_error(text)) from exc
                raise _TransientError(text) from exc

        return attempt()

    def close(self) -> None:
        self._client.close()


def _single_value(result: Any) -> float | None:
    """A query must reduce to one number per track; more series is a configuration error."""
    if _is_scalar(result):
        return _number(result[1])
    series = _series(result)
    if not series:
        return None
    if len(series) > 1:
        labels = ", ".join(str(r.get("metric", {})) for r in series[:3])
        raise QueryRejected(
            f"query returned {len(series)} series ({labels}); wrap it in sum() or similar"
        )
    value = _number(_sample(series[0])[1])
    return value if math.isfinite(value) else None


def _is_scalar(result: Any) -> bool:
    """A scalar or string result is `[timestamp, "value"]`; a vector is a list of objects."""
    return isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict)


def _series(result: Any) -> list[dict[str, Any]]:
    if not isinstance(result, list) or not all(isinstance(r, dict) for r in result):
        raise QueryRejected(f"unexpected query result {_short(ValueError(repr(result)))}")
    return result


def _sample(series: dict[str, Any]) -> list[Any]:
    """One instant sample; a range vector (`x[5m]` alone) has `values` instead."""
    value = series.get("value")
    if "values" in series or not isinstance(value, list) or len(value) != 2:
        raise QueryRejected(
            "query returned a range vector, not an instant vector: wrap the range "
            "selector in a function such as increase() or rate()"
        )
    return value


def _number(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        raise QueryRejected(f"query returned {text!r}, not a number") from None


def _prometheus_error(text: str) -> str:
    """Pull Prometheus' own error sentence out of the client's exception text.

    The client formats the body as a bytes repr: `HTTP Status Code 400 (b'{...}')`.
    """
    start = text.find("(b")
    if start != -1:
        with contextlib.suppress(ValueError, SyntaxError, json.JSONDecodeError):
            body = ast.literal_eval(text[start + 1 : text.rindex(")")])
            return str(json.loads(body).get("error", text))
    return text


def _unreachable(address: str, exc: BaseException) -> MetricsUnreachable:
    # A connect timeout is a ConnectionError too; a read timeout or a 5xx is not.
    refused = isinstance(exc, requests.ConnectionError)
    return MetricsUnreachable(f"{address}: {_short(exc)}", connection=refused)


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) < 200 else text[:200] + "..."
