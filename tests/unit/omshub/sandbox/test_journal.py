"""The sandbox's downstream journal: line format, a reader that survives bad lines, the append
side, what the sandbox journals, and a restarted sandbox answering replayed keys from it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from omshub.core.procs import wait_until
from omshub.core.settings import Settings
from omshub.sandbox.client import SandboxClient
from omshub.sandbox.http import build_app
from omshub.sandbox.journal import (
    Journal,
    JournalEntry,
    read_journal,
    restorable,
)
from omshub.sandbox.server import Sandbox
from omshub.stack.services import sandbox_component
from schemas.pushes import PUSH_TYPES, PushType

WMS = PUSH_TYPES[PushType.WMS_RETURN].path
TMS = PUSH_TYPES[PushType.TMS_PUSH].path
Client = TestClient[web.Request, web.Application]


async def push(client: Client, key: str | None, path: str = WMS, raw: bytes | None = None) -> Any:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Idempotency-Key"] = key
    data = raw if raw is not None else b'{"order_no": "SO1"}'
    async with client.post(path, data=data, headers=headers) as resp:
        return resp.status, await resp.read(), resp.headers.get("X-Sandbox-Duplicate")


# -- the line format and the reader -----------------------------------------------------------


def test_an_entry_round_trips_through_its_line() -> None:
    entry = JournalEntry(1_700_000_000_123, WMS, "RV1:WMS_RETURN", "accepted", 200)
    line = entry.to_line()
    assert line == b"1700000000123\t/wms/returns\tRV1:WMS_RETURN\taccepted\t200\n"
    assert JournalEntry.parse(line.decode().rstrip("\n")) == entry


@pytest.mark.parametrize(
    ("key", "outcome"), [("a\tb", "accepted"), ("a\nb", "accepted"), ("", "accepted"), ("k", "x")]
)
def test_a_field_that_would_break_the_line_is_refused(key: str, outcome: str) -> None:
    with pytest.raises(ValueError):
        JournalEntry(1, WMS, key, outcome, 200).to_line()


def test_the_reader_counts_malformed_lines_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "j"
    good = JournalEntry(5, WMS, "k1", "accepted", 200)
    path.write_bytes(
        good.to_line()
        + b"not a journal line\n"
        + b"5\t/wms/returns\tk2\taccepted\n"  # a field short
        + b"x\t/wms/returns\tk3\taccepted\t200\n"  # time not a number
        + b"6\t/wms/returns\tk4\texploded\t200\n"  # unknown outcome
        + b"\xff\xfe\n"  # not UTF-8
        + JournalEntry(7, TMS, "k5", "error", 503).to_line()
        + b"8\t/wms/ret"  # torn by a kill mid-write
    )
    read = read_journal(path)
    assert [e.key for e in read.entries] == ["k1", "k5"]
    assert read.malformed == 6
    assert read.partial_bytes == len(b"8\t/wms/ret")


def test_an_incremental_reader_leaves_a_line_being_written_for_later(tmp_path: Path) -> None:
    path = tmp_path / "j"
    path.write_bytes(JournalEntry(1, WMS, "k1", "accepted", 200).to_line() + b"2\t/wms/re")
    first = read_journal(path, final=False)
    assert [e.key for e in first.entries] == ["k1"] and first.malformed == 0
    with path.open("ab") as handle:
        handle.write(b"turns\tk2\tduplicate\t200\n")
    second = read_journal(path, first.next_offset, final=False)
    assert [(e.key, e.outcome) for e in second.entries] == [("k2", "duplicate")]
    assert second.next_offset == path.stat().st_size


def test_a_missing_journal_reads_as_empty(tmp_path: Path) -> None:
    read = read_journal(tmp_path / "nope")
    assert (read.entries, read.malformed, read.next_offset) == ([], 0, 0)


def test_two_writers_append_whole_lines(tmp_path: Path) -> None:
    """A restarted sandbox may write while the old one's last write lands: O_APPEND keeps
    every line whole and nothing is overwritten."""
    path = tmp_path / "sub" / "j"
    a, b = Journal(path), Journal(path)
    for n in range(100):
        (a if n % 2 else b).append(JournalEntry(n, WMS, f"k{n}", "accepted", 200))
    a.close()
    b.close()
    read = read_journal(path)
    assert read.malformed == 0
    assert sorted(e.received_at_ms for e in read.entries) == list(range(100))


def test_a_bad_entry_is_counted_not_raised(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j")
    journal.append(JournalEntry(1, WMS, "bad\tkey", "accepted", 200))
    journal.append(JournalEntry(2, WMS, "good", "accepted", 200))
    assert (journal.written, journal.errors) == (1, 1)
    journal.close()


def test_restorable_keeps_accepted_entries_inside_the_window() -> None:
    entries = [
        JournalEntry(1_000, WMS, "old", "accepted", 200),
        JournalEntry(50_000, WMS, "dup", "duplicate", 200),
        JournalEntry(60_000, WMS, "new", "accepted", 200),
        JournalEntry(61_000, WMS, "failed", "error", 503),
    ]
    assert [e.key for e in restorable(entries, now_ms=100_000, window_s=60.0)] == ["new"]


# -- what the sandbox journals ----------------------------------------------------------------


async def test_every_keyed_request_is_journaled_with_its_outcome(tmp_path: Path) -> None:
    path = tmp_path / "journal.tsv"
    sandbox = Sandbox(seed=1, journal=Journal(path), wall_clock=lambda: 1_700_000_000.5)
    async with TestClient(TestServer(build_app(sandbox))) as client:
        await push(client, "a")
        await push(client, "a")
        await push(client, "b", raw=b"[1, 2]")
        await push(client, None)  # no key: nothing to journal
        sandbox.set_faults(system="tms", error_rate=1.0)
        await push(client, "c", path=TMS)
        async with client.get("/_admin/stats") as resp:
            stats = await resp.json()
    assert [(e.key, e.path, e.outcome, e.status) for e in read_journal(path).entries] == [
        ("a", WMS, "accepted", 200),
        ("a", WMS, "duplicate", 200),
        ("b", WMS, "rejected", 400),
        ("c", TMS, "error", 503),
    ]
    assert {e.received_at_ms for e in read_journal(path).entries} == {1_700_000_000_500}
    assert stats["journal"] == {
        "path": str(path),
        "written": 4,
        "errors": 0,
        "restored_keys": 0,
    }


async def test_a_restarted_sandbox_answers_replayed_keys_from_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "journal.tsv"
    wall = [1_000_000.0]
    first = Sandbox(seed=1, journal=Journal(path), wall_clock=lambda: wall[0])
    async with TestClient(TestServer(build_app(first))) as client:
        _, answer_a, _ = await push(client, "a")
        wall[0] += 100.0
        _, answer_b, _ = await push(client, "b")
        await push(client, "t", path=TMS)
    # a new process: "a" is older than the window, "b" and "t" are inside it
    wall[0] += 850.0
    second = Sandbox(seed=1, journal=Journal(path), wall_clock=lambda: wall[0])
    assert second.restored == 2
    async with TestClient(TestServer(build_app(second))) as client:
        status, replay_b, duplicate = await push(client, "b")
        assert (status, duplicate) == (200, "true")
        assert orjson.loads(replay_b)["id"] == orjson.loads(answer_b)["id"] == "wms-2"
        assert orjson.loads(replay_b)["idempotency_key"] == "b"
        # outside the window: processed fresh, with an id after the ones already given
        status, fresh_a, duplicate = await push(client, "a")
        assert (status, duplicate) == (200, None)
        assert orjson.loads(fresh_a)["id"] == "wms-3" != orjson.loads(answer_a)["id"]
        assert (await push(client, "t", path=TMS))[2] == "true"
    assert second.keys("wms") == {"a", "b"}
    outcomes = [(e.key, e.outcome) for e in read_journal(path).entries]
    assert outcomes[-3:] == [("b", "duplicate"), ("a", "accepted"), ("t", "duplicate")]


def test_the_restored_window_ends_when_the_original_would_have(tmp_path: Path) -> None:
    path = tmp_path / "journal.tsv"
    path.write_bytes(JournalEntry(1_000_000, WMS, "k", "accepted", 200).to_line())
    mono = [50.0]
    sandbox = Sandbox(
        journal=Journal(path),
        idempotency_window_s=60.0,
        clock=lambda: mono[0],
        wall_clock=lambda: 1_030.0,  # accepted 30 s ago: 30 s of its window left
    )
    assert sandbox.first_answers[(WMS, "k")][1] == pytest.approx(80.0)


# -- the process: `omshub sandbox serve` with the setting, SIGKILL, restart --------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _serve(port: int, journal: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "OMSHUB_SANDBOX_PORT": str(port),
        "OMSHUB_SANDBOX_JOURNAL": str(journal),
        "OMSHUB_HOME": str(journal.parent),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "omshub.cli", "sandbox", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _post(port: int, key: str) -> tuple[dict[str, object], str | None]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{WMS}",
        data=json.dumps({"order_no": "SO1"}).encode(),
        headers={"Idempotency-Key": key, "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read()), response.headers.get("X-Sandbox-Duplicate")


def test_the_journal_survives_a_sigkill_of_the_sandbox(tmp_path: Path) -> None:
    journal, port = tmp_path / "sandbox.journal", _free_port()
    client = SandboxClient(f"http://127.0.0.1:{port}", timeout=2.0)
    proc = _serve(port, journal)
    try:
        wait_until(client.health, 30, 0.05, "the sandbox to answer")
        first, _ = _post(port, "survivor")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert [e.key for e in read_journal(journal).entries] == ["survivor"]
        proc = _serve(port, journal)
        wait_until(client.health, 30, 0.05, "the restarted sandbox to answer")
        again, duplicate = _post(port, "survivor")
        assert duplicate == "true"
        assert again["id"] == first["id"]
        assert client.stats()["journal"]["restored_keys"] == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_stack_passes_the_journal_to_the_sandbox_process(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, sandbox_journal=tmp_path / "j.tsv")
    spec = sandbox_component(settings)
    assert spec.env["OMSHUB_SANDBOX_JOURNAL"] == str((tmp_path / "j.tsv").resolve())
    assert "OMSHUB_SANDBOX_JOURNAL" not in sandbox_component(Settings(home=tmp_path)).env
