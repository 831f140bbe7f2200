"""How a training run ends: its last losses are logged and, with validation sources, the weights
it saves last are validated, whether it ends at its last step (a multiple of ``log_every`` and
``eval_every`` or not, re-sized or not) or at the time limit; a signal stop logs the losses only.
Fake clocks: every step takes a set time."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest

from hiu_model import checkpoint as ckpt
from hiu_model import schedule
from hiu_model import train as train_module
from hiu_model.config import load_config
from hiu_model.interrupt import TrainingInterrupted
from hiu_model.run_log import read_metrics
from hiu_model.train import train
from tests.targets.handmade import write_train_and_val

SMALL = ["model.input_size=32", "model.num_stacks=1", "model.decoder_channels=16", "model.regressor_hidden=64",
         "train.batch_size=2", "train.num_workers=0", "train.warmup_steps=1", "train.lr=0.002",
         "train.silhouette_samples=1", "train.eval_samples=2", "train.checkpoint_every=100",
         "train.keep_checkpoints=30"]
STEP_S = 0.25
"""Seconds each step takes on the fake clock (a binary fraction: the sums are exact)."""

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def hands(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_train_and_val(tmp_path_factory.mktemp("hands"))


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every step takes :data:`STEP_S` of the training clock (validation takes none)."""
    clock = [100.0]
    seed_step = train_module.seed_step

    def timed_step(seed: int, step: int, rank: int) -> None:
        clock[0] += STEP_S
        seed_step(seed, step, rank)

    monkeypatch.setattr(train_module, "seed_step", timed_step)
    monkeypatch.setattr(train_module, "time", SimpleNamespace(perf_counter=lambda: clock[0]))


def _config(hands: Path, *extra: str):
    return load_config(None, "tiny", [*SMALL, f"train.datasets=[{hands / 'handmade'}]", *extra])


def _series(run: Path, tag: str) -> dict[int, float]:
    return {r["step"]: r["value"] for r in read_metrics(run) if r["tag"] == tag}


def _validated_steps(run: Path) -> list[int]:
    return sorted({r["step"] for r in read_metrics(run) if r["tag"].startswith("val/")})


def _minutes(seconds: float) -> str:
    return f"train.max_minutes={seconds / 60!r}"


def test_the_time_limit_logs_the_last_losses_and_validates_the_last_weights(hands: Path, tmp_path: Path,
                                                                             fake_clock: None) -> None:
    # Step 3 ends 0.75 s in, past the 0.6 s limit; the losses are logged every 2 steps, validation
    # every 100: the run stops between both. The reference logs every step.
    reference = _series(train(_config(hands, "train.steps=10", "train.log_every=1", _minutes(0.6)), tmp_path / "ref"),
                        "train/loss")
    assert sorted(reference) == [1, 2, 3]
    cfg = _config(hands, "train.steps=10", "train.log_every=2", "train.eval_every=100",
                  f"train.val=[{hands / 'handval'}]", _minutes(0.6))
    run = train(cfg, tmp_path / "run")
    assert ckpt.list_checkpoints(run) == [ckpt.checkpoint_dir(run, 3)]
    losses = _series(run, "train/loss")
    assert sorted(losses) == [2, 3]
    assert losses[2] == pytest.approx((reference[1] + reference[2]) / 2, rel=1e-5)
    assert losses[3] == pytest.approx(reference[3], rel=1e-5)  # the last stretch: step 3 alone
    assert _series(run, "train/planned_steps")[3] == 10
    # The weights of step 3, the last saved, were validated; the only validation is the best.
    assert _validated_steps(run) == [3]
    best = ckpt.read_best(run)
    assert best is not None and best["step"] == 3
    assert best["value"] == pytest.approx(_series(run, f"val/{cfg.train.best_metric}")[3])
    assert ckpt.resolve_checkpoint(run) == ckpt.checkpoint_dir(run, 3)


def test_the_time_limit_at_a_logged_and_validated_step_does_not_repeat_them(hands: Path, tmp_path: Path,
                                                                              fake_clock: None) -> None:
    cfg = _config(hands, "train.steps=10", "train.log_every=2", "train.eval_every=2",
                  f"train.val=[{hands / 'handval'}]", _minutes(0.9))  # step 4 ends 1 s in
    run = train(cfg, tmp_path / "run")
    assert ckpt.list_checkpoints(run)[-1] == ckpt.checkpoint_dir(run, 4)
    rows = [(r["step"], r["tag"]) for r in read_metrics(run)]
    assert len(rows) == len(set(rows))  # no scalar logged twice at a step
    assert sorted(_series(run, "train/loss")) == [2, 4] and _validated_steps(run) == [2, 4]


def test_the_last_planned_step_off_the_intervals_is_logged_and_validated(hands: Path, tmp_path: Path) -> None:
    cfg = _config(hands, "train.steps=5", "train.log_every=2", "train.eval_every=3",
                  f"train.val=[{hands / 'handval'}]")
    run = train(cfg, tmp_path / "run")
    assert sorted(_series(run, "train/loss")) == [2, 4, 5] and _validated_steps(run) == [3, 5]
    assert ckpt.list_checkpoints(run)[-1] == ckpt.checkpoint_dir(run, 5)


def test_a_resized_run_logs_and_validates_its_new_last_step(hands: Path, tmp_path: Path, fake_clock: None,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schedule, "MIN_WINDOW_STEPS", 2)
    # 6 s; sized for 10 steps: at 10 % (step 3, 0.75 s in) the pace of 0.25 s a step re-sizes it to
    # 6 - 0.75 s less 0.06 s (1 %), 0.1575 s (3 % of 5.25 s) and 2 steps = 4.5325 s: 18 more steps,
    # 21 in all; at 50 % (step 12, 3 s in) 6 - 3 less 0.06, 0.09 and 2 steps leave 9 steps: 21 again.
    cfg = _config(hands, "train.steps=10", "train.log_every=4", "train.eval_every=8",
                  f"train.val=[{hands / 'handval'}]", _minutes(6.0))
    run = train(cfg, tmp_path / "run", steps_from_budget=True)
    assert cfg.train.steps == 21
    assert sorted(_series(run, "train/loss")) == [4, 8, 12, 16, 20, 21]
    assert _validated_steps(run) == [8, 16, 21] and ckpt.list_checkpoints(run)[-1] == ckpt.checkpoint_dir(run, 21)


def test_a_signal_stop_logs_the_last_losses_but_skips_validation(hands: Path, tmp_path: Path) -> None:
    cfg = _config(hands, "train.steps=4", "train.log_every=3", "train.eval_every=100",
                  f"train.val=[{hands / 'handval'}]")
    full = train(cfg, tmp_path / "full")

    def ctrl_c_at_step_2(step: int, total: int, scalars: dict[str, float]) -> None:
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted) as stopped:
        train(cfg, tmp_path / "cut", progress=ctrl_c_at_step_2)
    assert stopped.value.step == 2
    reference = _series(full, "train/loss")  # steps 3 (mean of 1-3) and 4
    losses = _series(tmp_path / "cut", "train/loss")
    assert sorted(losses) == [2]  # steps 1 and 2, which the run would otherwise never log
    assert _validated_steps(tmp_path / "cut") == [] and ckpt.read_best(tmp_path / "cut") is None
    train(cfg, tmp_path / "cut", resume=True)
    resumed = _series(tmp_path / "cut", "train/loss")
    assert sorted(resumed) == [2, 3, 4] and resumed[4] == reference[4]
    # The stretch before the stop and the one after it average to the uninterrupted window.
    assert (2 * resumed[2] + resumed[3]) / 3 == pytest.approx(reference[3], rel=1e-5)
    assert _validated_steps(tmp_path / "cut") == [4]
