"""``omshub web`` refuses access-control and TLS settings that cannot work before it binds.

Each ends with one line on stderr naming the setting, exit 2 for a value the settings refuse and
1 for a file that cannot be used (a ``ConfigError``), with the port still free: no server ever
answered with a policy other than the one configured.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from omshub.cli import main
from tests.fakes.certs import self_signed


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("users-file-missing", "OMSHUB_WEB_USERS_FILE {tmp}/users.properties does not exist"),
        ("users-file-malformed", "line 2 is not 'user: password'"),
        ("cert-missing", "OMSHUB_WEB_TLS_CERT {tmp}/missing.crt does not exist"),
        ("key-missing", "OMSHUB_WEB_TLS_KEY {tmp}/missing.key does not exist"),
        ("cert-not-pem", "cannot serve TLS with OMSHUB_WEB_TLS_CERT"),
        ("cert-without-key", "OMSHUB_WEB_TLS_CERT is set but OMSHUB_WEB_TLS_KEY is not"),
        ("bad-user", "user 'a:b' cannot be sent in HTTP Basic"),
        ("bad-read-auth", "OMSHUB_WEB_READ_AUTH: Input should be 'auto', 'open' or 'required'"),
    ],
)
def test_web_with_access_settings_that_cannot_work_exits_before_binding(
    tmp_path: Path, setup: str, message: str
) -> None:
    port = free_port()
    certs = self_signed(tmp_path / "tls")
    env = {
        "OMSHUB_HOME": str(tmp_path / "home"),
        "OMSHUB_WEB_PORT": str(port),
        "OMSHUB_WEB_TOKEN": "t0k",
        "OMSHUB_START_CONNECTOR": "false",
    }
    users = tmp_path / "users.properties"
    if setup == "users-file-missing":
        env["OMSHUB_WEB_USERS_FILE"] = str(users)
    elif setup == "users-file-malformed":
        users.write_text("ops: hunter2\nviewer hunter3\n")
        env["OMSHUB_WEB_USERS_FILE"] = str(users)
    elif setup == "cert-missing":
        env |= {"OMSHUB_WEB_TLS_CERT": str(tmp_path / "missing.crt")}
        env |= {"OMSHUB_WEB_TLS_KEY": str(certs.key)}
    elif setup == "key-missing":
        env |= {"OMSHUB_WEB_TLS_CERT": str(certs.cert)}
        env |= {"OMSHUB_WEB_TLS_KEY": str(tmp_path / "missing.key")}
    elif setup == "cert-not-pem":
        users.write_text("not a certificate")
        env |= {"OMSHUB_WEB_TLS_CERT": str(users), "OMSHUB_WEB_TLS_KEY": str(certs.key)}
    elif setup == "cert-without-key":
        env["OMSHUB_WEB_TLS_CERT"] = str(certs.cert)
    elif setup == "bad-user":
        env["OMSHUB_WEB_USERS"] = '{"a:b": "pw"}'
    elif setup == "bad-read-auth":
        env["OMSHUB_WEB_READ_AUTH"] = "sometimes"
    result = CliRunner().invoke(main, ["web"], env=env)
    output = " ".join(result.output.split())  # rich wraps long lines
    # settings refused when they are built exit 2; files that cannot be used, 1 (ConfigError)
    settings_level = setup in ("cert-without-key", "bad-user", "bad-read-auth")
    assert result.exit_code == (2 if settings_level else 1), output
    assert message.format(tmp=tmp_path) in output
    assert "hunter" not in output
    assert "Traceback" not in output
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # nothing took the port
