"""The Kubernetes API client the runtime hands to the adapters, with its errors counted.

Every request of the official client passes through `ApiClient.call_api`, which
returns the raw response before any exception is raised, so one override counts
each failed attempt (retries included) for every adapter without touching them.
The same funnel takes a token from the process-wide apiserver limiter before
each request and honours `Retry-After` on a 429 or 503 (see `ratelimit.py`).
"""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import urlsplit

from kubernetes import client, config
from urllib3.util.retry import Retry

from controller.adapters.ratelimit import KUBERNETES, RateLimiter, retry_after_seconds
from controller.runtime.metrics import API_ERRORS, API_REQUESTS

REQUEST_TIMEOUT_S = 30.0  # a hung connection must not hold a worker (and its release) forever


def resource_of(url: str) -> str:
    """The resource a request addressed: `/apis/apps/v1/namespaces/x/deployments/y` -> deployments.

    A bounded label for the error counter (never an object name).
    """
    parts = [p for p in urlsplit(url).path.split("/") if p]
    if parts[:1] == ["api"]:
        rest = parts[2:]  # api/v1/...
    elif parts[:1] == ["apis"]:
        rest = parts[3:]  # apis/group/version/...
    else:
        return "other"
    if len(rest) >= 3 and rest[0] == "namespaces":
        rest = rest[2:]  # a namespaced resource
    if not rest:
        return "discovery"
    subresource = f"/{rest[2]}" if len(rest) >= 3 else ""
    return rest[0] + subresource


class CountingApiClient(client.ApiClient):
    def __init__(
        self,
        limiter: RateLimiter | None = KUBERNETES,
        pool_size: int = 10,
        configuration: client.Configuration | None = None,
        retries: int = 3,
    ) -> None:
        configuration = copy.copy(configuration or client.Configuration.get_default_copy())
        # One connection per worker: urllib3 discards any connection beyond the
        # pool, so a pool smaller than the worker count means a new TLS
        # handshake to the apiserver for many requests under load.
        configuration.connection_pool_maxsize = max(
            pool_size, configuration.connection_pool_maxsize or 0
        )
        # urllib3 would otherwise sleep through a 429's Retry-After up to three
        # times inside the call, past the request timeout and unseen by the
        # limiter; connection failures are still retried.
        configuration.retries = Retry(total=retries, respect_retry_after_header=False)
        super().__init__(configuration)
        self._limiter = limiter

    def call_api(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if self._limiter is not None:
            self._limiter.acquire()
        if len(args) < 4 and kwargs.get("_request_timeout") is None:  # default: wait forever
            kwargs["_request_timeout"] = REQUEST_TIMEOUT_S
        API_REQUESTS.labels(method, resource_of(url)).inc()
        try:
            response = super().call_api(method, url, *args, **kwargs)
        except client.ApiException as exc:  # older clients raise here, newer ones return
            API_ERRORS.labels(method, resource_of(url), str(exc.status or 0)).inc()
            self._hold_off(exc.status, exc.headers)
            raise
        except Exception:
            API_ERRORS.labels(method, resource_of(url), "connection").inc()
            raise
        status = int(getattr(response, "status", 200))
        if not 200 <= status <= 299 and status != 404:
            API_ERRORS.labels(method, resource_of(url), str(status)).inc()
            self._hold_off(status, getattr(response, "headers", None))
        return response

    def _hold_off(self, status: int | None, headers: Any) -> None:
        """A 429 or 503 with Retry-After holds every caller of this apiserver until then."""
        if status in (429, 503) and self._limiter is not None:
            seconds = retry_after_seconds((headers or {}).get("Retry-After"))
            if seconds is not None:
                self._limiter.hold_off(seconds)


def load_configuration() -> None:
    """In a pod: the ServiceAccount; elsewhere: KUBECONFIG (or ~/.kube/config)."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]


def api_client(limiter: RateLimiter | None = KUBERNETES, pool_size: int = 10) -> CountingApiClient:
    """`limiter=None` for the Lease: renewing it must never queue behind reconciles.

    `pool_size`: connections kept open, at least the threads that share the client.
    """
    load_configuration()
    return CountingApiClient(limiter, pool_size)
