"""The work queue: each release once, at its earliest wake, never on two workers at once."""

from __future__ import annotations

import threading
import time

from kubernetes.client.exceptions import ApiException

from controller.runtime.workqueue import Backoff, WakeQueue, Workers, describe


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_key_is_held_once_at_its_earliest_wake() -> None:
    clock = Clock()
    queue: WakeQueue[str] = WakeQueue(clock)
    queue.wake("a", at=130.0)
    queue.wake("a", at=110.0)
    queue.wake("a", at=120.0)  # later than what is queued: ignored
    assert len(queue) == 1
    assert queue.due_at("a") == 110.0
    assert queue.take(timeout=0) is None  # not due yet
    clock.now = 111.0
    assert queue.take(timeout=0) == ("a", 1.0)
    assert queue.take(timeout=0) is None  # the stale 130 and 120 entries are gone with it


def test_due_keys_come_out_in_deadline_order() -> None:
    clock = Clock()
    queue: WakeQueue[str] = WakeQueue(clock)
    for key, at in (("late", 105.0), ("early", 101.0), ("middle", 103.0)):
        queue.wake(key, at=at)
    clock.now = 200.0
    taken = [queue.take(timeout=0) for _ in range(3)]
    assert [t[0] for t in taken if t] == ["early", "middle", "late"]


def test_a_wake_while_running_is_served_after_done() -> None:
    clock = Clock()
    queue: WakeQueue[str] = WakeQueue(clock)
    queue.wake("a")
    assert queue.take(timeout=0) == ("a", 0.0)
    queue.wake("a")  # a watch event while the reconcile runs
    assert queue.take(timeout=0) is None  # never handed to a second worker
    queue.done("a", next_at=160.0)
    assert queue.due_at("a") == 100.0  # the pending wake wins over the later deadline


def test_done_requeues_at_the_reported_deadline_and_none_drops_the_key() -> None:
    clock = Clock()
    queue: WakeQueue[str] = WakeQueue(clock)
    queue.wake("a")
    queue.take(timeout=0)
    queue.done("a", next_at=150.0)
    assert queue.due_at("a") == 150.0
    clock.now = 150.0
    queue.take(timeout=0)
    queue.done("a", next_at=None)  # the release is gone
    assert len(queue) == 0


def test_forget_drops_a_pending_wake() -> None:
    queue: WakeQueue[str] = WakeQueue(Clock())
    queue.wake("a")
    queue.forget("a")
    assert queue.take(timeout=0) is None


def test_take_blocks_until_a_wake_arrives() -> None:
    queue: WakeQueue[str] = WakeQueue()
    threading.Timer(0.1, lambda: queue.wake("a")).start()
    taken = queue.take(timeout=5)
    assert taken is not None and taken[0] == "a"


def test_backoff_doubles_honours_retry_after_and_resets() -> None:
    backoff = Backoff(base_s=1.0, cap_s=8.0)
    error = RuntimeError("boom")
    assert [backoff.failed("a", error) for _ in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    backoff.succeeded("a")
    assert backoff.failed("a", error) == 1.0
    throttled = ApiException(status=429)
    throttled.headers = {"Retry-After": "30"}
    assert backoff.failed("b", throttled) == 30.0


def test_workers_serve_every_key_and_retry_a_failure() -> None:
    queue: WakeQueue[str] = WakeQueue()
    seen: list[str] = []
    failed_once = threading.Event()
    all_done = threading.Event()

    def handle(key: str) -> float | None:
        if key == "flaky" and not failed_once.is_set():
            failed_once.set()
            raise RuntimeError("transient")
        seen.append(key)
        if len(seen) == 3:
            all_done.set()
        return None

    workers = Workers(queue, handle, 2, backoff=Backoff(base_s=0.05))
    workers.start()
    try:
        for key in ("a", "b", "flaky"):
            queue.wake(key)
        assert all_done.wait(10)
    finally:
        workers.stop()
    assert sorted(seen) == ["a", "b", "flaky"]
    assert failed_once.is_set()


def test_one_key_is_never_reconciled_concurrently() -> None:
    queue: WakeQueue[str] = WakeQueue()
    running, overlaps, calls = set[str](), [], []
    lock = threading.Lock()

    def handle(key: str) -> float | None:
        with lock:
            if key in running:
                overlaps.append(key)
            running.add(key)
        time.sleep(0.01)
        with lock:
            running.discard(key)
            calls.append(key)
        return None

    workers = Workers(queue, handle, 4)
    workers.start()
    try:
        for _ in range(50):
            queue.wake("same")
            time.sleep(0.002)
        deadline = time.monotonic() + 10
        while (len(queue) or queue.due_at("same") is not None) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        workers.stop()
    assert overlaps == []
    assert 1 <= len(calls) < 50  # wakes that arrived while it ran were merged


def test_a_change_is_served_before_deadline_work_that_can_wait() -> None:
    clock = Clock()
    queue: WakeQueue[str] = WakeQueue(clock)
    queue.wake("deadline", at=95.0)  # 5 s late already
    queue.wake("changed", head_start=10.0)  # a watch event, now
    assert queue.take(timeout=0) == ("changed", 0.0)  # its lateness is its own, not the head start
    assert queue.take(timeout=0) == ("deadline", 5.0)
    queue.done("changed", None)
    queue.done("deadline", None)
    queue.wake("very-late", at=80.0)
    queue.wake("changed", head_start=10.0)
    assert queue.take(timeout=0) == ("very-late", 20.0)  # 20 s late beats a 10 s head start
    assert queue.take(timeout=0) == ("changed", 0.0)


def test_the_reserved_lane_takes_only_urgent_keys() -> None:
    clock = Clock()
    queue: WakeQueue[str] = WakeQueue(clock)
    queue.wake("deadline")
    queue.wake("command", urgent=True)
    assert queue.take(timeout=0, urgent_only=True) == ("command", 0.0)
    assert queue.take(timeout=0, urgent_only=True) is None  # an ordinary wake is not for it
    assert queue.take(timeout=0) == ("deadline", 0.0)
    # Already queued (earlier, as a deadline), then a command arrives: urgent too.
    queue.wake("late", at=90.0)
    queue.wake("late", urgent=True)
    assert queue.take(timeout=0, urgent_only=True) == ("late", 10.0)
    # Woken urgently while it runs: urgent again once it is done.
    queue.wake("busy")
    assert queue.take(timeout=0) == ("busy", 0.0)
    queue.wake("busy", urgent=True)
    queue.done("busy", next_at=500.0)
    assert queue.take(timeout=0, urgent_only=True) == ("busy", 0.0)
    # Taken by an ordinary worker: no longer urgent; forgotten: gone from both lanes.
    queue.done("busy", next_at=None)
    queue.wake("taken", urgent=True)
    assert queue.take(timeout=0) == ("taken", 0.0)
    queue.done("taken", next_at=100.0)
    assert queue.take(timeout=0, urgent_only=True) is None
    queue.wake("gone", urgent=True)
    queue.forget("gone")
    assert queue.take(timeout=0, urgent_only=True) is None


def test_a_command_is_served_while_every_ordinary_worker_is_busy() -> None:
    queue: WakeQueue[str] = WakeQueue()
    release_slow = threading.Event()
    served: list[tuple[str, str]] = []
    urgent_served = threading.Event()

    def handle(key: str) -> float | None:
        served.append((key, threading.current_thread().name))
        if key == "slow-analysis":
            release_slow.wait(10)  # Prometheus answering at its timeout
        if key == "command":
            urgent_served.set()
        return None

    def answer_only(key: str) -> float | None:
        served.append((key, "answer-only"))
        return handle(key)

    workers = Workers(queue, handle, 1, reserved=1, handle_urgent=answer_only)
    workers.start()
    try:
        queue.wake("slow-analysis")
        deadline = time.monotonic() + 5
        while not served and time.monotonic() < deadline:
            time.sleep(0.01)
        queue.wake("ordinary")
        queue.wake("command", urgent=True)
        assert urgent_served.wait(5), "the command waited for the busy worker"
        assert ("ordinary", "urgent-0") not in served
        assert ("command", "answer-only") in served  # the reserved worker's own handler
        assert [k for k, _ in served if _ != "answer-only"] == ["slow-analysis", "command"]
    finally:
        release_slow.set()
        workers.stop()


def test_a_failed_reconcile_is_described_in_the_apiservers_words() -> None:
    refused = ApiException(status=403, reason="Forbidden")
    refused.body = (
        '{"kind":"Status","message":"events is forbidden: unable to create new content in '
        'namespace shop because it is being terminated","reason":"Forbidden","code":403}'
    )
    text = describe(refused)
    assert text.startswith("ApiException 403 Forbidden: events is forbidden")
    assert "being terminated" in text
    assert describe(ApiException(status=500, reason="Internal")) == "ApiException 500 Internal"
    assert describe(ValueError("bad")) == "ValueError('bad')"
