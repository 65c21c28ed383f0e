"""The local broker's one-time log dir format: the cluster id reaches kafka-storage intact."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from omshub.core.settings import Settings
from omshub.stack import broker


def test_a_cluster_id_starting_with_a_dash_is_passed_as_one_argument(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """URL-safe base64 ids start with "-" one time in 64; as "-t <id>" kafka-storage's argparse
    took the id for an option and `omshub up` failed on a fresh home."""
    calls: list[list[str]] = []

    def run(argv: list[str], **_kw: Any) -> subprocess.CompletedProcess[bytes]:
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 0, b"Formatting\n", b"")

    monkeypatch.setattr(broker.jvm, "jars", lambda *_a: SimpleNamespace(kafka_classpath="cp"))
    monkeypatch.setattr(broker.jvm, "find_java", lambda *_a: "java")
    monkeypatch.setattr(broker.subprocess, "run", run)
    settings = Settings(home=tmp_path)
    paths = broker.kafka_paths(tmp_path)
    paths.base.mkdir(parents=True)
    paths.cluster_id.write_text("-Xq3vG0dSoyQ2a4gHkK1rw\n", encoding="utf-8")
    broker._kafka_prepare(settings, paths, tmp_path / "logs" / "kafka.log")
    (argv,) = calls
    assert "--cluster-id=-Xq3vG0dSoyQ2a4gHkK1rw" in argv
    assert "-t" not in argv
