"""The parts of a local stack and their states: what `omshub up | down | status` talk about.

A component is a :class:`ComponentSpec` (how to start, health-check and identify one process);
:class:`omshub.stack.local.LocalStack` only knows how to run specs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr

from omshub.core import procs
from omshub.core.settings import Settings
from schemas.status import SupervisorState

logger = logging.getLogger(__name__)


wait_until = procs.wait_until


MARIADB = "mariadb"


KAFKA = "kafka"


CONNECTOR = "connector"


SANDBOX = "sandbox"


WORKER = "worker"


WEB = "web"


SUPERVISOR = "supervisor"


ComponentState = Literal["running", "stopped", "stale", "external", "unhealthy"]


HEALTH_INTERVAL_S = 0.2


LOG_TAIL_LINES = 20


@dataclass(frozen=True)
class StackEvent:
    """One progress step of ``up``/``down``, for the CLI to render however it likes.

    ``action`` is one of: external, running, stale, prepare, start, healthy, hook, stop, wait.
    """

    component: str
    action: str
    message: str

    def __str__(self) -> str:
        return self.message


ProgressCallback = Callable[[StackEvent], None]


@dataclass(frozen=True)
class ComponentSpec:
    """How to run, recognise and health-check one part of the stack.

    Everything that touches the outside world is a callable so that building a spec (for
    ``status`` or ``down``) never needs the binaries to exist.

    * ``argv``: builds the command line; may raise StackError when a binary is missing.
    * ``program``/``markers``: how a live pid is recognised as this component: executable base
      name prefix (None: any) and argv elements that must all be present. A pid whose command
      line does not match is treated as reused and is never signalled.
    * ``prepare``: runs before a (re)start, e.g. initialising a datadir.
    * ``bootstrap``: one attempt to make a freshly started process usable (create users...);
      returns False while the process is not answering yet, raises on a real error, must be
      idempotent. Polled until it returns True.
    * ``healthy``: one health probe; False or an exception means "not (yet) healthy", and the
      exception text is quoted if the deadline passes.
    * ``external``: the part is provided elsewhere (a URL in settings); only ``address`` is used.
    """

    name: str
    home: Path
    address: str
    argv: Callable[[], list[str]] | None = None
    program: str | None = None
    markers: tuple[str, ...] = ()
    healthy: Callable[[], bool] | None = None
    prepare: Callable[[], None] | None = None
    bootstrap: Callable[[], bool] | None = None
    port: tuple[str, int] | None = None
    port_setting: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    start_timeout: float = 30.0
    stop_timeout: float = 15.0
    external: bool = False

    def __post_init__(self) -> None:
        if not self.external and self.argv is None:
            raise ValueError(f"component {self.name!r} is neither external nor has an argv")

    @property
    def pid_file(self) -> Path:
        return self.home / "run" / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "logs" / f"{self.name}.log"

    def matches(self, cmdline: Sequence[str] | None) -> bool:
        return procs.cmdline_matches(cmdline, self.program, self.markers)


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    state: ComponentState
    address: str
    pid: int | None = None
    log: str | None = None
    detail: str | None = None
    started_at: float | None = None
    rss_bytes: int | None = None
    cpu_seconds: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "pid": self.pid,
            "address": self.address,
            "log": self.log,
            "detail": self.detail,
            "started_at": (
                datetime.fromtimestamp(self.started_at, UTC).isoformat(timespec="seconds")
                if self.started_at is not None
                else None
            ),
            "rss_bytes": self.rss_bytes,
            "cpu_seconds": self.cpu_seconds,
        }


@dataclass(frozen=True)
class StackStatus:
    """What ``omshub status`` shows; ``mysql_url`` is always masked so it is safe to print."""

    home: Path
    mysql_url: str
    bootstrap_servers: str
    components: dict[str, ComponentStatus]
    supervisor: SupervisorState | None = None

    @property
    def ok(self) -> bool:
        """Every component is usable (running and healthy, or provided externally)."""
        return all(c.state in ("running", "external") for c in self.components.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "home": str(self.home),
            "mysql_url": self.mysql_url,
            "bootstrap_servers": self.bootstrap_servers,
            "ok": self.ok,
            "components": {name: c.to_json() for name, c in self.components.items()},
            "supervisor": self.supervisor.model_dump(mode="json") if self.supervisor else None,
            "restarts": (
                {name: c.restarts for name, c in self.supervisor.components.items()}
                if self.supervisor
                else {}
            ),
        }


def settings_env(settings: Settings) -> dict[str, str]:
    """``OMSHUB_*`` variables reproducing ``settings`` in a child process.

    Settings may come from constructor arguments (tests, ``--home``) that the child cannot see in
    the environment; exporting every field makes the child agree with the parent.
    """
    env: dict[str, str] = {}
    dumped: dict[str, Any] | None = None
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            text = value.get_secret_value()
        elif isinstance(value, Path):
            text = str(value.resolve())
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str | int | float):
            text = str(value)
        else:
            if dumped is None:
                dumped = settings.model_dump(mode="json")
            text = json.dumps(dumped[name])
        env[f"OMSHUB_{name.upper()}"] = text
    return env


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
