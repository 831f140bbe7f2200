"""TensorBoard event files of a training run: the scalars of metrics.csv, one history across a resume."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hiu_model import checkpoint as ckpt
from hiu_model.config import load_config
from hiu_model.train import train
from tests.targets.handmade import write_hands
from tests.tensorboard_events import csv_scalars, tensorboard_scalars

SMALL = ["model.input_size=32", "model.num_stacks=1", "model.decoder_channels=16", "model.regressor_hidden=64",
         "train.batch_size=2", "train.num_workers=0", "train.log_every=1", "train.warmup_steps=1",
         "train.silhouette_samples=1", "train.device=cpu"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def hands(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hands")
    write_hands(root, 8, seed=3, dataset="handmade")
    write_hands(root, 2, seed=4, dataset="valone", split="val")
    write_hands(root, 2, seed=5, dataset="valtwo", split="val")
    return root


def test_event_files_hold_the_csv_scalars_and_one_history_after_resume(hands: Path, tmp_path: Path) -> None:
    cfg = load_config(None, "tiny", [*SMALL, f"train.datasets=[{hands / 'handmade'}]",
                                     f"train.val=[{hands / 'valone'}, {hands / 'valtwo'}]", "train.steps=4",
                                     "train.eval_every=2", "train.checkpoint_every=2", "train.keep_checkpoints=5"])
    full = train(cfg, tmp_path / "full")
    logged = csv_scalars(full)
    assert tensorboard_scalars(full) == logged
    steps_of = lambda prefix: sorted({step for tag, step in logged if tag.startswith(prefix)})  # noqa: E731
    assert steps_of("train/loss") == [1, 2, 3, 4]
    # the periodic evaluation: overall and per validation set
    for prefix in ("val/heatmap/pck@0.1", "val/mask/mask_iou", "val/valone/heatmap/pck@0.1", "val/valtwo/mesh/epe_px"):
        assert steps_of(prefix) == [2, 4], prefix

    # Stopped after the step-2 checkpoint, having logged steps 3 and 4: the resumed run replaces them.
    cut = tmp_path / "cut"
    shutil.copytree(full, cut)
    shutil.rmtree(ckpt.checkpoint_dir(cut, 4))
    train(cfg, cut, resume=True)
    resumed = csv_scalars(cut)
    assert sorted(resumed) == sorted(logged)
    assert tensorboard_scalars(cut) == resumed
