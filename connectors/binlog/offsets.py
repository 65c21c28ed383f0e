"""Connector offsets, stored like Kafka Connect standalone's file offset store.

An offset names where to resume: ``pos`` is the start of the transaction that holds the last
acknowledged record (a row event cannot be read without its table map, which sits after that
start), and ``event_pos``/``row`` say which records of that transaction were already delivered and
must be skipped. ``event_pos = 0`` means "nothing to skip": the position is a transaction boundary.
The file is replaced atomically, so a crash leaves either the old or the new offset, never half.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from omshub.core.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Offset:
    file: str
    pos: int
    event_pos: int = 0
    row: int = -1
    gtid: str | None = None
    snapshot_completed: bool = True
    ts_sec: int = 0
    incremental: dict[str, Any] | None = field(default=None)

    def skips(self, file: str, event_pos: int, row: int) -> bool:
        """True when the record at (file, event_pos, row) was delivered before this offset."""
        if self.event_pos == 0 or file != self.file:
            return False
        return (event_pos, row) <= (self.event_pos, self.row)

    def describe(self) -> str:
        return f"{self.file}:{self.pos}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Offset:
        return cls(
            file=str(data["file"]),
            pos=int(data["pos"]),
            event_pos=int(data.get("event_pos", 0)),
            row=int(data.get("row", -1)),
            gtid=data.get("gtid"),
            snapshot_completed=bool(data.get("snapshot_completed", True)),
            ts_sec=int(data.get("ts_sec", 0)),
            incremental=data.get("incremental"),
        )


class FileOffsetStore:
    """Offsets of every connector in one JSON file: ``{connector name: offset}``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read_all(self) -> dict[str, Any]:
        try:
            data = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except orjson.JSONDecodeError as exc:
            raise ConfigError(
                f"offset file {self.path} is corrupt ({exc}); move it aside to re-snapshot "
                "(snapshot.mode=when_needed), or restore it from a backup"
            ) from exc
        if not isinstance(data, dict):
            raise ConfigError(f"offset file {self.path} does not hold a JSON object; move it aside")
        return data

    def load(self, name: str) -> Offset | None:
        entry = self._read_all().get(name)
        if entry is None:
            return None
        try:
            return Offset.from_json(entry)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"offset of connector {name!r} in {self.path} is malformed ({exc}); "
                "delete that entry to re-snapshot"
            ) from exc

    def save(self, name: str, offset: Offset) -> None:
        data = self._read_all()
        data[name] = offset.to_json()
        self._write(data)

    def delete(self, name: str) -> bool:
        data = self._read_all()
        if name not in data:
            return False
        del data[name]
        self._write(data)
        return True

    def _write(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".offsets-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(orjson.dumps(data, option=orjson.OPT_INDENT_2))
            # No fsync (as Kafka Connect's file store): the rename is atomic for a killed
            # process; after an OS crash an older offset only means re-delivered records.
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
