"""Small JSON state files other processes read (status of the connector and the worker)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

import orjson


def write_json_atomic(path: Path, data: Any) -> None:
    """Replace ``path`` by rename, so readers see the old or the new file, never half of one."""
    write_bytes_atomic(path, orjson.dumps(data, default=str))


def write_bytes_atomic(path: Path, content: bytes) -> None:
    """:func:`write_json_atomic` for content already encoded (a model's ``to_json``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_json(path: Path) -> dict[str, Any] | None:
    """The object in ``path``, or None when it is missing, half-written or not an object."""
    try:
        data = orjson.loads(path.read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None
