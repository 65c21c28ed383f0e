"""A Connect-shaped REST API on localhost with canned answers, for the ``omshub connector`` CLI.

A real HTTP server in a thread (the CLI's client is synchronous urllib), answering each
``(method, path)`` with a status and a JSON body and recording what it was asked.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Routes = dict[tuple[str, str], tuple[int, Any]]


class FakeRest:
    def __init__(self, routes: Routes) -> None:
        self.routes = routes
        self.asked: list[tuple[str, str, str | None]] = []
        self.url = ""


@contextmanager
def fake_rest(routes: Routes) -> Iterator[FakeRest]:
    """Serve ``routes``; anything else is Connect's 404 ``{"error_code", "message"}``."""
    fake = FakeRest(routes)

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            fake.asked.append((self.command, self.path, self.headers.get("Authorization")))
            status, body = fake.routes.get(
                (self.command, self.path),
                (404, {"error_code": 404, "message": f"no route {self.command} {self.path}"}),
            )
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = _answer

        def log_message(self, format: str, *args: Any) -> None:  # quiet: no access log on stderr
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
