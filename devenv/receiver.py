"""A local HTTP receiver on 127.0.0.1 standing in for Slack or a JSON webhook endpoint.

Slack cannot run here, so this is the one test double for notifications. It
records every request and answers according to its mode: `ok`, `fail` (500),
`fail-then-ok` (500 for the first `failures` requests), `reject-first` (400
for the first request), `reject` (404 always, a revoked hook), `hang` (never
answers until released, like a receiver stuck behind a dead load balancer) or
`trickle` (answers 200 at once, then its body a byte every 0.2 s: a read
timeout per `recv()` never fires).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: Any


class Receiver:
    def __init__(self, mode: str = "ok", failures: int = 0) -> None:
        self.mode, self.failures = mode, failures
        self.requests: list[Received] = []
        self.release = threading.Event()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                with receiver._lock:
                    receiver.requests.append(
                        Received(self.path, dict(self.headers.items()), json.loads(raw or b"null"))
                    )
                    count = len(receiver.requests)
                if receiver.mode == "hang":
                    receiver.release.wait(120)
                    return
                if receiver.mode == "trickle":
                    self._trickle()
                    return
                failing = receiver.mode == "fail" or (
                    receiver.mode == "fail-then-ok" and count <= receiver.failures
                )
                rejecting = receiver.mode == "reject-first" and count == 1
                status = 404 if receiver.mode == "reject" else 400 if rejecting else 200
                self.send_response(500 if failing else status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def _trickle(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", "100")
                self.end_headers()
                for _ in range(100):
                    if receiver.release.wait(0.2):
                        return
                    try:
                        self.wfile.write(b"o")
                        self.wfile.flush()
                    except OSError:
                        return

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def bodies(self) -> list[Any]:
        with self._lock:
            return [r.body for r in self.requests]

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
