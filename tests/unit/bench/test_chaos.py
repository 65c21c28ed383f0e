"""bench/chaos.py's arithmetic: what counts as lost, duplicated and recovered, and its arguments."""

from __future__ import annotations

import pytest

from bench.chaos import (
    SHORT,
    Row,
    Seen,
    Window,
    cells,
    markdown,
    parse_args,
    phase_figures,
    recovery_s,
)


def row(key: str, created_ms: int, status: str = "DONE") -> Row:
    return Row(key, "WMS_RETURN", status, "", created_ms)


def test_recovery_is_the_first_row_after_the_last_slow_one() -> None:
    rows = [row("a", 1_000), row("b", 2_000), row("c", 3_000), row("d", 4_000)]
    seen = {
        "a": Seen(1_100, 1_100, 1),  # fast, but before the fault
        "b": Seen(6_000, 6_000, 1),  # 4 s: slow
        "c": Seen(3_200, 3_200, 1),
        "d": Seen(4_100, 4_100, 1),
    }
    assert recovery_s(rows, seen, fault_at_ms=1_500) == pytest.approx(1.5)
    assert recovery_s(rows[2:], seen, fault_at_ms=1_500) == 0.0
    # the last row is still slow (never delivered): not recovered within the phase
    assert recovery_s([*rows, row("e", 5_000)], seen, fault_at_ms=1_500) is None


def test_lost_failed_and_duplicates_come_from_the_rows_and_the_journal() -> None:
    rows = [
        row("done", 1_000),
        row("done-unseen", 1_000),  # DONE in the database, never received: lost
        row("stuck", 1_000, "RETRY"),  # never left RETRY: lost
        row("failed", 1_000, "FAILED"),
        row("twice", 1_000),
    ]
    seen = {
        "done": Seen(1_010, 1_010, 1, 1),
        "failed": Seen(1_010),
        "twice": Seen(1_020, 1_020, 2, 1),  # accepted, then answered as a duplicate
    }
    window = Window("worker", 0, 10_000, "SIGKILL worker", 500, {"worker": 3})
    figures = phase_figures(window, rows, seen, {"worker": 2, "kafka": 1})
    assert (figures["lost"], figures["failed"], figures["duplicates"]) == (2, 1, 1)
    assert figures["accepted_twice"] == 0
    assert figures["lost_keys"] == ["done-unseen", "stuck"]
    assert figures["restarts"] == {"worker": 1}
    assert (figures["p50_ms"], figures["p99_ms"]) == (10.0, 20.0)
    assert cells(figures)[-1] == "1 (worker 1)"
    no_supervisor = phase_figures(Window("steady", 0), rows, seen, None)
    assert cells(no_supervisor)[-1] == "-" and cells(no_supervisor)[6] == "-"
    assert markdown({"phases": [figures]}).splitlines()[2].startswith("| worker | SIGKILL")


def test_arguments() -> None:
    assert parse_args(["--short"]).phase_list == SHORT
    assert parse_args(["--phases", "steady,broker"]).phase_list == ("steady", "broker")
    with pytest.raises(SystemExit):
        parse_args(["--phases", "steady,meteor"])
    with pytest.raises(SystemExit):
        parse_args(["--short", "--phases", "steady"])
    with pytest.raises(SystemExit):
        parse_args(["--phases", "5xx", "--phase-s", "5"])
