"""Training runs that re-size their schedule to the time budget: exact resume, the plain-crop
switch, torchrun agreement, the command line. Fake clocks: every step takes a set time."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from hiu_model import checkpoint as ckpt
from hiu_model import distributed, schedule, train_data
from hiu_model import train as train_module
from hiu_model.config import load_config
from hiu_model.run_log import read_metrics
from hiu_model.train import train
from tests.targets.handmade import write_hands

SMALL = ["model.input_size=32", "model.num_stacks=1", "model.decoder_channels=16", "model.regressor_hidden=64",
         "train.batch_size=2", "train.num_workers=0", "train.log_every=1", "train.warmup_steps=1", "train.lr=0.002",
         "train.silhouette_samples=1"]
# 12 s of training; the schedule first sized for 10 steps, its last quarter on plain crops.
BUDGET = ["train.steps=10", "train.max_minutes=0.2", "train.final_plain_fraction=0.25",
          "train.checkpoint_every=2", "train.keep_checkpoints=30"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def hands(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_hands(tmp_path_factory.mktemp("hands"), 8, seed=3)


def _config(hands: Path, *extra: str):
    return load_config(None, "tiny", [*SMALL, *BUDGET, f"train.datasets=[{hands}]", *extra])


def _series(run: Path, tag: str) -> dict[int, float]:
    return {r["step"]: r["value"] for r in read_metrics(run) if r["tag"] == tag}


def _drop_checkpoints_after(run: Path, step: int) -> None:
    """The run folder as if the run had been stopped after its checkpoint at ``step``."""
    for folder in ckpt.list_checkpoints(run):
        if int(folder.name.split("-")[1]) > step:
            shutil.rmtree(folder)


def _seconds(step: int) -> float:
    """The fake duration of a step: 0.25 s for the first four, then 0.5 s (binary fractions:
    the sums are exact, as the comparisons of resumed runs need)."""
    return 0.25 if step <= 4 else 0.5


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int | None]]:
    """Steps take :func:`_seconds` of a fake training clock; returns the (step, plain-crop
    switch) of every stream the run starts."""
    clock = [100.0]
    seed_step = train_module.seed_step

    def timed_step(seed: int, step: int, rank: int) -> None:
        clock[0] += _seconds(step)
        seed_step(seed, step, rank)

    monkeypatch.setattr(train_module, "seed_step", timed_step)
    monkeypatch.setattr(train_module, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    monkeypatch.setattr(schedule, "MIN_WINDOW_STEPS", 2)
    streams: list[tuple[int, int | None]] = []
    from_step = train_data._Batches.from_step

    def recorded(self, step: int):  # noqa: ANN001, ANN202
        streams.append((step, self.first_plain))
        return from_step(self, step)

    monkeypatch.setattr(train_data._Batches, "from_step", recorded)
    return streams


def test_a_budget_run_resizes_twice_and_resumes_exactly(hands: Path, tmp_path: Path,
                                                        fake_clock: list[tuple[int, int | None]]) -> None:
    cfg = _config(hands)
    notes: list[str] = []
    full = train(cfg, tmp_path / "full", steps_from_budget=True, notify=notes.append)
    # Step 5 ends 1.5 s in (past 10 % of 12 s): 1.25 s over the 4 steps after the first, 0.3125 s
    # a step; 12 - 1.5 s less 0.12 s (1 %), 0.315 s (3 % of 10.5 s) and 2 steps leave 30 steps:
    # 35 in all, plain from batch 26 (the last 9). Step 14 ends 6 s in (50 %): 5.75 s / 13 steps;
    # 12 - 6 less 0.12, 0.18 and 2 steps leave 10 steps: 24, plain from batch 18.
    assert cfg.train.steps == 24 and len(notes) == 2
    assert notes[0].startswith("step 5 ") and "from 10 to 35 steps" in notes[0] and "from step 27" in notes[0]
    assert notes[1].startswith("step 14 ") and "from 35 to 24 steps" in notes[1] and "from step 19" in notes[1]
    # Each re-size restarted the stream at its step, with the new switch.
    assert fake_clock == [(0, 8), (5, 26), (14, 18)]
    planned = _series(full, "train/planned_steps")
    assert [planned[s] for s in (1, 5, 6, 14, 15, 24)] == [10, 10, 35, 35, 24, 24]
    lr = _series(full, "train/lr")
    assert sorted(lr) == list(range(1, 25)) and lr[24] == pytest.approx(0.002 * cfg.train.min_lr_ratio)
    assert all(a >= b for a, b in zip(lr.values(), list(lr.values())[1:]))  # decays throughout, no jump
    state = ckpt.load_train_state(ckpt.checkpoint_dir(full, 14))
    assert state["schedule"]["total"] == 24 and state["schedule"]["resizes"] == 2
    reference = _series(full, "train/loss")

    # After both re-sizes: the resumed run is the same run.
    cut = tmp_path / "cut"
    shutil.copytree(full, cut)
    _drop_checkpoints_after(cut, 16)
    fake_clock.clear()
    resumed_cfg = _config(hands)  # the configuration's 10 steps: the checkpoint's 24 win
    train(resumed_cfg, cut, resume=True, steps_from_budget=True)
    assert resumed_cfg.train.steps == 24 and fake_clock == [(16, 18)]
    assert _series(cut, "train/loss") == reference
    from safetensors.torch import load_file

    a, b = (load_file(ckpt.checkpoint_dir(run, 24) / "model.safetensors") for run in (full, cut))
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)

    # Between the re-sizes: the same steps up to the pending one, which measures its own pace
    # from the resumed steps (0.5 s each after step 11), never the earlier session's:
    # 12 - 6 less 0.12, 0.18 and 2 steps leave 9 steps of 0.5 s: 23 in all, the last 6 plain.
    between = tmp_path / "between"
    shutil.copytree(full, between)
    _drop_checkpoints_after(between, 10)
    fake_clock.clear()
    between_cfg = _config(hands)
    train(between_cfg, between, resume=True, steps_from_budget=True)
    assert between_cfg.train.steps == 23 and fake_clock == [(10, 26), (14, 17)]
    losses = _series(between, "train/loss")
    assert [losses[s] for s in range(1, 15)] == [reference[s] for s in range(1, 15)]


def test_an_explicit_step_count_is_never_resized(hands: Path, tmp_path: Path,
                                                  fake_clock: list[tuple[int, int | None]]) -> None:
    cfg = _config(hands)
    train(cfg, tmp_path / "run")  # steps_from_budget=False: train.steps was asked for
    assert cfg.train.steps == 10 and fake_clock == [(0, 8)]
    assert set(_series(tmp_path / "run", "train/planned_steps").values()) == {10}


def test_the_stream_restarted_with_a_new_switch_is_the_resumed_stream(hands: Path, tmp_path: Path) -> None:
    from hiu_model.sampling import build_loader

    # 8 hands, batch 2: 4 steps per epoch. 10 steps, 30 % plain: batches 7-9; re-sized after
    # step 5 to 14 steps: batches 10-13. The second epoch (batches 4-7) was started with the old
    # switch: its batch 7 must not come plain from the batches read ahead.
    # Upright crops off: a plain training crop is then the evaluation's crop, which says it is plain.
    cfg = _config(hands, "train.final_plain_fraction=0.3", "train.num_workers=1", "data.upright=false")
    info = distributed.DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    batches, _ = train_data.build_training_data(cfg, tmp_path, info)
    try:
        stream = batches.from_step(0)
        run = [next(stream) for _ in range(5)]
        batches.first_plain = schedule.first_plain_step(14, 0.3)
        stream = batches.from_step(5)  # the batches read ahead by the worker are dropped
        run += [next(stream) for _ in range(9)]
        evaluation = build_loader([hands], cfg.data, train=False).dataset

        def plain(batch: dict[str, torch.Tensor]) -> bool:
            return all(torch.equal(batch["crop_affine"][row], evaluation[int(batch["index"][row])]["crop_affine"])
                       for row in range(len(batch["index"])))

        assert [plain(b) for b in run] == [False] * 10 + [True] * 4
        resumed = batches.from_step(8)  # a run resumed with the new switch reads the same batches
        for batch in run[8:]:
            again = next(resumed)
            assert torch.equal(again["index"], batch["index"]) and torch.equal(again["image"], batch["image"])
    finally:
        batches.close()


_RANK_SCRIPT = """
import sys, torch
from pathlib import Path
from types import SimpleNamespace
import hiu_model.model as model_module
from hiu_model import schedule
from hiu_model import train as train_module
from hiu_model.config import load_config

rank = int(__import__("os").environ["RANK"])
built = []
original_init = model_module.HIUDMTL.__init__
def recording_init(self, *args, **kwargs):
    original_init(self, *args, **kwargs)
    built.append(self)
model_module.HIUDMTL.__init__ = recording_init
# Each process its own clock: rank 0's steps take 0.25 s, rank 1's 0.5 s.
clock = [0.0]
seed_step = train_module.seed_step
def timed_step(seed, step, r):
    clock[0] += 0.25 * (rank + 1)
    seed_step(seed, step, r)
train_module.seed_step = timed_step
train_module.time = SimpleNamespace(perf_counter=lambda: clock[0])
schedule.MIN_WINDOW_STEPS = 2

out, overrides = Path(sys.argv[1]), sys.argv[2:]
cfg = load_config(None, "tiny", overrides + [f"train.steps={10 + 2 * rank}"])  # each timed its own
train_module.train(cfg, out / "run", steps_from_budget=True)
torch.save({"steps": cfg.train.steps, **{k: v.detach().clone() for k, v in built[0].named_parameters()}},
           out / f"rank{rank}.pt")
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_processes_agree_on_the_resized_total(hands: Path, tmp_path: Path) -> None:
    script = tmp_path / "rank.py"
    script.write_text(_RANK_SCRIPT)
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(_free_port()), str(script), str(tmp_path),
               *SMALL, *BUDGET[1:], f"train.datasets=[{hands}]", "train.device=cpu"]
    done = subprocess.run(command, env=env, cwd=root, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    # Both start from the smaller estimate (10 steps) and re-size at step 3, when rank 1's clock
    # passes 1.2 s: rank 0 finds room for 44 steps (0.25 s each), rank 1 for 21 (0.5 s each; 12 -
    # 1.5 less 0.12, 0.315 and 2 steps leave 18). Both take 21, the slower clock's, and keep it at
    # step 12 (6 s; rank 1 still finds room for 9 more steps, rank 0 for 32).
    assert rank0.pop("steps") == rank1.pop("steps") == 21
    for name in rank0:
        torch.testing.assert_close(rank0[name], rank1[name], rtol=0, atol=0, msg=name)
    state = ckpt.load_train_state(ckpt.resolve_checkpoint(tmp_path / "run"))
    assert state["step"] == 21 and state["schedule"]["total"] == 21 and state["schedule"]["resizes"] == 2
