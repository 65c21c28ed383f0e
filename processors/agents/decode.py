"""Decoding a consumed record into the change-event contract, for every agent the same way."""

from __future__ import annotations

from typing import Any

from schemas.change_event import Record, decode


def decode_message(message: Any) -> Record:
    """A Faust message (``.topic``, ``.key``...) -> :func:`schemas.change_event.decode`."""
    return decode(
        message.topic,
        message.key,
        message.value,
        partition=message.partition,
        offset=message.offset,
    )


def decode_confluent(message: Any) -> Record:
    """The same for a confluent_kafka message (methods instead of attributes)."""
    return decode(
        message.topic() or "",
        message.key(),
        message.value(),
        partition=message.partition(),
        offset=message.offset(),
    )
