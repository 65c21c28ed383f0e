"""WorkerStatus: the worker's status file decodes once, and a malformed one says what is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from omshub.core.errors import ContractError
from schemas.status import WorkerStatus, read_worker_status, worker_status_path


def written(**changes: Any) -> dict[str, Any]:
    """A status file as the worker writes it (every key of the format)."""
    data: dict[str, Any] = {
        "state": "RUNNING",
        "pid": 4242,
        "worker_name": "worker-2",
        "host": "box",
        "started_at": 1_700_000_000.5,
        "updated_at": 1_700_000_100.25,
        "counters": {"wms.DONE": 12, "routed": 30},
        "writeback": {"rows_written": 12, "by_status": {"DONE": 12}},
        "sweeper": {"retries_due": 0, "stale_pending": 0, "runs": 3},
        "reverse": {"result.PUSHED": 2},
        "stock": {"received": 5, "coalesced": 1, "stale": 0, "sent": 4, "push_failed": 0},
        "lookup": {"lookups": 0, "ready": True, "error_rate": 0.001},
        "assigned": ["oms.oms.oms_order_push:0", "omshub.push.wms_return:1"],
        "types": {
            "WMS_RETURN": {
                "worker": "wms",
                "done": 12,
                "retry": 0,
                "failed": 0,
                "latency_ms": {"p50": 3.5, "p99": 9.0, "count": 12},
            }
        },
        "outages": {},
    }
    data.update(changes)
    return data


def test_decodes_the_file_the_worker_writes_and_round_trips() -> None:
    status = WorkerStatus.from_json(orjson.dumps(written()))
    assert status.pid == 4242 and status.worker_name == "worker-2"
    assert status.counters["wms.DONE"] == 12
    assert status.assigned == ["oms.oms.oms_order_push:0", "omshub.push.wms_return:1"]
    assert status.stock["sent"] == 4
    assert status.types["WMS_RETURN"]["latency_ms"]["p99"] == 9.0
    assert orjson.loads(status.to_json()) == written()
    assert WorkerStatus.from_json(status.to_json()) == status


def test_a_reconnecting_worker_says_what_it_cannot_reach() -> None:
    status = WorkerStatus.from_json(
        orjson.dumps(written(state="RECONNECTING", outages={"broker": 1_700_000_050.0}))
    )
    assert status.state == "RECONNECTING" and status.outages == {"broker": 1_700_000_050.0}
    older = written()
    del older["outages"]  # a file from a worker before outages existed still reads
    assert WorkerStatus.from_json(orjson.dumps(older)).outages == {}


def test_integer_timestamps_and_unknown_keys_are_accepted() -> None:
    status = WorkerStatus.from_json(
        orjson.dumps(written(started_at=1_700_000_000, newer_figure={"x": 1}))
    )
    assert status.started_at == 1_700_000_000.0


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        (b"", "file"),
        (b"{half", "file"),
        (b"[1, 2]", "file"),
        (b"null", "file"),
        (orjson.dumps({k: v for k, v in written().items() if k != "pid"}), "pid"),
        (orjson.dumps({k: v for k, v in written().items() if k != "assigned"}), "assigned"),
        (orjson.dumps(written(pid="4242")), "pid"),
        (orjson.dumps(written(pid=True)), "pid"),
        (orjson.dumps(written(updated_at="now")), "updated_at"),
        (orjson.dumps(written(counters={"wms.DONE": 1.5})), "counters.wms.DONE"),
        (orjson.dumps(written(counters=[1])), "counters"),
        (orjson.dumps(written(assigned="oms:0")), "assigned"),
        (orjson.dumps(written(assigned=["oms:0", 1])), "assigned.1"),
        (orjson.dumps(written(types={"WMS_RETURN": 3})), "types.WMS_RETURN"),
        (orjson.dumps(written(stock=None)), "stock"),
    ],
)
def test_malformed_files_raise_a_contract_error_naming_the_field(raw: bytes, names: str) -> None:
    with pytest.raises(ContractError, match="worker status file is malformed") as caught:
        WorkerStatus.from_json(raw)
    assert f"{names}:" in str(caught.value)


def test_read_worker_status(tmp_path: Path) -> None:
    path = worker_status_path(tmp_path, "worker-2")
    assert path == tmp_path.resolve() / "run" / "worker-2.status.json"
    assert read_worker_status(path) is None  # not written yet
    path.parent.mkdir(parents=True)
    path.write_bytes(orjson.dumps(written()))
    status = read_worker_status(path)
    assert status is not None and status.host == "box"
    path.write_bytes(b'{"state": "RUNNING"}')
    with pytest.raises(ContractError, match="pid"):
        read_worker_status(path)


def test_the_model_is_frozen() -> None:
    status = WorkerStatus.from_json(orjson.dumps(written()))
    with pytest.raises(ValueError, match="frozen"):
        status.pid = 1  # type: ignore[misc]
