"""Pseudo-label rows built by hand: what ``hiu-data pseudo-label`` writes, for the review tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from hiu_data.io import images, rle
from hiu_data.io.parquet import write_dataset
from hiu_data.schema import HandSample
from hiu_data.skeleton import BONES, NUM_JOINTS

PSEUDO_SOURCE = "pseudo:0123456789ab"
WIDTH, HEIGHT = 96, 72


def _hand(rng: np.random.Generator, centre: np.ndarray, scale: float) -> np.ndarray:
    """(J, 2) float32 pixels of a splayed hand: wrist at ``centre``, fingers fanning upwards."""
    points = np.zeros((NUM_JOINTS, 2), np.float64)
    points[0] = centre
    for finger in range(5):
        angle = np.deg2rad(-150 + 30 * finger) + rng.normal(0, 0.05)
        direction = np.array([np.cos(angle), np.sin(angle)])
        for k in range(4):
            points[1 + 4 * finger + k] = centre + direction * scale * (0.35 + 0.2 * k)
    return points.astype(np.float32)


def pseudo_rows(n_images: int = 6, seed: int = 0, dataset: str = "wild") -> list[HandSample]:
    """Rows of ``n_images`` PNG images; image 1 has two hands (left and right).

    Confidences decrease with the image index, so the push order is the reverse of the
    source order; one row lacks a mask and one has a missing joint.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_images):
        canvas = np.full((HEIGHT, WIDTH, 3), 40 + 20 * i, np.uint8)
        sides = ["left", "right"] if i == 1 else ["right"]
        hands = []
        for h, side in enumerate(sides):
            centre = np.array([30.0 + 36 * h + rng.uniform(-3, 3), 60.0 + rng.uniform(-2, 2)])
            kp = _hand(rng, centre, 40.0 if len(sides) == 1 else 22.0)
            mask = np.zeros((HEIGHT, WIDTH), np.uint8)
            for a, b in BONES:
                cv2.line(mask, tuple(int(v) for v in kp[a]), tuple(int(v) for v in kp[b]), 1, 3)
                cv2.line(canvas, tuple(int(v) for v in kp[a]), tuple(int(v) for v in kp[b]), (220, 180, 150), 3)
            hands.append((side, kp, mask))
        encoded = images.encode(canvas)
        for h, (side, kp, mask) in enumerate(hands):
            vis = np.full(NUM_JOINTS, 2, np.uint8)
            if i == 3:
                kp[8] = np.nan
                vis[8] = 0
            conf = float(0.95 - 0.15 * i - 0.05 * h)
            kconf = np.clip(conf + rng.normal(0, 0.03, NUM_JOINTS), 0, 1).astype(np.float32)
            sid = f"{dataset}/unlabeled/img{i:03d}" + (f"/{side}" if len(hands) > 1 else "")
            valid = ~np.isnan(kp).any(1)
            lo, hi = kp[valid].min(0), kp[valid].max(0)
            rows.append(HandSample(
                sample_id=sid, dataset=dataset, split="unlabeled", image_id=f"img{i:03d}",
                width=WIDTH, height=HEIGHT, hand_side=side, bbox=[lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]],
                visibility=vis, image_bytes=encoded, keypoints_2d=kp,
                keypoints_3d=np.concatenate([(kp - 48) / 500.0, np.full((NUM_JOINTS, 1), 0.5)], 1),
                camera_K=np.array([[500.0, 0, 48], [0, 500.0, 36], [0, 0, 1]]),
                mano_pose=rng.normal(0, 0.1, 48), mano_betas=rng.normal(0, 0.5, 10),
                mask=None if i == 4 else rle.encode(mask),
                label_source=PSEUDO_SOURCE, keypoint_confidence=kconf, confidence=conf, review_status="pending",
            ))
    return rows


def write_pseudo_dataset(out: Path, n_images: int = 6, dataset: str = "wild") -> Path:
    """``out/<dataset>/`` holding :func:`pseudo_rows`."""
    return write_dataset(pseudo_rows(n_images, dataset=dataset), out, dataset)
