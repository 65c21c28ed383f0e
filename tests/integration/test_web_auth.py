"""`omshub web` bound beyond loopback: credentials for reads and mutations, over HTTP and HTTPS.

The real `omshub web` process listens on 0.0.0.0 (so reads need credentials, D89) with HTTP Basic
users from a Kafka Connect credentials file and its bearer token, in front of the embedded
connector streaming the test's database. A mutation without good credentials is a 401 and the
connector does not move; pause with Basic and resume with the bearer (and the CLI, which sends
the token) do. The config view names the database the connector really reads. With TLS on, the
same over HTTPS with a self-signed certificate made in the test.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from omshub.core.procs import wait_until
from omshub.core.settings import MySQLParams
from tests.fakes.certs import self_signed
from tests.integration.conftest import REPO, RunningConnector, connector_document
from tests.integration.pipeline import free_port

TOKEN = "it-auth-token"
USER, PASSWORD = "connect-ops", "pa:ss word"
DEADLINE_S = 15.0


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


BASIC = basic(USER, PASSWORD)
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class AuthWeb:
    url: str
    env: dict[str, str]
    log: Path
    context: ssl.SSLContext | None

    def call(
        self, method: str, path: str, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, dict[str, list[str]]]:
        request = urllib.request.Request(f"{self.url}{path}", method=method)
        request.add_header("Accept", "application/json")
        for key, value in (headers or {}).items():
            request.add_header(key, value)
        try:
            with urllib.request.urlopen(request, timeout=5, context=self.context) as response:
                body = response.read()
                return response.status, json.loads(body) if body else None, {}
        except urllib.error.HTTPError as exc:
            body = exc.read()
            challenges = exc.headers.get_all("WWW-Authenticate") or []
            return exc.code, json.loads(body) if body else None, {"WWW-Authenticate": challenges}

    def state(self, name: str) -> str:
        status, body, _ = self.call("GET", f"/connectors/{name}/status", BEARER)
        assert status == 200, body
        return str(body["connector"]["state"])

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "omshub.cli", "connector", *args],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )


@pytest.fixture
def streaming(
    scratch_db: MySQLParams,
    start_connector: Callable[..., RunningConnector],
    tmp_path: Path,
) -> tuple[RunningConnector, Path]:
    """The embedded connector on the test's database, where `omshub web` (home tmp_path) finds
    it and its control file."""
    doc = connector_document(scratch_db.database, **{"snapshot.mode": "no_data"})
    config_path = tmp_path / "connector.json"
    config_path.write_bytes(orjson.dumps(doc))
    status_path = tmp_path / "run" / "connector.status.json"
    return start_connector(scratch_db, doc, status_path=status_path), config_path


@pytest.fixture(params=[False, True], ids=["http", "https"])
def auth_web(
    request: pytest.FixtureRequest,
    streaming: tuple[RunningConnector, Path],
    scratch_db: MySQLParams,
    bootstrap: str,
    tmp_path: Path,
) -> Iterator[AuthWeb]:
    _connector, config_path = streaming
    users = tmp_path / "connect-credentials.properties"
    users.write_text(f"# Kafka Connect BasicAuthSecurityRestExtension\n{USER}: {PASSWORD}\n")
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OMSHUB_WEB")},
        "OMSHUB_HOME": str(tmp_path),
        "OMSHUB_MYSQL_URL": f"mysql://{scratch_db.user}:{scratch_db.password}@{scratch_db.host}:"
        f"{scratch_db.port}/{scratch_db.database}",
        "OMSHUB_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "OMSHUB_CONNECTOR_CONFIG": str(config_path),
        "OMSHUB_START_CONNECTOR": "false",  # the test runs the connector
        "OMSHUB_WEB_HOST": "0.0.0.0",
        "OMSHUB_WEB_PORT": str(port),
        "OMSHUB_WEB_TOKEN": TOKEN,
        "OMSHUB_WEB_USERS_FILE": str(users),
        "OMSHUB_WEB_REFRESH_S": "1",
    }
    context = None
    scheme = "http"
    if request.param:
        certs = self_signed(tmp_path / "tls")
        env |= {"OMSHUB_WEB_TLS_CERT": str(certs.cert), "OMSHUB_WEB_TLS_KEY": str(certs.key)}
        context = ssl.create_default_context(cafile=str(certs.cert))
        scheme = "https"
    log = tmp_path / "web.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "omshub.cli", "web"],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    web = AuthWeb(f"{scheme}://127.0.0.1:{port}", env, log, context)

    def healthy() -> bool:
        assert proc.poll() is None, log.read_text()[-2000:]
        return web.call("GET", "/healthz")[0] == 200  # open: no credentials

    try:
        wait_until(healthy, 30, what="omshub web", ignore=(OSError, urllib.error.URLError))
        yield web
    finally:
        proc.terminate()
        proc.wait(15)


def test_off_loopback_every_call_needs_basic_or_bearer_and_a_401_changes_nothing(
    auth_web: AuthWeb, streaming: tuple[RunningConnector, Path], scratch_db: MySQLParams
) -> None:
    connector, _config = streaming
    name = connector.config.name
    control = Path(auth_web.env["OMSHUB_HOME"]) / "run" / "connector.control.json"

    # reads: 401 without credentials (bound to 0.0.0.0), 200 with either kind
    status, body, headers = auth_web.call("GET", "/connectors")
    assert status == 401, body
    assert body["error_code"] == 401 and "Basic" in body["message"]
    assert headers["WWW-Authenticate"][0].startswith('Basic realm="omshub"')
    for creds in (BASIC, BEARER):
        status, names, _ = auth_web.call("GET", "/connectors", creds)
        assert status == 200 and name in names, names
    assert auth_web.call("GET", "/metrics")[0] == 401
    assert auth_web.call("GET", "/api/overview", BASIC)[0] == 200

    # the config view names the database the connector reads, not the compose file's
    status, config, _ = auth_web.call("GET", f"/connectors/{name}/config", BASIC)
    assert status == 200, config
    assert config["database.hostname"] == scratch_db.host
    assert config["database.port"] == str(scratch_db.port)
    assert config["database.user"] == scratch_db.user
    assert config["database.password"] == "[hidden]"

    # mutations without good credentials: 401, and the connector does not move
    refused = [{}, basic(USER, "wrong-password-xyz"), {"Authorization": "Bearer wrong-token-xyz"}]
    for creds in refused:
        for method, path in (("PUT", "pause"), ("POST", "restart")):
            status, body, _ = auth_web.call(method, f"/connectors/{name}/{path}", creds)
            assert status == 401, body
    assert not control.exists(), "a refused call wrote the control file"
    assert auth_web.state(name) == "RUNNING"
    assert connector.connector.metrics.restarts_total == 0

    # pause with Basic, resume with the bearer: both are let through
    assert auth_web.call("PUT", f"/connectors/{name}/pause", BASIC)[0] == 202
    wait_until(lambda: auth_web.state(name) == "PAUSED", DEADLINE_S, what="PAUSED (Basic)")
    assert connector.connector.metrics.state == "PAUSED"
    assert auth_web.call("PUT", f"/connectors/{name}/resume", BEARER)[0] == 202
    wait_until(lambda: auth_web.state(name) == "RUNNING", DEADLINE_S, what="RUNNING (bearer)")

    # the CLI sends the token, on reads too, and over https when TLS is on
    listed = auth_web.cli("list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)[name]["status"]["connector"]["state"] == "RUNNING"
    paused = auth_web.cli("pause", name)
    assert paused.returncode == 0, paused.stderr
    wait_until(lambda: auth_web.state(name) == "PAUSED", DEADLINE_S, what="PAUSED (CLI)")
    assert auth_web.cli("resume", name).returncode == 0
    wait_until(lambda: auth_web.state(name) == "RUNNING", DEADLINE_S, what="RUNNING (CLI)")

    # failed attempts are in the log, structured, without what was sent as the secret
    text = auth_web.log.read_text()
    assert 'event="web authentication failed"' in text
    assert f"user={USER}" in text and 'reason="invalid user or password"' in text
    assert "wrong-password-xyz" not in text and "wrong-token-xyz" not in text
    assert PASSWORD not in text and TOKEN not in text
