"""The mesh branch's weak-perspective camera ``(s, tx, ty)``: projection, the closed-form fit to
2D keypoints, and the camera-frame wrist position it implies.

``s`` is in crop pixels per metre and ``(tx, ty)`` in crop pixels (the wrist's position: points
are root-relative); see :mod:`hiu_model.model` for how the network uses them.
"""

from __future__ import annotations

import torch


def weak_perspective_project(points: torch.Tensor, camera: torch.Tensor) -> torch.Tensor:
    """Weak-perspective projection ``s * p_xy + (tx, ty)``.

    Args:
        points: (B, N, 3) root-relative metres (camera axes: x right, y down).
        camera: (B, 3) (s px/m, tx px, ty px).
    Returns:
        (B, N, 2) crop pixels.
    """
    return camera[:, None, :1] * points[..., :2] + camera[:, None, 1:]


def fit_weak_perspective(points: torch.Tensor, keypoints: torch.Tensor, weights: torch.Tensor,
                         fallback: torch.Tensor, min_scale: float = 1e-3) -> torch.Tensor:
    """Weak-perspective camera that best projects ``points`` onto ``keypoints``.

    Minimises ``sum_j w_j |s * p_j,xy + t - k_j|^2`` over the scale ``s`` and the translation
    ``t`` in closed form (weighted centroids, then the scale along the centred points).

    Args:
        points: (B, N, 3) root-relative metres.
        keypoints: (B, N, 2) target positions, crop pixels.
        weights: (B, N) non-negative weights.
        fallback: (B, 3) camera used for rows whose fit is degenerate (no weight, or points
            without spread, or a scale below ``min_scale`` times the fallback's).
    Returns:
        (B, 3) (s px/m, tx px, ty px), differentiable with respect to ``points``.
    """
    total = weights.sum(dim=1, keepdim=True)
    share = (weights / total.clamp_min(1e-12))[..., None]
    xy = points[..., :2]
    point_mean = (share * xy).sum(dim=1, keepdim=True)
    keypoint_mean = (share * keypoints).sum(dim=1, keepdim=True)
    centred = xy - point_mean
    spread = (share * centred ** 2).sum(dim=(1, 2))
    scale = (share * centred * (keypoints - keypoint_mean)).sum(dim=(1, 2)) / spread.clamp_min(1e-12)
    usable = (total[:, 0] > 0) & (spread > 1e-12) & (scale > min_scale * fallback[:, 0])
    translation = keypoint_mean[:, 0] - scale[:, None] * point_mean[:, 0]
    fitted = torch.cat([scale[:, None], translation], dim=1)
    return torch.where(usable[:, None], fitted, fallback)


def root_from_weak_perspective(camera: torch.Tensor, camera_K: torch.Tensor) -> torch.Tensor:
    """Camera-frame wrist position (B, 3) metres from the weak-perspective camera (B, 3) and the
    crop intrinsics (B, 3, 3): depth ``fx / s``, then back-projection of ``(tx, ty)``."""
    fx, fy = camera_K[:, 0, 0], camera_K[:, 1, 1]
    cx, cy = camera_K[:, 0, 2], camera_K[:, 1, 2]
    depth = fx / camera[:, 0]
    x = (camera[:, 1] - cx) * depth / fx
    y = (camera[:, 2] - cy) * depth / fy
    return torch.stack([x, y, depth], dim=1)
