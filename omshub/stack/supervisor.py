"""``omshub supervise``: restarts any part of the local stack that dies, until ``omshub down``.

A stack that needs a person to type ``omshub up`` after every crash is not self-healing: a broker
SIGKILL, an OOM-killed worker or a librdkafka assertion in ``omshub web`` would each stop work
until someone looked. ``omshub up`` therefore starts this process last; it watches the pid files
of the components in the *wanted set* (``run/wanted.json``, written by ``up``, shrunk by ``down``
before it signals anything) and starts a dead one again through :class:`LocalStack`, the same
code path ``up`` uses (port checks, readiness, log markers).

Restarts back off per component (``Backoff``: first about ``supervisor_backoff_base_s``, doubling
to ``supervisor_backoff_cap_s``) and the count starts over once a component stayed up for
``supervisor_reset_after_s``, like systemd's ``Restart=`` with ``StartLimit*`` or Kubernetes'
CrashLoopBackOff. A component that keeps dying is reported as ``crashloop`` with its last log
lines in ``run/supervisor.json`` (shown by ``omshub status`` and the dashboard) and is still
retried at the longest backoff: abandoning it silently would hide the fault.

Restarts never run concurrently with ``up``/``down``: each attempt takes the stack lock without
waiting, and a pass that finds it held tries again on the next pass.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from omshub.core import procs
from omshub.core.backoff import Backoff
from omshub.core.errors import ContractError, StackError
from omshub.core.fileio import write_bytes_atomic
from omshub.core.settings import Settings
from omshub.stack.components import KAFKA, LOG_TAIL_LINES, MARIADB, SUPERVISOR, ComponentSpec
from schemas.status import (
    SupervisedComponent,
    SupervisorState,
    WantedSet,
    read_supervisor_state,
    read_wanted,
    supervisor_state_path,
    wanted_path,
)

if TYPE_CHECKING:
    from omshub.stack.local import LocalStack

logger = logging.getLogger(__name__)

PASS_INTERVAL_S = 0.5

#: parts everything else needs: while one of them is down, nothing after it is restarted
FOUNDATIONS = (MARIADB, KAFKA)


def write_wanted(home: Path, names: list[str]) -> None:
    write_bytes_atomic(wanted_path(home), WantedSet(components=names).to_json())


@dataclass
class _Tracked:
    """Mutable per-component bookkeeping; serialised as :class:`SupervisedComponent`."""

    state: str = "running"
    restarts: int = 0
    failures: int = 0
    up_since: float | None = None
    last_exit_at: float | None = None
    last_restart_at: float | None = None
    next_attempt_at: float | None = None
    last_error: str | None = None
    log_tail: list[str] = field(default_factory=list)

    def model(self) -> SupervisedComponent:
        return SupervisedComponent.model_validate(self.__dict__)


class Supervisor:
    """One pass at a time over the wanted components; :meth:`run` loops until signalled.

    ``clock`` and ``sleep`` are injected so unit tests drive time; ``stack`` is the same
    :class:`LocalStack` ``up`` uses (a fake one in unit tests).
    """

    def __init__(
        self,
        settings: Settings,
        stack: LocalStack,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.stack = stack
        self.home = settings.home.resolve()
        self.clock = clock
        self.sleep = sleep
        self.backoff = Backoff(
            settings.supervisor_backoff_base_s, settings.supervisor_backoff_cap_s
        )
        self.started_at = clock()
        self._stopping = False
        self._restarting = False
        self._wanted: list[str] = []
        self._tracked: dict[str, _Tracked] = {}
        self._restore()

    # -- state ---------------------------------------------------------------------------------

    def _restore(self) -> None:
        """Keep the counts of an earlier supervisor (``up`` replaces it): a restart count that
        reset whenever the supervisor did would hide a component that keeps dying."""
        try:
            previous = read_supervisor_state(supervisor_state_path(self.home))
        except ContractError as exc:
            logger.warning(
                "supervisor state unreadable, starting afresh", extra={"error": str(exc)}
            )
            return
        if previous is None:
            return
        for name, comp in previous.components.items():
            self._tracked[name] = _Tracked(
                restarts=comp.restarts,
                last_exit_at=comp.last_exit_at,
                last_restart_at=comp.last_restart_at,
            )

    def state(self) -> SupervisorState:
        return SupervisorState(
            pid=os.getpid(),
            started_at=self.started_at,
            updated_at=self.clock(),
            components={name: t.model() for name, t in self._tracked.items()},
        )

    def _write_state(self) -> None:
        try:
            write_bytes_atomic(supervisor_state_path(self.home), self.state().to_json())
        except OSError as exc:
            logger.warning("supervisor state not written", extra={"error": str(exc)})

    def _read_wanted(self) -> list[str]:
        try:
            self._wanted = read_wanted(wanted_path(self.home)).components
        except (ContractError, OSError) as exc:
            logger.warning("wanted set unreadable, keeping the last one", extra={"error": str(exc)})
        return self._wanted

    # -- one pass ------------------------------------------------------------------------------

    def run_once(self) -> None:
        """Look at every wanted component once; restart the dead ones whose backoff has passed."""
        wanted = set(self._read_wanted())
        now = self.clock()
        components: list[ComponentSpec] = list(self.stack.components)
        blocked_by: str | None = None
        for spec in components:
            if spec.external or spec.name == SUPERVISOR:
                continue
            tracked = self._tracked.setdefault(spec.name, _Tracked())
            if spec.name not in wanted:
                tracked.state = "unwanted"
                continue
            if self._alive(spec):
                self._seen_alive(spec, tracked, now)
                continue
            if tracked.state in ("running", "unwanted"):
                self._seen_dead(spec, tracked, now)
            if blocked_by is not None:
                tracked.last_error = f"waiting for {blocked_by} to run again"
                continue
            if tracked.next_attempt_at is not None and now < tracked.next_attempt_at:
                if spec.name in FOUNDATIONS:
                    blocked_by = spec.name
                continue
            if not self._restart(spec, tracked) and spec.name in FOUNDATIONS:
                blocked_by = spec.name
            now = self.clock()
        self._write_state()

    def _alive(self, spec: ComponentSpec) -> bool:
        pid = procs.read_pid(spec.pid_file)
        return pid is not None and procs.pid_alive(pid) and spec.matches(procs.process_cmdline(pid))

    def _seen_alive(self, spec: ComponentSpec, tracked: _Tracked, now: float) -> None:
        if tracked.state != "running" or tracked.up_since is None:
            if tracked.state not in ("running", "unwanted"):
                logger.info("component running again", extra={"component": spec.name})
            tracked.state = "running"
            tracked.up_since = tracked.up_since or now
            tracked.next_attempt_at = None
        if tracked.failures and now - tracked.up_since >= self.settings.supervisor_reset_after_s:
            tracked.failures = 0
            tracked.last_error = None
            tracked.log_tail = []

    def _seen_dead(self, spec: ComponentSpec, tracked: _Tracked, now: float) -> None:
        """A death after a short life counts as one more failure in a row (longer backoff); one
        after a long healthy run starts the backoff over."""
        short_lived = (
            tracked.restarts > 0
            and tracked.up_since is not None
            and now - tracked.up_since < self.settings.supervisor_reset_after_s
        )
        tracked.failures = tracked.failures + 1 if short_lived else 0
        tracked.last_exit_at = now
        tracked.up_since = None
        delay = self.backoff.delay_s(tracked.failures)
        tracked.next_attempt_at = now + delay
        tracked.state = self._failing_state(tracked)
        tracked.log_tail = procs.tail_lines(spec.log_file, LOG_TAIL_LINES).splitlines()
        logger.warning(
            "component died",
            extra={
                "component": spec.name,
                "restart_in_s": round(delay, 2),
                "failures": tracked.failures,
                "log": str(spec.log_file),
            },
        )

    def _failing_state(self, tracked: _Tracked) -> str:
        return (
            "crashloop"
            if tracked.failures >= self.settings.supervisor_crashloop_after
            else "backoff"
        )

    def _restart(self, spec: ComponentSpec, tracked: _Tracked) -> bool:
        """One restart attempt under the stack lock; False when it failed or had to wait."""
        stack = self.stack
        with stack.try_locked() as locked:
            if not locked:
                return False  # up/down at work: they decide; look again next pass
            if spec.name not in set(self._read_wanted()):
                return True  # `down` removed it while we waited for the lock
            tracked.state = "restarting"
            self._write_state()
            started = self.clock()
            logger.info("restarting component", extra={"component": spec.name})
            self._restarting = True
            try:
                stack.restart(spec)
            except Exception as exc:  # noqa: BLE001 - one component's bug must not stop the rest
                # a StackError says what is wrong; anything else is a bug in the start path,
                # counted and retried the same way so the components after it still restart
                tracked.failures += 1
                now = self.clock()
                text = str(exc) if isinstance(exc, StackError) else f"{type(exc).__name__}: {exc}"
                tracked.last_error = (text.splitlines() or [type(exc).__name__])[0]
                tracked.log_tail = procs.tail_lines(spec.log_file, LOG_TAIL_LINES).splitlines()
                tracked.next_attempt_at = now + self.backoff.delay_s(tracked.failures)
                tracked.state = self._failing_state(tracked)
                logger.error(
                    "component restart failed",
                    extra={
                        "component": spec.name,
                        "failures": tracked.failures,
                        "retry_in_s": round(tracked.next_attempt_at - now, 2),
                        "error": tracked.last_error,
                    },
                )
                return False
            finally:
                self._restarting = False
        now = self.clock()
        tracked.restarts += 1
        tracked.last_restart_at = now
        tracked.up_since = now
        tracked.next_attempt_at = None
        tracked.state = "running"
        logger.info(
            "component restarted",
            extra={
                "component": spec.name,
                "restarts": tracked.restarts,
                "seconds": round(now - started, 2),
            },
        )
        return True

    # -- the loop ------------------------------------------------------------------------------

    def stop(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        del signum, frame
        self._stopping = True
        if self._restarting:
            # `down` is stopping the stack: abandon the start (LocalStack cleans up a half-started
            # process on the way out) instead of making `down` wait for its readiness deadline
            raise SystemExit(0)

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        logger.info("supervisor started", extra={"pid": os.getpid(), "home": str(self.home)})
        while not self._stopping:
            try:
                self.run_once()
            except Exception:
                logger.exception("supervisor pass failed; trying again")
            self.sleep(PASS_INTERVAL_S)
        logger.info("supervisor stopped", extra={"pid": os.getpid()})
