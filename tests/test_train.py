"""Training: exact resume, run-folder rules, the 2-process torchrun run, evaluation and prediction."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hiu_data.errors import HiuError, OutputExistsError
from hiu_model import checkpoint as ckpt
from hiu_model import distributed
from hiu_model.config import load_config
from hiu_model.interrupt import TrainingInterrupted
from hiu_model.run_log import read_metrics
from hiu_model import train as train_module
from hiu_model import train_data
from hiu_model.train import amp_dtype, lr_factor, silhouette_rows, train
from tests.targets.handmade import write_train_and_val

# The smallest network that still runs every branch: 32 px crops, one stack, narrow heads.
SMALL = ["model.input_size=32", "model.num_stacks=1", "model.decoder_channels=16", "model.regressor_hidden=64", "train.batch_size=2", "train.num_workers=0",
         "train.log_every=1", "train.warmup_steps=1", "train.lr=0.002", "train.silhouette_samples=1"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def hands(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_train_and_val(tmp_path_factory.mktemp("hands"))


def _config(hands: Path, *extra: str):
    return load_config(None, "tiny", [*SMALL, f"train.datasets=[{hands / 'handmade'}]", *extra])


def _losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["value"] for r in read_metrics(run) if r["tag"] == "train/loss"}


def test_resume_continues_bit_for_bit(hands: Path, tmp_path: Path) -> None:
    cfg = _config(hands, "train.steps=4", "train.checkpoint_every=2", "train.keep_checkpoints=5")
    full = train(cfg, tmp_path / "full")
    reference = _losses(full)
    assert sorted(reference) == [1, 2, 3, 4] and all(np.isfinite(list(reference.values())))

    # Interrupt after the step-2 checkpoint: drop what came later, then resume.
    cut = tmp_path / "cut"
    shutil.copytree(full, cut)
    shutil.rmtree(ckpt.checkpoint_dir(cut, 4))
    train(cfg, cut, resume=True)
    resumed = _losses(cut)
    assert sorted(resumed) == [1, 2, 3, 4]
    assert resumed[3] == reference[3] and resumed[4] == reference[4]
    from safetensors.torch import load_file

    a, b = (load_file(ckpt.checkpoint_dir(run, 4) / "model.safetensors") for run in (full, cut))
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)



def test_resuming_with_another_optimizer_or_a_damaged_log_is_named(hands: Path, tmp_path: Path) -> None:
    run = train(_config(hands, "train.steps=1"), tmp_path / "run")
    with pytest.raises(ckpt.CheckpointError, match=r"train_state\.pt: does not fit this run's optimizer"):
        train(_config(hands, "train.steps=2", "train.optimizer=adamw"), run, resume=True)
    (run / "metrics.csv").write_bytes(b"\xff\xfe not a csv")
    with pytest.raises(HiuError, match=r"metrics\.csv: not a metrics file"):
        read_metrics(run)

def test_a_signal_stops_at_a_step_with_a_checkpoint_that_resumes_exactly(hands: Path, tmp_path: Path,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    cfg = _config(hands, "train.steps=4", "train.checkpoint_every=100")
    full = train(cfg, tmp_path / "full")

    def ctrl_c_at_step_2(step: int, total: int, scalars: dict[str, float]) -> None:
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)

    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(TrainingInterrupted) as stopped:
        train(cfg, tmp_path / "cut", progress=ctrl_c_at_step_2)
    assert stopped.value.step == 2 and stopped.value.exit_code == 130
    assert ckpt.list_checkpoints(tmp_path / "cut") == [ckpt.checkpoint_dir(tmp_path / "cut", 2)]
    assert signal.getsignal(signal.SIGINT) is handler  # restored when the loop ends
    train(cfg, tmp_path / "cut", resume=True)
    assert _losses(tmp_path / "cut") == _losses(full)
    from safetensors.torch import load_file

    a, b = (load_file(ckpt.checkpoint_dir(run, 4) / "model.safetensors") for run in (full, tmp_path / "cut"))
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)
    train(cfg, tmp_path / "cut", resume=True)  # finished: says so and trains nothing
    assert "is at step 4 of train.steps=4: nothing to train" in caplog.text
    assert len(ckpt.list_checkpoints(tmp_path / "cut")) == 2 and _losses(tmp_path / "cut") == _losses(full)


def test_final_steps_train_on_plain_crops_and_resume_there(hands: Path, tmp_path: Path) -> None:
    from hiu_model.sampling import build_loader

    # 8 hands, batch 2: 4 steps per epoch; 10 steps with 30 % plain = batches 7, 8, 9 (0-based).
    # Upright crops off: a plain training crop is then the evaluation's crop, which says it is plain.
    cfg = _config(hands, "train.steps=10", "train.final_plain_fraction=0.3", "data.upright=false")
    info = distributed.DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    batches, _ = train_data.build_training_data(cfg, tmp_path, info)
    stream = batches.from_step(0)
    run = [next(stream) for _ in range(10)]
    evaluation = build_loader([hands / "handmade"], cfg.data, train=False).dataset

    def is_plain(batch: dict[str, torch.Tensor]) -> list[bool]:
        return [torch.equal(batch["crop_affine"][row], evaluation[int(batch["index"][row])]["crop_affine"])
                for row in range(len(batch["index"]))]

    assert [all(is_plain(b)) for b in run] == [False] * 7 + [True] * 3
    assert not any(any(is_plain(b)) for b in run[:7])
    resumed = batches.from_step(8)
    for batch in run[8:]:
        again = next(resumed)
        assert torch.equal(again["index"], batch["index"]) and torch.equal(again["image"], batch["image"])


def test_bad_data_leaves_no_run_folder(hands: Path, tmp_path: Path) -> None:
    cfg = _config(hands, "train.steps=1", f"train.datasets=[{hands / 'handval'}]")  # val rows only
    with pytest.raises(HiuError, match="no rows in split 'train'"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    with pytest.raises(HiuError, match="no rows in split 'train'"):
        train(cfg, kept)
    assert kept.is_dir()
    # A validation folder that is not there is named before the first step, not at the first evaluation.
    cfg = _config(hands, "train.steps=1", f"train.val=[{tmp_path / 'novalset'}]")
    with pytest.raises(HiuError, match="novalset: no such folder"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()
    # So is a validation split the folder does not have (it was found after the last step).
    cfg = _config(hands, "train.steps=1", f"train.val=[{{path: {hands / 'handval'}, split: test}}]")
    with pytest.raises(HiuError, match=r"handval: no rows in split 'test' \(it has: val 4; a source picks its split"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("bad", ["train.datasets", "train.val"])
def test_overwrite_with_bad_data_keeps_the_earlier_run(bad: str, hands: Path, tmp_path: Path) -> None:
    run = train(_config(hands, "train.steps=1"), tmp_path / "run")
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    with pytest.raises(HiuError, match="nowhere: no such folder"):
        train(_config(hands, "train.steps=1", f"{bad}=[{tmp_path / 'nowhere'}]"), run, overwrite=True)
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before


def test_run_folder_rules(hands: Path, tmp_path: Path) -> None:
    cfg = _config(hands, "train.steps=1", f"train.val=[{hands / 'handval'}]", "train.eval_samples=2")
    run = train(cfg, tmp_path / "run")
    assert (run / "config.yaml").exists() and (run / "best.json").exists()
    assert any(r["tag"] == "val/heatmap/pck@0.1" for r in read_metrics(run))
    with pytest.raises(OutputExistsError, match="--resume"):
        train(cfg, run)
    with pytest.raises(HiuError, match="nothing to resume"):
        train(cfg, tmp_path / "empty", resume=True)
    with pytest.raises(HiuError, match="no training data"):
        train(load_config(None, "tiny", SMALL), tmp_path / "nodata")

    model, loaded_cfg, info = ckpt.load_checkpoint(run)
    assert info["step"] == 1 and len(info["sha256"]) == 64 and loaded_cfg.to_dict() == cfg.to_dict()
    assert not model.training


def test_unlabeled_image_folder_gets_only_self_supervised_losses(hands: Path, tmp_path: Path) -> None:
    from hiu_data.io.images import decode, encode
    from hiu_data.io.parquet import HandDataset

    images = tmp_path / "wild"
    images.mkdir()
    records = HandDataset(hands / "handmade")
    for i in range(2):
        (images / f"{i}.png").write_bytes(encode(decode(records[i].image_bytes), ".png"))
    cfg = _config(hands, "train.steps=2", f"train.unlabeled=[{{path: {images}, weight: 3.0}}]")
    run = train(cfg, tmp_path / "run")
    assert (run / "data" / "unlabeled-0" / "folder" / "manifest.json").exists()
    self_terms = [r["value"] for r in read_metrics(run) if r["tag"] in ("train/self_mask", "train/self_keypoints")]
    assert self_terms and any(v > 0 for v in self_terms)


def test_silhouette_rows_keep_every_unlabeled_row() -> None:
    labeled = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    assert silhouette_rows(labeled, 0) is None and silhouette_rows(labeled, 6) is None
    assert silhouette_rows(labeled, 3).tolist() == [0, 1, 4]
    assert silhouette_rows(labeled, 1).tolist() == [1, 4]  # unlabeled rows need their silhouette
    assert silhouette_rows(torch.ones(6), 2).tolist() == [0, 1]



@pytest.mark.parametrize("poison", [False, True])
def test_a_non_finite_gradient_skips_the_update(poison: bool) -> None:
    from hiu_model.losses import TrainingLoss
    from hiu_model.model import HIUDMTL
    from hiu_model.optim import make_optimizer
    from tests.model_batches import synthetic_batch

    cfg = load_config(preset="tiny", overrides=["model.num_stacks=1", "train.optimizer=adamw"])
    torch.manual_seed(0)
    model = HIUDMTL(cfg.model).train()
    optimizer = make_optimizer(model, cfg.train, torch.device("cpu"))
    batch = synthetic_batch(cfg, 2, seed=3)
    if poison:  # one NaN pixel makes every gradient NaN
        batch["image"][0, 0, 5, 5] = float("nan")
    before = [p.detach().clone() for p in model.parameters()]
    params = [p for p in model.parameters() if p.requires_grad]
    total, terms, norm, updated = train_module._update(TrainingLoss(model, cfg.loss), batch, torch.ones(2), cfg,
                                                       None, optimizer, None, params)
    changed = [not torch.equal(a, p.detach()) for a, p in zip(before, model.parameters())]
    assert updated is (not poison) and bool(torch.isfinite(norm)) is (not poison)
    assert any(changed) is (not poison)
    assert all(p.grad is None for p in params)  # gradients are cleared either way
    assert "heatmap" in terms and total.ndim == 0

@pytest.mark.parametrize("amp, amx, expected", [
    ("auto", True, torch.bfloat16), ("auto", False, None), ("bf16", False, torch.bfloat16), ("off", True, None)])
def test_mixed_precision_on_the_cpu(amp: str, amx: bool, expected: torch.dtype | None,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(distributed, "cpu_has_bf16_matmul", lambda: amx)
    cfg = load_config(None, "tiny", [f"train.amp={amp}"])
    assert amp_dtype(cfg.train, torch.device("cpu")) == expected


def test_fp16_on_the_cpu_is_refused() -> None:
    with pytest.raises(HiuError, match="fp16 needs a CUDA device"):
        amp_dtype(load_config(None, "tiny", ["train.amp=fp16"]).train, torch.device("cpu"))


def test_lr_schedule() -> None:
    tc = load_config(None, "tiny", ["train.steps=100", "train.warmup_steps=10", "train.min_lr_ratio=0.1"]).train
    assert lr_factor(0, tc) == pytest.approx(0.1) and lr_factor(9, tc) == pytest.approx(1.0)
    assert lr_factor(10, tc) == pytest.approx(1.0) and lr_factor(100, tc) == pytest.approx(0.1)
    assert lr_factor(55, tc) == pytest.approx(0.55)


_RANK_SCRIPT = """
import sys, torch
from pathlib import Path
import hiu_model.model as model_module
from hiu_model.config import load_config
from hiu_model.train import train

built = []
original_init = model_module.HIUDMTL.__init__
def recording_init(self, *args, **kwargs):
    original_init(self, *args, **kwargs)
    built.append(self)
model_module.HIUDMTL.__init__ = recording_init

# One run per configuration, one after the other in the group the first one joins (left only
# at the end): argv is OUT, then the shared overrides, then "--" and each run's folder name and
# extra overrides ("name:a=1,b=2").
from hiu_model import distributed
import gc
from torch.nn.parallel import DistributedDataParallel

# At train()'s own call to leave the group: how many DDP wrappers are still alive (a reducer
# freed after the group would join gloo's threads holding the GIL, and could hang the process).
wrappers_left = []
def count_wrappers():
    gc.collect()
    wrappers_left.append(sum(isinstance(o, DistributedDataParallel) for o in gc.get_objects()))
teardown, distributed.teardown = distributed.teardown, count_wrappers
out, rest = Path(sys.argv[1]), sys.argv[2:]
cut = rest.index("--")
shared, runs = rest[:cut], rest[cut + 1:]
rank = int(__import__("os").environ["RANK"])
for run in runs:
    name, _, extra = run.partition(":")
    built.clear()
    train(load_config(None, "tiny", [*shared, *filter(None, extra.split(","))]), out / name / "run")
    torch.save({k: v.detach().clone() for k, v in built[0].named_parameters()}, out / name / f"rank{rank}.pt")
    (out / name / f"wrappers_left{rank}.txt").write_text(str(wrappers_left.pop()))
teardown()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Every parameter gets a gradient (DDP does not search for unused ones), and: loss.pof=0 leaves
# the first stack's POF head without one (DDP searches each step's graph).
TORCHRUN_CASES = {"all used": [], "some unused": ["model.num_stacks=2", "loss.pof=0"]}


@pytest.fixture(scope="module")
def torchrun_runs(hands: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Both cases trained in one 2-process torchrun group (starting a group costs seconds): the
    folder of the runs (one sub-folder per case) and the stderr of all processes."""
    out = tmp_path_factory.mktemp("torchrun")
    script = out / "rank.py"
    script.write_text(_RANK_SCRIPT)
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    runs = [f"{i}:{','.join(extra)}" for i, extra in enumerate(TORCHRUN_CASES.values())]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(_free_port()), str(script), str(out),
               *SMALL, f"train.datasets=[{hands / 'handmade'}]", "train.steps=2", "train.device=cpu", "--", *runs]
    done = subprocess.run(command, env=env, cwd=root, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done.stderr


@pytest.mark.parametrize("case", list(TORCHRUN_CASES))
def test_torchrun_two_processes_keep_equal_parameters(torchrun_runs: tuple[Path, str], case: str) -> None:
    out, stderr = torchrun_runs
    folder = out / str(list(TORCHRUN_CASES).index(case))
    # torch's note that a search for unused parameters found none, once per process
    assert "find_unused_parameters" not in stderr, stderr[-3000:]
    rank0 = torch.load(folder / "rank0.pt", weights_only=True)
    rank1 = torch.load(folder / "rank1.pt", weights_only=True)
    assert rank0.keys() == rank1.keys()
    for name in rank0:
        torch.testing.assert_close(rank0[name], rank1[name], rtol=0, atol=0, msg=name)
    # Rank 0's checkpoint holds exactly those weights.
    saved = ckpt.load_checkpoint(folder / "run")[0].state_dict()
    for name in rank0:
        torch.testing.assert_close(saved[name], rank0[name], rtol=0, atol=0)
    state = ckpt.load_train_state(ckpt.resolve_checkpoint(folder / "run"))
    assert state["world_size"] == 2 and state["step"] == 2
    # The DDP wrapper was gone before train() left the process group, on both processes.
    assert [(folder / f"wrappers_left{rank}.txt").read_text() for rank in (0, 1)] == ["0", "0"]


def test_a_run_folder_without_a_checkpoint_says_only_overwrite_helps(tmp_path: Path) -> None:
    from hiu_data.errors import HiuError, OutputExistsError
    from hiu_model.checkpoint import check_run_dir

    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.csv").write_text("step,train/loss\n")  # a run that failed before its first checkpoint
    with pytest.raises(OutputExistsError, match="stopped before its first checkpoint.*--overwrite") as refused:
        check_run_dir(run, resume=False, overwrite=False)
    assert "--resume" not in str(refused.value)
    with pytest.raises(HiuError, match="nothing to resume"):
        check_run_dir(run, resume=True, overwrite=False)
    assert check_run_dir(run, resume=False, overwrite=True) is None
