"""Reading one key of a Secret, for notification webhook URLs.

Values are cached briefly: a burst of Events does not read the Secret once per
Event, and a rotated URL is picked up within `ttl_s`. A Secret is only ever
read in the namespace of the CanaryRelease that names it.
"""

from __future__ import annotations

import base64
import threading
import time

from kubernetes import client
from kubernetes.client.exceptions import ApiException


class SecretUnavailable(LookupError):
    pass


class SecretReader:
    def __init__(self, api: client.ApiClient, ttl_s: float = 60.0) -> None:
        self._core = client.CoreV1Api(api)
        self._ttl = ttl_s
        self._cache: dict[tuple[str, str, str], tuple[float, str]] = {}
        self._lock = threading.Lock()

    def read(self, namespace: str, name: str, key: str) -> str:
        wanted = (namespace, name, key)
        with self._lock:
            cached = self._cache.get(wanted)
        if cached is not None and time.monotonic() - cached[0] < self._ttl:
            return cached[1]
        try:
            secret = self._core.read_namespaced_secret(name, namespace)
        except ApiException as exc:
            raise SecretUnavailable(
                f"Secret {namespace}/{name}: {exc.status} {exc.reason}"
            ) from exc
        data = secret.data or {}
        if key not in data:
            raise SecretUnavailable(f"Secret {namespace}/{name} has no key {key!r}")
        value = base64.b64decode(data[key]).decode().strip()
        with self._lock:
            self._cache[wanted] = (time.monotonic(), value)
        return value
