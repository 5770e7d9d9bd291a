"""A token bucket shared by every caller of one backend, and `Retry-After`.

A global limit is what makes the controller's load on Prometheus or the
apiserver a configuration value instead of N releases x metrics / interval:
callers (worker threads, never the event loop) wait for a token, so a burst of
analyses falling due together is spread out rather than sent at once. A 429
or 503 carrying `Retry-After` holds every caller of that backend until then,
because asking again sooner only adds to the load the server complained about.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

MAX_HOLD_S = 120.0  # a server asking for longer is treated as asking for this


class RateLimiter:
    """Tokens refill at `qps` up to `burst`; `qps <= 0` means no limit (hold-offs still apply)."""

    def __init__(
        self,
        qps: float = 0.0,
        burst: int = 1,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._held_until = 0.0
        self.configure(qps, burst)

    def configure(self, qps: float, burst: int) -> None:
        with self._lock:
            self.qps, self.burst = qps, max(1, burst)
            self._tokens, self._last = float(self.burst), self._clock()

    def reserve(self) -> float:
        """Take a token now and return how long the caller must wait before using it."""
        with self._lock:
            now = self._clock()
            wait = max(0.0, self._held_until - now)
            if self.qps > 0:
                self._tokens = min(self.burst, self._tokens + (now - self._last) * self.qps)
                self._last = now
                self._tokens -= 1
                if self._tokens < 0:
                    wait = max(wait, -self._tokens / self.qps)
            return wait

    def acquire(self) -> float:
        wait = self.reserve()
        if wait > 0:
            self._sleep(wait)
        return wait

    def hold_off(self, seconds: float) -> None:
        with self._lock:
            until = self._clock() + min(max(seconds, 0.0), MAX_HOLD_S)
            self._held_until = max(self._held_until, until)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """`Retry-After` is delay-seconds or an HTTP date (RFC 9110 10.2.3); None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


PROMETHEUS = RateLimiter()  # every Prometheus query of this process; see runtime.settings
KUBERNETES = RateLimiter()  # every apiserver request of this process
