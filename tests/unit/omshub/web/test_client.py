"""Unit tests for omshub.web.client.ConnectClient (against a local http.server) and the token."""

from __future__ import annotations

import socket
import stat
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from omshub.core.errors import ConfigError, SourceUnavailableError
from omshub.core.settings import Settings
from omshub.web.client import ConnectClient
from omshub.web.server import resolve_token, token_path


class Recorded:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []


class _Handler(BaseHTTPRequestHandler):
    recorded: Recorded

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep pytest's output clean

    def _answer(self) -> None:
        self.recorded.requests.append((self.command, self.path, dict(self.headers.items())))
        routes: dict[tuple[str, str], tuple[int, str, bytes]] = {
            ("GET", "/connectors"): (200, "application/json", b'["oms"]'),
            ("PUT", "/connectors/oms/pause"): (202, "application/json", b""),
            ("GET", "/connectors/nope"): (
                404,
                "application/json",
                b'{"error_code": 404, "message": "Connector nope not found"}',
            ),
            ("PUT", "/connectors/oms/resume"): (
                401,
                "application/json",
                b'{"error_code": 401, "message": "needs a bearer token"}',
            ),
            ("POST", "/connectors/oms/restart"): (500, "text/html", b"<html>proxy broke</html>"),
        }
        status, content_type, body = routes.get((self.command, self.path), (404, "text/plain", b""))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_DELETE = _answer


@pytest.fixture
def server() -> Iterator[tuple[str, Recorded]]:
    recorded = Recorded()
    handler = type("Handler", (_Handler,), {"recorded": recorded})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", recorded
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=2)


def test_get_returns_the_json_and_sends_the_token(server: tuple[str, Recorded]) -> None:
    # reads need credentials too when omshub web listens beyond loopback (OMSHUB_WEB_READ_AUTH)
    url, recorded = server
    client = ConnectClient(url, token="s3cret", timeout_s=2)
    assert client.base_url == url.rstrip("/")
    assert client.get("/connectors") == ["oms"]
    [(method, path, headers)] = recorded.requests
    assert (method, path) == ("GET", "/connectors")
    assert headers["Authorization"] == "Bearer s3cret"
    assert headers["Accept"] == "application/json"


def test_mutations_send_the_bearer_token(server: tuple[str, Recorded]) -> None:
    url, recorded = server
    client = ConnectClient(url, token="s3cret", timeout_s=2)
    assert client.call("PUT", "/connectors/oms/pause") == (202, None)
    [(method, _path, headers)] = recorded.requests
    assert method == "PUT"
    assert headers["Authorization"] == "Bearer s3cret"


def test_no_token_no_header(server: tuple[str, Recorded]) -> None:
    url, recorded = server
    ConnectClient(url, token=None, timeout_s=2).call("PUT", "/connectors/oms/pause")
    assert "Authorization" not in recorded.requests[0][2]


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/connectors/nope", "GET /connectors/nope answered 404: Connector nope not found"),
        ("PUT", "/connectors/oms/resume", "answered 401: needs a bearer token"),
        ("POST", "/connectors/oms/restart", "answered 500: <html>proxy broke</html>"),
        ("GET", "/unknown", "GET /unknown answered 404: "),
    ],
)
def test_http_errors_become_config_errors_with_the_servers_message(
    server: tuple[str, Recorded], method: str, path: str, expected: str
) -> None:
    url, _recorded = server
    with pytest.raises(ConfigError) as raised:
        ConnectClient(url, token="s3cret", timeout_s=2).call(method, path)
    assert expected in str(raised.value)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_connection_refused_names_the_url_and_omshub_up() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(SourceUnavailableError) as raised:
        ConnectClient(url, timeout_s=2).get("/connectors")
    message = str(raised.value)
    assert url in message
    assert "omshub up" in message
    assert not isinstance(raised.value, ConfigError)


# --- resolve_token ----------------------------------------------------------------------------


@pytest.fixture
def no_env_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMSHUB_WEB_TOKEN", raising=False)


def test_token_setting_wins(tmp_path: Path, no_env_token: None) -> None:
    settings = Settings(home=tmp_path, web_token="from-settings")
    token_path(settings).parent.mkdir(parents=True)
    token_path(settings).write_text("from-file\n")
    assert resolve_token(settings) == "from-settings"
    assert resolve_token(settings, create=True) == "from-settings"
    assert token_path(settings).read_text() == "from-file\n"


def test_token_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMSHUB_WEB_TOKEN", "from-env")
    settings = Settings(home=tmp_path)
    assert resolve_token(settings, create=True) == "from-env"
    assert not token_path(settings).exists()


def test_token_file_created_private_and_reused(tmp_path: Path, no_env_token: None) -> None:
    settings = Settings(home=tmp_path)
    path = token_path(settings)
    assert path == tmp_path.resolve() / "run" / "web.token"
    assert resolve_token(settings) is None  # the CLI does not create one
    assert not path.exists()
    token = resolve_token(settings, create=True)
    assert token and len(token) >= 24
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == token + "\n"
    assert resolve_token(settings) == token
    assert resolve_token(settings, create=True) == token
    assert resolve_token(Settings(home=tmp_path)) == token  # another process reads the same


def test_empty_token_file_is_replaced(tmp_path: Path, no_env_token: None) -> None:
    settings = Settings(home=tmp_path)
    path = token_path(settings)
    path.parent.mkdir(parents=True)
    path.write_text("\n")
    assert resolve_token(settings) is None
    token = resolve_token(settings, create=True)
    assert token
    assert path.read_text().strip() == token


def test_tokens_differ_between_homes(tmp_path: Path, no_env_token: None) -> None:
    first = resolve_token(Settings(home=tmp_path / "a"), create=True)
    second = resolve_token(Settings(home=tmp_path / "b"), create=True)
    assert first != second
