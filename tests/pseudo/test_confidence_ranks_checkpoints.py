"""A trained checkpoint's pseudo-labels score higher than a deliberately broken one's (slow:
it trains the tiny model for a few minutes of CPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hiu_data.formats import folder
from hiu_data.io.parquet import HandDataset
from hiu_model import pseudo_label as pl

pytestmark = pytest.mark.slow


def _corrupted(run: Path, out: Path) -> Path:
    """The checkpoint of ``run`` with every weight replaced by noise of the same scale."""
    from hiu_model.checkpoint import load_checkpoint, save_checkpoint

    model, cfg, _ = load_checkpoint(run)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.ndim >= 2:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * parameter.std())
    save_checkpoint(out, 0, model, cfg.to_dict())
    return out


def test_trained_checkpoint_scores_higher_than_a_broken_one(tmp_path: Path) -> None:
    from hiu_data.synth.generate import write_synth
    from hiu_model.config import load_config
    from hiu_model.train import train

    data = write_synth(tmp_path / "data", n=16, seed=5, size=160, test_fraction=0.0).path
    folder.write(HandDataset(data), tmp_path / "images")
    cfg = load_config(None, "tiny", ["train.steps=250", "train.batch_size=8", "train.lr=0.002", "train.warmup_steps=10",
                                     "train.num_workers=0", "train.device=cpu", "train.checkpoint_every=250",
                                     "train.eval_every=10000"])
    cfg.train.datasets = [str(data)]
    good = train(cfg, tmp_path / "good")
    bad = _corrupted(good, tmp_path / "bad")
    scores = {}
    for name, checkpoint in (("good", good), ("bad", bad)):
        result = pl.pseudo_label(checkpoint, tmp_path / "images", tmp_path / f"pseudo-{name}",
                                 boxes=tmp_path / "images" / folder.BOXES_FILE)
        scores[name] = np.array([row.confidence for row in HandDataset(result.path)])
    assert len(scores["good"]) == len(scores["bad"]) == len(HandDataset(data))
    assert scores["good"].mean() > scores["bad"].mean() + 0.1, scores
    assert (scores["good"] > scores["bad"]).mean() >= 0.8, scores
