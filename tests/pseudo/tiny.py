"""Untrained tiny checkpoints and random image folders for the pseudo-label tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch


# The tiny preset shrunk to 64 px crops and one stack: what is tested is the bookkeeping of
# pseudo-labelling (rows, chunks, shards, merges, updates), the same for any network, and the
# preset's own 128 px, two-stack network made most of these tests' time.
SMALL = ["model.input_size=64", "model.num_stacks=1"]


def tiny_checkpoint(folder: Path, seed: int = 0) -> Path:
    """A run folder holding an untrained ``tiny`` model shrunk by :data:`SMALL` (weights drawn
    with ``seed``)."""
    from hiu_model.checkpoint import save_checkpoint
    from hiu_model.config import load_config
    from hiu_model.model import HIUDMTL

    torch.manual_seed(seed)
    cfg = load_config(None, "tiny", SMALL)
    save_checkpoint(folder, 0, HIUDMTL(cfg.model), cfg.to_dict())
    return folder


def draw_images(folder: Path, sizes: dict[str, tuple[int, int]], seed: int) -> None:
    """Random-noise images ``folder/<relative path>`` of the given (height, width)."""
    rng = np.random.default_rng(seed)
    for rel, (h, w) in sizes.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / rel), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
