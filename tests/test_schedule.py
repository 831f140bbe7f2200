"""The learning-rate schedule and its re-sizing to a time budget (:mod:`hiu_model.schedule`)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from hiu_model import distributed, schedule
from hiu_model.config import load_config
from hiu_model.schedule import Plan, Resizer, first_plain_step, fit_total, lr_factor

SINGLE = distributed.DistInfo(rank=0, world_size=1, local_rank=0, device=None)  # type: ignore[arg-type]


def _tc(*extra: str):
    return load_config(None, "tiny", ["train.steps=100", "train.warmup_steps=10", "train.min_lr_ratio=0.1",
                                      "train.final_plain_fraction=0.25", *extra]).train


def test_fit_total_puts_the_last_step_inside_the_budget() -> None:
    # 60 s spent after 100 steps, 300 s allowed, 5 s kept: 235 s of 0.5 s steps.
    assert fit_total(100, 60.0, 300.0, 0.5, 5.0) == 100 + 470
    assert fit_total(100, 60.0, 300.0, 0.7, 5.0) == 100 + 335  # 235 / 0.7 = 335.7
    # Over the budget already, or less than a step left: one more step, never fewer.
    assert fit_total(100, 320.0, 300.0, 0.5, 5.0) == 101
    assert fit_total(100, 294.9, 300.0, 0.5, 5.0) == 101
    with pytest.raises(ValueError):
        fit_total(100, 60.0, 300.0, 0.0, 5.0)


def test_a_resize_keeps_the_learning_rate_continuous_and_ends_the_decay_at_the_new_total() -> None:
    tc = _tc()
    plan = Plan.of(tc)
    assert (plan.total, plan.warmup, plan.first_plain) == (100, 10, 75)
    before = [lr_factor(s, tc, plan) for s in range(41)]
    plan.resize(40, 160, start=plan.warmup, plain_fraction=0.25)
    # The rate at the re-size is the same number, bit for bit (the scheduler set it already);
    # the steps before follow the same line.
    assert lr_factor(40, tc, plan) == before[40]
    assert [lr_factor(s, tc, plan) for s in range(41)] == pytest.approx(before, rel=1e-12)
    # Progress at 40 was 30/90 = 1/3; it now reaches 1 at 160: at 100 it is 1/3 + 2/3 * 60/120.
    assert lr_factor(100, tc, plan) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 2 / 3)))
    assert lr_factor(160, tc, plan) == pytest.approx(0.1) and lr_factor(159, tc, plan) > 0.1
    rates = [lr_factor(s, tc, plan) for s in range(10, 170)]
    assert all(a >= b for a, b in zip(rates, rates[1:]))
    # Only the total changed, the rate would jump at the re-size (progress 30/150, not 1/3).
    naive = Plan.of(_tc("train.steps=160"))
    naive.warmup = 10
    assert lr_factor(41, tc, naive) - lr_factor(41, tc, plan) > 0.05
    # A second re-size, shorter: continuous again, the decay ends at the shorter total.
    at_90 = lr_factor(90, tc, plan)
    plan.resize(90, 120, start=plan.warmup, plain_fraction=0.25)
    assert lr_factor(90, tc, plan) == at_90 and lr_factor(120, tc, plan) == pytest.approx(0.1)
    assert [lr_factor(s, tc, plan) for s in range(41)] == pytest.approx(before, rel=1e-12)


def test_a_resize_in_the_warm_up_only_moves_the_end() -> None:
    tc = _tc()
    plan = Plan.of(tc)
    plan.resize(5, 200, start=plan.warmup, plain_fraction=0.25)
    assert plan.knots == [] and plan.warmup == 10  # the warm-up keeps its length
    assert lr_factor(4, tc, plan) == pytest.approx(0.5) and lr_factor(10, tc, plan) == pytest.approx(1.0)
    assert lr_factor(105, tc, plan) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))


def test_the_step_schedule_is_remapped_too() -> None:
    tc = _tc("train.schedule=step")
    plan = Plan.of(tc)
    plan.resize(50, 200, start=0, plain_fraction=0.25)
    # Progress 0.5 at step 50, then 0.5 / 150 a step: 0.6 at step 80, 0.85 at step 155.
    assert lr_factor(79, tc, plan) == 1.0 and lr_factor(80, tc, plan) == 0.1
    assert lr_factor(154, tc, plan) == 0.1 and lr_factor(155, tc, plan) == 0.01


def test_the_plain_crop_switch_follows_the_new_total_until_it_has_begun() -> None:
    plan = Plan.of(_tc())
    plan.resize(40, 160, start=10, plain_fraction=0.25)
    assert plan.first_plain == 120  # the last 40 of 160 steps
    plan.resize(60, 70, start=10, plain_fraction=0.25)
    assert plan.first_plain == 52  # behind step 60: plain crops from the next step on
    plain = Plan.of(_tc())
    plain.resize(80, 200, start=10, plain_fraction=0.25)  # the plain crops began at batch 75
    assert plain.first_plain == 75
    assert first_plain_step(10, 0.3) == 7 and first_plain_step(10, 0.0) is None


def test_a_checkpoint_plan_is_continued_or_replaced_by_an_explicit_total() -> None:
    tc = _tc()
    plan = Plan.of(tc, sized=True)
    plan.resize(40, 160, start=10, plain_fraction=0.25)
    plan.resizes = 1
    saved = plan.state_dict()

    resumed_tc = _tc()
    resumed = Plan.of(resumed_tc)
    resumed.restore(saved, resumed_tc, keep_total=True)
    assert resumed == plan and resumed_tc.steps == 160
    explicit_tc = _tc("train.steps=300")
    explicit = Plan.of(explicit_tc)
    explicit.restore(saved, explicit_tc, keep_total=False)
    assert (explicit.total, explicit.first_plain, explicit.sized, explicit.warmup) == (300, 225, False, 10)
    assert explicit.knots == plan.knots and explicit_tc.steps == 300
    old_tc = _tc()
    old = Plan.of(old_tc)
    old.restore(None, old_tc, keep_total=True)  # a checkpoint from before plans: as configured
    assert old == Plan.of(_tc())


def _resizer(tc, sized: bool) -> tuple[Resizer, SimpleNamespace]:
    batches = SimpleNamespace(first_plain=None)
    return Resizer(Plan.of(tc, sized=sized), tc, batches), batches


def test_resize_points_wait_for_the_pace_and_an_explicit_total_is_never_resized(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schedule, "MIN_WINDOW_STEPS", 3)
    tc = _tc("train.max_minutes=1")  # 60 s: re-size points at 6 s and 30 s
    sizer, batches = _resizer(tc, sized=True)
    assert batches.first_plain == 75
    # 1 s a step; the first step (the loader's start) took 2 s and is not part of the pace.
    elapsed = {step: 1.0 + step for step in range(1, 101)}
    due = [step for step in range(1, 40) if sizer.step_done(step, elapsed[step])]
    assert due[0] == 5  # 6 s at step 5, 4 steps measured
    # 54 s left, less 0.6 s (1 % of 60), 1.62 s (3 % of 54) and 2 steps: 49 more steps, 54 in
    # all; a first re-size keeps at least 75 % of the total (its window is short).
    assert sizer.resize(5, elapsed[5], SINGLE)
    assert tc.steps == sizer.plan.total == 75 and batches.first_plain == 75 - 19
    assert [s for s in range(6, 40) if sizer.step_done(s, elapsed[s])][0] == 29
    # On pace, with less time left to be unsure of: 30 - 0.6 - 0.9 - 2 = 26.5 s, 26 more steps.
    assert sizer.resize(29, elapsed[29], SINGLE)
    assert tc.steps == 55 and batches.first_plain == 55 - 14 and sizer.plan.resizes == 2
    assert not any(sizer.step_done(s, elapsed[s]) for s in range(30, 55))

    fixed_tc = _tc("train.max_minutes=1")
    fixed, _ = _resizer(fixed_tc, sized=False)
    assert not any(fixed.step_done(s, elapsed[s]) for s in range(1, 101)) and fixed_tc.steps == 100


def test_only_the_first_resize_is_bounded_and_only_when_a_second_is_to_come(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schedule, "MIN_WINDOW_STEPS", 3)
    tc = _tc("train.max_minutes=1", "train.steps=200")
    sizer, _ = _resizer(tc, sized=True)
    for step in range(1, 6):
        sizer.step_done(step, 1.0 + step)  # 1 s a step: about 55 steps fit, not 200
    sizer.resize(5, 6.0, SINGLE)
    assert tc.steps == 150  # 75 % of 200
    for step in range(6, 30):
        sizer.step_done(step, 1.0 + step)
    sizer.resize(29, 30.0, SINGLE)
    assert tc.steps == 55  # the second re-size is not bounded

    # A first re-size met past the last re-size point (a slow first window, a resumed run) is the
    # last one: not bounded either.
    late_tc = _tc("train.max_minutes=1", "train.steps=200")
    late, _ = _resizer(late_tc, sized=True)
    for step in range(1, 6):
        late.step_done(step, 25.0 + 2.0 * step)
    late.resize(5, 35.0, SINGLE)
    assert late_tc.steps < 150 and late.plan.resizes == 2


def test_a_resize_that_changes_the_total_says_so_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schedule, "MIN_WINDOW_STEPS", 3)
    tc = _tc("train.max_minutes=1")
    notes: list[str] = []
    sizer = Resizer(Plan.of(tc, sized=True), tc, SimpleNamespace(first_plain=None), notes.append)
    for step in range(1, 6):
        sizer.step_done(step, 4.0 + 0.5 * (step - 1))  # a first step of 4 s, then 0.5 s a step
    sizer.resize(5, 6.0, SINGLE)
    # 54 s left, less 0.6 s, 1.62 s and 2 steps: 101 steps of 0.5 s; the last 26 of 106 plain.
    assert notes == ["step 5 (0.1 of 1 min, 0.5 s a step): schedule re-sized from 100 to 106 steps to end "
                     "inside train.max_minutes, plain crops from step 81"]
