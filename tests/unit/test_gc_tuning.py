"""omshub.core.procs.tune_gc: what `omshub worker` does to the collector before it starts."""

from __future__ import annotations

import gc

from click.testing import CliRunner

from omshub.cli import main
from omshub.core.procs import GC_GEN0_THRESHOLD, tune_gc


def test_tune_gc_freezes_what_exists_and_widens_the_young_generation() -> None:
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == (GC_GEN0_THRESHOLD, before[1], before[2])
        assert gc.get_freeze_count() > 0
        # cycles made afterwards are still collected
        cycle: list[object] = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_the_worker_command_tunes_the_collector_before_running(monkeypatch, tmp_path) -> None:
    import processors.app

    seen: list[tuple[int, int, int]] = []
    monkeypatch.setattr(
        processors.app, "run_worker", lambda settings: seen.append(gc.get_threshold())
    )
    before = gc.get_threshold()
    try:
        result = CliRunner().invoke(main, ["worker"], env={"OMSHUB_HOME": str(tmp_path)})
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
    assert result.exit_code == 0, result.output
    assert seen == [(GC_GEN0_THRESHOLD, before[1], before[2])]
