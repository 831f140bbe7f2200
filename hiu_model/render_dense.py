"""A dense reference of :func:`hiu_model.render.soft_silhouette`: every face against every pixel.

No culling, no chunking, plain autograd: the straightforward transcription of PyTorch3D's
rasterise-then-blend semantics (see :mod:`hiu_model.render`). The tests compare the fast
renderer with it, and ``bench/render.py`` times it as the baseline. Memory grows as
``B * F * pixels``: use it on small meshes or on a few pixels at a time (``pixels``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from hiu_model.raster import AREA_EPS, Z_NEAR, project


def _seg_sq(p: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Squared distance from points p (..., 2) to segments [a, b] (..., 2)."""
    ab, ap = b - a, p - a
    t = ((ap * ab).sum(-1) / (ab * ab).sum(-1).clamp_min(1e-30)).clamp(0.0, 1.0)
    d = ap - t.unsqueeze(-1) * ab
    return (d * d).sum(-1)


def dense_log_miss(xy: Tensor, z: Tensor, faces: Tensor, pixels: Tensor, sigma: float, blur: float,
                   faces_per_pixel: int) -> Tensor:
    """Per-pixel ``sum_k log(1 - sigmoid(-d_k / sigma))`` over the K nearest candidate faces.

    Args:
        xy: (B, V, 2) projected vertices, pixels; z: (B, V) depths, metres.
        faces: (F, 3) int64; pixels: (P, 2) pixel-centre coordinates.
    Returns:
        (B, P) log of the product of misses (alpha = 1 - exp of it).
    """
    tri = xy[:, faces]  # (B, F, 3, 2)
    tz = z[:, faces]  # (B, F, 3)
    p = pixels[None, :, None, :]  # (1, P, 1, 2)
    a, b, c = (tri[:, None, :, k] for k in range(3))  # (B, 1, F, 2)
    d2 = torch.minimum(torch.minimum(_seg_sq(p, a, b), _seg_sq(p, b, c)), _seg_sq(p, c, a))  # (B, P, F)

    def cross(u: Tensor, v: Tensor) -> Tensor:
        return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]

    area2 = cross(b - a, c - a)
    w = torch.stack([cross(c - b, p - b), cross(a - c, p - c), cross(b - a, p - a)], -1) / area2.unsqueeze(-1)
    inside = (w > 0).all(-1)
    dist = torch.where(inside, -d2, d2)
    with torch.no_grad():
        tzb = tz[:, None]  # (B, 1, F, 3)
        wp = w / tzb
        wp = wp / wp.sum(-1, keepdim=True)
        wp = wp.clamp_min(0.0)
        wp = wp / wp.sum(-1, keepdim=True).clamp_min(1e-30)
        depth = (wp * tzb).sum(-1)
        valid = (tzb > Z_NEAR).all(-1) & (area2.abs() > AREA_EPS) & (inside | (d2 < blur))
        key = torch.where(valid, depth, torch.full_like(depth, float("inf")))
        k = min(faces_per_pixel, key.shape[-1])
        near_key, near = torch.topk(key, k, dim=-1, largest=False)
        chosen = torch.isfinite(near_key)
    log_miss = F.logsigmoid(torch.gather(dist, -1, near) / sigma)
    return torch.where(chosen, log_miss, torch.zeros_like(log_miss)).sum(-1)


def soft_silhouette_dense(vertices: Tensor, faces: Tensor, K: Tensor, image_size: tuple[int, int], sigma: float,
                          blur_radius: float, faces_per_pixel: int = 8) -> Tensor:
    """(B, H, W) alpha, same contract as :func:`hiu_model.render.soft_silhouette` (sigma, blur in px^2)."""
    height, width = image_size
    if K.dim() == 2:
        K = K.unsqueeze(0).expand(vertices.shape[0], 3, 3)
    xy = project(vertices, K)
    dev = vertices.device
    rows, cols = torch.meshgrid(torch.arange(height, device=dev), torch.arange(width, device=dev), indexing="ij")
    pixels = torch.stack([cols.reshape(-1), rows.reshape(-1)], -1).to(vertices.dtype) + 0.5
    total = dense_log_miss(xy, vertices[..., 2], faces, pixels, sigma, blur_radius, faces_per_pixel)
    return (-torch.expm1(total)).view(-1, height, width)
