"""Structured logs: one line per event, ``key=value`` pairs, so grep and log shippers both work."""

from __future__ import annotations

import logging
import sys
from typing import Any

_RESERVED = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class KeyValueFormatter(logging.Formatter):
    """Renders ``ts level logger event k=v ...`` with values quoted only when they need it."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            record.levelname.lower(),
            record.name,
            f"event={_quote(record.getMessage())}",
        ]
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                parts.append(f"{key}={_quote(value)}")
        if record.exc_info:
            parts.append(f"exc={_quote(self.formatException(record.exc_info))}")
        return " ".join(parts)


def _quote(value: Any) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' "=\n\t'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


_NOISY = ("aiokafka", "faust", "mode", "pymysqlreplication")


def dict_config(level: str = "INFO") -> dict[str, Any]:
    """:func:`setup_logging` as a ``logging.config.dictConfig`` document, for frameworks that
    configure logging themselves: Faust's worker replaces the root handlers when it starts, and
    its own formatter drops every ``extra``, so the worker's lines lost their key=value part
    (the counts, ids and errors that say what happened) until it was handed this."""
    floor = max(logging.WARNING, logging.getLevelNamesMapping().get(level.upper(), logging.INFO))
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"kv": {"()": KeyValueFormatter}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "kv",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level.upper(), "handlers": ["default"]},
        "loggers": {name: {"level": floor} for name in _NOISY},
    }


def setup_logging(level: str = "INFO", stream: Any = None) -> None:
    """Route every logger through the key=value formatter (called once by entry points)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in _NOISY:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
