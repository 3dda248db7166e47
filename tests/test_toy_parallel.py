"""The toy study in worker processes: the same records as in one process, in the same order, with
progress after each run; a run's result does not depend on whether its frames carry metrics."""

from __future__ import annotations

import numpy as np
import pytest

from toy import ToySettings, record_toy, run_study, run_toy
from toy.__main__ import default_workers, parse_args
from toy.study import study_records

SHORT = ToySettings(iterations=15, push_probability=0.5)


def test_parallel_study_equals_serial_study() -> None:
    serial_calls: list[tuple[int, int]] = []
    parallel_calls: list[tuple[int, int]] = []
    modes, seeds = ["base", "rho", "paper"], [0, 3]
    serial = run_study(modes, seeds, SHORT, progress=lambda *c: serial_calls.append(c))
    parallel = run_study(
        modes, seeds, SHORT, progress=lambda *c: parallel_calls.append(c), workers=2
    )
    assert parallel == serial  # every per-seed number and summary, exactly
    assert serial_calls == parallel_calls == [(i, 6) for i in range(1, 7)]
    assert [r["seed"] for r in parallel["modes"]["rho"]["per_seed"]] == seeds


def test_records_come_back_in_run_order_from_more_workers_than_runs() -> None:
    runs = [ToySettings(iterations=5, seed=seed) for seed in (4, 1, 2)]
    records = list(study_records(runs, workers=8))
    assert [r["seed"] for r in records] == [4, 1, 2]
    assert records == list(study_records(runs, workers=1))


def test_run_result_is_the_recordings_result() -> None:
    """run_toy skips the per-frame metrics; its result equals a recording's, which computes them."""
    settings = ToySettings(iterations=12, mode="rho", push_probability=0.3, seed=2)
    result, recorded = run_toy(settings), record_toy(settings, every=4).result
    assert result.metrics == recorded.metrics
    np.testing.assert_array_equal(result.losses, recorded.losses)
    np.testing.assert_array_equal(result.spectrum, recorded.spectrum)


def test_bad_worker_counts_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="at least one worker process, got 0"):
        run_study(["base"], 1, SHORT, workers=0)
    with pytest.raises(SystemExit):
        parse_args(["--workers", "0"])
    assert "--workers must be at least 1, got 0" in capsys.readouterr().err
    assert 1 <= default_workers() <= 2 and parse_args([]).workers == default_workers()
