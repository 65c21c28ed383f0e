"""The worker base: one ``handle(task) -> Outcome`` shared by every downstream system.

A worker module (``workers/wms.py``, ``workers/fms.py``, ...) only declares what differs: its name,
the system it calls, the push types it serves, its pool, and optionally two hooks. Everything else
happens once, here::

    handle(task)
      ├── parse_payload(push_type, payload)     ContractError → FAILED, nothing sent
      ├── prepare(task, payload) -> body        hook; default {"order_no": row's, **payload}
      ├── POST base_url + path                  Idempotency-Key, X-Omshub-Push-Id, JSON body
      │     200 {"status": "accepted", "id"}    → answer
      │     4xx (not 408/429), 3xx              → PermanentError → FAILED
      │     5xx, 408, 429                       → RetryableError → RETRY / FAILED "gave up after"
      │     timeout, refused, reset, cut-off    → DownstreamUnavailableError (a RetryableError)
      │       or non-HTTP answer                  (workers.http.TRANSLATION)
      │     bad URL                             → PermanentError → FAILED
      │     200 not JSON / not accepted / no id → ContractError → FAILED
      ├── follow_ups(task, payload, answer)     hook; push rows to insert (DONE only)
      └── RetryPolicy → Outcome                 (workers.policy, the one place for the rules)

``handle`` never raises (except ``asyncio.CancelledError``, which must stop a task on shutdown;
the push is then neither acknowledged nor written back, and is delivered again or swept). An
unexpected exception (a bug in a hook, say) becomes ``FAILED`` with the exception's type and
message, so it is recorded instead of acknowledged and lost. A worker also never has more than
``pool.concurrency`` pushes in flight, whoever calls it.

``session`` is a :class:`workers.http.HttpSession` (the Faust app's: the worker takes from it an
aiohttp session sized and timed for its own pool) or any :class:`aiohttp.ClientSession`. What an
attempt raises instead of answering (timeouts, refused or reset connections, cut-off or non-HTTP
answers, bad URLs) becomes an omshub error through one table, :data:`workers.http.TRANSLATION`.

Errors are written for the person reading ``last_error``: ``"WMS answered 422: sku S9 unknown"``,
``"TMS did not answer within 5.0 s (timeout)"``, ``"FMS answered 200 with a body that is not JSON:
'<html>oops'"``, ``"WMS_RETURN payload invalid: lines.0.quantity: Input should be greater than 0
(got 0)"``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, Final, TypeVar

import aiohttp
import orjson

from omshub.core.errors import ContractError, OmshubError, PermanentError, RetryableError
from schemas.payloads import PayloadModel, parse_payload, payload_body
from schemas.pushes import PUSH_TYPES, PushType
from schemas.tasks import FollowUp, Outcome, PushTask, follow_up_key
from workers.http import HttpSession, request_target, resend_once, translate
from workers.policy import RetryPolicy
from workers.pool import Pool

__all__ = [
    "Answer",
    "FollowUp",
    "Outcome",
    "Pool",
    "PushTask",
    "Worker",
    "follow_up_key",
]

_T = TypeVar("_T")
_BODY_PREFIX: Final = 200
_RETRYABLE_4XX: Final = frozenset({408, 429})
"""Request Timeout and Too Many Requests: the request was fine, the downstream was busy."""


@dataclass(frozen=True)
class Answer:
    """A downstream's acceptance: HTTP status, its id for the push, and the whole JSON body."""

    http_status: int
    id: str
    body: Mapping[str, Any]


class _Failure(Exception):
    """Carries an error with what was known when it happened (status, downstream id, context)."""

    def __init__(
        self,
        error: BaseException,
        http_status: int | None = None,
        downstream_id: str | None = None,
        context: str | None = None,
    ) -> None:
        super().__init__(str(error))
        self.error = error
        self.http_status = http_status
        self.downstream_id = downstream_id
        self.context = context


def _shown(body: bytes) -> str:
    """A quoted prefix of an answer body for error messages."""
    if not body:
        return "(empty body)"
    text = body[:_BODY_PREFIX].decode("utf-8", errors="replace")
    return repr(text) + (f"... ({len(body)} bytes)" if len(body) > _BODY_PREFIX else "")


def _retry_after_s(value: str | None) -> float | None:
    """``Retry-After`` in seconds when given as a number (HTTP dates are ignored)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


class Worker:
    """Base of the per-system workers. Subclasses set the class attributes and may override hooks.

    Class attributes: ``name`` (the key of ``OMSHUB_WORKER_POOLS`` and of :func:`build_workers`'s
    result), ``system`` (the downstream, as in ``schemas.pushes.PUSH_TYPES``), ``push_types`` (the
    types it serves; each must go to ``system``), ``pool`` (the default :class:`Pool`; an instance's
    ``pool`` is the effective one, overrides applied).
    """

    name: ClassVar[str]
    system: ClassVar[str]
    push_types: ClassVar[frozenset[PushType]]
    pool: Pool

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for attribute in ("name", "system", "push_types", "pool"):
            if not hasattr(cls, attribute):
                raise TypeError(f"worker {cls.__name__} does not set {attribute}")
        if not cls.push_types:
            raise TypeError(f"worker {cls.__name__} serves no push type")
        for push_type in cls.push_types:
            if PUSH_TYPES[push_type].system != cls.system:
                raise TypeError(
                    f"worker {cls.__name__} calls {cls.system!r} but {push_type} goes to "
                    f"{PUSH_TYPES[push_type].system!r}"
                )

    def __init__(
        self,
        session: HttpSession | aiohttp.ClientSession,
        base_url: str,
        pool: Pool | None = None,
        clock: Callable[[], float] = time.time,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.pool = pool or type(self).pool
        self.session: aiohttp.ClientSession = (
            session.for_pool(self.pool, self.base_url)
            if isinstance(session, HttpSession)
            else session
        )
        self.clock = clock
        self.policy = RetryPolicy.from_pool(self.pool, rng)
        self.label = self.system.upper()
        self._timeout = aiohttp.ClientTimeout(total=self.pool.timeout_s)
        self._slots = asyncio.Semaphore(self.pool.concurrency)
        self._urls = {t: self.base_url + PUSH_TYPES[t].path for t in self.push_types}
        self._targets = {t: request_target(url) for t, url in self._urls.items()}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.base_url} {self.pool}>"

    def url_for(self, push_type: PushType) -> str:
        return self._urls[push_type]

    # ----------------------------------------------------------------------------------- hooks

    def prepare(self, task: PushTask, payload: PayloadModel) -> dict[str, Any]:
        """The JSON body to send. Default: ``{"order_no": <row's order_no>, **payload}``.

        A payload that names a different ``order_no`` than its row is a contract error.
        """
        body = payload_body(payload)
        named = body.get("order_no")
        if named is not None and named != task.order_no:
            raise ContractError(
                f"{task.push_type} payload names order_no {named!r} but the push row belongs to "
                f"{task.order_no!r}"
            )
        body["order_no"] = task.order_no
        return body

    def follow_ups(
        self, task: PushTask, payload: PayloadModel, answer: Answer
    ) -> tuple[FollowUp, ...]:
        """Pushes to insert once this push is DONE. Default: none."""
        return ()

    # ---------------------------------------------------------------------------------- handle

    async def handle(self, task: PushTask) -> Outcome:
        """Send one push and say what became of it. Never raises (but lets cancellation through)."""
        async with self._slots:
            started = time.perf_counter()
            try:
                answer, follow_ups = await self._attempt(task)
            except _Failure as failure:
                return self.policy.failed(
                    failure.error,
                    task.attempts,
                    now_ms=self._now_ms(),
                    http_status=failure.http_status,
                    latency_ms=self._since(started),
                    downstream_id=failure.downstream_id,
                    context=failure.context,
                    started_ms=task.created_at_ms,
                )
            except Exception as exc:  # noqa: BLE001 - a bug must become a FAILED row, not a crash
                return self.policy.failed(
                    exc,
                    task.attempts,
                    now_ms=self._now_ms(),
                    latency_ms=self._since(started),
                    context=f"unexpected error in {type(self).__name__}",
                )
            return self.policy.done(
                task.attempts,
                downstream_id=answer.id,
                follow_ups=follow_ups,
                http_status=answer.http_status,
                latency_ms=self._since(started),
            )

    async def _attempt(self, task: PushTask) -> tuple[Answer, tuple[FollowUp, ...]]:
        payload = self._stage("parse", lambda: parse_payload(task.push_type, task.payload))
        push_type = self._served(task)
        body = self._stage("prepare", lambda: self.prepare(task, payload))
        answer = await self._post(task, push_type, body)
        try:
            follow_ups = tuple(self.follow_ups(task, payload, answer))
            for follow_up in follow_ups:
                if not isinstance(follow_up, FollowUp):
                    raise TypeError(f"follow_ups returned {type(follow_up).__name__}, not FollowUp")
        except Exception as exc:
            raise _Failure(
                exc,
                answer.http_status,
                answer.id,
                context=(
                    f"{self.label} accepted the push as {answer.id} (re-driving it is safe: same "
                    f"idempotency key), but {type(self).__name__}.follow_ups failed"
                ),
            ) from exc
        return answer, follow_ups

    def _served(self, task: PushTask) -> PushType:
        """The task's push type, when this worker serves it (checked after the payload parsed,
        so an unknown type gets parse_payload's message, which lists the known ones)."""
        if task.push_type not in self.push_types:
            raise _Failure(
                ContractError(
                    f"push_type {task.push_type} was routed to the {self.name} worker, which "
                    f"serves {', '.join(sorted(self.push_types))}"
                )
            )
        return PushType(task.push_type)

    def _stage(self, stage: str, step: Callable[[], _T]) -> _T:
        try:
            return step()
        except OmshubError as exc:
            raise _Failure(exc) from exc
        except Exception as exc:
            raise _Failure(
                exc, context=f"unexpected error in {type(self).__name__}.{stage}"
            ) from exc

    # ------------------------------------------------------------------------------------ HTTP

    async def _post(self, task: PushTask, push_type: PushType, body: dict[str, Any]) -> Answer:
        url = self._urls[push_type]
        headers = {
            "Idempotency-Key": task.idempotency_key,
            "Content-Type": "application/json",
            "X-Omshub-Push-Id": str(task.id),
        }
        data = orjson.dumps(body)
        session = self.session
        resend = True
        while True:
            try:
                async with session.post(
                    self._targets[push_type],
                    data=data,
                    headers=headers,
                    timeout=self._timeout,
                    allow_redirects=False,
                ) as response:
                    raw = await response.read()
                    status = response.status
                    retry_after = _retry_after_s(response.headers.get("Retry-After"))
                    location = response.headers.get("Location")
                break
            except Exception as exc:
                if resend and resend_once(exc):
                    resend = False  # the keep-alive race (workers.http): once, on a new connection
                    continue
                error = translate(
                    exc,
                    label=self.label,
                    url=url,
                    timeout_s=self.pool.timeout_s,
                    session_closed=getattr(session, "closed", False) is True,
                )
                if error is None:
                    raise
                raise _Failure(error) from None
        return self._classify(task, status, raw, retry_after, location)

    def _classify(
        self,
        task: PushTask,
        status: int,
        raw: bytes,
        retry_after: float | None,
        location: str | None,
    ) -> Answer:
        if 200 <= status < 300:
            return self._accepted(task, status, raw)
        if 300 <= status < 400:
            raise _Failure(
                PermanentError(
                    f"{self.label} answered {status} (redirect to {location or '?'}); "
                    "point the downstream URL at the final address"
                ),
                status,
            )
        reason = _rejection_text(raw)
        message = f"{self.label} answered {status}: {reason}"
        if status >= 500 or status in _RETRYABLE_4XX:
            raise _Failure(RetryableError(message, retry_after), status)
        raise _Failure(PermanentError(message), status)

    def _accepted(self, task: PushTask, status: int, raw: bytes) -> Answer:
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise _Failure(
                ContractError(
                    f"{self.label} answered {status} with a body that is not JSON: {_shown(raw)}"
                ),
                status,
            ) from None
        if not isinstance(doc, dict):
            raise _Failure(
                ContractError(
                    f"{self.label} answered {status} with JSON that is not an object: {_shown(raw)}"
                ),
                status,
            )
        answer_id = doc.get("id")
        if doc.get("status") != "accepted" or not isinstance(answer_id, str) or not answer_id:
            raise _Failure(
                ContractError(
                    f"{self.label} answered {status} without status 'accepted' and an id: "
                    f"{_shown(raw)}"
                ),
                status,
            )
        echoed = doc.get("idempotency_key")
        if echoed is not None and echoed != task.idempotency_key:
            raise _Failure(
                ContractError(
                    f"{self.label} accepted idempotency key {echoed!r}, not the one sent "
                    f"({task.idempotency_key!r}): the answer belongs to another push"
                ),
                status,
                answer_id,
            )
        return Answer(http_status=status, id=answer_id, body=MappingProxyType(doc))

    # ---------------------------------------------------------------------------------- clocks

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    @staticmethod
    def _since(started: float) -> float:
        return (time.perf_counter() - started) * 1000


def _rejection_text(raw: bytes) -> str:
    """The downstream's ``error`` field when the body is JSON with one, else the body's prefix."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _shown(raw)
    if isinstance(doc, dict):
        error = doc.get("error")
        if isinstance(error, str) and error:
            return error
    return _shown(raw)
