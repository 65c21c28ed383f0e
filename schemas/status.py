"""The worker's status file: what a running worker says about itself, once a second.

The worker writes it (``processors.agents.status``); the stack's health check, the dashboard and
the demo read it. One model on both sides means a field renamed by the writer breaks the readers'
tests, not a production dashboard, and each reader decodes the file once, here, instead of poking
at a dict. The file is the JSON object :meth:`WorkerStatus.to_json` makes; keys the model does not
know are ignored, so a newer worker can add figures before the readers use them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from omshub.core.errors import ContractError

_M = TypeVar("_M", bound=BaseModel)

__all__ = [
    "RECONNECTING",
    "RUNNING",
    "ConnectorStatus",
    "SupervisedComponent",
    "SupervisorState",
    "WantedSet",
    "WorkerStatus",
    "connector_status_path",
    "read_connector_status",
    "read_supervisor_state",
    "read_wanted",
    "read_worker_status",
    "supervisor_state_path",
    "wanted_path",
    "worker_status_path",
]

RUNNING: Final = "RUNNING"
"""A worker that is working; a worker that is not running writes nothing (the readers tell a dead
one by its pid and the file's age)."""

RECONNECTING: Final = "RECONNECTING"
"""A worker that is alive but cannot reach the broker or the database (``outages`` says which);
it keeps its place and resumes by itself, so the stack shows it as waiting, not dead."""


def worker_status_path(home: Path, worker_name: str) -> Path:
    """``<home>/run/<worker_name>.status.json``: where the worker writes and the readers look."""
    return home.resolve() / "run" / f"{worker_name}.status.json"


class WorkerStatus(BaseModel):
    """One worker process's figures.

    ``counters`` are the agents' running totals (``<worker>.<STATUS>`` per outcome, errors per
    agent); ``assigned`` the partitions it consumes (``topic:partition``); ``types`` the per push
    type outcome totals and latency window (``processors.stats.TypeFigures.snapshot``). The other
    sections are each component's own figures, passed through as they report them.
    """

    model_config = ConfigDict(frozen=True, strict=True, extra="ignore")

    state: str
    pid: int
    worker_name: str
    host: str
    started_at: float
    updated_at: float
    counters: dict[str, int]
    assigned: list[str]
    types: dict[str, dict[str, Any]]
    writeback: dict[str, Any]
    sweeper: dict[str, Any]
    reverse: dict[str, Any]
    stock: dict[str, Any]
    lookup: dict[str, Any]
    #: what the worker cannot reach now ("broker", "database") and since when (epoch s)
    outages: dict[str, float] = {}

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))

    @classmethod
    def from_json(cls, data: bytes | str) -> WorkerStatus:
        """Decode a status file's content; :class:`ContractError` naming what is wrong."""
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'file'}: {err['msg']}"
                for err in exc.errors()[:3]
            )
            raise ContractError(f"worker status file is malformed: {problems}") from None


def read_worker_status(path: Path) -> WorkerStatus | None:
    """The status in ``path``, None when there is none yet; :class:`ContractError` if malformed.

    The worker replaces the file by rename, so a reader never sees half of one: a file that does
    not decode was written by something else, and saying so beats showing a worker as missing.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    return WorkerStatus.from_json(raw)


def connector_status_path(home: Path, name: str = "connector") -> Path:
    """``<home>/run/<name>.status.json``: where the embedded connector writes its status."""
    return home.resolve() / "run" / f"{name}.status.json"


class ConnectorStatus(BaseModel):
    """The embedded connector's status file (``connectors.binlog.status.ConnectorMetrics``).

    Written about once a second by the connector process; read by the stack's health check, the
    dashboard, the connector REST API and ``omshub status``/``omshub connector status``. Counters
    default to 0 so a file of an older connector still reads; unknown keys are ignored.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    name: str
    state: str
    phase: str
    pid: int
    started_at: float
    updated_at: float
    binlog_file: str | None = None
    binlog_pos: int | None = None
    gtid: str | None = None
    committed_file: str | None = None
    committed_pos: int | None = None
    ms_behind_source: int | None = None
    events_total: int = 0
    snapshot_rows_total: int = 0
    heartbeats_total: int = 0
    errors_total: int = 0
    reconnects_total: int = 0
    restarts_total: int = 0
    pending_acks: int = 0
    last_error: str | None = None
    last_event_ts_ms: int | None = None
    events_per_s: float = 0.0
    unimplemented_keys: list[str] = []

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_json(self) -> bytes:
        return orjson.dumps(self.as_json())

    @classmethod
    def from_json(cls, data: bytes | str) -> ConnectorStatus:
        """Decode a status file's content; :class:`ContractError` naming what is wrong."""
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'file'}: {err['msg']}"
                for err in exc.errors()[:3]
            )
            raise ContractError(f"connector status file is malformed: {problems}") from None


def read_connector_status(path: Path) -> ConnectorStatus | None:
    """The status in ``path``, None when there is none yet; :class:`ContractError` if malformed."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    return ConnectorStatus.from_json(raw)


# -- the supervisor ---------------------------------------------------------------------------


def _decode(model: type[_M], data: bytes | str, what: str) -> _M:
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'file'}: {err['msg']}"
            for err in exc.errors()[:3]
        )
        raise ContractError(f"{what} is malformed: {problems}") from None


def wanted_path(home: Path) -> Path:
    """``<home>/run/wanted.json``: the components ``omshub up`` asked for and ``down`` has not
    stopped; the supervisor restarts only these."""
    return home.resolve() / "run" / "wanted.json"


def supervisor_state_path(home: Path) -> Path:
    """``<home>/run/supervisor.json``: restart counts and states, for status and the dashboard."""
    return home.resolve() / "run" / "supervisor.json"


class WantedSet(BaseModel):
    """What should be running. ``down`` removes names here before it signals anything, so the
    supervisor never races a deliberate stop."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    components: list[str] = []

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))


SupervisedState = Literal["running", "backoff", "restarting", "crashloop", "unwanted"]


class SupervisedComponent(BaseModel):
    """One component as the supervisor sees it.

    ``failures`` counts restarts since the component last stayed up for the supervisor's reset
    time (it drives the backoff); ``restarts`` counts every restart the supervisor made, for
    ever. ``crashloop`` means it keeps dying: still retried at the longest backoff, and
    ``log_tail`` holds its last log lines so nobody has to go looking.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    state: SupervisedState = "running"
    restarts: int = 0
    failures: int = 0
    up_since: float | None = None
    last_exit_at: float | None = None
    last_restart_at: float | None = None
    next_attempt_at: float | None = None
    last_error: str | None = None
    log_tail: list[str] = []


class SupervisorState(BaseModel):
    """The supervisor's file, rewritten by rename every pass."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    pid: int
    started_at: float
    updated_at: float
    components: dict[str, SupervisedComponent] = {}

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))


def read_wanted(path: Path) -> WantedSet:
    """The wanted set; empty when there is none. A malformed file is a :class:`ContractError`
    (the supervisor logs it and keeps the last set it read)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return WantedSet()
    return _decode(WantedSet, raw, f"wanted-components file {path}")


def read_supervisor_state(path: Path) -> SupervisorState | None:
    """The supervisor's last state, None when it never ran; :class:`ContractError` if malformed."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    return _decode(SupervisorState, raw, f"supervisor state file {path}")
