"""Random occluders drawn in front of the hands: balls, boxes, sticks and irregular objects.

An occluder is a filled 2D shape painted over the finished scene, so it is in front of every
hand: each pixel it covers hides whatever hand lies there. Its coverage mask therefore removes
pixels from the hand masks and marks the joints under it as occluded, exactly (no depth test
needed). Occluders are placed over a hand's box so that they hide part of it, not all of it.
"""

from __future__ import annotations

import cv2
import numpy as np

from hiu_data.synth.backgrounds import random_colors, value_noise

KINDS: tuple[str, ...] = ("ellipse", "box", "stick", "blob")


def _shape_mask(rng: np.random.Generator, kind: str, height: int, width: int, center: tuple[float, float],
                size: float) -> np.ndarray:
    """(H, W) uint8 {0, 1} mask of one shape of characteristic size ``size`` pixels."""
    mask = np.zeros((height, width), np.uint8)
    cx, cy = int(round(center[0])), int(round(center[1]))
    angle = float(rng.uniform(0, 180))
    if kind == "ellipse":
        axes = (max(2, int(size * rng.uniform(0.4, 0.7))), max(2, int(size * rng.uniform(0.3, 0.7))))
        cv2.ellipse(mask, (cx, cy), axes, angle, 0, 360, 1, -1)
    elif kind == "box":
        rect = ((cx, cy), (size * rng.uniform(0.6, 1.4), size * rng.uniform(0.4, 1.0)), angle)
        cv2.fillPoly(mask, [cv2.boxPoints(rect).astype(np.int32)], 1)
    elif kind == "stick":
        length, theta = size * rng.uniform(1.5, 3.0), np.deg2rad(angle)
        dx, dy = 0.5 * length * np.cos(theta), 0.5 * length * np.sin(theta)
        thickness = max(2, int(size * rng.uniform(0.1, 0.25)))
        cv2.line(mask, (int(cx - dx), int(cy - dy)), (int(cx + dx), int(cy + dy)), 1, thickness)
    else:
        n = int(rng.integers(5, 10))
        radii = size * 0.5 * rng.uniform(0.5, 1.1, n)
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
        cv2.fillPoly(mask, [pts.astype(np.int32)], 1)
    return mask


def _texture(rng: np.random.Generator, height: int, width: int, mask: np.ndarray) -> np.ndarray:
    """(H, W, 3) float32 colours for an occluder: solid with shading, or noisy."""
    colors = random_colors(rng, 2, skin_like=0.1)
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    field = value_noise(rng, y1 - y0, x1 - x0, octaves=3, base_cells=2)
    if rng.random() < 0.5:
        field = 0.75 + 0.25 * field  # mostly one colour, a little shading
    patch = colors[0] * field[..., None] + colors[1] * (1.0 - field[..., None]) * (rng.random() < 0.5)
    out = np.zeros((height, width, 3), np.float32)
    out[y0:y1, x0:x1] = np.clip(patch, 0, 255)
    return out


def draw_occluders(rng: np.random.Generator, image: np.ndarray, hand_boxes: list[np.ndarray], count: int) -> np.ndarray:
    """Paint ``count`` occluders over ``image`` in place, each overlapping a random hand box.

    Args:
        image: (H, W, 3) uint8 RGB, modified in place.
        hand_boxes: (4,) x, y, w, h pixel boxes of the hands in the image.
        count: number of occluders.
    Returns:
        (H, W) bool mask of the pixels covered by any occluder.
    """
    height, width = image.shape[:2]
    covered = np.zeros((height, width), bool)
    for _ in range(count):
        if not hand_boxes:
            break
        x, y, w, h = hand_boxes[int(rng.integers(0, len(hand_boxes)))]
        extent = max(float(min(w, h)), 4.0)
        size = extent * rng.uniform(0.25, 0.6)
        # Centre on the box edge region so part of the hand stays visible.
        center = (x + w * rng.uniform(-0.1, 1.1), y + h * rng.uniform(-0.1, 1.1))
        kind = KINDS[int(rng.integers(0, len(KINDS)))]
        mask = _shape_mask(rng, kind, height, width, center, size)
        if not mask.any():
            continue
        texture = _texture(rng, height, width, mask)
        soft = cv2.GaussianBlur(mask.astype(np.float32), (3, 3), 0.6)[..., None]
        image[:] = np.clip(image * (1.0 - soft) + texture * soft, 0, 255).astype(np.uint8)
        covered |= mask.astype(bool)
    return covered
