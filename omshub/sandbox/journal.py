"""The sandbox's downstream journal: one line per keyed push request, kept on disk.

Why a journal: the sandbox is the stand-in for the downstream systems, and a chaos run
(``bench/chaos.py``) has to check "every DONE row reached its downstream, and how often" from
what the downstream recorded, not from the hub's own word. The sandbox's memory does not survive
its own SIGKILL (the chaos run kills the downstreams too), so every keyed request is appended
to a file as soon as it has an answer:

``<received_at_ms>\\t<path>\\t<idempotency key>\\t<outcome>\\t<http status>\\n``

* ``received_at_ms``: wall clock (epoch ms) when the request arrived, comparable with the
  database's ``created_at``;
* ``outcome``: ``accepted`` (a fresh key), ``duplicate`` (the first answer replayed),
  ``rejected`` (4xx), ``error`` (injected 5xx), ``timeout``, ``garbage``, or ``unanswered``
  (the handler was cancelled before it decided, e.g. the client went away during latency).

Each line is one ``write(2)`` on a descriptor opened with ``O_APPEND`` and no user-space
buffer, so a line that was written is in the kernel when the process dies, and concurrent
writers (a restarted sandbox next to a dying one) never interleave inside a line. The reader
counts lines it cannot parse (a torn last line, a tab or newline in a key) instead of failing:
the journal is evidence, and one bad line must not hide the rest.

A restarted sandbox reloads the ``accepted`` entries still inside its idempotency window
(:func:`restorable`), so a key the hub re-sends after the restart is answered as a duplicate,
as a real downstream with durable idempotency keys would.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

OUTCOMES = frozenset(
    {"accepted", "duplicate", "rejected", "error", "timeout", "garbage", "unanswered"}
)
"""Every outcome a journal line may carry."""

SUCCESS_OUTCOMES = frozenset({"accepted", "duplicate"})
"""Outcomes after which the downstream holds the push (the hub may call it delivered)."""

_FIELDS = 5
_SEP = "\t"


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One keyed push request as the downstream saw it."""

    received_at_ms: int
    path: str
    key: str
    outcome: str
    status: int

    def to_line(self) -> bytes:
        """The entry as one journal line, newline included.

        Raises :class:`ValueError` for a field that would break the line format (a tab or
        newline in the path or key, an unknown outcome): such a request is not journaled.
        """
        for name, text in (("path", self.path), ("key", self.key)):
            if not text or _SEP in text or "\n" in text or "\r" in text:
                raise ValueError(f"journal {name} {text!r} is empty or has a tab or newline")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"unknown journal outcome {self.outcome!r}")
        return (
            f"{self.received_at_ms}{_SEP}{self.path}{_SEP}{self.key}{_SEP}"
            f"{self.outcome}{_SEP}{self.status}\n"
        ).encode()

    @classmethod
    def parse(cls, line: str) -> JournalEntry:
        """Decode one line (without its newline); :class:`ValueError` says what is wrong."""
        parts = line.split(_SEP)
        if len(parts) != _FIELDS:
            raise ValueError(f"{len(parts)} fields, expected {_FIELDS}")
        received, path, key, outcome, status = parts
        if not received.isdigit() or not status.isdigit():
            raise ValueError("received_at_ms and status must be whole numbers")
        if not path.startswith("/") or not key:
            raise ValueError("path must start with / and key must not be empty")
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}")
        return cls(int(received), path, key, outcome, int(status))


@dataclass
class JournalRead:
    """What :func:`read_journal` found: the entries in file order and the lines it skipped."""

    entries: list[JournalEntry] = field(default_factory=list)
    malformed: int = 0
    #: byte offset after the last complete line: where an incremental reader goes on
    next_offset: int = 0
    #: bytes after the last newline (a line being written, or torn by a kill)
    partial_bytes: int = 0


def read_journal(path: Path, offset: int = 0, *, final: bool = True) -> JournalRead:
    """Read the journal from ``offset``; a missing file reads as empty.

    A trailing line without its newline is counted as malformed when ``final`` (the writer is
    gone, so it was torn) and otherwise left for the next read (``next_offset`` stops before it).
    """
    result = JournalRead(next_offset=offset)
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except FileNotFoundError:
        return result
    end = data.rfind(b"\n") + 1
    result.partial_bytes = len(data) - end
    result.next_offset = offset + end
    for raw in data[:end].splitlines():
        try:
            result.entries.append(JournalEntry.parse(raw.decode("utf-8")))
        except (ValueError, UnicodeDecodeError):
            result.malformed += 1
    if final and result.partial_bytes:
        result.malformed += 1
    return result


class Journal:
    """The appending side: one ``O_APPEND`` descriptor, one ``write(2)`` per entry.

    A write that fails (disk full, a bad field) is logged once per kind and counted in
    :attr:`errors`; the sandbox goes on answering, because a downstream stand-in that stops on
    its own bookkeeping would turn a journal problem into an outage of every push.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self.written = 0
        self.errors = 0
        self._logged: set[str] = set()

    def append(self, entry: JournalEntry) -> None:
        try:
            os.write(self._fd, entry.to_line())
        except (OSError, ValueError) as exc:
            self.errors += 1
            kind = type(exc).__name__
            if kind not in self._logged:
                self._logged.add(kind)
                log.error(
                    "sandbox journal write failed",
                    extra={"journal": str(self.path), "error": str(exc)},
                )
            return
        self.written += 1

    def read(self) -> JournalRead:
        return read_journal(self.path, final=True)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def restorable(
    entries: Iterable[JournalEntry], now_ms: int, window_s: float
) -> Iterator[JournalEntry]:
    """The ``accepted`` entries whose idempotency window has not ended at ``now_ms``, oldest
    first (the order a sandbox expires them in)."""
    oldest = now_ms - window_s * 1000.0
    for entry in entries:
        if entry.outcome == "accepted" and entry.received_at_ms > oldest:
            yield entry
