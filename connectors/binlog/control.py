"""The connector's target state: set through the REST API (pause, resume, restart), polled by it.

Kafka Connect keeps a connector's target state in its config topic, so a paused connector stays
paused across restarts. The embedded connector runs in its own process; the web server writes the
target state to a small JSON file beside the status file and the connector polls its modification
time a few times a second. A file survives both processes, needs no extra port, and a missing file
means RUNNING, so a connector started without any web server behaves as before.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from omshub.core.fileio import read_json, write_json_atomic

RUNNING = "RUNNING"
PAUSED = "PAUSED"
TARGET_STATES = (RUNNING, PAUSED)


@dataclass(frozen=True)
class TargetState:
    """What the operator asked for: run or pause, and how many restarts so far."""

    state: str = RUNNING
    restarts: int = 0


def control_path(status_path: Path) -> Path:
    """The control file that belongs to a connector status file (same directory)."""
    name = status_path.name.removesuffix(".status.json").removesuffix(".json")
    return status_path.with_name(f"{name}.control.json")


def read_control(path: Path) -> TargetState:
    data = read_json(path) or {}
    state = data.get("state", RUNNING)
    restarts = data.get("restarts", 0)
    return TargetState(
        state=state if state in TARGET_STATES else RUNNING,
        restarts=restarts if isinstance(restarts, int) else 0,
    )


def write_control(path: Path, *, state: str | None = None, restart: bool = False) -> TargetState:
    """Change the target state and/or ask for one more restart; returns the new target."""
    if state is not None and state not in TARGET_STATES:
        raise ValueError(f"target state must be one of {TARGET_STATES}, not {state!r}")
    current = read_control(path)
    new = TargetState(
        state=state or current.state,
        restarts=current.restarts + (1 if restart else 0),
    )
    write_json_atomic(path, {"state": new.state, "restarts": new.restarts})
    return new


class ControlWatcher:
    """Cheap polling: re-reads the file only when it changes (new modification time or, since
    every write replaces the file by rename, a new inode: two writes within one tick of a coarse
    file-system clock share a modification time)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        # stat before reading: a write in between is then seen by the next refresh
        self._mtime: tuple[int, int] | None = self._stat()
        self.target = read_control(path) if path is not None else TargetState()
        self._seen_restarts = self.target.restarts

    def _stat(self) -> tuple[int, int] | None:
        if self.path is None:
            return None
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return None
        return stat.st_mtime_ns, stat.st_ino

    def refresh(self) -> TargetState:
        mtime = self._stat()
        if mtime != self._mtime and self.path is not None:
            self._mtime = mtime
            self.target = read_control(self.path)
        return self.target

    def restart_pending(self) -> bool:
        return self.target.restarts > self._seen_restarts

    def restart_done(self) -> None:
        self._seen_restarts = self.target.restarts
