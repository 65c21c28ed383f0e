"""The embedded local stack behind ``omshub up | down | status``.

omshub starts its own MariaDB, Apache Kafka broker and connector as plain child processes with their
state under ``settings.home`` (``.omshub/``) rather than relying on system services: a developer
machine may already run a MySQL on 3306 or a Kafka on 9092, and the hub's database needs binlog
settings (ROW, FULL image, FULL metadata) that a shared server rarely has.

Each part is a :class:`ComponentSpec`; :class:`LocalStack` only knows how to start, health-check
and stop specs, so later parts (worker, sandbox, web) are added by appending specs. Processes are
tracked by pid files and identified by their command line before they are signalled, never by
name. When ``OMSHUB_MYSQL_URL`` or ``OMSHUB_KAFKA_BOOTSTRAP_SERVERS`` is set the matching spec is
*external*: shown in status, never started or stopped.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shlex
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from omshub.core import procs
from omshub.core.errors import OmshubError, StackError
from omshub.core.settings import Settings
from omshub.stack.broker import kafka_component
from omshub.stack.components import (
    CONNECTOR,
    HEALTH_INTERVAL_S,
    KAFKA,
    LOG_TAIL_LINES,
    MARIADB,
    SUPERVISOR,
    ComponentSpec,
    ComponentStatus,
    ProgressCallback,
    StackEvent,
    StackStatus,
    now_iso,
)
from omshub.stack.mariadb import mariadb_component
from omshub.stack.services import (
    connector_component,
    sandbox_component,
    supervisor_component,
    web_component,
    worker_component,
)
from omshub.stack.supervisor import write_wanted
from schemas.status import (
    SupervisorState,
    read_supervisor_state,
    read_wanted,
    supervisor_state_path,
    wanted_path,
)

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# MariaDB


# --------------------------------------------------------------------------------------------
# Kafka


# --------------------------------------------------------------------------------------------
# Connector


def default_components(settings: Settings) -> list[ComponentSpec]:
    """The stack ``omshub up`` starts, in start order (``down`` stops in reverse)."""
    specs = [mariadb_component(settings), kafka_component(settings)]
    if settings.start_connector:
        # imported here: omshub.stack.connect builds on this module's ComponentSpec
        from omshub.stack import connect as stack_connect

        embedded_started = (settings.home.resolve() / "run" / f"{CONNECTOR}.pid").exists()
        connect_started = stack_connect.connect_started(settings)
        if settings.cdc == "embedded" and connect_started and not embedded_started:
            # a stack started with --cdc debezium, seen by a command run without it (down,
            # status, demo): it runs Debezium, and so do the parts built after this point
            settings = settings.model_copy(update={"cdc": "debezium"})
        if settings.cdc == "embedded" or embedded_started:
            specs.append(connector_component(settings))
        if settings.cdc == "debezium" or connect_started:
            specs.append(stack_connect.connect_component(settings))
    if settings.start_sandbox:
        specs.append(sandbox_component(settings))
    if settings.start_worker:
        specs.extend(worker_component(settings, i) for i in range(settings.workers))
    if settings.start_web:
        specs.append(web_component(settings))
    if settings.start_supervisor:
        specs.append(supervisor_component(settings))
    return specs


#: parts every other one needs: when one of them cannot start, `up` does not wait for the rest
FOUNDATIONS = (MARIADB, KAFKA)


# --------------------------------------------------------------------------------------------
# The stack


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "the health check returned false"
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, StackError) else f"{type(exc).__name__}: {text}"


def _ignore_progress(event: StackEvent) -> None:
    del event


class LocalStack:
    """Starts, stops and reports the embedded stack described by a list of component specs."""

    def __init__(self, settings: Settings, components: Sequence[ComponentSpec] | None = None):
        self.settings = settings
        self.home = settings.home.resolve()
        self.components = (
            list(components) if components is not None else default_components(settings)
        )
        names = [spec.name for spec in self.components]
        if len(set(names)) != len(names):
            raise ValueError(f"component names must be unique: {names}")
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    # -- public API --------------------------------------------------------------------------

    def up(
        self,
        components: Sequence[str] | None = None,
        on_progress: ProgressCallback | None = None,
        after_mysql: Callable[[], None] | None = None,
    ) -> StackStatus:
        """Start every selected component that is not already running, in order, and wait for
        each to be healthy before the next (the connector needs the database and the broker).

        ``after_mysql`` (the CLI passes ``db migrate``) runs once the database is usable, before
        anything that reads its tables starts. Safe to call again: running parts are kept.

        A component that fails to start does not stop the others: each is tried and reported,
        and one :class:`StackError` naming every failure is raised at the end. Only when the
        database or the broker failed are the parts that need them reported as not started
        (each would wait out its whole start timeout for nothing). The supervisor is (re)started
        last in any case, with these settings, and keeps trying whatever failed.
        """
        progress = on_progress or _ignore_progress
        selected = self._select(components)
        failures: dict[str, str] = {}
        with self._locked(progress):
            self._want(add=[spec.name for spec in selected if not spec.external])
            for spec in selected:
                if spec.external:
                    progress(
                        StackEvent(spec.name, "external", f"{spec.name}: using {spec.address}")
                    )
                missing = next((name for name in FOUNDATIONS if name in failures), None)
                if missing is not None and spec.name != SUPERVISOR:
                    failures[spec.name] = f"not started: {missing} is not running"
                    progress(
                        StackEvent(spec.name, "skipped", f"{spec.name}: {failures[spec.name]}")
                    )
                    continue
                try:
                    if spec.name == SUPERVISOR:
                        self._replace(spec, progress)
                    elif not spec.external:
                        self._ensure_running(spec, progress)
                    if spec.name == MARIADB and after_mysql is not None:
                        progress(StackEvent(spec.name, "hook", "applying database migrations"))
                        after_mysql()
                except OmshubError as exc:
                    failures[spec.name] = str(exc)
                    progress(StackEvent(spec.name, "failed", f"{spec.name} failed: {exc}"))
        if failures:
            raise StackError(
                f"{len(failures)} of {len(selected)} component(s) did not start; "
                + "; ".join(f"{name}: {why}" for name, why in failures.items())
                + ". The supervisor keeps retrying them; see `omshub status` and the logs in "
                + f"{self.home / 'logs'}"
            )
        return self.status()

    def restart(self, spec: ComponentSpec) -> None:
        """Start one dead component again, as ``up`` would (the supervisor's path; the caller
        holds the stack lock through :meth:`try_locked`)."""

        def log_progress(event: StackEvent) -> None:
            logger.info(event.message, extra={"component": event.component, "action": event.action})

        self._ensure_running(spec, log_progress)

    def down(
        self,
        components: Sequence[str] | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> list[str]:
        """Stop what ``up`` started, in reverse order, by the pids in the pid files only.

        The components leave the wanted set first and the supervisor (when it is among them)
        stops before anything else, so nothing is restarted behind ``down``'s back. A pid whose
        process is gone or now runs another program is not signalled; its pid file is just
        removed. External components are never touched. Returns the names stopped.
        """
        progress = on_progress or _ignore_progress
        selected = self._select(components)
        self._want(remove=[spec.name for spec in selected])
        stopped: list[str] = []
        ordered = sorted(reversed(selected), key=lambda spec: spec.name != SUPERVISOR)
        for spec in ordered:
            if spec.name != SUPERVISOR:
                break
            if self._stop_one(spec, progress):
                stopped.append(spec.name)
        with self._locked(progress):
            for spec in ordered:
                if spec.external or spec.name == SUPERVISOR:
                    continue
                if self._stop_one(spec, progress):
                    stopped.append(spec.name)
        return stopped

    def _stop_one(self, spec: ComponentSpec, progress: ProgressCallback) -> bool:
        if spec.external:
            return False
        pid = procs.read_pid(spec.pid_file)
        if pid is None:
            procs.remove_file(spec.pid_file)  # garbled or absent: nothing to signal
            return False
        if not self._is_ours(spec, pid):
            progress(
                StackEvent(
                    spec.name,
                    "stale",
                    f"{spec.name}: pid file {spec.pid_file} names pid {pid}, which "
                    f"{self._why_stale(pid)}; removed the pid file, signalled nothing",
                )
            )
            procs.remove_file(spec.pid_file)
            return False
        progress(StackEvent(spec.name, "stop", f"stopping {spec.name} (pid {pid})"))
        self._stop(spec, pid)
        return True

    def _want(self, add: Sequence[str] = (), remove: Sequence[str] = ()) -> None:
        """Update the wanted set the supervisor reads (a malformed file is replaced)."""
        path = wanted_path(self.home)
        try:
            current = read_wanted(path).components
        except OmshubError:
            current = []
        names = [name for name in current if name not in set(remove)]
        names += [name for name in add if name not in names]
        write_wanted(self.home, names)

    def _replace(self, spec: ComponentSpec, progress: ProgressCallback) -> None:
        """(Re)start the supervisor so that it supervises exactly this ``up``'s components."""
        pid = procs.read_pid(spec.pid_file)
        if pid is not None and self._is_ours(spec, pid):
            self._stop(spec, pid)
        self._ensure_running(spec, progress)

    def status(self, check_health: bool = True) -> StackStatus:
        """Each component's state without changing anything (stale pid files are reported, not
        removed, so ``status`` is safe to run at any time)."""
        components = {
            spec.name: self._component_status(spec, check_health) for spec in self.components
        }
        return StackStatus(
            home=self.home,
            mysql_url=self.settings.mysql().display_url(),
            bootstrap_servers=self.settings.bootstrap_servers,
            components=components,
            supervisor=self._supervisor_state(),
        )

    def _supervisor_state(self) -> SupervisorState | None:
        try:
            return read_supervisor_state(supervisor_state_path(self.home))
        except OmshubError as exc:
            logger.warning("supervisor state unreadable", extra={"error": str(exc)})
            return None

    # -- internals ---------------------------------------------------------------------------

    def _select(self, names: Sequence[str] | None) -> list[ComponentSpec]:
        if names is None:
            return list(self.components)
        known = {spec.name for spec in self.components}
        unknown = [name for name in names if name not in known]
        if unknown:
            raise StackError(
                f"unknown component(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        wanted = set(names)
        return [spec for spec in self.components if spec.name in wanted]

    @contextlib.contextmanager
    def _locked(self, progress: ProgressCallback) -> Iterator[None]:
        """Serialise concurrent ``up``/``down`` on one home: two starts racing for the same pid
        files and ports would each see the other's half-started processes as foreign."""
        lock_path = self.home / "run" / "stack.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with lock_path.open("a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                progress(
                    StackEvent(
                        "stack", "wait", f"waiting for another omshub up/down on {self.home}"
                    )
                )
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def try_locked(self) -> Iterator[bool]:
        """The stack lock if it is free now (yields True), else yields False at once: the
        supervisor must never queue behind an ``up`` or ``down`` that is changing the stack."""
        lock_path = self.home / "run" / "stack.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with lock_path.open("a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @staticmethod
    def _is_ours(spec: ComponentSpec, pid: int) -> bool:
        return procs.pid_alive(pid) and spec.matches(procs.process_cmdline(pid))

    @staticmethod
    def _why_stale(pid: int) -> str:
        if not procs.pid_alive(pid):
            return "is not running"
        cmdline = procs.process_cmdline(pid)
        shown = shlex.join(cmdline)[:120] if cmdline else "an unknown program"
        return f"now runs a different program ({shown})"

    def _component_status(self, spec: ComponentSpec, check_health: bool) -> ComponentStatus:
        if spec.external:
            return ComponentStatus(spec.name, "external", spec.address)
        log = str(spec.log_file)
        pid = procs.read_pid(spec.pid_file)
        if pid is None:
            return ComponentStatus(spec.name, "stopped", spec.address, log=log)
        if not self._is_ours(spec, pid):
            return ComponentStatus(
                spec.name, "stale", spec.address, pid=pid, log=log, detail=self._why_stale(pid)
            )
        usage = procs.process_usage(pid)
        measured: dict[str, Any] = (
            {
                "started_at": usage.started_at,
                "rss_bytes": usage.rss_bytes,
                "cpu_seconds": round(usage.cpu_seconds, 2),
            }
            if usage is not None
            else {}
        )
        if check_health:
            ok, error = self._probe(spec)
            if not ok:
                return ComponentStatus(
                    spec.name,
                    "unhealthy",
                    spec.address,
                    pid=pid,
                    log=log,
                    detail=_describe(error),
                    **measured,
                )
        return ComponentStatus(spec.name, "running", spec.address, pid=pid, log=log, **measured)

    def _ensure_running(self, spec: ComponentSpec, progress: ProgressCallback) -> None:
        pid = procs.read_pid(spec.pid_file)
        if pid is not None:
            if self._is_ours(spec, pid):
                progress(
                    StackEvent(spec.name, "running", f"{spec.name} already running (pid {pid})")
                )
                if not self._probe(spec)[0]:
                    self._await_ready(spec, pid, None, log_offset=None)
                return
            progress(
                StackEvent(
                    spec.name,
                    "stale",
                    f"{spec.name}: stale pid file {spec.pid_file} (pid {pid} "
                    f"{self._why_stale(pid)}); removing it and starting afresh",
                )
            )
            procs.remove_file(spec.pid_file)
        elif spec.pid_file.exists():
            procs.remove_file(spec.pid_file)  # unreadable: nothing we could ever signal
        self._check_port(spec)
        self._start(spec, progress)

    def _check_port(self, spec: ComponentSpec) -> None:
        if spec.port is None:
            return
        host, port = spec.port
        if not procs.port_in_use(host, port):
            return
        owner = procs.port_owner(port)
        who = ""
        hint = ""
        if owner is not None:
            owner_pid, owner_cmd = owner
            who = f" by pid {owner_pid} ({owner_cmd[:120]})"
            if spec.matches(procs.process_cmdline(owner_pid)):
                hint = (
                    f" It looks like an omshub {spec.name} whose pid file {spec.pid_file} is "
                    f"missing; stop it with `kill {owner_pid}` if it is yours."
                )
        setting = f" or set {spec.port_setting} to a free port" if spec.port_setting else ""
        raise StackError(
            f"cannot start {spec.name}: port {port} on {host} is already in use{who}. "
            f"Stop that program{setting}.{hint}"
        )

    def _start(self, spec: ComponentSpec, progress: ProgressCallback) -> None:
        assert spec.argv is not None  # guaranteed for non-external specs by __post_init__
        if spec.prepare is not None:
            progress(StackEvent(spec.name, "prepare", f"preparing {spec.name}"))
            spec.prepare()
        argv = spec.argv()
        spec.log_file.parent.mkdir(parents=True, exist_ok=True)
        spec.pid_file.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with spec.log_file.open("ab") as log:
            offset = log.seek(0, os.SEEK_END)
            log.write(
                f"\n--- omshub: {now_iso()} starting {spec.name}: {shlex.join(argv)}\n".encode()
            )
            log.flush()
            try:
                proc = subprocess.Popen(
                    argv,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    cwd=Path.cwd(),
                    env={**os.environ, **spec.env},
                )
            except OSError as exc:
                raise StackError(f"cannot start {spec.name} ({argv[0]}): {exc}") from exc
        procs.write_pid(spec.pid_file, proc.pid)
        self._children[spec.name] = proc
        logger.info(
            "component started", extra={"component": spec.name, "pid": proc.pid, "argv": argv}
        )
        progress(
            StackEvent(
                spec.name,
                "start",
                f"started {spec.name} (pid {proc.pid}); waiting up to "
                f"{spec.start_timeout:g}s for it to become healthy",
            )
        )
        try:
            self._await_ready(spec, proc.pid, proc, log_offset=offset)
        except BaseException:
            # Leave nothing half-started behind: the next `up` then starts cleanly.
            if proc.poll() is None:
                procs.terminate(proc.pid, timeout=5.0)
                proc.poll()
            procs.remove_file(spec.pid_file)
            raise
        elapsed = time.monotonic() - started
        logger.info(
            "component healthy",
            extra={"component": spec.name, "pid": proc.pid, "seconds": round(elapsed, 2)},
        )
        progress(
            StackEvent(
                spec.name, "healthy", f"{spec.name} healthy at {spec.address} ({elapsed:.1f}s)"
            )
        )

    @staticmethod
    def _probe(spec: ComponentSpec) -> tuple[bool, BaseException | None]:
        """One health probe; any exception means "not healthy" and is kept for the message,
        because probes talk to servers that fail in many ways (refused, auth, timeouts)."""
        if spec.healthy is None:
            return True, None
        try:
            return bool(spec.healthy()), None
        except Exception as exc:  # noqa: BLE001 - see docstring
            return False, exc

    def _await_ready(
        self,
        spec: ComponentSpec,
        pid: int,
        proc: subprocess.Popen[bytes] | None,
        log_offset: int | None,
    ) -> None:
        """Poll bootstrap, then health, until the deadline; fail fast if the process dies."""
        deadline = time.monotonic() + spec.start_timeout
        tail_from = log_offset or 0

        def check_alive() -> None:
            if proc is not None:
                code = proc.poll()
                if code is None:
                    return
                reason = f"exited with code {code}"
            elif procs.pid_alive(pid):
                return
            else:
                reason = "exited"
            procs.remove_file(spec.pid_file)
            raise StackError(
                f"{spec.name} (pid {pid}) {reason} before becoming healthy; "
                f"{spec.log_file} ends with:\n"
                + procs.tail_lines(spec.log_file, LOG_TAIL_LINES, tail_from)
            )

        def timed_out(what: str, error: BaseException | None) -> StackError:
            last = f" (last check: {_describe(error)})" if error is not None else ""
            return StackError(
                f"{spec.name} (pid {pid}) did not {what} within {spec.start_timeout:g}s{last}; "
                f"{spec.log_file} ends with:\n"
                + procs.tail_lines(spec.log_file, LOG_TAIL_LINES, tail_from)
            )

        if spec.bootstrap is not None:
            while True:
                check_alive()
                if spec.bootstrap():
                    break
                if time.monotonic() >= deadline:
                    raise timed_out("accept connections", None)
                time.sleep(HEALTH_INTERVAL_S)
        while True:
            check_alive()
            ok, error = self._probe(spec)
            if ok:
                return
            if time.monotonic() >= deadline:
                raise timed_out("become healthy", error)
            time.sleep(HEALTH_INTERVAL_S)

    def _stop(self, spec: ComponentSpec, pid: int) -> None:
        started = time.monotonic()
        gone = procs.terminate(pid, timeout=spec.stop_timeout)
        child = self._children.pop(spec.name, None)
        if child is not None:
            child.poll()
        if not gone:
            raise StackError(f"{spec.name} (pid {pid}) did not exit even after SIGKILL")
        procs.remove_file(spec.pid_file)
        logger.info(
            "component stopped",
            extra={
                "component": spec.name,
                "pid": pid,
                "seconds": round(time.monotonic() - started, 2),
            },
        )
