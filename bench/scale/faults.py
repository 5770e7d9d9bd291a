"""A Prometheus that can be made slow or unreachable on demand, for the fault runs.

The controller is pointed at this proxy instead of Prometheus itself; the
benchmark flips its mode while releases progress: `pass` forwards, `slow`
forwards after a delay (a Prometheus under load), `down` closes every
connection without an answer (a Prometheus that is gone).
"""

from __future__ import annotations

import http.server
import socket
import threading
import time
import urllib.error
import urllib.request
from typing import Literal

Mode = Literal["pass", "slow", "down"]


class FaultyPrometheus:
    def __init__(self, upstream: str, slow_s: float = 5.0) -> None:
        self.upstream, self.slow_s = upstream.rstrip("/"), slow_s
        self.mode: Mode = "pass"
        self.requests = 0  # every request received, answered or not
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as Prometheus itself does

            def do_GET(self) -> None:
                proxy.forward(self)

            def do_POST(self) -> None:
                proxy.forward(self)

            def log_message(self, *_: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def forward(self, request: http.server.BaseHTTPRequestHandler) -> None:
        self.requests += 1
        if self.mode == "down":
            request.connection.shutdown(socket.SHUT_RDWR)
            request.close_connection = True
            return
        if self.mode == "slow":
            time.sleep(self.slow_s)
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else None
        upstream = urllib.request.Request(
            self.upstream + request.path, data=body, method=request.command
        )
        for header in ("Content-Type", "Accept"):
            if request.headers.get(header):
                upstream.add_header(header, request.headers[header])
        try:
            with urllib.request.urlopen(upstream, timeout=30) as response:
                status, payload = response.status, response.read()
                kind = response.headers.get("Content-Type", "application/json")
        except urllib.error.HTTPError as exc:
            status, payload, kind = exc.code, exc.read(), "application/json"
        request.send_response(status)
        request.send_header("Content-Type", kind)
        request.send_header("Content-Length", str(len(payload)))
        request.end_headers()
        request.wfile.write(payload)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
