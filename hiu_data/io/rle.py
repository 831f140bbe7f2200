"""Hand masks as COCO compressed RLE (pycocotools), per hand instance, full stored image.

An RLE here is ``{"size": [H, W], "counts": bytes}``, the pycocotools form with ``counts`` as
bytes (the form pycocotools returns); JSON exports decode ``counts`` to ASCII text.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils


def encode(mask: np.ndarray) -> dict[str, Any]:
    """Encode a binary mask.

    Args:
        mask: (H, W) array, nonzero = hand.
    Returns:
        ``{"size": [H, W], "counts": bytes}``.
    """
    m = np.asfortranarray((np.asarray(mask) != 0).astype(np.uint8))
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {m.shape}")
    rle = mask_utils.encode(m)
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": bytes(rle["counts"])}


def decode(rle: dict[str, Any]) -> np.ndarray:
    """Decode an RLE to an (H, W) uint8 mask of 0/1."""
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    return mask_utils.decode({"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": counts})


def area(rle: dict[str, Any]) -> int:
    """Number of foreground pixels of an RLE."""
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    return int(mask_utils.area({"size": list(rle["size"]), "counts": counts}))


def to_bbox(rle: dict[str, Any]) -> np.ndarray:
    """Tight box (4,) float32 x, y, w, h in pixels of an RLE (zeros when empty)."""
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    return np.asarray(mask_utils.toBbox({"size": list(rle["size"]), "counts": counts}), dtype=np.float32)


def to_json(rle: dict[str, Any]) -> dict[str, Any]:
    """RLE with ASCII ``counts``, as COCO JSON files store it."""
    counts = rle["counts"]
    return {"size": [int(rle["size"][0]), int(rle["size"][1])],
            "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}
