"""The records that cross from the router to a worker and back: the task, its outcome, follow-ups.

A task travels as JSON on the per-type topic between processes, so it is decoded here, once, at
the edge (:meth:`PushTask.from_json`); the finance topics and the write-back read the outcome. All
are frozen dataclasses: they cross agents and coroutines and are never changed after they are made.

* :class:`PushTask`: one ``oms_order_push`` row as the router hands it to a worker (JSON on the
  per-type topic, :meth:`PushTask.to_json` / :meth:`PushTask.from_json`).
* :class:`FollowUp`: a push row a finished push asks to insert, with an idempotency key derived
  from the parent's, so a parent processed twice inserts it once.
* :class:`Outcome`: what an attempt ended in, written back to the row by the caller.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from omshub.core.errors import ContractError
from schemas.pushes import PushStatus, PushType

__all__ = [
    "IDEMPOTENCY_KEY_MAX",
    "MAX_ERROR_CHARS",
    "FollowUp",
    "Outcome",
    "PushTask",
    "clip_error",
    "follow_up_key",
]

IDEMPOTENCY_KEY_MAX: Final = 128
"""``oms_order_push.idempotency_key`` is VARCHAR(128)."""

MAX_ERROR_CHARS: Final = 1024
"""``oms_order_push.last_error`` is VARCHAR(1024): longer messages are cut with an ellipsis."""


def clip_error(message: str) -> str:
    """One line (the row, logs and the DLQ record show it) of at most ``MAX_ERROR_CHARS``."""
    message = " ".join(message.split())
    if len(message) <= MAX_ERROR_CHARS:
        return message
    return message[: MAX_ERROR_CHARS - 1] + "…"


# ------------------------------------------------------------------------------------------ pool


# ------------------------------------------------------------------------------------------ task

_TASK_REQUIRED: Final = ("id", "order_no", "push_type", "idempotency_key")


def _field_error(name: str, expected: str, value: object) -> ContractError:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:80] + "..."
    return ContractError(f"push task field {name!r} must be {expected}, got {shown}")


def _int_or_none(data: Mapping[str, Any], name: str, *, minimum: int | None = None) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if type(value) is not int or (minimum is not None and value < minimum):
        expected = "an integer" if minimum is None else f"an integer >= {minimum}"
        raise _field_error(name, f"{expected} or null", value)
    return value


@dataclass(frozen=True)
class PushTask:
    """One ``oms_order_push`` row on its way to a worker.

    ``payload`` is the column's JSON text, unparsed (the worker validates it, so a bad payload
    fails that push only). ``attempts`` counts attempts already made. ``source`` is the binlog
    position of the change the router saw (for the DLQ record), ``created_at_ms`` the row's
    creation and ``routed_at_ms`` when the router published the task (both epoch ms, for lag).
    """

    id: int
    order_no: str
    push_type: str
    payload: str | None
    idempotency_key: str
    attempts: int = 0
    parent_id: int | None = None
    reverse_id: int | None = None
    created_at_ms: int | None = None
    source: dict[str, Any] | None = None
    routed_at_ms: int | None = None

    def to_json(self) -> bytes:
        """The task as a JSON object (what the router publishes on ``omshub.push.<type>``)."""
        return orjson.dumps(
            {
                "id": self.id,
                "order_no": self.order_no,
                "push_type": self.push_type,
                "payload": self.payload,
                "idempotency_key": self.idempotency_key,
                "attempts": self.attempts,
                "parent_id": self.parent_id,
                "reverse_id": self.reverse_id,
                "created_at_ms": self.created_at_ms,
                "source": self.source,
                "routed_at_ms": self.routed_at_ms,
            }
        )

    @classmethod
    def from_json(cls, data: bytes | str) -> PushTask:
        """Parse :meth:`to_json` output; :class:`ContractError` naming the field when malformed.

        Unknown keys are ignored, so a newer router can add fields before the workers know them.
        """
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            shown = bytes(data[:80]) if isinstance(data, bytes) else data[:80]
            raise ContractError(f"push task is not JSON ({exc.msg}): {shown!r}") from None
        if not isinstance(obj, dict):
            raise ContractError(f"push task must be a JSON object, got {type(obj).__name__}")
        missing = [name for name in _TASK_REQUIRED if name not in obj]
        if missing:
            raise ContractError(f"push task lacks {', '.join(missing)}")
        task_id = obj["id"]
        if type(task_id) is not int:
            raise _field_error("id", "an integer", task_id)
        for name in ("order_no", "push_type", "idempotency_key"):
            if not isinstance(obj[name], str) or not obj[name]:
                raise _field_error(name, "a non-empty string", obj[name])
        payload = obj.get("payload")
        if payload is not None and not isinstance(payload, str):
            raise _field_error("payload", "JSON text (a string) or null", payload)
        source = obj.get("source")
        if source is not None and not isinstance(source, dict):
            raise _field_error("source", "an object or null", source)
        attempts = _int_or_none(obj, "attempts", minimum=0)
        return cls(
            id=task_id,
            order_no=obj["order_no"],
            push_type=obj["push_type"],
            payload=payload,
            idempotency_key=obj["idempotency_key"],
            attempts=attempts or 0,
            parent_id=_int_or_none(obj, "parent_id"),
            reverse_id=_int_or_none(obj, "reverse_id"),
            created_at_ms=_int_or_none(obj, "created_at_ms"),
            source=source,
            routed_at_ms=_int_or_none(obj, "routed_at_ms"),
        )


# ------------------------------------------------------------------------------------ follow-ups


def follow_up_key(parent_key: str, key_suffix: str) -> str:
    """The idempotency key of a follow-up push: ``<parent key>/<suffix>``, deterministic.

    A parent processed twice derives the same key, so the follow-up row is inserted once (the
    unique key on ``idempotency_key``). Keys longer than the column keep a readable head and end
    in a hash of the whole key, so distinct long keys stay distinct.
    """
    if not key_suffix:
        raise ValueError("a follow-up needs a non-empty key_suffix")
    key = f"{parent_key}/{key_suffix}"
    if len(key) <= IDEMPOTENCY_KEY_MAX:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"{key[: IDEMPOTENCY_KEY_MAX - len(digest) - 1]}~{digest}"


@dataclass(frozen=True)
class FollowUp:
    """A push row to insert because a push finished (the seed: 节点处理完毕后 ... 继续插入).

    ``payload`` is JSON-ready (built with :func:`schemas.payloads.payload_body`). The row gets the
    parent's ``order_no`` and ``reverse_id``, ``parent_id`` = the parent's id, and the key
    :func:`follow_up_key` derives from the parent's key and ``key_suffix``.
    """

    push_type: PushType
    payload: dict[str, Any]
    key_suffix: str

    def idempotency_key(self, parent_key: str) -> str:
        return follow_up_key(parent_key, self.key_suffix)

    def to_row(self, parent: PushTask) -> dict[str, Any]:
        """Bind parameters of the ``oms_order_push`` row (same columns as ``seed.make_push``)."""
        return {
            "order_no": parent.order_no,
            "reverse_id": parent.reverse_id,
            "push_type": str(self.push_type),
            "payload": orjson.dumps(self.payload).decode(),
            "status": str(PushStatus.PENDING),
            "parent_id": parent.id,
            "idempotency_key": self.idempotency_key(parent.idempotency_key),
        }


# --------------------------------------------------------------------------------------- outcome


@dataclass(frozen=True)
class Outcome:
    """What one attempt at a push ended in; the caller writes it back to the push row.

    ``attempts`` counts attempts made including this one (the row's new ``attempts``).
    ``next_retry_at_ms`` (epoch ms) is set for ``RETRY`` only. ``error`` is one line of at most
    1024 characters (``last_error``). ``downstream_id`` is the id the downstream gave the push
    (kept on a ``FAILED`` outcome too when the downstream accepted the push but a later step
    failed). ``follow_ups`` are push rows to insert, ``DONE`` only. ``http_status`` is the answer's
    status when there was one; ``latency_ms`` the wall time of the whole attempt.
    """

    status: PushStatus
    error: str | None
    next_retry_at_ms: int | None
    attempts: int
    downstream_id: str | None = None
    follow_ups: tuple[FollowUp, ...] = field(default=())
    http_status: int | None = None
    latency_ms: float = 0.0

    @classmethod
    def failed(cls, error: str, attempts: int, *, http_status: int | None = None) -> Outcome:
        """A ``FAILED`` outcome decided outside a worker (the router rejecting a row, a caller's
        safety net); ``attempts`` is the row's new count. Workers go through ``RetryPolicy``."""
        return cls(PushStatus.FAILED, clip_error(error), None, attempts, http_status=http_status)

    @property
    def final(self) -> bool:
        """Whether the row leaves the retry loop (``DONE`` or ``FAILED``)."""
        return self.status is not PushStatus.RETRY

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view for logs and DLQ records (follow-ups by push type and suffix)."""
        return {
            "status": str(self.status),
            "error": self.error,
            "next_retry_at_ms": self.next_retry_at_ms,
            "attempts": self.attempts,
            "downstream_id": self.downstream_id,
            "follow_ups": [
                {"push_type": str(f.push_type), "key_suffix": f.key_suffix} for f in self.follow_ups
            ],
            "http_status": self.http_status,
            "latency_ms": round(self.latency_ms, 3),
        }
