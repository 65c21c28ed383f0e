"""TLS of ``omshub web`` (``omshub.core.tls``), with self-signed certificates made in the test.

A certificate or key that cannot be used is refused before anything binds, naming the setting;
a usable one serves HTTPS that the CLI's client (``ConnectClient`` with ``client_context``)
trusts, while a client that does not know the certificate, or speaks plain HTTP, gets nothing.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from omshub.core.errors import ConfigError, SourceUnavailableError
from omshub.core.settings import Settings
from omshub.core.tls import client_context, server_context
from omshub.web.client import ConnectClient
from omshub.web.collect import Collector
from omshub.web.server import build_app
from tests.fakes.certs import CertFiles, self_signed
from tests.fakes.kafka import FakeKafka
from tests.fakes.mysql import DashboardDb
from tests.fakes.status import connector_status

REPO = Path(__file__).resolve().parents[4]
TOKEN = "tls-t0ken"


def tls_settings(cert: Path | None, key: Path | None, **values: Any) -> Settings:
    return Settings(_env_file=None, web_tls_cert=cert, web_tls_key=key, **values)  # type: ignore[call-arg]


@pytest.fixture
def certs(tmp_path: Path) -> CertFiles:
    return self_signed(tmp_path / "tls")


def test_no_certificate_means_plain_http() -> None:
    settings = tls_settings(None, None)
    assert server_context(settings) is None
    assert client_context(settings) is None
    assert settings.web_url == "http://127.0.0.1:18088"


def test_a_usable_pair_serves_tls_1_2_or_later(certs: CertFiles) -> None:
    settings = tls_settings(certs.cert, certs.key, web_host="0.0.0.0", web_port=8443)
    context = server_context(settings)
    assert context is not None
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert settings.web_url == "https://127.0.0.1:8443"  # where a local client connects


@pytest.mark.parametrize("missing", ["cert", "key"])
def test_a_missing_certificate_or_key_file_is_refused_naming_the_setting(
    certs: CertFiles, tmp_path: Path, missing: str
) -> None:
    gone = tmp_path / "nowhere.pem"
    cert, key = (gone, certs.key) if missing == "cert" else (certs.cert, gone)
    with pytest.raises(ConfigError) as raised:
        server_context(tls_settings(cert, key))
    variable = "OMSHUB_WEB_TLS_CERT" if missing == "cert" else "OMSHUB_WEB_TLS_KEY"
    assert f"{variable} {gone} does not exist" in str(raised.value)


def test_a_directory_is_not_a_certificate(certs: CertFiles, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"OMSHUB_WEB_TLS_CERT .* is not a file"):
        server_context(tls_settings(tmp_path, certs.key))


def test_files_that_are_not_pem_or_do_not_match_are_refused(
    certs: CertFiles, tmp_path: Path
) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n")
    for cert, key in ((garbage, certs.key), (certs.cert, garbage)):
        with pytest.raises(ConfigError, match="cannot serve TLS with OMSHUB_WEB_TLS_CERT"):
            server_context(tls_settings(cert, key))
    other = self_signed(tmp_path / "other", name="other")
    with pytest.raises(ConfigError, match="the key the certificate's"):
        server_context(tls_settings(certs.cert, other.key))


def test_an_encrypted_key_is_refused_instead_of_asking_for_a_passphrase(
    tmp_path: Path,
) -> None:
    locked = self_signed(tmp_path / "locked", passphrase=b"p4ss")
    with pytest.raises(ConfigError, match="OMSHUB_WEB_TLS_KEY is encrypted"):
        server_context(tls_settings(locked.cert, locked.key))


def test_only_one_of_certificate_and_key_is_refused_with_the_settings() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="TLS needs both"):
        tls_settings(Path("cert.pem"), None)
    with pytest.raises(ValidationError, match="TLS needs both"):
        tls_settings(None, Path("key.pem"))


async def test_the_cli_client_reaches_omshub_web_over_https(
    certs: CertFiles, tmp_path: Path
) -> None:
    config = tmp_path / "oms.json"
    shutil.copy(REPO / "connectors" / "debezium" / "oms.json", config)
    settings = tls_settings(
        certs.cert, certs.key, home=tmp_path / "home", connector_config=config, web_host="0.0.0.0"
    )
    run_dir = settings.home.resolve() / "run"
    run_dir.mkdir(parents=True)
    connector_status(run_dir)
    app = build_app(settings, Collector(settings, DashboardDb, FakeKafka()), TOKEN)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(ssl=server_context(settings))
    async with TestClient(server) as client:
        url = str(client.make_url("")).rstrip("/")
        assert url.startswith("https://127.0.0.1:")

        secure = ConnectClient(url, TOKEN, timeout_s=5, ssl_context=client_context(settings))
        assert await asyncio.to_thread(secure.get, "/connectors") == ["oms"]
        code, _ = await asyncio.to_thread(secure.call, "PUT", "/connectors/oms/pause")
        assert code == 202

        # a client that does not know the self-signed certificate is refused by TLS
        stranger = ConnectClient(url, TOKEN, timeout_s=5, ssl_context=ssl.create_default_context())
        with pytest.raises(SourceUnavailableError, match="CERTIFICATE_VERIFY_FAILED"):
            await asyncio.to_thread(stranger.get, "/connectors")

        # and plain HTTP on the TLS port gets no answer
        plain = url.replace("https://", "http://")
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientError):
                async with session.get(f"{plain}/healthz") as response:
                    await response.read()
