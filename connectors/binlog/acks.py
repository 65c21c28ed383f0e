"""Which offset may be committed: delivery reports in, the committable offset out.

The producer's delivery reports arrive out of order and some may be failures. An offset is
committed only up to the last record before which everything was acknowledged, so a crash at any
moment re-delivers (duplicates) but never skips. :class:`OffsetContext` is the connector's
position (Debezium's ``BinlogOffsetContext``): what was produced, what was saved, where to resume
after a reconnect, and the state of a running incremental snapshot, which travels in the offset.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from connectors.binlog.offsets import FileOffsetStore, Offset
from connectors.binlog.sink import Sink
from connectors.binlog.status import ConnectorMetrics
from omshub.core.errors import DeliveryFailedError
from omshub.core.kafka import record_refused

if TYPE_CHECKING:
    from connectors.binlog.incremental import IncrementalContext

# (file, txn_pos, event_pos, row, gtid): the hot path keeps offsets as tuples.
OffsetTuple = tuple[str, int, int, int, "str | None"]


#: ``rescue(ack, err, msg)``: takes over a record the broker refused for itself (see AckTracker)
Rescue = Callable[["_Ack", Any, Any], bool]


class _Ack:
    """One produced record's delivery report (or a boundary marker that needs none)."""

    __slots__ = ("done", "error", "offset", "rescue")

    def __init__(self, offset: OffsetTuple, done: bool = False, rescue: Rescue | None = None):
        self.offset = offset
        self.done = done
        self.error: Any = None
        self.rescue = rescue

    def __call__(self, err: Any, msg: Any) -> None:
        if err is not None and self.rescue is not None and record_refused(err):
            rescue, self.rescue = self.rescue, None  # once: the stand-in's own report is final
            if rescue(self, err, msg):
                return  # this ack now waits for the stand-in record's delivery report
        self.error = err
        self.done = True


class AckTracker:
    """Finds the newest offset before which every record was acknowledged."""

    def __init__(self) -> None:
        self._queue: deque[_Ack] = deque()
        self.committable: OffsetTuple | None = None
        #: set by the dispatcher: a record the broker refuses for itself is replaced by an
        #: error record instead of stopping the stream at it
        self.rescue: Rescue | None = None

    def track(self, offset: OffsetTuple) -> _Ack:
        ack = _Ack(offset, rescue=self.rescue)
        self._queue.append(ack)
        return ack

    def boundary(self, offset: OffsetTuple) -> None:
        if self._queue:
            self._queue.append(_Ack(offset, done=True))
        else:
            self.committable = offset

    def advance(self) -> OffsetTuple | None:
        queue = self._queue
        while queue and queue[0].done:
            ack = queue[0]
            if ack.error is not None:  # stays at the head: nothing after it may be committed
                raise DeliveryFailedError(
                    f"the broker rejected a record at {ack.offset[0]}:{ack.offset[2]} "
                    f"row {ack.offset[3]}: {ack.error}; restarting from the last committed offset"
                )
            queue.popleft()
            self.committable = ack.offset
        return self.committable

    def __len__(self) -> int:
        return len(self._queue)

    def clear(self) -> None:
        self._queue.clear()


class OffsetContext:
    """The connector's position, shared by the snapshot, the stream and the lifecycle.

    ``emitted`` is the offset of the last record produced (or boundary passed), ``last_saved`` the
    last one written to the store, ``resume`` where the next run starts. While the initial
    snapshot runs nothing is committed: its records only count once all of them are delivered.
    """

    def __init__(self, store: FileOffsetStore, name: str, metrics: ConnectorMetrics) -> None:
        self.store = store
        self.name = name
        self.metrics = metrics
        self.tracker = AckTracker()
        self.emitted: OffsetTuple = ("", 0, 0, -1, None)
        self.last_saved: OffsetTuple | None = None
        self.resume: Offset | None = None
        self.snapshot_running = False
        self.incremental: IncrementalContext | None = None

    def begin(self, start: Offset) -> None:
        """A stream starts at ``start``: nothing produced yet beyond it."""
        here = (start.file, start.pos, start.event_pos, start.row, start.gtid)
        self.emitted = here
        self.last_saved = self.last_saved or here

    def boundary(self, offset: OffsetTuple) -> None:
        """A transaction boundary: committable as soon as everything before it is delivered."""
        self.tracker.boundary(offset)
        self.emitted = offset

    def commit(self, *, force: bool = False) -> None:
        if self.snapshot_running:
            return
        committable = self.tracker.advance()
        self.metrics.pending_acks = len(self.tracker)
        if committable is None or (committable == self.last_saved and not force):
            return
        file, pos, event_pos, row, gtid = committable
        inc = self.incremental.to_json() if self.incremental is not None else None
        self.store.save(
            self.name,
            Offset(
                file=file,
                pos=pos,
                event_pos=event_pos,
                row=row,
                gtid=gtid,
                ts_sec=int(time.time()),
                incremental=inc,
            ),
        )
        self.last_saved = committable
        self.metrics.committed_file, self.metrics.committed_pos = file, pos

    def resume_point(self, sink: Sink | None) -> Offset:
        """Where to continue after a reconnect: what was produced, if the broker has it all."""
        emitted = self.emitted
        delivered = False
        if sink is not None and sink.flush(30.0) == 0:
            try:
                self.tracker.advance()
                delivered = True
            except DeliveryFailedError:
                delivered = False
        if delivered:
            file, pos, event_pos, row, gtid = emitted
        else:
            file, pos, event_pos, row, gtid = self.last_saved or emitted
        return Offset(file=file, pos=pos, event_pos=event_pos, row=row, gtid=gtid)
