"""The jar cache: keyed by the poms, used as it is when complete, never half-filled."""

from __future__ import annotations

from pathlib import Path

import pytest

from omshub.core.errors import StackError
from omshub.stack import jvm


def _poms(root: Path, version: str = "1") -> Path:
    pom_dir = root / "poms"
    (pom_dir / "kafka").mkdir(parents=True)
    (pom_dir / "pom.xml").write_text(f"<project><version>{version}</version></project>")
    (pom_dir / "kafka" / "pom.xml").write_text("<project/>")
    return pom_dir


def _complete_entry(cache: Path, pom_dir: Path) -> Path:
    entry = cache / jvm.cache_key(pom_dir)
    for sub in jvm.MODULES.values():
        (entry / sub).mkdir(parents=True)
        (entry / sub / "x.jar").write_bytes(b"PK")
    (entry / "complete.json").write_text("{}")
    return entry


def test_cache_key_follows_every_pom(tmp_path: Path) -> None:
    one = _poms(tmp_path / "a", "1")
    same = _poms(tmp_path / "b", "1")
    other = _poms(tmp_path / "c", "2")
    assert jvm.cache_key(one) == jvm.cache_key(same)
    assert jvm.cache_key(one) != jvm.cache_key(other)
    (same / "kafka" / "pom.xml").write_text("<project><changed/></project>")
    assert jvm.cache_key(one) != jvm.cache_key(same)


def test_no_poms_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StackError, match=r"no pom\.xml"):
        jvm.cache_key(tmp_path)


def test_complete_entry_is_used_without_maven(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pom_dir = _poms(tmp_path)
    entry = _complete_entry(tmp_path / "cache", pom_dir)
    monkeypatch.setenv("PATH", "")  # no mvn anywhere: a download attempt would fail
    cache = jvm.ensure_jars(tmp_path / "cache", pom_dir)
    assert cache.root == entry
    assert cache.kafka_classpath == str(entry / "kafka" / "*")
    assert cache.plugin_path == entry / "plugins"


def test_incomplete_entry_needs_maven_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pom_dir = _poms(tmp_path)
    entry = _complete_entry(tmp_path / "cache", pom_dir)
    (entry / "complete.json").unlink()  # e.g. a killed resolve: not usable
    monkeypatch.setenv("PATH", "")
    with pytest.raises(StackError, match=r"mvn was not found.*apt-get install maven"):
        jvm.ensure_jars(tmp_path / "cache", pom_dir)


def test_missing_jar_dir_is_not_complete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pom_dir = _poms(tmp_path)
    entry = _complete_entry(tmp_path / "cache", pom_dir)
    for jar in (entry / "jmx-exporter").glob("*.jar"):
        jar.unlink()
    monkeypatch.setenv("PATH", "")
    with pytest.raises(StackError, match="mvn was not found"):
        jvm.ensure_jars(tmp_path / "cache", pom_dir)


def test_java_home_without_java_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StackError, match=r"has no bin/java.*JDK 17"):
        jvm.find_java(tmp_path)


def test_no_java_on_path_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    with pytest.raises(StackError, match="java was not found on PATH"):
        jvm.find_java(None)


def test_failing_maven_reports_its_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pom_dir = _poms(tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "mvn"
    fake.write_text("#!/bin/sh\necho 'Could not resolve io.debezium:debezium-x' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(StackError, match=r"(?s)Maven failed.*Could not resolve io.debezium"):
        jvm.ensure_jars(tmp_path / "cache", pom_dir)
    assert not (tmp_path / "cache" / jvm.cache_key(pom_dir)).exists()  # nothing half-filled
