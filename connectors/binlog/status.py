"""Connector metrics and the status file other processes read.

The connector runs in its own process; ``omshub status``, the stack's health check and the
dashboard read one small JSON file (``schemas.status.ConnectorStatus``) it rewrites about once a
second instead of talking to it.
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omshub.core.errors import ContractError
from omshub.core.fileio import write_bytes_atomic
from schemas.status import ConnectorStatus, read_connector_status


@dataclass
class ConnectorMetrics:
    """Figures kept for dashboards: throughput, position, lag behind the source and errors."""

    name: str
    state: str = "STARTING"
    phase: str = "starting"
    pid: int = field(default_factory=os.getpid)
    started_at: float = field(default_factory=time.time)
    binlog_file: str | None = None
    binlog_pos: int | None = None
    gtid: str | None = None
    committed_file: str | None = None
    committed_pos: int | None = None
    ms_behind_source: int | None = None
    events_total: int = 0
    snapshot_rows_total: int = 0
    heartbeats_total: int = 0
    errors_total: int = 0
    reconnects_total: int = 0
    restarts_total: int = 0
    pending_acks: int = 0
    last_error: str | None = None
    last_event_ts_ms: int | None = None
    events_per_s: float = 0.0
    unimplemented_keys: list[str] = field(default_factory=list)
    _window: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=32), repr=False)

    def sample_rate(self, now: float) -> None:
        """Events/s over the last ~10 s, from periodic samples of the running total."""
        self._window.append((now, self.events_total))
        while len(self._window) > 2 and now - self._window[0][0] > 10:
            self._window.popleft()
        first_t, first_n = self._window[0]
        span = now - first_t
        self.events_per_s = round((self.events_total - first_n) / span, 1) if span > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if not k.startswith("_")}
        data["updated_at"] = time.time()
        return data


def write_status(path: Path, metrics: ConnectorMetrics) -> None:
    """Replace the status file with the figures, as the readers' model (``ConnectorStatus``)."""
    write_bytes_atomic(path, ConnectorStatus.model_validate(metrics.to_json()).to_json())


def read_status(path: Path) -> ConnectorStatus | None:
    """The connector's status, or None when there is none or it does not decode (the connector
    itself only uses it to report; readers that must say why use ``read_connector_status``)."""
    try:
        return read_connector_status(path)
    except ContractError:
        return None
