"""One small HTTP server for /metrics, /healthz and /readyz, in a daemon thread.

It starts before leader election, so a standby is scraped and probed like the
leader. It is separate from kopf's own liveness endpoint because kopf only
runs on the leader.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from controller.runtime import metrics  # noqa: F401  (registers the controller's families)
from controller.runtime.health import Health


def _handler(health: Health) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
            elif path in ("/healthz", "/livez"):
                self._probe(*health.liveness())
            elif path == "/readyz":
                self._probe(*health.readiness())
            else:
                self._send(404, b"not found\n", "text/plain")

        def _probe(self, ok: bool, detail: str) -> None:
            self._send(200 if ok else 503, f"{detail}\n".encode(), "text/plain; charset=utf-8")

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # probes every few seconds would drown the controller's own logs

    return Handler


def serve(address: str, port: int, health: Health) -> ThreadingHTTPServer:
    """Bind now (so a taken port fails the start loudly) and serve in the background."""
    server = ThreadingHTTPServer((address, port), _handler(health))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics-server", daemon=True).start()
    return server
