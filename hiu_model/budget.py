"""Time budgets: how many optimizer steps fit in a number of minutes on this machine.

``hiu-data train --minutes M`` (and the demo, and ``bench/train_quality.py``) size the cosine
schedule so that it ends inside the budget; ``train.max_minutes`` stays the hard stop. This is
the first estimate: ``hiu-data train`` and ``bench/train_quality.py`` then re-size the schedule
to the pace the run itself measures (:mod:`hiu_model.schedule`). A step's wall time is estimated
from a few timed steps of the real network (random crops, the run's precision and memory layout)
and, on a GPU, from the real data loader too:

- on the CPU the loader's workers and the network share the same cores, so the step costs its
  compute plus the loading; the measured factor over the compute alone is 1.36-1.58 on 2 cores
  (2 threads, 2 loader workers), and 1.45 is what 15-minute runs need to end on time;
- on a GPU the workers prepare the next batches while the device computes, so a step costs
  whichever is slower, plus a small margin for logging and the host-device copies.

The timing is part of the budget (:func:`fit_budget`): it is cut short when it would take more
than :data:`TIMING_SHARE` of it, and what it took is taken off the time left for training, so
that ``--minutes 0.3`` is about 0.3 minutes of timing plus training, not 0.3 minutes after it.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Any

import torch

from hiu_model import distributed
from hiu_model.optim import make_optimizer
from hiu_model.train import amp_dtype, silhouette_rows

log = logging.getLogger(__name__)

CPU_OVERHEAD = 1.45
GPU_OVERHEAD = 1.1
MIN_STEPS = 10
TIMING_SHARE = 0.1
"""The most of a budget the timing may take (it times fewer steps beyond it, at least one)."""
MIN_TRAIN_MINUTES = 1e-6
"""The training time set when the timing used up the whole budget: the run stops after its
first step, with a checkpoint (``train.max_minutes`` = 0 would mean no limit at all). A token
far below any step's time (60 microseconds), so that even a fast machine's first step is late."""


def step_seconds(compute_s: float, load_s: float | None, device_type: str) -> float:
    """Expected wall time of one training step.

    Args:
        compute_s: seconds of one forward + backward + update of the network alone.
        load_s: seconds the data loader takes per batch (its workers in parallel), or None when
            not measured (the CPU estimate folds it into its overhead factor).
        device_type: ``cpu`` or ``cuda``.
    """
    if device_type == "cuda":
        return max(compute_s, load_s or 0.0) * GPU_OVERHEAD
    return compute_s * CPU_OVERHEAD


def compute_seconds(cfg: Any, batch_size: int, device: torch.device, repeats: int = 10,
                    max_seconds: float | None = None) -> float:
    """Median seconds of one optimizer step of ``cfg``'s network on random crops on ``device``,
    after a warm-up step (one or two timed steps vary by up to 8 % on a shared 2-core machine).

    ``max_seconds``: stop timing once this much has passed since the call (model building and
    the warm-up included), after at least one timed step; None = all ``repeats``."""
    from hiu_model.model import HIUDMTL

    started = time.perf_counter()
    torch.manual_seed(0)
    dtype = amp_dtype(cfg.train, device)
    memory_format = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
    model = HIUDMTL(cfg.model).to(device, memory_format=memory_format)
    optimizer = make_optimizer(model, cfg.train, device)
    size = cfg.model.input_size
    images = torch.randn(batch_size, 3, size, size, device=device).contiguous(memory_format=memory_format)
    rows = silhouette_rows(torch.ones(batch_size), cfg.train.silhouette_samples)
    timings = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            output = model(images, None, rows)
            maps = [m.float().mean() for m in (*output.heatmaps, *output.masks, *output.pofs)]
            mesh = [t.mean() for t in (output.vertices, output.silhouette) if t is not None]
            loss = torch.stack(maps + mesh).sum()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # kernels run asynchronously: wait before reading the clock
        timings.append(time.perf_counter() - start)
        if max_seconds is not None and len(timings) >= 2 and time.perf_counter() - started > max_seconds:
            break
    return float(torch.tensor(timings[1:]).median())


def load_seconds(cfg: Any, batch_size: int, device: torch.device, batches: int = 8) -> float | None:
    """Seconds per batch of the training loader over the labeled sources, with the run's
    loader workers, in steady state (the first two batches, which start the workers, are left
    out); None without labeled sources."""
    from hiu_model.sampling import build_loader
    from hiu_model.train_data import loader_workers, parse_sources

    sources = parse_sources(cfg.train.datasets, "train")
    if not sources:
        return None
    loader = build_loader(sources, cfg.data, batch_size=batch_size, train=True, num_samples=(batches + 2) * batch_size,
                          seed=cfg.train.seed, num_workers=loader_workers(cfg.train.num_workers, device))
    stream = iter(loader)
    for _ in range(2):
        next(stream)
    start = time.perf_counter()
    for _ in stream:
        pass
    return (time.perf_counter() - start) / batches


def time_step(cfg: Any, batch_size: int, max_seconds: float | None = None) -> float:
    """Expected wall seconds of one training step of ``cfg`` (``batch_size`` per step) on this
    machine's training device (``cfg.train.device``), from a few timed steps (see
    :func:`compute_seconds` for ``max_seconds``)."""
    # Under torchrun each process times its own device (LOCAL_RANK), as it will train on it.
    device = distributed.pick_device(cfg.train.device, int(os.environ.get("LOCAL_RANK", "0")))
    compute = compute_seconds(cfg, batch_size, device, max_seconds=max_seconds)
    load = load_seconds(cfg, batch_size, device) if device.type == "cuda" else None
    per_step = step_seconds(compute, load, device.type)
    log.info("a step: %.3f s of compute%s on %s -> %.3f s with the overhead", compute,
             f", {load:.3f} s of loading" if load is not None else "", device.type, per_step)
    return per_step


def estimate_steps(cfg: Any, minutes: float, batch_size: int) -> int:
    """Optimizer steps of ``cfg`` (``batch_size`` per step) that fit in ``minutes`` on this
    machine's training device (``cfg.train.device``), the timing not counted; at least ten."""
    return max(MIN_STEPS, int(minutes * 60 / time_step(cfg, batch_size)))


@dataclass(frozen=True)
class Budget:
    """A time budget split between the timing and the training.

    Attributes:
        steps: optimizer steps that fit in ``train_minutes`` (at least :data:`MIN_STEPS`).
        train_minutes: minutes left for training (``train.max_minutes``) after the timing.
        timing_seconds: seconds the timing (and anything before it that was passed in) took.
        step_seconds: the expected wall seconds of one step, from the timing.
        used_up: the timing left less than one step's time: the run trains one step (the time
            limit is checked after each) and stops, past the budget.
    """

    steps: int
    train_minutes: float
    timing_seconds: float
    step_seconds: float = 0.0
    used_up: bool = False

    def minutes_needed(self) -> float:
        """A budget that would leave :data:`MIN_STEPS` steps after a timing as long as this one,
        in minutes rounded up to two decimals."""
        return math.ceil((self.timing_seconds + MIN_STEPS * self.step_seconds) / 60.0 * 100) / 100


def fit_budget(cfg: Any, minutes: float, batch_size: int, spent_seconds: float = 0.0) -> Budget:
    """Time a few steps and size the schedule to what is left of ``minutes`` afterwards.

    Args:
        minutes: the whole budget, timing included.
        spent_seconds: seconds of the budget already used before this call (checks, loading).
    """
    start = time.perf_counter()
    total = 60.0 * minutes
    per_step = time_step(cfg, batch_size, max_seconds=max(TIMING_SHARE * total - spent_seconds, 0.0))
    spent = spent_seconds + time.perf_counter() - start
    left = total - spent
    steps = max(MIN_STEPS, int(max(left, 0.0) / per_step))
    used_up = left < per_step
    # Used up: what is left (less than a step) could still hold a fast first step and a second.
    train_minutes = MIN_TRAIN_MINUTES if used_up else max(round(left / 60.0, 4), MIN_TRAIN_MINUTES)
    return Budget(steps, train_minutes, spent, per_step, used_up)
