"""Access control of ``omshub web`` (``omshub.web.auth``): who may read and change what.

Unit tests of the header parser, the credentials file, the bind-address rule and constant-time
comparison, then the middleware in the real app (aiohttp's test client, fake database and broker):
Basic and bearer both let a mutation through, anything else is a 401 in Connect's error shape
that changes nothing, reads follow ``OMSHUB_WEB_READ_AUTH``, and refusals are logged without the
secret.
"""

from __future__ import annotations

import base64
import hmac
import logging
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from connectors.binlog.control import control_path, read_control
from omshub.core.errors import ConfigError
from omshub.core.settings import Settings
from omshub.web import auth
from omshub.web.auth import (
    Credentials,
    Principal,
    Refused,
    load_credentials,
    load_users_file,
    loopback_only,
    reads_need_credentials,
)
from omshub.web.collect import Collector
from omshub.web.server import build_app
from tests.fakes.kafka import FakeKafka
from tests.fakes.mysql import DashboardDb
from tests.fakes.status import connector_status

REPO = Path(__file__).resolve().parents[4]
TOKEN = "t0ken-of-the-web"
USER, PASSWORD = "ops", "s3cret:with colon"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


BASIC = {"Authorization": basic(USER, PASSWORD)}
BEARER = {"Authorization": f"Bearer {TOKEN}"}


# --- the Authorization header -----------------------------------------------------------------


@pytest.fixture
def credentials() -> Credentials:
    return Credentials({USER: PASSWORD, "viewer": "other"}, TOKEN)


def test_basic_and_bearer_name_the_caller(credentials: Credentials) -> None:
    assert credentials.check(basic(USER, PASSWORD)) == Principal(USER, "basic")
    assert credentials.check(basic("viewer", "other")) == Principal("viewer", "basic")
    assert credentials.check(f"Bearer {TOKEN}") == Principal("token", "bearer")
    # the scheme is case-insensitive (RFC 9110), surrounding spaces do not matter
    assert credentials.check(f"  bearer   {TOKEN} ") == Principal("token", "bearer")
    assert credentials.check(basic(USER, PASSWORD).replace("Basic", "BASIC")).name == USER


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("", "the Authorization header is empty"),
        ("   ", "the Authorization header is empty"),
        ("Basic", "malformed Authorization header: use 'Basic <base64"),
        ("Basic a b", "malformed Authorization header: use 'Basic <base64"),
        ("Bearer", "malformed Authorization header: use 'Bearer <token>'"),
        (f"Bearer {TOKEN} extra", "malformed Authorization header: use 'Bearer <token>'"),
        (TOKEN, "malformed Authorization header: a scheme and credentials are needed"),
        ("Digest username=ops", "unsupported authorization scheme 'Digest'; use Basic or Bearer"),
        ("Negotiate YIIB", "unsupported authorization scheme 'Negotiate'"),
        ("Basic !!!notbase64", "Basic credentials are not valid base64"),
        ("Basic dXNlcjpwYXN", "Basic credentials are not valid base64"),
        ("Basic " + base64.b64encode(b"\xff\xfe:x").decode(), "not UTF-8"),
        ("Basic " + base64.b64encode(b"no-colon").decode(), "must be base64 of 'user:password'"),
        (basic(USER, "wrong"), "invalid user or password"),
        (basic("nobody", PASSWORD), "invalid user or password"),
        (basic(USER, PASSWORD + "x"), "invalid user or password"),
        (basic(USER, TOKEN), "invalid user or password"),
        ("Bearer wrong", "invalid bearer token"),
        (f"Bearer {TOKEN}x", "invalid bearer token"),
        (f"Bearer {PASSWORD.replace(' ', '')}", "invalid bearer token"),
    ],
)
def test_headers_that_name_nobody_are_refused_saying_why(
    credentials: Credentials, header: str, message: str
) -> None:
    with pytest.raises(Refused) as refused:
        credentials.check(header)
    assert message in str(refused.value)


def test_without_users_or_token_nothing_gets_in() -> None:
    nobody = Credentials({}, None)
    for header in (basic("", ""), basic(USER, PASSWORD), "Bearer x", "Bearer "):
        with pytest.raises(Refused):
            nobody.check(header)


def test_every_user_is_compared_every_time(
    credentials: Credentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The number of constant-time comparisons does not depend on who is asked for: the answer's
    timing tells neither whether a user exists nor which one matched."""
    calls: list[int] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    counts = []
    for user, password in ((USER, PASSWORD), ("viewer", "other"), ("nobody", "x"), (USER, "x")):
        calls.clear()
        credentials.basic(user, password)
        counts.append(len(calls))
    assert counts == [4, 4, 4, 4]
    calls.clear()
    credentials.bearer("wrong")
    assert len(calls) == 1


# --- the credentials file ---------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_a_connect_credentials_file_is_read(tmp_path: Path) -> None:
    # the format of Kafka Connect's BasicAuthSecurityRestExtension (PropertyFileLoginModule)
    path = write(
        tmp_path / "connect.password",
        "# users of the REST API\n"
        "! also a comment\n"
        "\n"
        "ops: s3cret\n"
        "  viewer:pa ss:word  \n"
        "script=tok=en\n",
    )
    assert load_users_file(path) == {"ops": "s3cret", "viewer": "pa ss:word", "script": "tok=en"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ops s3cret\n", "line 1 is not 'user: password'"),
        ("ok: fine\n: hunter2\n", "line 2 has an empty user or one with spaces"),
        ("a user: hunter2\n", "line 1 has an empty user or one with spaces"),
        ("ops:\n", "line 1 (user 'ops') has an empty password"),
        ("ops: hunter2\nops: hunter3\n", "line 2 gives user 'ops' a second time"),
        ("# only comments\n\n", "has no 'user: password' line"),
        ("", "has no 'user: password' line"),
    ],
)
def test_malformed_credentials_files_are_refused_naming_the_line(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path / "users", text)
    with pytest.raises(ConfigError) as raised:
        load_users_file(path)
    assert message in str(raised.value)
    assert "OMSHUB_WEB_USERS_FILE" in str(raised.value)
    assert "hunter" not in str(raised.value)  # the line holds a password: never quoted


def test_several_bad_lines_are_reported_together(tmp_path: Path) -> None:
    path = write(tmp_path / "users", "nope\nok: fine\n: x\nalso-nope\n")
    with pytest.raises(ConfigError) as raised:
        load_users_file(path)
    assert all(f"line {n}" in str(raised.value) for n in (1, 3, 4))


def test_a_missing_or_unreadable_credentials_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"OMSHUB_WEB_USERS_FILE .*missing does not exist"):
        load_users_file(tmp_path / "missing")
    binary = tmp_path / "binary"
    binary.write_bytes(b"ops: \xff\xfe\n")
    with pytest.raises(ConfigError, match="is not UTF-8"):
        load_users_file(binary)
    with pytest.raises(ConfigError, match="cannot be read"):
        load_users_file(tmp_path)  # a directory


def test_users_from_the_file_and_the_settings_count_together(tmp_path: Path) -> None:
    path = write(tmp_path / "users", "ops: from-file\n")
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        web_users_file=path,
        web_users={"ci": "from-settings", "ops": "from-file"},
    )
    credentials = load_credentials(settings, TOKEN)
    assert sorted(credentials.users) == ["ci", "ops"]
    assert credentials.check(basic("ci", "from-settings")).name == "ci"
    assert credentials.check(basic("ops", "from-file")).name == "ops"
    clash = Settings(
        _env_file=None,  # type: ignore[call-arg]
        web_users_file=path,
        web_users={"ops": "other"},
    )
    with pytest.raises(ConfigError, match="user 'ops' is in both"):
        load_credentials(clash, TOKEN)


# --- which reads need credentials -------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.1.1", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("10.1.2.3", False),
        ("web.internal", False),
    ],
)
def test_only_loopback_addresses_count_as_local(host: str, loopback: bool) -> None:
    assert loopback_only(host) is loopback


@pytest.mark.parametrize(
    ("host", "read_auth", "needed"),
    [
        ("127.0.0.1", "auto", False),
        ("0.0.0.0", "auto", True),
        ("10.1.2.3", "auto", True),
        ("0.0.0.0", "open", False),
        ("127.0.0.1", "required", True),
    ],
)
def test_reads_need_credentials_off_loopback_unless_opened(
    host: str, read_auth: str, needed: bool
) -> None:
    settings = Settings(_env_file=None, web_host=host, web_read_auth=read_auth)  # type: ignore[call-arg]
    assert reads_need_credentials(settings) is needed


# --- the middleware in the app ----------------------------------------------------------------


@pytest.fixture
def make_client(
    tmp_path: Path,
) -> Callable[..., Any]:
    """Builds the real app with these settings; the test server binds 127.0.0.1 whatever
    ``web_host`` says (it only decides the policy here)."""
    config = tmp_path / "oms.json"
    shutil.copy(REPO / "connectors" / "debezium" / "oms.json", config)

    def make(**values: Any) -> TestClient[Any, Any]:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            home=tmp_path / "home",
            connector_config=config,
            web_users={USER: PASSWORD},
            **values,
        )
        run_dir = settings.home.resolve() / "run"
        run_dir.mkdir(parents=True, exist_ok=True)
        connector_status(run_dir)
        collector = Collector(settings, DashboardDb, FakeKafka())
        return TestClient(TestServer(build_app(settings, collector, TOKEN)))

    return make


@pytest.fixture
async def remote(make_client: Callable[..., Any]) -> AsyncIterator[TestClient[Any, Any]]:
    """`omshub web` as bound to every address: reads need credentials too."""
    async with make_client(web_host="0.0.0.0") as client:
        yield client


@pytest.fixture
async def local(make_client: Callable[..., Any]) -> AsyncIterator[TestClient[Any, Any]]:
    """`omshub web` on its default, 127.0.0.1: reads are open."""
    async with make_client() as client:
        yield client


def control_file(tmp_path: Path) -> Path:
    return control_path(tmp_path / "home" / "run" / "connector.status.json")


READS = [
    "/",
    "/connectors",
    "/connectors?expand=status&expand=info",
    "/connectors/oms",
    "/connectors/oms/config",
    "/connectors/oms/status",
    "/connectors/oms/tasks",
    "/connectors/oms/tasks/0/status",
    "/api/overview",
    "/api/history",
    "/metrics",
    "/dashboard/",
    "/static/vendor/uPlot.iife.min.js",
]


async def expect_401(response: Any) -> dict[str, Any]:
    assert response.status == 401, await response.text()
    challenges = response.headers.getall("WWW-Authenticate")
    assert challenges == ['Basic realm="omshub", charset="UTF-8"', 'Bearer realm="omshub"']
    body: dict[str, Any] = await response.json()
    assert set(body) == {"error_code", "message"}
    assert body["error_code"] == 401
    return body


@pytest.mark.parametrize("path", READS)
async def test_off_loopback_reads_need_credentials(remote: TestClient[Any, Any], path: str) -> None:
    body = await expect_401(await remote.get(path, headers={"Accept": "application/json"}))
    assert "reads need credentials" in body["message"]
    for headers in (BASIC, BEARER):
        response = await remote.get(path, headers={"Accept": "application/json", **headers})
        assert response.status == 200, (path, headers, await response.text())


async def test_healthz_is_always_open(remote: TestClient[Any, Any]) -> None:
    response = await remote.get("/healthz", headers={"Authorization": "Bearer wrong"})
    assert response.status == 200
    assert (await response.json())["ok"] is True


@pytest.mark.parametrize("path", ["/connectors", "/api/overview", "/metrics", "/dashboard/"])
async def test_on_loopback_reads_are_open(local: TestClient[Any, Any], path: str) -> None:
    response = await local.get(path, headers={"Accept": "application/json"})
    assert response.status == 200


async def test_credentials_that_are_sent_are_checked_even_on_open_reads(
    local: TestClient[Any, Any],
) -> None:
    for headers in ({"Authorization": "Bearer wrong"}, {"Authorization": basic(USER, "no")}):
        await expect_401(await local.get("/connectors", headers=headers))


@pytest.mark.parametrize(("read_auth", "status"), [("open", 200), ("required", 401)])
async def test_the_setting_overrides_the_bind_address_rule(
    make_client: Callable[..., Any], read_auth: str, status: int
) -> None:
    host = "0.0.0.0" if read_auth == "open" else "127.0.0.1"
    async with make_client(web_host=host, web_read_auth=read_auth) as client:
        assert (await client.get("/connectors")).status == status
        await expect_401(await client.put("/connectors/oms/pause"))  # mutations: always


MUTATIONS = [
    ("PUT", "/connectors/oms/pause", 202),
    ("PUT", "/connectors/oms/resume", 202),
    ("POST", "/connectors/oms/restart", 204),
    ("POST", "/connectors/oms/tasks/0/restart", 204),
]


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
@pytest.mark.parametrize(("method", "path", "status"), MUTATIONS)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": basic(USER, "wrong")},
        {"Authorization": TOKEN},
        {"Authorization": f"Digest {TOKEN}"},
        {"Authorization": "Basic %%%"},
    ],
    ids=["none", "bad-bearer", "bad-basic", "bare", "digest", "bad-base64"],
)
async def test_a_mutation_without_good_credentials_is_401_and_changes_nothing(
    make_client: Callable[..., Any],
    tmp_path: Path,
    host: str,
    method: str,
    path: str,
    status: int,
    headers: dict[str, str],
) -> None:
    async with make_client(web_host=host) as client:
        body = await expect_401(await client.request(method, path, headers=headers))
    assert "Basic" in body["message"] and "Bearer" in body["message"]
    assert not control_file(tmp_path).exists()


@pytest.mark.parametrize(("method", "path", "status"), MUTATIONS)
@pytest.mark.parametrize("headers", [BASIC, BEARER], ids=["basic", "bearer"])
async def test_basic_and_bearer_both_allow_every_mutation(
    make_client: Callable[..., Any],
    tmp_path: Path,
    method: str,
    path: str,
    status: int,
    headers: dict[str, str],
) -> None:
    async with make_client(web_host="0.0.0.0") as client:
        response = await client.request(method, path, headers=headers)
        assert response.status == status, await response.text()
    control = read_control(control_file(tmp_path))
    if path.endswith("/pause"):
        assert control.state == "PAUSED"
    elif "restart" in path:
        assert control.restarts == 1


async def test_an_unknown_path_is_401_before_404(remote: TestClient[Any, Any]) -> None:
    await expect_401(await remote.get("/connectors/oms/nope"))
    await expect_401(await remote.delete("/nothing/here"))
    assert (await remote.get("/connectors/oms/nope", headers=BEARER)).status == 404


async def test_refusals_are_logged_without_the_secret(
    remote: TestClient[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="omshub.web.auth")
    attempts = [
        {"Authorization": basic(USER, "hunter2-password")},
        {"Authorization": "Bearer hunter2-token"},
        {"Authorization": "Basic aHVudGVyMg"},  # "hunter2", unpadded: not valid base64
        {"Authorization": "hunter2-bare"},
        {},
    ]
    for headers in attempts:
        assert (await remote.put("/connectors/oms/pause", headers=headers)).status == 401
    records = [r for r in caplog.records if r.name == "omshub.web.auth"]
    assert len(records) == len(attempts)
    failed = [r for r in records if r.getMessage() == "web authentication failed"]
    assert [r.levelno for r in failed] == [logging.WARNING] * 4
    first = vars(failed[0])
    assert (first["scheme"], first["user"], first["reason"]) == (
        "basic",
        USER,
        "invalid user or password",
    )
    assert first["method"] == "PUT" and first["path"] == "/connectors/oms/pause"
    assert first["remote"] == "127.0.0.1"
    assert vars(failed[1])["scheme"] == "bearer" and vars(failed[1])["user"] == "-"
    assert records[-1].getMessage() == "web request without credentials refused"
    for record in records:
        rendered = " ".join(f"{k}={v}" for k, v in vars(record).items()) + record.getMessage()
        assert "hunter2" not in rendered
        assert "aHVudGVy" not in rendered
