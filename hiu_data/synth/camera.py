"""Perspective cameras, hand orientations and hand placement for synthetic scenes (numpy).

Frames: the camera frame of the stored image (x right, y down, z forward, metres); pixels
with the origin at the image's top-left corner and pixel centres at +0.5, so a camera-frame
point ``X`` lands at ``(K @ X)[:2] / X[2]``.

- :func:`sample_intrinsics`: a pinhole with square pixels, horizontal field of view drawn from
  a range typical of phones and webcams, principal point near the image centre.
- :func:`sample_view`: the global rotation of the hand. Half the scenes use a uniformly random
  rotation (the hand seen from every side; only views within 25° of looking straight along
  the fingers are redrawn, they show a blob); the other half a photographic view: palm or
  back towards the camera, fingers roughly up, tilted and rolled at random.
- :func:`place_hand`: the translation that puts a posed hand at a chosen pixel with a chosen
  size in the image, in front of the camera.
"""

from __future__ import annotations

import numpy as np

from hiu_data.synth.poses import axis_angle_to_matrix, random_rotation

MIN_DEPTH_M: float = 0.08
"""No vertex comes closer to the camera than this (metres)."""
END_ON_DEG: float = 25.0
"""Uniform views keep the wrist -> fingers axis at least this far from the line of sight."""


def intrinsics(focal: float, cx: float, cy: float) -> np.ndarray:
    """(3, 3) float64 K with square pixels and no skew."""
    return np.array([[focal, 0.0, cx], [0.0, focal, cy], [0.0, 0.0, 1.0]])


def sample_intrinsics(rng: np.random.Generator, width: int, height: int, fov_deg: tuple[float, float] = (35.0, 75.0),
                      center_jitter: float = 0.02) -> np.ndarray:
    """A random (3, 3) float64 K in pixels: horizontal FOV uniform in ``fov_deg`` (degrees),
    principal point at the image centre ± ``center_jitter`` times the image size."""
    fov = np.deg2rad(rng.uniform(*fov_deg))
    focal = 0.5 * width / np.tan(0.5 * fov)
    cx = 0.5 * width + rng.normal(0, center_jitter) * width
    cy = 0.5 * height + rng.normal(0, center_jitter) * height
    return intrinsics(focal, cx, cy)


def _frame(forward: np.ndarray, palmar: np.ndarray) -> np.ndarray:
    """(3, 3) orthonormal columns [forward, radial, palmar] with radial = forward x palmar."""
    forward = forward / np.linalg.norm(forward)
    palmar = palmar - forward * (palmar @ forward)
    palmar = palmar / np.linalg.norm(palmar)
    return np.stack([forward, np.cross(forward, palmar), palmar], axis=1)


def sample_view(rng: np.random.Generator, model_forward: np.ndarray, model_palmar: np.ndarray,
                uniform_share: float = 0.5) -> tuple[np.ndarray, str]:
    """Global rotation of a right hand, model frame -> camera frame.

    Args:
        model_forward, model_palmar: (3,) unit wrist->fingers and palm-facing directions of
            the hand model at rest (model frame).
        uniform_share: probability of a uniformly random rotation.
    Returns:
        ``(R (3, 3) float64, kind)`` with kind ``"uniform"``, ``"palm"`` or ``"back"``.
    """
    if rng.random() < uniform_share:
        for _ in range(8):
            rotation = random_rotation(rng)
            # Looking straight down the fingers (or up the wrist) shows a featureless blob, not a
            # hand: keep the finger axis at least END_ON_DEG away from the line of sight.
            if abs((rotation @ model_forward)[2]) < np.cos(np.deg2rad(END_ON_DEG)):
                break
        return rotation, "uniform"
    roll = np.deg2rad(rng.normal(0.0, 50.0))
    fingers = np.array([np.sin(roll), -np.cos(roll), 0.0])  # up in the image, rolled
    palm_to_camera = rng.random() < 0.5
    palmar = np.array([0.0, 0.0, -1.0 if palm_to_camera else 1.0])
    target = _frame(fingers, palmar)
    tilt_axis = rng.normal(0, 1, 3)
    tilt = axis_angle_to_matrix(tilt_axis / np.linalg.norm(tilt_axis) * np.deg2rad(rng.normal(0.0, 30.0)))
    rotation = tilt @ target @ _frame(model_forward, model_palmar).T
    return rotation, "palm" if palm_to_camera else "back"


def project(points: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(N, 3) camera-frame points -> (N, 2) pixels (float64)."""
    uvw = np.asarray(points, np.float64) @ np.asarray(K, np.float64).T
    return uvw[:, :2] / uvw[:, 2:3]


def place_hand(vertices: np.ndarray, K: np.ndarray, center_px: tuple[float, float], extent_px: float,
               min_depth: float = MIN_DEPTH_M) -> np.ndarray:
    """Translation (3,) that puts a hand's projected box centre at ``center_px`` with the
    larger box side ``extent_px`` pixels.

    Args:
        vertices: (V, 3) posed hand in camera orientation (any offset), metres.
        K: (3, 3) intrinsics.
    Returns:
        (3,) float64 translation ``t``; ``vertices + t`` is the placed hand, every vertex at
        least ``min_depth`` in front of the camera.
    """
    vertices = np.asarray(vertices, np.float64)
    center3 = 0.5 * (vertices.min(axis=0) + vertices.max(axis=0))
    span = float(np.max(vertices.max(axis=0)[:2] - vertices.min(axis=0)[:2]))
    focal = 0.5 * (K[0, 0] + K[1, 1])
    depth = max(focal * span / max(extent_px, 1.0), min_depth + center3[2] - vertices[:, 2].min())
    aim = np.asarray(center_px, np.float64).copy()
    t = depth * np.linalg.solve(K, np.array([aim[0], aim[1], 1.0])) - center3
    for _ in range(3):  # perspective makes the first guess off by a few percent; refine
        uv = project(vertices + t, K)
        lo, hi = uv.min(axis=0), uv.max(axis=0)
        depth *= float(np.max(hi - lo)) / max(extent_px, 1.0)
        depth = max(depth, min_depth + center3[2] - vertices[:, 2].min())
        aim += np.asarray(center_px) - 0.5 * (lo + hi)
        t = depth * np.linalg.solve(K, np.array([aim[0], aim[1], 1.0])) - center3
    return t
