"""The webhook's HTTP server against clients that trickle, or come in too many at once."""

from __future__ import annotations

import socket
import time

import pytest

from controller.runtime import webhook as webhook_module
from controller.runtime.webhook import Deliveries, TagRouter, TagWebhook, WebhookServer


class _NoReleases:
    def list_releases(self, namespace: str | None) -> list[dict[str, object]]:
        return []


def test_a_client_that_trickles_its_request_is_cut_off() -> None:
    """The socket timeout is per recv(): a byte every few seconds never trips it, so a
    connection also has a total deadline (three timeouts) and loses its thread after it."""
    webhook = TagWebhook(b"s3cret", TagRouter(_NoReleases(), ("shop",)), Deliveries())  # type: ignore[arg-type]
    server = WebhookServer(webhook, "127.0.0.1", 0, 1024)
    server._http.RequestHandlerClass.timeout = 0.5  # type: ignore[attr-defined]  # 10 s for real
    server.start()
    try:
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(b"POST /webhook HTTP/1.1\r\nHost: x\r\nX-Pad: ")
        started, cut = time.monotonic(), False
        while time.monotonic() - started < 4.0 and not cut:  # 8 times the per-read timeout
            try:
                sock.sendall(b"a")  # never idle for 0.5 s
                sock.settimeout(0.3)
                cut = sock.recv(1) == b""
            except TimeoutError:
                continue
            except OSError:
                cut = True
        sock.close()
        assert cut, "a trickling request was never cut off"
        assert time.monotonic() - started < 3.0  # three timeouts, and a little
    finally:
        server.stop()


def test_connections_beyond_the_limit_are_refused_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webhook_module._Server, "max_connections", 2)
    webhook = TagWebhook(b"s3cret", TagRouter(_NoReleases(), ("shop",)), Deliveries())  # type: ignore[arg-type]
    server = WebhookServer(webhook, "127.0.0.1", 0, 1024).start()
    held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(2)]
    try:
        for sock in held:
            sock.sendall(b"POST /webhook HTTP/1.1\r\n")  # and then nothing: each holds a slot
        time.sleep(0.3)
        extra = socket.create_connection(("127.0.0.1", server.port))
        extra.settimeout(2)
        assert extra.recv(1) == b"", "a third connection was served"
        extra.close()
        for sock in held:
            sock.close()
        time.sleep(0.3)  # their threads end and free the slots
        later = socket.create_connection(("127.0.0.1", server.port))
        later.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        later.settimeout(2)
        assert later.recv(12).startswith(b"HTTP/1.")
        later.close()
    finally:
        server.stop()
