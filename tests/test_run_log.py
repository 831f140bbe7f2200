"""metrics.csv: long-form scalars, truncated to the resumed step; the TensorBoard events alike."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from hiu_model.run_log import RunLog, read_metrics
from tests.tensorboard_events import csv_scalars, tensorboard_scalars


def test_metrics_csv_rows_and_resume_truncation(tmp_path: Path) -> None:
    log = RunLog(tmp_path, tensorboard=False)
    log.scalars(1, 0.5, {"loss": 2.0, "lr": 1e-3}, prefix="train/")
    log.scalars(2, 1.0, {"loss": float("nan")}, prefix="train/")
    log.scalars(3, 1.5, {"loss": 1.0}, prefix="train/")
    log.close()
    rows = read_metrics(tmp_path)
    assert [(r["step"], r["tag"]) for r in rows] == [(1, "train/loss"), (1, "train/lr"), (2, "train/loss"), (3, "train/loss")]
    assert rows[1]["value"] == 1e-3 and math.isnan(rows[2]["value"])

    resumed = RunLog(tmp_path, resume_step=2, tensorboard=False)
    resumed.scalars(3, 1.6, {"loss": 0.9}, prefix="train/")
    resumed.close()
    steps = [r["step"] for r in read_metrics(tmp_path) if r["tag"] == "train/loss"]
    assert steps == [1, 2, 3]
    assert read_metrics(tmp_path)[-1]["value"] == 0.9


def test_disabled_log_writes_nothing(tmp_path: Path) -> None:
    log = RunLog(tmp_path, enabled=False)
    log.scalars(1, 0.0, {"loss": 1.0})
    log.close()
    assert not (tmp_path / "metrics.csv").exists()


def test_tensorboard_keeps_the_checkpoint_step_on_resume(tmp_path: Path) -> None:
    log = RunLog(tmp_path)
    for step in (1, 2, 3):
        log.scalars(step, 0.1 * step, {"loss": float(step)}, prefix="train/")
    log.close()
    resumed = RunLog(tmp_path, resume_step=2)  # the checkpoint at step 2, saved after step 2 was logged
    resumed.scalars(3, 0.35, {"loss": 30.0}, prefix="train/")
    resumed.close()
    events = tensorboard_scalars(tmp_path)
    assert events == {("train/loss", 1): 1.0, ("train/loss", 2): 2.0, ("train/loss", 3): 30.0}
    assert events == csv_scalars(tmp_path)


def test_a_killed_run_keeps_every_logged_scalar_in_both_files(tmp_path: Path) -> None:
    # os._exit: no close, no interpreter shutdown, as for a process killed mid-run
    script = ("import os, sys\nfrom hiu_model.run_log import RunLog\nlog = RunLog(sys.argv[1])\n"
              "for step in range(1, 6):\n    log.scalars(step, step, {'loss': step, 'lr': 0.1}, prefix='train/')\n"
              "os._exit(3)\n")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 3, done.stderr[-2000:]
    assert len(csv_scalars(tmp_path)) == 10
    assert tensorboard_scalars(tmp_path) == csv_scalars(tmp_path)


def test_non_finite_scalars_reach_tensorboard_too(tmp_path: Path) -> None:
    # a diverging loss or an infinite mean error is what the curves must show, not a gap
    log = RunLog(tmp_path)
    log.scalars(1, 0.1, {"loss": 1.0, "epe_px": 3.0})
    log.scalars(2, 0.2, {"loss": float("nan"), "epe_px": float("inf")})
    log.close()
    events = tensorboard_scalars(tmp_path)
    assert sorted(events) == sorted(csv_scalars(tmp_path)) == [("epe_px", 1), ("epe_px", 2), ("loss", 1), ("loss", 2)]
    assert math.isnan(events[("loss", 2)]) and events[("epe_px", 2)] == math.inf


def test_without_tensorboard_installed_the_csv_alone_is_written(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as when not installed
    log = RunLog(tmp_path)
    log.scalars(1, 0.1, {"loss": 1.0})
    log.close()
    assert csv_scalars(tmp_path) == {("loss", 1): 1.0}
    assert not (tmp_path / "tensorboard").exists()
