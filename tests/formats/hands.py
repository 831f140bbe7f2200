"""Plausible 3D hands and camera-ready records for the format tests and benches.

:func:`random_hand` gives HAND21 keypoints of an adult-sized hand (metres) with random finger
flexion, global rotation and position in front of a camera, so projections land inside the
image and bone lengths pass ``validate``; format tests turn them into records of each
dataset's kind.
"""

from __future__ import annotations

import numpy as np

from hiu_data.io import images, rle
from hiu_data.skeleton import FINGERS

# Right hand, palm towards the camera, fingers up (-y), wrist at the origin; metres.
_TEMPLATE = np.array([
    [0.0, 0.0, 0.0],
    [0.025, -0.020, 0.0], [0.045, -0.045, -0.005], [0.060, -0.070, -0.010], [0.070, -0.090, -0.012],
    [0.022, -0.085, 0.0], [0.024, -0.125, 0.0], [0.025, -0.150, 0.0], [0.026, -0.172, 0.0],
    [0.003, -0.090, 0.0], [0.003, -0.135, 0.0], [0.003, -0.163, 0.0], [0.003, -0.186, 0.0],
    [-0.015, -0.085, 0.0], [-0.017, -0.125, 0.0], [-0.018, -0.152, 0.0], [-0.019, -0.174, 0.0],
    [-0.030, -0.075, 0.0], [-0.034, -0.105, 0.0], [-0.036, -0.125, 0.0], [-0.038, -0.143, 0.0],
])


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def hand_pose(rng: np.random.Generator, side: str = "right", max_flex_deg: float = 50.0) -> np.ndarray:
    """(21, 3) float64 hand-local keypoints (metres, wrist at the origin), randomly flexed and rotated."""
    pts = _TEMPLATE * rng.uniform(0.9, 1.1)
    for chain in FINGERS.values():
        for k in range(len(chain) - 1):
            pivot = pts[chain[k]].copy()
            # flexion curls the finger towards the palm, which faces the camera (-z)
            rot = _rotation(np.array([1.0, 0.0, 0.0]), np.deg2rad(rng.uniform(0, max_flex_deg)))
            rest = list(chain[k + 1:])
            pts[rest] = (pts[rest] - pivot) @ rot.T + pivot
    axis = rng.normal(size=3)
    pts = pts @ _rotation(axis, rng.uniform(-0.6, 0.6)).T
    if side == "left":
        pts[:, 0] *= -1
    return pts


def random_hand(rng: np.random.Generator, image_size: tuple[int, int], K: np.ndarray | None = None,
                side: str = "right", fill: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """A hand placed in front of a camera so it fills about ``fill`` of the image.

    Args:
        image_size: (width, height). K: fixed (3, 3) intrinsics, or None for a random focal length
            with the principal point at the image centre.
    Returns:
        (keypoints_3d (21, 3) float64 metres camera frame, K (3, 3) float64).
    """
    width, height = image_size
    if K is None:
        f = rng.uniform(400, 800)
        K = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1.0]])
    pts = hand_pose(rng, side)
    centre = (pts.max(0) + pts.min(0)) / 2
    extent = float(np.max(pts.max(0) - pts.min(0)))
    z = K[0, 0] * extent / (fill * min(width, height))
    target = np.array([width / 2, height / 2]) + rng.uniform(-0.1, 0.1, 2) * min(width, height)
    xy = (target - K[:2, 2]) * z / np.array([K[0, 0], K[1, 1]])
    return pts - centre + np.array([xy[0], xy[1], z]), K


def noise_image(rng: np.random.Generator, width: int, height: int, ext: str = ".jpg") -> bytes:
    """Encoded (PNG or JPEG) smooth random image bytes of the given size."""
    small = rng.integers(0, 255, (max(height // 16, 2), max(width // 16, 2), 3), dtype=np.uint8)
    import cv2

    pixels = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    pixels = np.clip(pixels.astype(np.int16) + rng.integers(-8, 8, pixels.shape), 0, 255).astype(np.uint8)
    return images.encode(pixels, ext)


def blob_mask(rng: np.random.Generator, keypoints_2d: np.ndarray, width: int, height: int) -> dict:
    """RLE of a filled ellipse around the keypoints (a hand-like, JPEG-friendly mask)."""
    import cv2

    mask = np.zeros((height, width), np.uint8)
    finite = keypoints_2d[np.isfinite(keypoints_2d).all(1)]
    centre = finite.mean(0) if len(finite) else np.array([width / 2, height / 2])
    axes = (int(rng.uniform(8, width / 3)), int(rng.uniform(8, height / 3)))
    cv2.ellipse(mask, (int(centre[0]), int(centre[1])), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    return rle.encode(mask)


def assert_records_equal(expected: list, got: list, atol: float = 1e-6, pixel_atol: float = 1e-3) -> None:
    """Same sample ids in the same order, and every field equal within ``atol`` (metres, raw
    values) or ``pixel_atol`` (2D and boxes, which are projections of float32 3D)."""
    assert [s.sample_id for s in got] == [s.sample_id for s in expected]
    for a, b in zip(expected, got):
        diff = a.differences(b, atol=atol)
        for name in ("keypoints_2d", "bbox"):
            if name in diff and b.differences(a, atol=pixel_atol).count(name) == 0:
                diff.remove(name)
        assert diff == [], f"{a.sample_id}: fields differ: {diff}"
