"""omshub's own processes in the stack: the connector, the sandbox, the workers and the web."""

from __future__ import annotations

import dataclasses
import logging
import ssl
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from omshub.core import procs
from omshub.core.errors import ContractError, StackError
from omshub.core.settings import Settings
from omshub.core.tls import client_context
from omshub.stack.components import (
    CONNECTOR,
    SANDBOX,
    SUPERVISOR,
    WEB,
    WORKER,
    ComponentSpec,
    settings_env,
)
from schemas.status import (
    RECONNECTING,
    RUNNING,
    ConnectorStatus,
    WorkerStatus,
    read_supervisor_state,
    supervisor_state_path,
    worker_status_path,
)

logger = logging.getLogger(__name__)


_CONNECTOR_STATUS_MAX_AGE = 10.0


def connector_status_path(home: Path) -> Path:
    """Where the connector reports its state; written by the connector, read by health checks."""
    return home.resolve() / "run" / "connector.status.json"


def _fresh_status(status_file: Path) -> bytes:
    """A status file's content, if the file was updated recently."""
    try:
        age = time.time() - status_file.stat().st_mtime
    except FileNotFoundError:
        raise StackError(f"{status_file} does not exist yet") from None
    if age > _CONNECTOR_STATUS_MAX_AGE:
        raise StackError(f"{status_file} was last updated {age:.0f}s ago")
    return status_file.read_bytes()


def _check_writer(status_file: Path, pid: Any, pid_file: Path) -> None:
    """A status file left by the previous run must not make a new process look healthy."""
    expected = procs.read_pid(pid_file)
    if expected is not None and pid != expected:
        raise StackError(f"{status_file} was written by pid {pid}, not {expected}")


def _connector_healthy(status_file: Path, pid_file: Path) -> Callable[[], bool]:
    def healthy() -> bool:
        try:
            status = ConnectorStatus.from_json(_fresh_status(status_file))
        except ContractError as exc:
            raise StackError(f"{status_file}: {exc}") from None
        _check_writer(status_file, status.pid, pid_file)
        if status.state not in ("RUNNING", "PAUSED"):  # paused on request is a healthy process
            error = status.last_error
            raise StackError(f"connector state is {status.state}" + (f": {error}" if error else ""))
        return True

    return healthy


def connector_component(settings: Settings) -> ComponentSpec:
    """The embedded binlog connector, run as ``omshub connector run`` in its own process."""
    home = settings.home.resolve()
    env = settings_env(settings)
    env["OMSHUB_HOME"] = str(home)
    env["PYTHONUNBUFFERED"] = "1"  # so its log file is current when a start fails
    return ComponentSpec(
        name=CONNECTOR,
        home=home,
        address=f"{settings.mysql().display_url()} -> {settings.bootstrap_servers}",
        argv=lambda: [sys.executable, "-m", "omshub.cli", "connector", "run"],
        program=None,  # sys.executable may be python, python3, python3.11 ...
        markers=("-m", "omshub.cli", "connector", "run"),
        healthy=_connector_healthy(connector_status_path(home), home / "run" / f"{CONNECTOR}.pid"),
        env=env,
        start_timeout=60.0,
    )


def _python_component(
    settings: Settings,
    name: str,
    args: Sequence[str],
    address: str,
    healthy: Callable[[], bool],
    port: tuple[str, int] | None = None,
    port_setting: str | None = None,
) -> ComponentSpec:
    """An omshub process (``python -m omshub.cli <args>``) with the parent's settings."""
    home = settings.home.resolve()
    env = settings_env(settings)
    env["OMSHUB_HOME"] = str(home)
    env["PYTHONUNBUFFERED"] = "1"
    return ComponentSpec(
        name=name,
        home=home,
        address=address,
        argv=lambda: [sys.executable, "-m", "omshub.cli", *args],
        program=None,
        markers=("-m", "omshub.cli", *args),
        healthy=healthy,
        env=env,
        port=port,
        port_setting=port_setting,
        start_timeout=60.0,
    )


def _http_healthy(url: str, context: ssl.SSLContext | None = None) -> Callable[[], bool]:
    def healthy() -> bool:
        import urllib.request

        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return bool(response.status == 200)

    return healthy


def _worker_healthy(status_file: Path, pid_file: Path) -> Callable[[], bool]:
    def healthy() -> bool:
        try:
            status = WorkerStatus.from_json(_fresh_status(status_file))
        except ContractError as exc:
            raise StackError(f"{status_file}: {exc}") from None
        _check_writer(status_file, status.pid, pid_file)
        if status.state == RECONNECTING:
            raise StackError(
                f"worker is reconnecting: cannot reach {', '.join(sorted(status.outages))}; "
                "it resumes by itself once they are back"
            )
        if status.state != RUNNING:
            raise StackError("worker has not reported RUNNING yet")
        if not status.assigned:
            raise StackError("worker has no partitions assigned yet")
        return True

    return healthy


def sandbox_component(settings: Settings) -> ComponentSpec:
    """The sandbox downstream systems (``omshub sandbox``)."""
    base = f"http://{settings.sandbox_host}:{settings.sandbox_port}"
    return _python_component(
        settings,
        SANDBOX,
        ["sandbox", "serve"],
        base,
        _http_healthy(f"{base}/healthz"),
        port=(settings.sandbox_host, settings.sandbox_port),
        port_setting="OMSHUB_SANDBOX_PORT",
    )


def worker_name(index: int) -> str:
    """``worker`` for the first worker process, ``worker-2``, ``worker-3``... for the others."""
    return WORKER if index == 0 else f"{WORKER}-{index + 1}"


def worker_component(settings: Settings, index: int = 0) -> ComponentSpec:
    """A Faust worker (``omshub worker``): push router, worker agents, sweeper.

    Several workers form one consumer group (the app id) and split the partitions.
    """
    name = worker_name(index)
    port = settings.worker_port + index
    worker_settings = settings.model_copy(update={"worker_name": name, "worker_port": port})
    home = settings.home.resolve()
    return _python_component(
        worker_settings,
        name,
        ["worker", "--name", name],
        f"faust web http://127.0.0.1:{port}",
        _worker_healthy(worker_status_path(home, name), home / "run" / f"{name}.pid"),
        port=("127.0.0.1", port),
        port_setting="OMSHUB_WORKER_PORT",
    )


def web_component(settings: Settings) -> ComponentSpec:
    """The dashboard, /metrics and the connector REST API (``omshub web``)."""
    # /healthz needs no credentials (omshub.web.auth); https and 127.0.0.1 for 0.0.0.0 as the
    # CLI does (Settings.web_url)
    base = settings.web_url
    return _python_component(
        settings,
        WEB,
        ["web"],
        base,
        _http_healthy(f"{base}/healthz", client_context(settings)),
        port=(settings.web_host, settings.web_port),
        port_setting="OMSHUB_WEB_PORT",
    )


def supervisor_component(settings: Settings) -> ComponentSpec:
    """``omshub supervise``: restarts the other components when they die (last to start, first
    to stop). Healthy once it wrote its state file."""
    home = settings.home.resolve()
    pid_file = home / "run" / f"{SUPERVISOR}.pid"
    state_file = supervisor_state_path(home)

    def healthy() -> bool:
        state = read_supervisor_state(state_file)
        return state is not None and state.pid == procs.read_pid(pid_file)

    spec = _python_component(settings, SUPERVISOR, ["supervise"], str(state_file), healthy)
    return dataclasses.replace(spec, start_timeout=30.0, stop_timeout=10.0)
