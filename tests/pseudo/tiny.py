"""Untrained tiny checkpoints and random image folders for the pseudo-label tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch


def tiny_checkpoint(folder: Path, seed: int = 0) -> Path:
    """A run folder holding an untrained ``tiny`` model (weights drawn with ``seed``)."""
    from hiu_model.checkpoint import save_checkpoint
    from hiu_model.config import load_config
    from hiu_model.model import HIUDMTL

    torch.manual_seed(seed)
    cfg = load_config(None, "tiny", [])
    save_checkpoint(folder, 0, HIUDMTL(cfg.model), cfg.to_dict())
    return folder


def draw_images(folder: Path, sizes: dict[str, tuple[int, int]], seed: int) -> None:
    """Random-noise images ``folder/<relative path>`` of the given (height, width)."""
    rng = np.random.default_rng(seed)
    for rel, (h, w) in sizes.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / rel), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
