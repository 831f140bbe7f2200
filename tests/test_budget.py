"""Time budgets: the step estimate behind ``hiu-data train --minutes``."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from hiu_model import budget, train_data
from hiu_model.budget import estimate_steps, load_seconds, step_seconds
from hiu_model.config import load_config
from tests.targets.handmade import write_hands

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("tasks", ["[heatmap]", "[mask]", "[heatmap,mask,pof]", "[heatmap,mesh]"])
def test_estimate_steps_times_any_task_set(tasks: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A fake clock that advances 0.25 s per reading: every timed step lasts 0.25 s.
    readings = iter(range(1000))
    monkeypatch.setattr(budget, "time", SimpleNamespace(perf_counter=lambda: 0.25 * next(readings)))
    cfg = load_config(None, "tiny", ["model.input_size=64", "model.num_stacks=1", f"model.tasks={tasks}",
                                     f"data.upright={'heatmap' in tasks}"])  # the upright search reads heat-maps
    per_step = 0.25 * 1.45  # the measured step, times the loader and logging overhead factor
    assert estimate_steps(cfg, 1.0, 2) == int(60 / per_step)
    assert estimate_steps(cfg, 0.001, 2) == 10  # never fewer than ten steps


def test_a_gpu_step_costs_the_slower_of_compute_and_loading() -> None:
    # The loader's workers overlap the device's work; on the CPU they compete for the cores.
    assert step_seconds(0.02, 0.05, "cuda") == pytest.approx(0.05 * 1.1)
    assert step_seconds(0.05, 0.02, "cuda") == pytest.approx(0.05 * 1.1)
    assert step_seconds(0.05, None, "cuda") == pytest.approx(0.05 * 1.1)
    assert step_seconds(0.3, None, "cpu") == pytest.approx(0.3 * 1.45)


def test_load_seconds_reads_real_batches(tmp_path: Path) -> None:
    data = write_hands(tmp_path / "data", 6, seed=2)
    cfg = load_config(None, "tiny", ["model.input_size=64", "train.num_workers=0",
                                     f"train.datasets=[{data}]"])
    assert 0.0 < load_seconds(cfg, 2, torch.device("cpu"), batches=3) < 5.0
    cfg.train.datasets = []
    assert load_seconds(cfg, 2, torch.device("cpu")) is None


def test_the_timing_is_cut_short_and_counted_in_a_small_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    # The fake clock of the test above: a timed step lasts 0.25 s, the whole timing of ten steps
    # several seconds, more than the 6-second budget asked for here.
    readings = iter(range(1000))
    monkeypatch.setattr(budget, "time", SimpleNamespace(perf_counter=lambda: 0.25 * next(readings)))
    cfg = load_config(None, "tiny", ["model.input_size=64", "model.num_stacks=1"])
    fit = budget.fit_budget(cfg, 0.1, 2, spent_seconds=0.5)
    assert 0.5 < fit.timing_seconds < 3.0  # ten timed steps would take about 6 s here
    assert fit.train_minutes * 60 + fit.timing_seconds == pytest.approx(6.0, abs=0.01)
    assert fit.steps == max(10, int((6.0 - fit.timing_seconds) / (0.25 * 1.45)))
    # A budget the timing uses up still trains one step (and saves it), never without a limit.
    assert budget.fit_budget(cfg, 0.01, 2, spent_seconds=5.0).train_minutes > 0


def test_a_budget_left_shorter_than_a_step_stops_the_run_after_its_first_step(monkeypatch: pytest.MonkeyPatch) -> None:
    # 0.3 s of 0.6 are left after the timing, less than the 5-second step it measured: what is
    # left is not the limit, since a first step faster than it would let a second one start.
    readings = iter([0.0, 0.3])
    monkeypatch.setattr(budget, "time", SimpleNamespace(perf_counter=lambda: next(readings)))
    monkeypatch.setattr(budget, "time_step", lambda cfg, batch_size, max_seconds=None: 5.0)
    fit = budget.fit_budget(load_config(None, "tiny", []), 0.01, 2)
    assert fit.used_up
    assert 0 < fit.train_minutes * 60 < 0.001  # no step is that fast, and 0 would mean no limit


@pytest.mark.parametrize(("cores", "device", "world_size", "expected"), [
    (2, "cpu", 1, 0),  # the workers would take the cores torch computes on
    (4, "cpu", 1, 0),
    (16, "cpu", 1, 2),
    (16, "cpu", 4, 0),  # four torchrun processes of 4 cores each
    (2, "cuda", 1, 2),  # the accelerator leaves the CPU to the loader
])
def test_loader_workers_default_to_the_main_process_on_a_small_cpu(
        cores: int, device: str, world_size: int, expected: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(train_data.os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert train_data.loader_workers(None, torch.device(device), world_size) == expected
    assert train_data.loader_workers(3, torch.device(device), world_size) == 3  # a set value is kept
