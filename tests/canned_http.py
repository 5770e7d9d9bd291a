"""An HTTP server that gives every GET the same answer.

It stands in for what sits in front of a real server and cannot be made to
misbehave on cue: a login proxy, an apiserver that throttles.
"""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def canned_http(
    status: int, body: bytes, headers: dict[str, str]
) -> Iterator[tuple[str, list[str]]]:
    """Yield the server's URL and the paths asked so far."""
    asked: list[str] = []

    class Canned(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Canned)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", asked
    finally:
        server.shutdown()
