"""Hand-made labelled hands for the target and data-pipeline tests (and the benches).

A 3D stick hand (adult bone lengths, random finger flexion and global
rotation) is placed in front of a pinhole camera, projected, and drawn with OpenCV: thick skin
coloured bones and a palm polygon over a textured background. The mask is the same drawing.
Every label is exact: 2D = projection of 3D with K, pixel centres at +0.5.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from hiu_data.io import images, rle
from hiu_data.io.parquet import write_dataset
from hiu_data.schema import HandSample
from hiu_data.skeleton import BONES, FINGERS, NUM_JOINTS

# Right hand, palm towards the camera, fingers up (-y): the thumb is on the +x side.
_MCP = {"thumb": (0.022, -0.025, 0.0), "index": (0.024, -0.085, 0.0), "middle": (0.003, -0.09, 0.0),
        "ring": (-0.016, -0.085, 0.0), "little": (-0.034, -0.075, 0.0)}
_LENGTHS = {"thumb": (0.040, 0.032, 0.026), "index": (0.040, 0.023, 0.018), "middle": (0.045, 0.027, 0.019),
            "ring": (0.042, 0.026, 0.019), "little": (0.033, 0.018, 0.017)}
_SPREAD = {"thumb": 0.9, "index": 0.12, "middle": 0.0, "ring": -0.12, "little": -0.25}


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    return cv2.Rodrigues((np.asarray(axis, float) * angle).reshape(3, 1))[0]


def hand_skeleton(rng: np.random.Generator, side: str = "right") -> np.ndarray:
    """(21, 3) metres in a hand frame centred near the palm, wrist at the origin."""
    joints = np.zeros((NUM_JOINTS, 3))
    for finger, chain in FINGERS.items():
        base = np.array(_MCP[finger])
        direction = np.array([math.sin(_SPREAD[finger]), -math.cos(_SPREAD[finger]), 0.0])
        lateral = np.cross(direction, [0.0, 0.0, 1.0])
        joints[chain[0]] = base
        point = base
        for k, length in enumerate(_LENGTHS[finger]):
            flex = rng.uniform(0.0, 1.1 if k == 0 else 1.3)
            direction = _rotation(lateral, -flex * 0.8) @ direction  # curl towards the camera
            point = point + length * direction
            joints[chain[k + 1]] = point
    if side == "left":
        joints[:, 0] *= -1
    return joints


def make_hand(seed: int, side: str = "right", size: tuple[int, int] = (320, 240), labels: str = "full",
              jpeg: bool = True, split: str = "train", dataset: str = "handmade") -> HandSample:
    """One drawn hand with exact labels.

    Args:
        labels: "full" (2D, 3D, K, MANO, mask), "2d" (2D and mask only) or "none" (unlabeled
            row: only the box).
    """
    rng = np.random.default_rng(seed)
    width, height = size
    focal = 1.1 * max(width, height)
    K = np.array([[focal, 0, width / 2 + rng.uniform(-5, 5)], [0, focal, height / 2 + rng.uniform(-5, 5)], [0, 0, 1]])
    rot = _rotation(rng.normal(size=3) / np.sqrt(3), rng.uniform(0, 0.6))
    depth = rng.uniform(0.45, 0.6)
    shift = np.array([rng.uniform(-0.03, 0.03), rng.uniform(0.0, 0.04) + 0.05, depth])
    kp3 = hand_skeleton(rng, side) @ rot.T + shift
    uvw = kp3 @ K.T
    kp2 = uvw[:, :2] / uvw[:, 2:]

    yy, xx = np.mgrid[0:height, 0:width]
    background = np.stack([80 + 40 * np.sin(xx / 17.0 + seed), 90 + 30 * np.cos(yy / 23.0), 70 + 0 * xx], -1)
    image = np.clip(background + rng.normal(0, 12, (height, width, 3)), 0, 255).astype(np.uint8)
    mask = np.zeros((height, width), np.uint8)
    skin = tuple(int(v) for v in rng.integers([170, 110, 80], [240, 170, 130]))
    shift_bits = 4  # draw with sub-pixel precision: cv2 puts pixel centres at integers
    pts = np.round((kp2 - 0.5) * (1 << shift_bits)).astype(np.int32)
    thickness = max(3, int(0.011 * focal / depth))
    palm = pts[[0, 1, 5, 9, 13, 17]]
    for canvas, colour in ((image, skin), (mask, 1)):
        cv2.fillConvexPoly(canvas, cv2.convexHull(palm), colour, cv2.LINE_8, shift_bits)
        for parent, child in BONES:
            cv2.line(canvas, tuple(pts[parent]), tuple(pts[child]), colour, thickness, cv2.LINE_8, shift_bits)
    ys, xs = np.nonzero(mask)
    bbox = [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()]
    data = images.encode(image, ".jpg" if jpeg else ".png", quality=92)
    sample = HandSample(
        sample_id=f"{dataset}/{split}/{seed:06d}", dataset=dataset, split=split, image_id=f"{seed:06d}",
        width=width, height=height, hand_side=side, bbox=bbox, visibility=np.full(NUM_JOINTS, 2),
        image_bytes=data, subset="stick",
    )
    if labels in ("full", "2d"):
        sample.keypoints_2d = kp2.astype(np.float32)
        sample.mask = rle.encode(mask)
    else:
        sample.visibility = np.zeros(NUM_JOINTS, np.uint8)
    if labels == "full":
        sample.keypoints_3d = kp3.astype(np.float32)
        sample.camera_K = K.astype(np.float32)
        sample.mano_pose = rng.normal(0, 0.3, 48).astype(np.float32)
        sample.mano_betas = rng.normal(0, 1, 10).astype(np.float32)
    return sample


def write_hands(out: Path, n: int, seed: int = 0, dataset: str = "handmade", **kwargs: object) -> Path:
    """Write ``n`` hands (alternating right / left) as ``out/<dataset>/``; returns the folder."""
    samples = (make_hand(seed * 100003 + i, "left" if i % 2 else "right", dataset=dataset, **kwargs) for i in range(n))
    return write_dataset(samples, out, dataset)


def write_train_and_val(root: Path) -> Path:
    """8 training hands as ``root/handmade/`` and 4 validation hands as ``root/handval/``
    (split ``val``), the data of the training tests; returns ``root``."""
    write_hands(root, 8, seed=3, dataset="handmade")
    write_hands(root, 4, seed=4, dataset="handval", split="val")
    return root
