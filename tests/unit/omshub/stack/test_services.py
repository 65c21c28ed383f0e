"""The stack's view of ``omshub web`` (``omshub.stack.services.web_component``).

Its address and health check follow the web settings as the CLI does (``Settings.web_url``):
``https://`` with a certificate, trusting it, and 127.0.0.1 when the server listens on 0.0.0.0;
``/healthz`` needs no credentials, so the check never carries any.
"""

from __future__ import annotations

import socket
import ssl
import threading
import urllib.error
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from omshub.core.settings import Settings
from omshub.stack.services import web_component
from tests.fakes.certs import CertFiles, self_signed


def test_plain_web_is_checked_over_http_on_loopback(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, home=tmp_path, web_host="0.0.0.0", web_port=18999)  # type: ignore[call-arg]
    assert web_component(settings).address == "http://127.0.0.1:18999"


@pytest.fixture
def https_healthz(tmp_path: Path) -> Iterator[tuple[int, CertFiles, list[str]]]:
    certs = self_signed(tmp_path / "tls")
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(f"{self.path} auth={self.headers.get('Authorization')}")
            self.send_response(200 if self.path == "/healthz" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs.cert, certs.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield int(server.server_address[1]), certs, asked
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_tls_web_is_checked_over_https_trusting_its_certificate(
    tmp_path: Path, https_healthz: tuple[int, CertFiles, list[str]]
) -> None:
    port, certs, asked = https_healthz
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        home=tmp_path,
        web_host="0.0.0.0",
        web_port=port,
        web_tls_cert=certs.cert,
        web_tls_key=certs.key,
    )
    spec = web_component(settings)
    assert spec.address == f"https://127.0.0.1:{port}"
    assert spec.healthy is not None and spec.healthy()
    assert asked == ["/healthz auth=None"]


def test_a_certificate_the_check_cannot_read_leaves_the_system_cas(
    tmp_path: Path, https_healthz: tuple[int, CertFiles, list[str]]
) -> None:
    port, certs, _asked = https_healthz
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        home=tmp_path,
        web_port=port,
        web_tls_cert=tmp_path / "elsewhere.crt",  # the server's, on another machine
        web_tls_key=certs.key,
    )
    spec = web_component(settings)
    assert spec.healthy is not None
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        spec.healthy()
    with socket.create_connection(("127.0.0.1", port)):
        pass  # the server is there: only trust was missing
