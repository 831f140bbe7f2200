"""Scalar logging of a training run: ``metrics.csv`` always, TensorBoard when installed.

``metrics.csv`` is in the long form TensorBoard itself uses, one scalar per row::

    step,time_s,tag,value
    100,12.41,train/loss,0.8123
    100,12.41,train/lr,0.00099
    500,61.02,val/synth/heatmap/pck@0.1,0.874

so tags can come and go (a validation set, a loss switched on later) without breaking the
file; ``pandas.read_csv(...).pivot_table(index="step", columns="tag", values="value")`` gives
the wide table. ``time_s`` is training time since the run started, resumed runs included.
On resume, rows logged after the checkpoint being resumed are dropped, so the file describes
exactly one history; the TensorBoard event files of the run folder's ``tensorboard/`` show
the same one (the resumed writer purges the steps after the checkpoint).

The ``train/`` scalars at a step are the means over the steps since the previous logged one
(:class:`LossWindow`): every ``train.log_every`` steps, at the last step, and at whatever step
ends a run early (the time limit, a stop signal), so that no step's losses go unlogged.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

from hiu_data.errors import HiuError
from hiu_model import distributed

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.csv"
COLUMNS = ("step", "time_s", "tag", "value")


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """Rows of a run's ``metrics.csv`` as dicts with int step, float time_s and value."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    try:
        with open(path, newline="") as f:
            return [{"step": int(r["step"]), "time_s": float(r["time_s"]), "tag": r["tag"], "value": float(r["value"])}
                    for r in csv.DictReader(f)]
    except (UnicodeDecodeError, KeyError, TypeError, ValueError, csv.Error):
        raise HiuError(f"{path}: not a metrics file (columns step, time_s, tag, value); move it away to start "
                       "a new one") from None


class RunLog:
    """Append scalars to ``metrics.csv`` (and TensorBoard) on the main process only.

    Args:
        run_dir: the run folder.
        enabled: False on non-main processes (every call is then a no-op).
        resume_step: when resuming, rows after this step are removed first.
        tensorboard: write event files under ``run_dir/tensorboard`` if the ``tensorboard``
            package is importable.
    """

    def __init__(self, run_dir: str | Path, enabled: bool = True, resume_step: int | None = None,
                 tensorboard: bool = True) -> None:
        self.path = Path(run_dir) / METRICS_FILE
        self.enabled = enabled
        self._writer: Any = None
        self._file: Any = None
        if not enabled:
            return
        if resume_step is not None and self.path.exists():
            kept = [r for r in read_metrics(run_dir) if r["step"] <= resume_step]
            self._rewrite(kept)
        new = not self.path.exists()
        self._file = open(self.path, "a", newline="")
        self._csv = csv.writer(self._file)
        if new:
            self._csv.writerow(COLUMNS)
            self._file.flush()
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                # TensorBoard hides the earlier events at steps >= purge_step; the checkpoint's own
                # step was logged before it was saved and is kept, as in the CSV.
                purge = resume_step + 1 if resume_step is not None else None
                self._writer = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"), purge_step=purge)
            except ImportError:  # TensorBoard is optional; the CSV carries the same scalars
                log.debug("tensorboard not installed; logging to %s only", self.path)

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        tmp = self.path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(COLUMNS)
            for r in rows:
                writer.writerow([r["step"], f"{r['time_s']:.3f}", r["tag"], repr(r["value"])])
        tmp.replace(self.path)

    def scalars(self, step: int, time_s: float, values: dict[str, float], prefix: str = "") -> None:
        """Log ``values`` under ``prefix + name`` at ``step``; non-finite values are kept as nan/inf
        in both files."""
        if not self.enabled:
            return
        for name, value in values.items():
            value = float(value)
            self._csv.writerow([int(step), f"{time_s:.3f}", prefix + name, repr(value)])
            if self._writer is not None:
                self._writer.add_scalar(prefix + name, value, int(step))
        self._file.flush()
        if self._writer is not None:
            # The writer's own flush is every 2 minutes; a process killed before then (or
            # leaving on an error without close) would lose scalars the CSV already holds.
            self._writer.flush()

    def close(self) -> None:
        """Close the CSV file and the TensorBoard writer; later calls do nothing."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class LossWindow:
    """The training scalars of the steps since the last logged one, logged as their means.

    The sums stay on the device (one synchronisation per logged step, not per step).

    Args:
        logger: where the means go, under ``train/``.
        info: the processes, whose means are averaged (:func:`hiu_model.distributed.mean_across`).
        samples_per_step: samples of one optimizer step over all processes (``samples_per_s``).
        start_s: the training clock (seconds since the run started) where the window opens.
    """

    def __init__(self, logger: RunLog, info: distributed.DistInfo, samples_per_step: int, start_s: float) -> None:
        self.logger, self.info, self.samples_per_step, self.start_s = logger, info, samples_per_step, start_s
        self.sums: dict[str, Any] = {}
        self.steps = 0

    def add(self, values: dict[str, Any]) -> None:
        """Add one step's scalars (0-d tensors, e.g. the loss terms and the gradient norm)."""
        for name, value in values.items():
            self.sums[name] = self.sums.get(name, 0.0) + value.detach().float()
        self.steps += 1

    def log(self, step: int, elapsed_s: float, extra: dict[str, float]) -> dict[str, float]:
        """Log the window's means at ``step`` (every process calls it: a collective), then
        ``extra`` and ``samples_per_s``; open a new window at ``elapsed_s`` and return what was
        logged (the means over all processes)."""
        values = {name: float(total) / max(self.steps, 1) for name, total in self.sums.items()}
        values = distributed.mean_across(values, self.info)
        values.update(extra, samples_per_s=self.steps * self.samples_per_step / max(elapsed_s - self.start_s, 1e-9))
        self.logger.scalars(step, elapsed_s, values, prefix="train/")
        self.sums, self.steps, self.start_s = {}, 0, elapsed_s
        return values
