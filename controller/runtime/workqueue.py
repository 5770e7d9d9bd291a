"""One queue of releases waiting for their next reconcile, and a few workers.

A timer task per release (kopf's `@timer`) wakes every release on every tick,
so the work and the apiserver reads grow with N even when nothing is due. The
queue instead holds each release once, at the earliest moment something
needs it: the deadline its last decision reported, or "now" when a watch saw
it or one of its objects change. A fixed pool of workers drains it, so the
concurrency towards the apiserver and Prometheus is a setting, not N.

Like client-go's workqueue, a release is never reconciled by two workers at
once: a wake that arrives while it runs is remembered and served right after.
A reconcile that raises is retried with exponential backoff, or after the
`Retry-After` the server asked for.

A human's command must not wait for a free worker when every worker is
busy with analyses against a slow Prometheus (each query up to its timeout
times its attempts). So a wake can be `urgent` (a command or spec change to
answer, which queries nothing), and `Workers` keeps one thread that takes
only urgent keys: it is free whenever one arrives.
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

import structlog
from kubernetes.client.exceptions import ApiException

from controller.adapters.ratelimit import retry_after_seconds

log = structlog.get_logger("controller.workqueue")
K = TypeVar("K", bound=Hashable)


class WakeQueue(Generic[K]):
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        lock = threading.Lock()
        self._cond = threading.Condition(lock)  # ordinary workers wait here
        self._urgent_cond = threading.Condition(lock)  # the reserved ones, on the same lock
        self._heap: list[tuple[float, int, K]] = []
        self._due: dict[K, float] = {}
        self._running: set[K] = set()
        self._again: dict[K, float] = {}  # woken while running: served after `done`
        self._head: dict[K, float] = {}  # head starts given, so lateness is reported truly
        self._urgent: set[K] = set()  # a command waits: the reserved worker may take these
        self._urgent_heap: list[tuple[float, int, K]] = []
        self._order = itertools.count()
        self._closed = False

    def wake(
        self, key: K, at: float | None = None, *, head_start: float = 0.0, urgent: bool = False
    ) -> None:
        """Reconcile `key` no later than `at` (monotonic seconds; now when None).

        `head_start` puts it ahead of work that is less than that late: a watch
        event (someone changed something) before a deadline that can wait a
        little, when the workers are saturated. `urgent` also lets the
        reserved worker take it.
        """
        at = (self._clock() if at is None else at) - head_start
        with self._cond:
            if head_start:
                self._head[key] = head_start
            if urgent:
                self._urgent.add(key)
            if key in self._running:
                self._again[key] = min(self._again.get(key, math.inf), at)
                return
            self._push(key, at)

    def _push(self, key: K, at: float) -> None:
        current = self._due.get(key)
        if current is not None and current <= at:
            if key in self._urgent:  # already queued, earlier: the reserved worker may take it
                heapq.heappush(self._urgent_heap, (current, next(self._order), key))
                self._urgent_cond.notify()
            return
        self._due[key] = at
        entry = (at, next(self._order), key)
        heapq.heappush(self._heap, entry)
        self._cond.notify()
        if key in self._urgent:
            heapq.heappush(self._urgent_heap, entry)
            self._urgent_cond.notify()

    def take(
        self, timeout: float | None = None, *, urgent_only: bool = False
    ) -> tuple[K, float] | None:
        """The next due key and how late it is; None on timeout or once closed.

        With `urgent_only`, only keys woken as urgent (the reserved worker).
        """
        give_up = None if timeout is None else self._clock() + timeout
        with self._cond:
            while not self._closed:
                now = self._clock()
                heap = self._urgent_heap if urgent_only else self._heap
                while heap and not self._current(heap[0], urgent_only):
                    heapq.heappop(heap)  # superseded by an earlier wake, or taken
                if heap and heap[0][0] <= now:
                    at, _, key = heapq.heappop(heap)
                    del self._due[key]
                    self._urgent.discard(key)
                    self._running.add(key)
                    return key, max(0.0, now - at - self._head.pop(key, 0.0))
                next_in = heap[0][0] - now if heap else None
                waits = [w for w in (next_in, _left(give_up, now)) if w is not None]
                if give_up is not None and now >= give_up:
                    return None
                waiting = self._urgent_cond if urgent_only else self._cond
                waiting.wait(min(waits) if waits else None)
            return None

    def _current(self, entry: tuple[float, int, K], urgent_only: bool) -> bool:
        at, _, key = entry
        return self._due.get(key) == at and (not urgent_only or key in self._urgent)

    def done(self, key: K, next_at: float | None) -> None:
        """`key` finished; queue it again at `next_at`, or sooner if it was woken meanwhile."""
        with self._cond:
            self._running.discard(key)
            again = self._again.pop(key, None)
            times = [t for t in (next_at, again) if t is not None]
            if times:
                self._push(key, min(times))

    def forget(self, key: K) -> None:
        """The object is gone: drop its pending wake (a running reconcile finds it gone)."""
        with self._cond:
            self._due.pop(key, None)
            self._again.pop(key, None)
            self._head.pop(key, None)
            self._urgent.discard(key)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            self._urgent_cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._due)

    def due_at(self, key: K) -> float | None:
        with self._cond:
            return self._due.get(key)


def _left(give_up: float | None, now: float) -> float | None:
    return None if give_up is None else max(0.0, give_up - now)


def describe(exc: BaseException) -> str:
    """What failed, in the server's words when it gave any.

    The Kubernetes client's exceptions print as their class alone
    (`ForbiddenException()`); the status and the apiserver's message tell an
    RBAC refusal from a namespace being deleted, or a conflict.
    """
    if not isinstance(exc, ApiException):
        return repr(exc)
    message = ""
    if exc.body:
        try:
            message = str(json.loads(exc.body).get("message") or "")
        except (ValueError, AttributeError):
            message = str(exc.body)[:300]
    return f"{type(exc).__name__} {exc.status} {exc.reason or ''}: {message}".rstrip(": ")


class Backoff:
    """Per-key exponential delay after failures, reset by a success."""

    def __init__(self, base_s: float = 1.0, cap_s: float = 60.0) -> None:
        self.base_s, self.cap_s = base_s, cap_s
        self._failures: dict[Hashable, int] = {}

    def failed(self, key: Hashable, exc: BaseException) -> float:
        count = self._failures.get(key, 0) + 1
        self._failures[key] = count
        asked = _retry_after(exc)
        delay = min(self.cap_s, self.base_s * 2.0 ** (count - 1))
        return max(delay, asked) if asked is not None else delay

    def succeeded(self, key: Hashable) -> None:
        self._failures.pop(key, None)


def _retry_after(exc: BaseException) -> float | None:
    if isinstance(exc, ApiException) and exc.status in (429, 503):
        return retry_after_seconds((exc.headers or {}).get("Retry-After"))
    return None


class Workers(Generic[K]):
    """`count` threads taking due keys; `handle` returns when the key is next due (or None).

    `reserved` more threads take only urgent keys (see the module docstring),
    with `handle_urgent` when given.
    """

    def __init__(
        self,
        queue: WakeQueue[K],
        handle: Callable[[K], float | None],
        count: int,
        *,
        backoff: Backoff | None = None,
        on_lateness: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        reserved: int = 0,
        handle_urgent: Callable[[K], float | None] | None = None,
    ) -> None:
        self.queue, self._handle, self._clock = queue, handle, clock
        self._handle_urgent = handle_urgent or handle
        self._backoff = backoff or Backoff()
        self._backoff_lock = threading.Lock()
        self._on_lateness = on_lateness
        self._threads = [
            threading.Thread(target=self._loop, name=f"reconcile-{i}", daemon=True)
            for i in range(max(1, count))
        ] + [
            threading.Thread(target=self._loop, args=(True,), name=f"urgent-{i}", daemon=True)
            for i in range(reserved)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self.queue.close()
        for thread in self._threads:
            thread.join(timeout)

    def _loop(self, urgent_only: bool = False) -> None:
        while (taken := self.queue.take(urgent_only=urgent_only)) is not None:
            key, late = taken
            if self._on_lateness is not None:
                self._on_lateness(late)
            next_at: float | None = None
            try:
                next_at = (self._handle_urgent if urgent_only else self._handle)(key)
                with self._backoff_lock:
                    self._backoff.succeeded(key)
            except Exception as exc:  # one release must not stop the others
                with self._backoff_lock:
                    delay = self._backoff.failed(key, exc)
                log.warning(
                    "reconcile failed; retrying",
                    key=str(key),
                    retry_in_s=delay,
                    error=describe(exc),
                )
                next_at = self._clock() + delay
            finally:
                self.queue.done(key, next_at)
