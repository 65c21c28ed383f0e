"""The sandbox: local HTTP stand-ins for every downstream system the push workers call.

Long file: one request contract (checks in order, faults, the idempotency window and its
journal) in one class, so the order of checks reads top to bottom as the docstring states it.

One aiohttp application serves WMS, TMS, FMS, stock, purchasing, supplier, notify and coupon on
one port; each push type's path from :data:`schemas.pushes.PUSH_TYPES` (``/wms/returns``,
``/fms/refund-applications``, ``/tms/pickups`` ...) is a route, and its first path segment is the
system. The contract the workers are written against:

Request
    ``POST <path>`` with ``Idempotency-Key: <key>`` (required), ``Content-Type:
    application/json`` and optionally ``X-Omshub-Push-Id``. The body is a JSON object with at
    least ``"order_no"`` (a string).

Answers
    * ``200 {"status": "accepted", "id": "<system>-<seq>", "system", "idempotency_key",
      "received_at"}`` for a new key;
    * the byte-identical first answer for a key already accepted on the same path (a duplicate);
    * ``400 {"error", "status": "rejected"}`` for a missing key header or a bad body, ``404`` for
      an unknown path, ``405`` for a method other than POST;
    * injected faults (``POST /_admin/faults``): ``503`` (error_rate), ``504`` after sleeping
      ``timeout_s`` (timeout_rate; the client's own timeout should fire first), ``200`` with a
      non-JSON body (garbage_rate), ``422`` for rejected keys (reject_keys,
      reject_key_prefixes: always, even for a key accepted earlier). ``latency_ms`` delays every
      request. A faulted request has no effect: a retry of it is processed fresh.

Order of checks per request: latency, key header, body, rejected key, random fault (one draw of
the seeded RNG, only when a rate is set), duplicate replay, fresh accept.

Admin
    ``POST/GET/DELETE /_admin/faults``, ``GET /_admin/stats``, ``GET /_admin/requests?key=&
    system=&limit=``, ``GET /_admin/keys?system=``, ``POST /_admin/reset``, ``POST /_admin/drain``,
    ``GET /healthz``.

Stats count, per system: ``received`` (every request on its paths), ``accepted`` (fresh
accepts), ``duplicates`` (replayed first answers), ``unique_keys`` (distinct accepted keys) and
``faults`` (``5xx``, ``timeout``, ``4xx`` = every 4xx answer incl. validation, ``garbage``), so
``received == accepted + duplicates + sum(faults)`` once in-flight timeouts have been counted
(they are counted when drawn).

Idempotency is kept for a window, as a real downstream keeps its keys for a time (Stripe: 24 h)
and not forever: a key's first answer is replayed for ``idempotency_window_s`` after it was
accepted (``OMSHUB_SANDBOX_IDEMPOTENCY_WINDOW_S``), then forgotten, and a later request with it is
processed fresh. The default covers every re-send the hub makes by itself (worker retries, the
slowest pool's about 11 minutes of backoff; the sweeper's re-drive of a stuck PENDING row), so
the hub's duplicates meet the window; only a replay long after is a new request, as it would be
at a downstream. :meth:`Sandbox.drain` ends the window of the keys it hands over.

With a journal (``OMSHUB_SANDBOX_JOURNAL``, :mod:`omshub.sandbox.journal`) every keyed push
request is also appended to a file once it has an answer, and a restarted sandbox reloads the
keys it accepted within the window from it, so its idempotency survives its own SIGKILL (the
first answer is rebuilt: same id, the received time in place of the answer time).

Everything else lives in memory in one :class:`Sandbox`; handlers are lean (no per-request logging,
dict lookups, orjson) because benchmarks push thousands of requests per second through it.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from omshub.sandbox.journal import Journal, JournalEntry, restorable
from schemas.pushes import PUSH_TYPES, SYSTEMS

log = logging.getLogger(__name__)

MAX_RECORDS = 1_000_000
"""Requests kept with their bodies; beyond this only counts, keys and first answers are kept."""

IDEMPOTENCY_WINDOW_S = 900.0
"""How long an accepted key's first answer is replayed (see the module docstring)."""

DEFAULT_REQUESTS_LIMIT = 1000
SHUTDOWN_TIMEOUT_S = 1.0
"""How long a stopping server waits for in-flight handlers (sleeping timeout faults)."""

ALL_SYSTEMS = "*"

FAULT_FIELDS: dict[str, Any] = {
    "latency_ms": 0.0,
    "error_rate": 0.0,
    "timeout_rate": 0.0,
    "timeout_s": 30.0,
    "reject_keys": [],
    "reject_key_prefixes": [],
    "garbage_rate": 0.0,
}
"""Fault settings and their defaults (no fault). ``seed`` is accepted too and reseeds the RNG."""

_SYSTEM_NAME = re.compile(r"[a-z0-9_-]+")
_RATE_FIELDS = ("error_rate", "timeout_rate", "garbage_rate")
JSON_TYPE = "application/json"
_GARBAGE_BODY = b"<html>oops"
_ACCEPTED = b'{"status":"accepted","id":"%b","system":"%b","idempotency_key":%b,"received_at":"%b"}'


def json_response(payload: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type=JSON_TYPE)


def _error_body(message: str, status: str = "rejected") -> bytes:
    return orjson.dumps({"error": message, "status": status})


@dataclass(slots=True)
class _Faults:
    """Effective fault settings of one system, compiled for the request path."""

    latency_s: float = 0.0
    error_rate: float = 0.0
    timeout_rate: float = 0.0
    timeout_s: float = 30.0
    garbage_rate: float = 0.0
    reject_keys: frozenset[str] = frozenset()
    reject_prefixes: tuple[str, ...] = ()
    any_rate: bool = False  # draw from the RNG only when some rate is set

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> _Faults:
        rates = [float(settings[name]) for name in _RATE_FIELDS]
        return cls(
            latency_s=float(settings["latency_ms"]) / 1000.0,
            error_rate=rates[0],
            timeout_rate=rates[1],
            timeout_s=float(settings["timeout_s"]),
            garbage_rate=rates[2],
            reject_keys=frozenset(settings["reject_keys"]),
            reject_prefixes=tuple(settings["reject_key_prefixes"]),
            any_rate=any(rate > 0 for rate in rates),
        )


@dataclass(slots=True)
class _Counters:
    received: int = 0
    accepted: int = 0
    duplicates: int = 0
    f5xx: int = 0
    ftimeout: int = 0
    f4xx: int = 0
    fgarbage: int = 0
    keys: set[str] = field(default_factory=set)
    #: keys dropped from ``keys`` (window ended, or drained): still counted as unique keys
    forgotten: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "accepted": self.accepted,
            "unique_keys": len(self.keys) + self.forgotten,
            "duplicates": self.duplicates,
            "faults": {
                "5xx": self.f5xx,
                "timeout": self.ftimeout,
                "4xx": self.f4xx,
                "garbage": self.fgarbage,
            },
        }


@dataclass(slots=True)
class _Record:
    seq: int
    system: str
    path: str
    key: str | None
    push_id: str | None
    body: bytes
    received_at: float  # monotonic ms
    status: int = 0
    outcome: str = ""
    answer_id: str | None = None
    received_at_ms: int = 0  # wall clock (epoch ms), comparable with database timestamps

    def as_dict(self) -> dict[str, Any]:
        body: Any
        try:
            body = orjson.loads(self.body)
        except orjson.JSONDecodeError:
            body = self.body.decode("utf-8", "replace")
        return {
            "seq": self.seq,
            "system": self.system,
            "path": self.path,
            "key": self.key,
            "push_id": self.push_id,
            "body": body,
            "received_at": self.received_at,
            "received_at_ms": self.received_at_ms,
            "status": self.status,
            "outcome": self.outcome,
            "id": self.answer_id,
        }


class Sandbox:
    """All sandbox state: records, first answers by (path, key), stats, faults and the RNG.

    Handlers call :meth:`handle_push` and the admin methods; tests may call the admin methods
    (:meth:`stats`, :meth:`set_faults`, :meth:`keys` ...) directly.
    """

    def __init__(
        self,
        *,
        seed: int | None = 0,
        max_records: int = MAX_RECORDS,
        routes: Mapping[str, str] | None = None,
        idempotency_window_s: float = IDEMPOTENCY_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
        journal: Journal | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if not idempotency_window_s > 0:
            raise ValueError(f"idempotency_window_s must be > 0, got {idempotency_window_s!r}")
        # path -> system; defaults to every push type's endpoint.
        self.routes: dict[str, str] = dict(
            routes or {e.path: e.system for e in PUSH_TYPES.values()}
        )
        for path, system in self.routes.items():
            if not _SYSTEM_NAME.fullmatch(system) or not path.startswith("/"):
                raise ValueError(f"bad sandbox route {path!r} -> {system!r}")
        self.systems: tuple[str, ...] = tuple(sorted(set(SYSTEMS) | set(self.routes.values())))
        self.max_records = max_records
        self.idempotency_window_s = float(idempotency_window_s)
        self._clock = clock
        self._wall_clock = wall_clock
        self.journal = journal
        self.restored = 0
        self.rng = random.Random(seed)
        self._star: dict[str, Any] = {}
        self._per_system: dict[str, dict[str, Any]] = {}
        self._effective: dict[str, _Faults] = {}
        self._next_id: dict[str, int] = dict.fromkeys(self.systems, 0)  # not reset: ids unique
        self._clear_state()
        self._compile_faults()
        if journal is not None:
            self._restore(journal)

    # -- state --------------------------------------------------------------------------------

    def _clear_state(self) -> None:
        self.records: list[_Record] = []
        self.records_dropped = 0
        self._seq = 0
        self._by_key: dict[str, list[_Record]] = {}
        # (path, key) -> (first answer, end of its window), in acceptance order: the oldest
        # first, so expiry pops from the front, and a drain deletes from anywhere, in O(1)
        self.first_answers: collections.OrderedDict[tuple[str, str], tuple[bytes, float]] = (
            collections.OrderedDict()
        )
        self.counters: dict[str, _Counters] = {s: _Counters() for s in self.systems}

    def reset(self) -> None:
        """Forget records, first answers and stats; faults stay as they are."""
        self._clear_state()

    def drain(self) -> list[dict[str, Any]]:
        """Hand over and forget every answered record, with the first answers of their keys.

        For long runs (bench/soak.py): the sandbox's memory stays flat and nothing is lost,
        because handing over and forgetting happen in one step of the event loop. Counters stay.
        """
        done = [r for r in self.records if r.outcome]
        # a request still being answered (latency fault) is handed over next time, complete
        self.records = [r for r in self.records if not r.outcome]
        self._by_key = {}
        for record in self.records:
            if record.key is not None:
                self._by_key.setdefault(record.key, []).append(record)
        for record in done:
            if record.key is not None and (record.path, record.key) in self.first_answers:
                del self.first_answers[(record.path, record.key)]
                self._forget_key(record.path, record.key)
        return [r.as_dict() for r in done]

    def _expire(self, now: float) -> None:
        """Forget the first answers whose window has ended (oldest first)."""
        answers = self.first_answers
        while answers:
            answer_key, (_answer, ends) = next(iter(answers.items()))
            if ends > now:
                return
            del answers[answer_key]
            self._forget_key(*answer_key)

    def _forget_key(self, path: str, key: str) -> None:
        counters = self.counters.get(self.routes.get(path, ""))
        if counters is not None and key in counters.keys:
            counters.keys.discard(key)
            counters.forgotten += 1

    def _restore(self, journal: Journal) -> None:
        """Reload what an earlier sandbox process journaled (see the module docstring).

        Answer ids are replayed in journal order per system, so the rebuilt first answers carry
        the ids the earlier process gave, and new ids continue after them.
        """
        read = journal.read()
        now_ms = int(self._wall_clock() * 1000)
        now = self._clock()
        live = {id(e) for e in restorable(read.entries, now_ms, self.idempotency_window_s)}
        restored: list[tuple[float, tuple[str, str], bytes]] = []
        for entry in read.entries:
            system = self.routes.get(entry.path)
            if system is None or entry.outcome != "accepted":
                continue
            seq = self._next_id[system] + 1
            self._next_id[system] = seq
            if id(entry) not in live:
                continue
            answer = _ACCEPTED % (
                f"{system}-{seq}".encode(),
                system.encode(),
                orjson.dumps(entry.key),
                datetime.fromtimestamp(entry.received_at_ms / 1000, UTC).isoformat().encode(),
            )
            ends = now + self.idempotency_window_s - (now_ms - entry.received_at_ms) / 1000.0
            restored.append((ends, (entry.path, entry.key), answer))
        restored.sort(key=lambda item: item[0])  # expiry pops the oldest first
        for ends, answer_key, answer in restored:
            self.first_answers.pop(answer_key, None)
            self.first_answers[answer_key] = (answer, ends)
            self.counters[self.routes[answer_key[0]]].keys.add(answer_key[1])
        self.restored = len(self.first_answers)
        log.info(
            "sandbox journal restored",
            extra={
                "journal": str(journal.path),
                "entries": len(read.entries),
                "malformed": read.malformed,
                "keys_restored": self.restored,
            },
        )

    def _journal(self, record: _Record) -> None:
        if self.journal is None or record.key is None:
            return
        self.journal.append(
            JournalEntry(
                record.received_at_ms,
                record.path,
                record.key,
                record.outcome or "unanswered",
                record.status,
            )
        )

    # -- faults -------------------------------------------------------------------------------

    def _compile_faults(self) -> None:
        for system in self.systems:
            merged = {**FAULT_FIELDS, **self._star, **self._per_system.get(system, {})}
            self._effective[system] = _Faults.from_settings(merged)

    def set_faults(self, system: str = ALL_SYSTEMS, **settings: Any) -> dict[str, Any]:
        """Merge fault settings for one system or ``"*"`` (every system); the latest call wins.

        A ``"*"`` call sets its fields for every system (dropping per-system values of those
        fields); a call for one system overrides the ``"*"`` values for it. ``seed`` reseeds the
        RNG. Raises :class:`ValueError` with the reason on an unknown system, field or value.
        Returns the effective settings (:meth:`faults`).
        """
        if system != ALL_SYSTEMS and system not in self.systems:
            raise ValueError(
                f"unknown system {system!r}; use one of {', '.join(self.systems)} or *"
            )
        seed = settings.pop("seed", None)
        clean = _validate_faults(settings)
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, int | str):
                raise ValueError(f"seed must be an integer or string, got {seed!r}")
            self.rng.seed(seed)
        if system == ALL_SYSTEMS:
            self._star.update(clean)
            for overrides in self._per_system.values():
                for name in clean:
                    overrides.pop(name, None)
        else:
            self._per_system.setdefault(system, {}).update(clean)
        self._compile_faults()
        return self.faults()

    def clear_faults(self, system: str | None = None) -> dict[str, Any]:
        """Remove every fault (or only one system's own overrides)."""
        if system is None or system == ALL_SYSTEMS:
            self._star.clear()
            self._per_system.clear()
        elif system in self.systems:
            self._per_system.pop(system, None)
        else:
            raise ValueError(
                f"unknown system {system!r}; use one of {', '.join(self.systems)} or *"
            )
        self._compile_faults()
        return self.faults()

    def faults(self) -> dict[str, Any]:
        """The effective fault settings per system and the raw ``"*"`` and per-system layers."""
        effective = {}
        for system in self.systems:
            effective[system] = {**FAULT_FIELDS, **self._star, **self._per_system.get(system, {})}
        return {
            "effective": effective,
            "*": dict(self._star),
            "overrides": {s: dict(v) for s, v in self._per_system.items() if v},
        }

    # -- requests -----------------------------------------------------------------------------

    async def handle_push(self, system: str, path: str, request: web.Request) -> web.StreamResponse:
        """Answer one push request (see the module docstring for the order of checks)."""
        received_at = time.monotonic() * 1000.0
        faults = self._effective[system]
        counters = self.counters[system]
        counters.received += 1
        headers = request.headers
        key = headers.get("Idempotency-Key") or None
        body = await request.read()

        self._seq += 1
        record = _Record(
            self._seq,
            system,
            path,
            key,
            headers.get("X-Omshub-Push-Id"),
            body,
            received_at,
            received_at_ms=int(self._wall_clock() * 1000),
        )
        if len(self.records) < self.max_records:
            self.records.append(record)
            if key is not None:
                by_key = self._by_key.get(key)
                if by_key is None:
                    self._by_key[key] = [record]
                else:
                    by_key.append(record)
        else:
            self.records_dropped += 1

        # journaled once the answer is decided, also when the handler is cancelled
        try:
            if faults.latency_s > 0:
                await asyncio.sleep(faults.latency_s)

            if request.method != "POST":
                counters.f4xx += 1
                record.status, record.outcome = 405, "rejected"
                return web.Response(
                    body=_error_body(f"{request.method} not allowed on {path}; use POST"),
                    status=405,
                    content_type=JSON_TYPE,
                    headers={"Allow": "POST"},
                )
            if key is None:
                return self._reject(counters, record, 400, "missing Idempotency-Key header")
            try:
                payload = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                return self._reject(counters, record, 400, f"body is not valid JSON: {exc}")
            if type(payload) is not dict:
                kind = type(payload).__name__
                return self._reject(
                    counters, record, 400, f"body must be a JSON object, got {kind}"
                )
            order_no = payload.get("order_no")
            if type(order_no) is not str or not order_no:
                return self._reject(
                    counters, record, 400, "body needs order_no as a non-empty string"
                )
            if key in faults.reject_keys or (
                faults.reject_prefixes and key.startswith(faults.reject_prefixes)
            ):
                return self._reject(
                    counters, record, 422, f"key {key} rejected by sandbox fault injection"
                )

            if faults.any_rate:
                draw = self.rng.random()
                if draw < faults.error_rate:
                    counters.f5xx += 1
                    record.status, record.outcome = 503, "error"
                    return web.Response(
                        body=_error_body(
                            f"{system} unavailable (sandbox fault injection, error_rate)", "error"
                        ),
                        status=503,
                        content_type=JSON_TYPE,
                    )
                draw -= faults.error_rate
                if draw < faults.timeout_rate:
                    counters.ftimeout += 1
                    record.status, record.outcome = 504, "timeout"
                    await asyncio.sleep(faults.timeout_s)
                    return web.Response(
                        body=_error_body(
                            f"{system} timed out after {faults.timeout_s}s "
                            "(sandbox fault injection, timeout_rate)",
                            "error",
                        ),
                        status=504,
                        content_type=JSON_TYPE,
                    )
                draw -= faults.timeout_rate
                if draw < faults.garbage_rate:
                    counters.fgarbage += 1
                    record.status, record.outcome = 200, "garbage"
                    return web.Response(body=_GARBAGE_BODY, status=200, content_type="text/html")

            now = self._clock()
            self._expire(now)
            answer_key = (path, key)
            remembered = self.first_answers.get(answer_key)
            if remembered is not None:
                answer = remembered[0]
                counters.duplicates += 1
                record.status, record.outcome = 200, "duplicate"
                return web.Response(
                    body=answer, content_type=JSON_TYPE, headers={"X-Sandbox-Duplicate": "true"}
                )

            seq = self._next_id[system] + 1
            self._next_id[system] = seq
            answer_id = f"{system}-{seq}"
            # Formatted rather than orjson.dumps'd: orjson's small results keep a 4 KiB buffer,
            # and first answers live for their window (one per accepted key).
            answer = _ACCEPTED % (
                answer_id.encode(),
                system.encode(),
                orjson.dumps(key),
                datetime.now(UTC).isoformat().encode(),
            )
            self.first_answers[answer_key] = (answer, now + self.idempotency_window_s)
            counters.accepted += 1
            counters.keys.add(key)
            record.status, record.outcome, record.answer_id = 200, "accepted", answer_id
            return web.Response(body=answer, content_type=JSON_TYPE)
        finally:
            self._journal(record)

    @staticmethod
    def _reject(counters: _Counters, record: _Record, status: int, message: str) -> web.Response:
        counters.f4xx += 1
        record.status, record.outcome = status, "rejected"
        return web.Response(body=_error_body(message), status=status, content_type=JSON_TYPE)

    # -- queries ------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters per system (every system, zeros included) and their sums under ``total``."""
        systems = {s: c.as_dict() for s, c in self.counters.items()}
        total: dict[str, Any] = {
            "received": 0,
            "accepted": 0,
            "unique_keys": 0,
            "duplicates": 0,
            "faults": {"5xx": 0, "timeout": 0, "4xx": 0, "garbage": 0},
        }
        for row in systems.values():
            for name in ("received", "accepted", "unique_keys", "duplicates"):
                total[name] += row[name]
            for name, count in row["faults"].items():
                total["faults"][name] += count
        result: dict[str, Any] = {"systems": systems, "total": total}
        if self.journal is not None:
            result["journal"] = {
                "path": str(self.journal.path),
                "written": self.journal.written,
                "errors": self.journal.errors,
                "restored_keys": self.restored,
            }
        return result

    def keys(self, system: str) -> set[str]:
        """The idempotency keys one system (on any of its paths) accepted and still remembers
        (within the window, not drained)."""
        if system not in self.counters:
            raise ValueError(f"unknown system {system!r}; use one of {', '.join(self.systems)}")
        return set(self.counters[system].keys)

    def requests(
        self, key: str | None = None, system: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Recorded requests, oldest first, filtered by key and/or system; the last ``limit``."""
        if system is not None and system not in self.counters:
            raise ValueError(f"unknown system {system!r}; use one of {', '.join(self.systems)}")
        candidates: Iterable[_Record] = (
            self._by_key.get(key, []) if key is not None else self.records
        )
        if system is not None:
            candidates = [r for r in candidates if r.system == system]
        selected = list(candidates)
        if limit is not None:
            selected = selected[-limit:] if limit > 0 else []
        return [r.as_dict() for r in selected]


def _validate_faults(settings: Mapping[str, Any]) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    for name, value in settings.items():
        if name not in FAULT_FIELDS:
            known = ", ".join([*FAULT_FIELDS, "seed", "system"])
            raise ValueError(f"unknown fault setting {name!r}; known: {known}")
        if name in ("reject_keys", "reject_key_prefixes"):
            if isinstance(value, str) or not isinstance(value, list | tuple | set | frozenset):
                raise ValueError(f"{name} must be a list of strings, got {value!r}")
            if not all(isinstance(v, str) for v in value):
                raise ValueError(f"{name} must be a list of strings, got {value!r}")
            clean[name] = sorted(set(value))
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{name} must be a number, got {value!r}")
        number = float(value)
        if name in _RATE_FIELDS and not 0.0 <= number <= 1.0:
            raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
        if number < 0:
            raise ValueError(f"{name} must not be negative, got {value!r}")
        clean[name] = number
    return clean


# -- the aiohttp application ----------------------------------------------------------------------


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# -- client ---------------------------------------------------------------------------------------
