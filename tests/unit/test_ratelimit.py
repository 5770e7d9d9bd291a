"""The request budget: a token bucket that spreads bursts, and Retry-After."""

from __future__ import annotations

from datetime import UTC, datetime

from controller.adapters.ratelimit import MAX_HOLD_S, RateLimiter, retry_after_seconds


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_a_burst_is_spread_at_the_configured_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(10.0, 5, clock=clock, sleep=clock.sleep)
    waits = [limiter.acquire() for _ in range(25)]
    assert waits[:5] == [0.0] * 5  # the burst
    assert clock.now == 2.0  # 20 more at 10/s
    assert all(abs(w - 0.1) < 1e-9 for w in waits[5:])


def test_tokens_refill_while_idle_up_to_the_burst() -> None:
    clock = Clock()
    limiter = RateLimiter(1.0, 3, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        limiter.acquire()
    clock.now += 100.0
    assert [limiter.acquire() for _ in range(4)] == [0.0, 0.0, 0.0, 1.0]


def test_zero_qps_is_unlimited() -> None:
    clock = Clock()
    limiter = RateLimiter(0.0, 1, clock=clock, sleep=clock.sleep)
    assert sum(limiter.acquire() for _ in range(1000)) == 0.0


def test_a_hold_off_delays_every_caller_and_is_capped() -> None:
    clock = Clock()
    limiter = RateLimiter(0.0, 1, clock=clock, sleep=clock.sleep)
    limiter.hold_off(7.0)
    assert limiter.acquire() == 7.0
    assert limiter.acquire() == 0.0
    limiter.hold_off(10_000.0)
    assert limiter.acquire() == MAX_HOLD_S


def test_retry_after_as_seconds_or_an_http_date() -> None:
    now = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds("Wed, 25 Nov 2026 12:00:30 GMT", now) == 30.0
    assert retry_after_seconds("Wed, 25 Nov 2026 11:00:00 GMT", now) == 0.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


def test_an_apiserver_429_holds_every_caller_and_is_not_slept_through_inside_the_call() -> None:
    """A throttling apiserver stands in for the real one, which cannot be made to 429 on cue."""
    import pytest
    from kubernetes import client

    from controller.runtime.clients import CountingApiClient
    from tests.canned_http import canned_http

    body = b'{"kind":"Status","apiVersion":"v1","status":"Failure","code":429}'
    headers = {"Retry-After": "7", "Content-Type": "application/json"}
    clock = Clock()
    limiter = RateLimiter(0.0, 1, clock=clock, sleep=clock.sleep)
    with canned_http(429, body, headers) as (url, asked):
        api = CountingApiClient(limiter=limiter, configuration=client.Configuration(host=url))
        with pytest.raises(client.ApiException) as raised:
            client.AppsV1Api(api).read_namespaced_deployment("app", "shop")
    assert raised.value.status == 429
    assert len(asked) == 1  # urllib3 did not sleep 7 s and ask again, three times
    assert limiter.acquire() == 7.0  # the next caller, whoever it is, waits instead
