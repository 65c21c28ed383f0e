"""Settings values that cannot work are refused when the settings are built, naming the field.

Every entry point builds its settings first, so a value refused here stops a command, a worker or
the supervisor before it reads or writes anything (docs/RELIABILITY.md, "Bad inputs").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from omshub.core.errors import ConfigError
from omshub.core.settings import Settings, parse_mysql_url


def build(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def refused(field: str, value: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        build(**{field: value})
    [error] = caught.value.errors()
    assert error["loc"][0] == field
    return str(error["msg"])


@pytest.mark.parametrize(
    "field", ["mysql_port", "kafka_port", "web_port", "sandbox_port", "connect_port"]
)
@pytest.mark.parametrize("port", [0, 65536, -1])
def test_ports_outside_the_range_are_refused(field: str, port: int) -> None:
    assert f"port {port} is outside 1-65535" in refused(field, port)


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("workers", 0, "greater than or equal to 1"),
        ("workers", 17, "less than or equal to 16"),
        ("kafka_message_max_bytes", 10, "greater than or equal to 1024"),
        ("push_payload_max_bytes", 0, "greater than or equal to 1024"),
        ("kafka_heap_mb", 64, "greater than or equal to 128"),
        ("writeback_max_batch", 0, "greater than or equal to 1"),
        ("writeback_flush_ms", -1, "greater than or equal to 0"),
        ("sweeper_interval_s", 0, "greater than 0"),
        ("sweeper_pending_after_s", -5, "greater than 0"),
        ("supervisor_backoff_base_s", 0, "greater than 0"),
        ("supervisor_crashloop_after", 0, "greater than or equal to 1"),
        ("web_refresh_s", 0, "greater than 0"),
        ("kafka_session_timeout_ms", 0, "greater than 0"),
        ("sandbox_idempotency_window_s", 0, "greater than 0"),
        ("workers", "two", "valid integer"),
        ("cdc", "kafka", "'embedded' or 'debezium'"),
        ("start_web", "maybe", "valid boolean"),
    ],
)
def test_numbers_and_choices_outside_their_range_are_refused(
    field: str, value: Any, words: str
) -> None:
    assert words in refused(field, value)


def test_an_unknown_log_level_is_refused_and_case_does_not_matter() -> None:
    assert "'LOUD' is not a log level" in refused("log_level", "LOUD")
    assert build(log_level=" debug ").log_level == "DEBUG"


def test_a_home_that_is_a_file_is_refused(tmp_path: Path) -> None:
    afile = tmp_path / "home"
    afile.write_text("")
    assert "is a file; OMSHUB_HOME must be a directory" in refused("home", afile)
    assert build(home=tmp_path / "not-yet").home == tmp_path / "not-yet"  # created by `up`


@pytest.mark.parametrize("url", ["notaurl", "ftp://wms.internal", "http://", "/wms"])
def test_downstream_urls_must_be_http_with_a_host(url: str) -> None:
    assert "is not an http:// or https:// URL with a host" in refused("downstream_base_url", url)
    message = refused("downstream_urls", {"wms": url})
    assert "for wms is not an http" in message
    assert build(downstream_urls={"wms": "https://wms.internal/"}).downstream_url("wms") == (
        "https://wms.internal"
    )


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("postgres://u:p@h/db", "OMSHUB_MYSQL_URL has scheme 'postgres'"),
        ("mysql:///db", "OMSHUB_MYSQL_URL has no host"),
        ("mysql://u:p@h:99999/db", "OMSHUB_MYSQL_URL has an invalid port"),
        ("mysql://u:p@h:port/db", "OMSHUB_MYSQL_URL has an invalid port"),
    ],
)
def test_a_mysql_url_that_cannot_work_is_a_config_error(url: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        parse_mysql_url(url, "oms")
    with pytest.raises(ConfigError, match=words):
        build(mysql_url=url).mysql()


def test_a_mysql_url_without_user_or_database_takes_the_defaults() -> None:
    params = parse_mysql_url("mysql://db.internal", "oms")
    assert (params.host, params.port, params.user, params.database) == (
        "db.internal",
        3306,
        "root",
        "oms",
    )
