"""The JVM parts of the local stack: a Java to run them and the jars Maven resolves for them.

Apache Kafka (the broker, in KRaft mode), Kafka Connect and the Debezium MariaDB connector are
not built here and not vendored: ``deploy/jvm/pom.xml`` names them and Maven copies their runtime
jars from Maven Central into a cache. The cache directory is keyed by a hash of the pom files,
so editing a version resolves again, and a cache that is complete for the current poms is used
as it is: ``omshub up`` never touches the network then.

Layout of one cache entry (``<jars_cache>/<key>/``)::

    kafka/                      broker + Connect runtime classpath (``-cp kafka/*``)
    plugins/debezium-mariadb/   Connect plugin; ``plugins/`` is Connect's ``plugin.path``
    jmx-exporter/               the Prometheus JMX exporter java agent
    complete.json               written last: the entry is usable only when it exists

Resolution runs into a staging directory that is renamed into place, under a lock, so a killed
``mvn`` or two ``omshub up`` racing never leave a half-filled entry that looks complete.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from omshub.core.errors import StackError
from omshub.core.settings import Settings

__all__ = [
    "JVM_FLAGS",
    "MODULES",
    "POM_DIR",
    "JarCache",
    "cache_key",
    "ensure_jars",
    "find_java",
    "find_maven",
    "jars",
    "jvm_argv",
    "write_properties",
]

logger = logging.getLogger(__name__)

POM_DIR = Path(__file__).resolve().parents[2] / "deploy" / "jvm"
#: module -> directory under the cache entry that must hold at least one jar
MODULES = {
    "kafka": "kafka",
    "debezium-mariadb": "plugins/debezium-mariadb",
    "jmx-exporter": "jmx-exporter",
}
_MARKER = "complete.json"
_MAVEN_TIMEOUT_S = 1800.0

_JAVA_HINT = (
    "install a JDK 17 or newer (`apt-get install openjdk-17-jre-headless`; `make demo` and "
    "`make test` install it when missing) or set OMSHUB_JAVA_HOME to one"
)
_MAVEN_HINT = (
    "install Maven (`apt-get install maven`; `make demo` and `make test` install it when "
    "missing); it is needed once, to resolve the Kafka and Debezium jars into {cache}"
)


@dataclass(frozen=True)
class JarCache:
    """One complete cache entry."""

    root: Path

    @property
    def kafka_classpath(self) -> str:
        return str(self.root / "kafka" / "*")

    @property
    def plugin_path(self) -> Path:
        return self.root / "plugins"

    @property
    def jmx_agent(self) -> Path:
        jars = sorted((self.root / "jmx-exporter").glob("jmx_prometheus_javaagent-*.jar"))
        if not jars:
            raise StackError(
                f"no JMX exporter agent jar in {self.root / 'jmx-exporter'}; remove "
                f"{self.root} and run `omshub jars` to resolve it again"
            )
        return jars[-1]


def _pom_files(pom_dir: Path) -> list[Path]:
    return sorted(pom_dir.rglob("pom.xml"))


def cache_key(pom_dir: Path = POM_DIR) -> str:
    """A hash of every pom file (path and content): a version change is a new entry."""
    digest = hashlib.sha256()
    files = _pom_files(pom_dir)
    if not files:
        raise StackError(f"no pom.xml under {pom_dir}; is this an omshub checkout?")
    for path in files:
        digest.update(str(path.relative_to(pom_dir)).encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def _complete(entry: Path) -> bool:
    if not (entry / _MARKER).is_file():
        return False
    return all(any((entry / sub).glob("*.jar")) for sub in MODULES.values())


def find_java(java_home: Path | None = None) -> str:
    """The ``java`` to run the JVM parts with: ``java_home``'s, else the one on PATH."""
    if java_home is not None:
        candidate = java_home / "bin" / "java"
        if candidate.is_file():
            return str(candidate)
        raise StackError(f"OMSHUB_JAVA_HOME={java_home} has no bin/java; {_JAVA_HINT}")
    found = shutil.which("java")
    if found is None:
        raise StackError(f"java was not found on PATH; {_JAVA_HINT}")
    return found


def find_maven(cache: Path) -> str:
    found = shutil.which("mvn")
    if found is None:
        raise StackError("mvn was not found on PATH; " + _MAVEN_HINT.format(cache=cache))
    return found


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_jars(
    cache_dir: Path,
    pom_dir: Path = POM_DIR,
    log_file: Path | None = None,
    on_resolve: Callable[[Path], None] | None = None,
) -> JarCache:
    """The complete cache entry for the current poms, resolving it with Maven only if missing.

    ``on_resolve`` is told before Maven runs (the CLI says that a first start downloads).
    """
    cache_dir = cache_dir.expanduser().resolve()
    entry = cache_dir / cache_key(pom_dir)
    if _complete(entry):
        return JarCache(entry)
    with _lock(cache_dir / ".lock"):
        if _complete(entry):  # another process resolved it while we waited
            return JarCache(entry)
        mvn = find_maven(cache_dir)
        if on_resolve is not None:
            on_resolve(entry)
        staging = entry.with_name(entry.name + ".staging")
        shutil.rmtree(staging, ignore_errors=True)
        argv = [
            mvn,
            "-B",
            "-q",
            "-f",
            str(pom_dir / "pom.xml"),
            "package",
            f"-Domshub.jars={staging}",
        ]
        started = time.monotonic()
        output = _run_maven(argv, log_file)
        missing = [sub for sub in MODULES.values() if not any((staging / sub).glob("*.jar"))]
        if missing:
            raise StackError(
                f"Maven finished but left no jars in {', '.join(missing)} under {staging}; "
                f"its output ends with:\n{output}"
            )
        jars = {
            sub: sorted(p.name for p in (staging / sub).glob("*.jar")) for sub in MODULES.values()
        }
        (staging / _MARKER).write_text(
            json.dumps({"key": entry.name, "jars": jars}, indent=2), encoding="utf-8"
        )
        shutil.rmtree(entry, ignore_errors=True)
        staging.rename(entry)
        logger.info(
            "jvm jars resolved",
            extra={"cache": str(entry), "seconds": round(time.monotonic() - started, 1)},
        )
        return JarCache(entry)


def _run_maven(argv: list[str], log_file: Path | None) -> str:
    try:
        result = subprocess.run(
            argv,
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=_MAVEN_TIMEOUT_S,
            check=False,
            cwd=POM_DIR,
        )
    except subprocess.TimeoutExpired as exc:
        raise StackError(
            f"Maven did not resolve the jars within {_MAVEN_TIMEOUT_S:.0f}s; is Maven Central "
            "reachable (a proxy in ~/.m2/settings.xml)?"
        ) from exc
    text = (result.stdout + result.stderr).decode(errors="replace")
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with log_file.open("a", encoding="utf-8") as log:
            log.write(f"\n--- omshub: {' '.join(argv)}\n{text}")
    if result.returncode != 0:
        tail = "\n".join(text.strip().splitlines()[-15:])
        raise StackError(
            f"Maven failed (exit {result.returncode}) resolving the Kafka and Debezium jars; "
            f"check that Maven Central is reachable. Its output ends with:\n{tail}"
        )
    return "\n".join(text.strip().splitlines()[-15:])


#: GC and JIT flags shared by the broker and the Connect worker (docs/decisions.md "JVM sizing").
#: G1 with short pauses as Kafka's own scripts use; the GC thread counts match the 2-core
#: machines omshub runs on so a collection never starves the Python processes beside it.
JVM_FLAGS = (
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:ParallelGCThreads=2",
    "-XX:ConcGCThreads=1",
    "-XX:MaxMetaspaceSize=256m",
    "-XX:+ExitOnOutOfMemoryError",
    "-XX:+AlwaysPreTouch",
    "-Djava.awt.headless=true",
)


def write_properties(path: Path, values: Mapping[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["# written by omshub at every start; edit omshub's settings instead"]
    lines += [f"{key}={value}" for key, value in values.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def jars(settings: Settings, log_file: Path | None = None) -> JarCache:
    """The resolved jar cache (resolving it first when incomplete)."""

    def announce(entry: Path) -> None:
        logger.info("resolving jvm jars with maven", extra={"cache": str(entry)})

    return ensure_jars(settings.jars_cache, log_file=log_file, on_resolve=announce)


def jvm_argv(
    settings: Settings, heap_mb: int, log4j: Path, main: str, *args: str, agent: str | None = None
) -> list[str]:
    """``java`` with the stack's heap/GC flags, the Kafka classpath and one main class."""
    cache = jars(settings)
    argv = [find_java(settings.java_home), f"-Xms{heap_mb}m", f"-Xmx{heap_mb}m", *JVM_FLAGS]
    if agent:
        argv.append(agent)
    argv += [f"-Dlog4j2.configurationFile={log4j}", "-cp", cache.kafka_classpath, main, *args]
    return argv
