"""Process, pid-file and port helpers shared by the local stack and the integration tests.

Everything here identifies a process by pid *and* by what it is running (``/proc/<pid>/cmdline``):
a pid read from a file may have been reused by an unrelated program since it was written, and
omshub must never signal a process it did not start.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import signal
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from omshub.core.errors import StackError

__all__ = [
    "cmdline_matches",
    "pid_alive",
    "port_in_use",
    "port_owner",
    "process_cmdline",
    "read_pid",
    "remove_file",
    "tail_lines",
    "terminate",
    "tune_gc",
    "wait_until",
    "write_pid",
]


GC_GEN0_THRESHOLD = 10_000
"""Allocations between young-generation collections in a long-running worker (Python's default:
700). The workers' HTTP client (aiohttp) allocates a few hundred objects per push; at the default
a collection ran every few pushes, each walking the young objects of every push in flight, which
was a large share of the client's CPU (docs/benchmarks.md, "HTTP client: aiohttp")."""


def tune_gc() -> None:
    """Set up the collector for a long-running asyncio worker, once its modules are loaded:
    what exists now (modules, classes, the app's objects) is moved out of the collector's sight
    (``gc.freeze``), and young collections run every :data:`GC_GEN0_THRESHOLD` allocations.
    Reference cycles are still collected, just in larger batches."""
    gc.freeze()
    _gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    interval: float = 0.2,
    what: str = "condition",
    ignore: tuple[type[BaseException], ...] = (),
) -> None:
    """Poll ``predicate`` until it is true, or raise StackError naming what never happened.

    Exceptions listed in ``ignore`` count as "not yet" (a server that refuses connections while it
    starts), and the last one is quoted in the timeout message because it is usually the reason.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            if predicate():
                return
        except ignore as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            message = f"timed out after {timeout:g}s waiting for {what}"
            if last_error is not None:
                message += f" (last error: {last_error!r})"
            raise StackError(message)
        time.sleep(interval)


def read_pid(path: Path) -> int | None:
    """The pid stored in ``path``; None when the file is missing or holds no usable pid.

    A garbled pid file is treated like a missing one because nothing could be signalled safely.
    """
    try:
        text = path.read_text(encoding="ascii").strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    if not text.isdigit():
        return None
    pid = int(text)
    return pid if pid > 0 else None


def write_pid(path: Path, pid: int) -> None:
    """Write the pid file atomically so a concurrent reader never sees an empty file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{pid}\n", encoding="ascii")
    os.replace(tmp, path)


def remove_file(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _reap(pid: int) -> None:
    """Collect ``pid`` if it is our own exited child, so it stops looking alive as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (zombies count as dead: they run nothing)."""
    if pid <= 0:
        return False
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return True  # no /proc: trust kill(0)
    # The state follows the parenthesised command name, which may itself contain ")".
    state = stat.rsplit(")", 1)[-1].split()[:1]
    return state != ["Z"]


def process_cmdline(pid: int) -> list[str] | None:
    """argv of a running process, or None when it is gone, a zombie, or unreadable."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    if not raw:
        return None  # zombie or kernel thread
    return [part.decode("utf-8", errors="replace") for part in raw.rstrip(b"\0").split(b"\0")]


@dataclass(frozen=True)
class ProcessUsage:
    """What ``status`` shows of a live process: when it started and what it holds now."""

    started_at: float  # Unix time
    rss_bytes: int
    cpu_seconds: float  # user + system since start


def process_usage(pid: int) -> ProcessUsage | None:
    """Start time, resident memory and CPU time from /proc, or None when unreadable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
        uptime = float(Path("/proc/uptime").read_text(encoding="utf-8").split()[0])
    except (OSError, ValueError, IndexError):
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        # fields[0] is field 3 (state) of proc(5): utime is 14, stime 15, starttime 22, rss 24
        utime, stime = int(fields[11]), int(fields[12])
        start_ticks, rss_pages = int(fields[19]), int(fields[21])
    except (IndexError, ValueError, OSError):
        return None
    started = time.time() - uptime + start_ticks / ticks
    return ProcessUsage(
        started_at=started,
        rss_bytes=rss_pages * os.sysconf("SC_PAGE_SIZE"),
        cpu_seconds=(utime + stime) / ticks,
    )


def cmdline_matches(
    cmdline: Sequence[str] | None, program: str | None, markers: Sequence[str] = ()
) -> bool:
    """Whether ``cmdline`` is the program we expect: same executable name, every marker present.

    ``program`` is compared by prefix of the executable's base name so that a versioned binary
    (``java17``) still matches after an upgrade; markers are exact argv elements that tie the
    process to this stack (e.g. ``--datadir=<home>/mysql/data``).
    """
    if not cmdline:
        return False
    if program is not None and not os.path.basename(cmdline[0]).startswith(program):
        return False
    return all(marker in cmdline for marker in markers)


def terminate(pid: int, timeout: float = 15.0) -> bool:
    """SIGTERM ``pid`` (its process group if it leads one), SIGKILL after ``timeout`` seconds.

    The caller has already checked that the pid runs the expected program. Returns whether the
    process is gone.
    """

    def send(sig: signal.Signals) -> None:
        try:
            if os.getpgid(pid) == pid:
                os.killpg(pid, sig)  # we started it with start_new_session: take its children too
            else:
                os.kill(pid, sig)
        except ProcessLookupError:
            pass

    send(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    send(signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return not pid_alive(pid)


def port_in_use(host: str, port: int) -> bool:
    """Whether a server could not listen on ``host:port`` right now.

    Binds with SO_REUSEADDR like the servers we start do, so sockets lingering in TIME_WAIT after
    a restart do not count as taken, while any listener (also on 0.0.0.0) does.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return False  # an unresolvable host fails later with the server's own message
    family, socktype, proto, _, address = infos[0]
    with socket.socket(family, socktype, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text(encoding="ascii").splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != "0A":  # 0A = LISTEN
                continue
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def port_owner(port: int) -> tuple[int, str] | None:
    """(pid, command line) of the process listening on ``port``, if /proc tells us.

    Only used to make a "port already taken" message actionable; None when unknown.
    """
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    targets = {f"socket:[{inode}]" for inode in inodes}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(fd)
            except OSError:
                continue
            if link in targets:
                pid = int(entry.name)
                return pid, " ".join(process_cmdline(pid) or ["?"])
    return None


def tail_lines(path: Path, lines: int = 20, offset: int = 0) -> str:
    """The last ``lines`` lines of ``path`` written after byte ``offset`` (this start's output)."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            start = max(offset, size - 64 * 1024)
            handle.seek(start)
            data = handle.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])
