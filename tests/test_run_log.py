"""metrics.csv: long-form scalars, truncated to the resumed step."""

from __future__ import annotations

import math
from pathlib import Path

from hiu_model.run_log import RunLog, read_metrics


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
