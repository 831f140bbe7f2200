"""The learning-rate schedule of a training run, and its re-sizing to a time budget.

``lr_factor`` gives the multiplier of ``train.lr`` at each step: a linear warm-up, then
``cosine``, ``step`` or ``constant``. A :class:`Plan` holds what the schedule depends on beyond
the configuration: the total, the warm-up length, the step at which the crops turn plain
(``train.final_plain_fraction``), and the re-mapping knots below. It goes into every checkpoint,
so that ``--resume`` continues the same schedule.

Re-sizing (``hiu-data train --minutes M`` without ``--steps``): the total was estimated from a
few timed steps before training (:mod:`hiu_model.budget`), which misses the real pace by up to
about 20 % either way (loading, logging, evaluation, checkpoints, and whatever else the machine
does that hour). :class:`Resizer` measures the wall time per step of the run itself and fits the rest of
the schedule to the budget at :data:`RESIZE_AT` of it:

- the pace is the training time per step since the end of the first step of the session (that
  step carries the start of the loader's workers and their first reads, a one-off cost that is
  already spent), every later cost included: loading, logging, periodic evaluation and
  checkpoints, averaged over the window (at least :data:`MIN_WINDOW_STEPS` steps: a re-size
  point waits for them);
- the first re-size at 10 % of the budget: the window is past the one-off costs, the warm-up is
  usually over (it is at most a tenth of the steps) and the cosine has barely started, so moving
  its end changes little that has already happened. Its window is short (a minute and a half of
  a 15-minute run), and a busy minute (another job starting, a cold disk cache) would cut the
  schedule by half or more, after which the second re-size can only stretch what is left of a
  cosine already far down: it cuts the total to no less than :data:`FIRST_RESIZE_FLOOR` of it,
  and the second makes the larger cuts. Raising the total is not bounded (a total too short
  would end the run before the second re-size could correct it);
- the second at 50 %: a window five times longer averages the periodic evaluations and
  checkpoints and the slow and fast minutes of a shared machine, and it comes before the switch to
  plain crops (at 75 % of the steps for ``tiny``), which then lands where the final total puts it.
  Later re-sizes would move that switch while it runs; ``train.max_minutes`` stays the hard stop;
- the new total (:func:`fit_total`) puts the last step a reserve before the end of the budget:
  1 % of it (the final checkpoint and evaluation), 3 % of the time left (the pace of the rest
  is not the pace measured: on a shared machine it drifts by several per cent) and two steps (the
  jitter of the last steps);
- under ``torchrun`` each process measures its own pace and all take the smallest total.

The maths of a continuous re-size. Past the warm-up ``w`` the schedule is a function of its
progress ``p`` in [0, 1]: cosine ``f(p) = m + (1 - m) (1 + cos(pi p)) / 2`` (``m`` =
``min_lr_ratio``; ``step``: x0.1 at ``p`` = 0.6 and 0.85). Without re-sizing ``p(s) = (s - w) /
(T - w)``. Changing ``T`` alone would move ``p`` at once (and the learning rate with it: with
``w`` = 0 at ``s = T/2``, ``T`` -> ``1.2 T`` drops ``p`` from 0.5 to 0.42). Instead ``p`` is kept piecewise linear
in ``s`` through knots: a re-size after step ``k`` with new total ``T'`` adds the knot
``(k, p(k))`` and continues ``p(s) = p(k) + (1 - p(k)) (s - k) / (T' - k)`` for ``s >= k``. So
``p`` (hence the learning rate) is continuous at ``k``, still non-decreasing, and reaches 1 (the
final ``m lr``) exactly at ``T'``; only its slope changes. The knot sits at the scheduler's own
position ``k`` (the rate of step ``k + 1``, already set when the re-size happens, is the same
number under both totals, bit for bit), and a re-size during the warm-up only moves ``T``
(progress is 0 until ``w``, which keeps the length it was given at the start). The ``step``
schedule (``w`` = 0 in ``p``) is re-mapped the same way.

Resume: the checkpoint's plan is restored and the run goes on exactly; the re-size points not yet
passed (of ``train.max_minutes``, the limit of the whole run, with the training time already
spent) are still taken, with the pace measured anew from the resumed steps, never the earlier
session's. An explicit step count (``--steps``) is never re-sized.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable

from hiu_data.errors import HiuError
from hiu_model import distributed

log = logging.getLogger(__name__)

RESIZE_AT = (0.1, 0.5)
"""Fractions of the training budget (``train.max_minutes``) at which the schedule is re-sized."""
MIN_WINDOW_STEPS = 5
"""Steps the pace must be measured over before a re-size (a re-size point waits for them)."""
FIRST_RESIZE_FLOOR = 0.75
"""The least share of its total that the first re-size keeps when a later one is to come (its
window is short). A run whose first minute was slowed by other jobs was cut from 1,755 to 646
steps at 10 %, re-sized to 1,083 at 50 % with the cosine by then 85 % through."""
RESERVE_SHARE = 0.01
"""Share of the budget kept after the last step (the final checkpoint and evaluation)."""
RESERVE_LEFT_SHARE = 0.03
"""Share of the time left at a re-size also kept (the pace drifts from the one measured)."""
RESERVE_STEPS = 2.0
"""Steps' worth of time also kept after the last step (the jitter of the last steps)."""


def first_plain_step(steps: int, fraction: float) -> int | None:
    """The first batch (0-based; step ``n`` trains on batch ``n - 1``) of the last ``fraction``
    of ``steps`` that trains on plain crops, or None when none does."""
    plain = round(steps * fraction)
    return steps - plain if plain else None


@dataclass
class Plan:
    """The schedule of a run beyond its configuration (see the module docstring).

    Attributes:
        total: the last step (``train.steps``, re-sized or not).
        warmup: warm-up steps (fixed when the run starts).
        first_plain: the first plain-crop batch (0-based), None for none.
        knots: ``(step, progress)`` points of the re-mapped progress, ascending.
        sized: the total came from the time budget, so it may be re-sized.
        resizes: how many of :data:`RESIZE_AT` have been passed.
    """

    total: int
    warmup: int
    first_plain: int | None = None
    knots: list[tuple[int, float]] = field(default_factory=list)
    sized: bool = False
    resizes: int = 0

    @classmethod
    def of(cls, tc: Any, sized: bool = False) -> "Plan":
        """The plan of a new run of ``tc`` (TrainConfig): warm-up at most a tenth of the steps."""
        return cls(int(tc.steps), min(int(tc.warmup_steps), int(tc.steps) // 10),
                   first_plain_step(int(tc.steps), tc.final_plain_fraction), sized=sized)

    def progress(self, step: int, start: int) -> float:
        """Progress in [0, 1] of the decay that starts at step ``start``, at step ``step``."""
        s0, p0 = start, 0.0
        for s1, p1 in (*self.knots, (self.total, 1.0)):
            if step >= s1:
                s0, p0 = s1, p1
                continue
            return p0 + (p1 - p0) * (max(step - s0, 0) / max(s1 - s0, 1))
        return p0

    def resize(self, step: int, total: int, start: int, plain_fraction: float) -> None:
        """Make ``total`` the last step from step ``step`` on, progress continuous at ``step``.

        The plain crops start at the new total's switch, unless they already have (then they go
        on to the end: a re-size never turns the augmentation back on)."""
        if step > start:
            self.knots = [*[(s, p) for s, p in self.knots if s < step], (step, self.progress(step, start))]
        self.total = total
        if self.first_plain is None or self.first_plain >= step:
            self.first_plain = first_plain_step(total, plain_fraction)

    def state_dict(self) -> dict[str, Any]:
        """Plain values for the checkpoint's training state."""
        return {"total": self.total, "warmup": self.warmup, "first_plain": self.first_plain,
                "knots": [[s, p] for s, p in self.knots], "sized": self.sized, "resizes": self.resizes}

    def restore(self, saved: dict[str, Any] | None, tc: Any, keep_total: bool) -> None:
        """Continue a checkpoint's plan (``saved``; None for a checkpoint older than plans, whose
        schedule followed ``tc`` alone). ``keep_total``: the checkpoint's total and plain-crop
        switch, which become ``tc.steps``; False: ``tc.steps`` is an explicit total (its own
        switch, never re-sized); the warm-up and knots are kept either way."""
        if saved is None:
            return
        self.warmup = int(saved["warmup"])
        self.knots = [(int(s), float(p)) for s, p in saved["knots"]]
        if keep_total:
            self.total, self.first_plain = int(saved["total"]), saved["first_plain"]
            self.sized, self.resizes = bool(saved["sized"]), int(saved["resizes"])
            tc.steps = self.total
        else:
            self.total, self.first_plain = int(tc.steps), first_plain_step(int(tc.steps), tc.final_plain_fraction)
            self.sized = False


def lr_factor(step: int, cfg: Any, plan: Plan | None = None) -> float:
    """Multiplier of ``cfg.lr`` at optimizer step ``step`` (0-based) under ``cfg`` (TrainConfig)
    and ``plan`` (None: a new run's, :meth:`Plan.of`)."""
    plan = plan if plan is not None else Plan.of(cfg)
    if plan.warmup > 0 and step < plan.warmup:
        return (step + 1) / plan.warmup
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "step":
        fraction = plan.progress(step, 0)
        return 0.01 if fraction >= 0.85 else 0.1 if fraction >= 0.6 else 1.0
    if cfg.schedule == "cosine":
        progress = plan.progress(step, plan.warmup)
        return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise HiuError(f"train.schedule: {cfg.schedule!r} is not cosine, step or constant")


def fit_total(step: int, elapsed_s: float, budget_s: float, step_s: float, reserve_s: float) -> int:
    """The last step that ends ``reserve_s`` before ``budget_s`` seconds of training time.

    Args:
        step: steps done.
        elapsed_s: training time they took (seconds, every cost included).
        budget_s: the training time allowed (seconds).
        step_s: wall seconds per step from here on (> 0).
        reserve_s: seconds kept after the last step.
    Returns:
        ``step + n`` for the most steps ``n`` of ``step_s`` that fit, at least ``step + 1``.
    """
    if not step_s > 0:
        raise ValueError(f"seconds per step must be positive, got {step_s}")
    return step + max(1, math.floor((budget_s - reserve_s - elapsed_s) / step_s))


class Resizer:
    """Re-sizes ``plan`` (and ``tc.steps``) at :data:`RESIZE_AT` of ``tc.max_minutes`` when the
    plan was sized from that budget; otherwise never.

    Args:
        batches: the training stream (built by :func:`hiu_model.train_data.build_training_data`),
            whose plain-crop switch (``first_plain``) follows the plan's.
        notify: called with the one-line note of a re-size that changed the schedule.
    """

    def __init__(self, plan: Plan, tc: Any, batches: Any, notify: Callable[[str], None] | None = None) -> None:
        self.plan, self.tc, self.batches, self.notify = plan, tc, batches, notify
        batches.first_plain = plan.first_plain
        self.budget_s = 60.0 * float(tc.max_minutes)
        self.anchor: tuple[int, float] | None = None

    def step_done(self, step: int, elapsed_s: float) -> bool:
        """Note that ``step`` ended ``elapsed_s`` seconds into training; True when a re-size
        point is reached (and the pace measured over enough steps)."""
        if self.anchor is None:
            self.anchor = (step, elapsed_s)  # this session's first step: the loader's start
            return False
        if not self.plan.sized or self.budget_s <= 0 or self.plan.resizes >= len(RESIZE_AT):
            return False
        return (step - self.anchor[0] >= MIN_WINDOW_STEPS
                and elapsed_s >= RESIZE_AT[self.plan.resizes] * self.budget_s)

    def resize(self, step: int, elapsed_s: float, info: distributed.DistInfo) -> bool:
        """Re-size after ``step`` (every process at once: a collective); True when the plain-crop
        switch moved (the stream's batches read ahead are stale: restart it at ``step``).

        Every process measured its own pace: they take the smallest total (the slowest process,
        whose clock would stop them all at ``train.max_minutes``)."""
        # The pace since this session's first step (since the run's start if there is none).
        anchor_step, anchor_s = self.anchor if self.anchor is not None and step > self.anchor[0] else (0, 0.0)
        step_s = (elapsed_s - anchor_s) / max(step - anchor_step, 1)
        reserve = (RESERVE_SHARE * self.budget_s + RESERVE_LEFT_SHARE * max(self.budget_s - elapsed_s, 0.0)
                   + RESERVE_STEPS * step_s)
        proposal = fit_total(step, elapsed_s, self.budget_s, step_s, reserve) if step_s > 0 else self.plan.total
        if self.plan.resizes == 0 and elapsed_s < RESIZE_AT[-1] * self.budget_s:  # a later re-size is to come
            proposal = max(proposal, math.ceil(FIRST_RESIZE_FLOOR * self.plan.total))
        passed = sum(elapsed_s >= f * self.budget_s for f in RESIZE_AT)
        views = distributed.all_gather((proposal, passed, step_s), info)
        total = min(v[0] for v in views)
        step_s = max(v[2] for v in views)
        old_total, old_plain = self.plan.total, self.plan.first_plain
        self.plan.resizes = max(self.plan.resizes + 1, min(v[1] for v in views))
        if total != old_total:
            start = self.plan.warmup if self.tc.schedule == "cosine" else 0
            self.plan.resize(step, total, start, self.tc.final_plain_fraction)
            self.tc.steps = total
            plain = self.plan.first_plain
            note = (f"step {step} ({elapsed_s / 60:.3g} of {self.budget_s / 60:.3g} min, {step_s:.3g} s a step): "
                    f"schedule re-sized from {old_total} to {total} steps to end inside train.max_minutes"
                    + (f", plain crops from step {max(plain, step) + 1}" if plain is not None else ""))
            log.info(note)
            if self.notify is not None:
                self.notify(note)
        self.batches.first_plain = self.plan.first_plain
        return self.plan.first_plain != old_plain


def agree_budget(tc: Any, info: distributed.DistInfo) -> None:
    """Under ``torchrun`` every process sized the schedule from its own timing before the group
    was joined: all take the smallest total and time limit (the most cautious)."""
    views = distributed.all_gather((int(tc.steps), float(tc.max_minutes)), info)
    tc.steps, tc.max_minutes = min(v[0] for v in views), min(v[1] for v in views)
