"""Read a run's TensorBoard event files back, as TensorBoard itself shows them."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def tensorboard_scalars(run_dir: Path) -> dict[tuple[str, int], float]:
    """``{(tag, step): value}`` of every scalar under ``run_dir/tensorboard`` (all event files,
    with TensorBoard's purge of the steps a resumed writer replaces)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    return {(tag, e.step): e.value for tag in events.Tags()["scalars"] for e in events.Scalars(tag)}


def csv_scalars(run_dir: Path) -> dict[tuple[str, int], float]:
    """``{(tag, step): value}`` of a run's metrics.csv, values rounded to float32 as event files
    store them."""
    from hiu_model.run_log import read_metrics

    return {(r["tag"], r["step"]): float(np.float32(r["value"])) for r in read_metrics(run_dir)}
