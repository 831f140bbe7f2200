"""Face-pixel candidate enumeration: the shared core of the silhouette and RGB renderers.

Everything here works in **pixel coordinates** of the output image (HAND21 convention:
origin at the top-left corner, x right, y down, pixel ``(row i, column j)`` has its centre at
``(j + 0.5, i + 0.5)``) and camera-frame depth ``z`` in metres.

Instead of testing every face against every pixel (``F * H * W`` pairs), each face is tested
only against the pixels inside its screen bounding box, grown by the blur margin. The pairs are
produced in chunks of at most ``max_pairs`` so memory stays bounded whatever the mesh size,
resolution or batch size.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

Z_NEAR: float = 1e-8
"""Faces with a vertex at camera depth below this (metres) are skipped, as in PyTorch3D."""
AREA_EPS: float = 1e-9
"""Faces whose doubled screen area (pixels squared) is below this are skipped."""
DEFAULT_MAX_PAIRS: int = 1 << 22


def project(points: Tensor, K: Tensor) -> Tensor:
    """Perspective projection of camera-frame points to pixels.

    Args:
        points: (B, N, 3) camera frame (x right, y down, z forward), metres; z > 0.
        K: (B, 3, 3) or (3, 3) row-major intrinsics of the image.
    Returns:
        (B, N, 2) pixel coordinates, HAND21 convention (origin at the top-left corner of the
        image, pixel centres at +0.5), same dtype as ``points``.
    """
    if K.dim() == 2:
        K = K.unsqueeze(0)
    uvw = torch.einsum("bij,bnj->bni", K.to(device=points.device, dtype=points.dtype), points)
    return uvw[..., :2] / uvw[..., 2:3]


@dataclass
class FaceBoxes:
    """Screen bounding boxes of the valid (batch, face) instances.

    Attributes:
        inst: (N,) int64 flat instance index ``b * F + f`` of each valid face.
        x0, y0: (N,) int64 first pixel column / row touched.
        w, h: (N,) int64 box width / height in pixels (>= 1).
    """

    inst: Tensor
    x0: Tensor
    y0: Tensor
    w: Tensor
    h: Tensor


def face_vertices(xy: Tensor, z: Tensor, faces: Tensor) -> tuple[Tensor, Tensor]:
    """Gather per-face screen corners and depths.

    Args:
        xy: (B, V, 2) projected vertices, pixels.
        z: (B, V) camera-frame depth, metres.
        faces: (F, 3) int64 vertex indices.
    Returns:
        ``(tri_xy (B*F, 3, 2), tri_z (B*F, 3))`` in the dtype of ``xy``.
    """
    bsz = xy.shape[0]
    tri_xy = xy[:, faces]  # (B, F, 3, 2)
    tri_z = z[:, faces]
    return tri_xy.reshape(bsz * faces.shape[0], 3, 2), tri_z.reshape(bsz * faces.shape[0], 3)


def face_boxes(tri_xy: Tensor, tri_z: Tensor, image_size: tuple[int, int], margin: float) -> FaceBoxes:
    """Cull faces and compute the pixel box each remaining face can touch.

    A face is kept when all its vertices are in front of the camera (z > ``Z_NEAR``), its screen
    area is not zero, and its box grown by ``margin`` pixels overlaps the image.

    Args:
        tri_xy: (N, 3, 2) face corners in pixels (no grad needed).
        tri_z: (N, 3) face corner depths, metres.
        image_size: (H, W).
        margin: box growth in pixels (the square root of the blur radius in pixels squared).
    """
    height, width = image_size
    with torch.no_grad():
        e1 = tri_xy[:, 1] - tri_xy[:, 0]
        e2 = tri_xy[:, 2] - tri_xy[:, 0]
        area2 = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
        lo = tri_xy.amin(dim=1) - margin
        hi = tri_xy.amax(dim=1) + margin
        # Pixel j is touched when its centre j + 0.5 lies in [lo, hi].
        first = torch.ceil(lo - 0.5)
        last = torch.floor(hi - 0.5)
        first = torch.maximum(first, torch.zeros_like(first))
        limit = torch.tensor([width - 1, height - 1], dtype=last.dtype, device=last.device)
        last = torch.minimum(last, limit)
        ok = (tri_z > Z_NEAR).all(dim=1) & (area2.abs() > AREA_EPS) & (first <= last).all(dim=1)
        ok &= torch.isfinite(tri_xy).all(dim=2).all(dim=1)
        inst = torch.nonzero(ok).squeeze(1)
        first = first[inst].long()
        size = last[inst].long() - first + 1
    return FaceBoxes(inst=inst, x0=first[:, 0], y0=first[:, 1], w=size[:, 0], h=size[:, 1])


def iter_pairs(boxes: FaceBoxes, max_pairs: int = DEFAULT_MAX_PAIRS) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """Yield every (face instance, pixel) pair inside the boxes, in bounded chunks.

    Yields:
        ``(inst (P,), px (P,), py (P,))`` int64: flat face instance and pixel column / row.
        ``P <= max(max_pairs, largest box)``.
    """
    counts = boxes.w * boxes.h
    if counts.numel() == 0:
        return
    ends = torch.cumsum(counts, 0)
    start_face = 0
    num = counts.numel()
    while start_face < num:
        base = int(ends[start_face - 1]) if start_face > 0 else 0
        # Last face whose pairs still fit in this chunk (at least one face per chunk).
        stop = int(torch.searchsorted(ends, torch.tensor(base + max_pairs, device=ends.device), right=True))
        stop = max(stop, start_face + 1)
        sl = slice(start_face, stop)
        cnt = counts[sl]
        dev = cnt.device
        local = torch.repeat_interleave(torch.arange(stop - start_face, device=dev), cnt)
        offset = torch.arange(int(cnt.sum()), device=dev) - (torch.cumsum(cnt, 0) - cnt)[local]
        w = boxes.w[sl][local]
        yield (
            boxes.inst[sl][local],
            boxes.x0[sl][local] + offset % w,
            boxes.y0[sl][local] + torch.div(offset, w, rounding_mode="floor"),
        )
        start_face = stop


def _cross(a: Tensor, b: Tensor) -> Tensor:
    """2D cross product of (..., 2) vectors -> (...)."""
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def _segment_sq_dist(p: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Squared distance (P,) from points p (P, 2) to segments [a, b] (P, 2 each)."""
    ab = b - a
    ap = p - a
    denom = (ab * ab).sum(-1).clamp_min(1e-30)
    t = ((ap * ab).sum(-1) / denom).clamp(0.0, 1.0)
    d = ap - t.unsqueeze(-1) * ab
    return (d * d).sum(-1)


def barycentric(p: Tensor, tri: Tensor) -> Tensor:
    """Screen-space barycentric coordinates (P, 3) of points p (P, 2) in triangles tri (P, 3, 2).

    All three are > 0 exactly when p is strictly inside, whatever the winding.
    """
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    area2 = _cross(b - a, c - a)
    wa = _cross(c - b, p - b) / area2
    wb = _cross(a - c, p - c) / area2
    wc = _cross(b - a, p - a) / area2
    return torch.stack([wa, wb, wc], dim=-1)


def signed_sq_dist(p: Tensor, tri: Tensor, inside: Tensor | None = None) -> Tensor:
    """PyTorch3D's ``dists``: signed squared distance from p to the triangle's boundary.

    Args:
        p: (P, 2) points, pixels.
        tri: (P, 3, 2) triangle corners, pixels.
        inside: optional (P,) bool, precomputed strict inside test (barycentrics all > 0).
    Returns:
        (P,) pixels squared; negative inside the triangle, positive outside, 0 on an edge.
    """
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    d2 = torch.minimum(
        torch.minimum(_segment_sq_dist(p, a, b), _segment_sq_dist(p, b, c)),
        _segment_sq_dist(p, c, a),
    )
    if inside is None:
        inside = (barycentric(p, tri) > 0).all(dim=-1)
    return torch.where(inside, -d2, d2)


def pixel_centres(px: Tensor, py: Tensor, dtype: torch.dtype) -> Tensor:
    """(P, 2) pixel-centre coordinates of integer columns / rows."""
    return torch.stack([px.to(dtype) + 0.5, py.to(dtype) + 0.5], dim=-1)


def margin_from_blur(blur_radius: float) -> float:
    """Box growth in pixels for a blur radius given in pixels squared."""
    return math.sqrt(max(blur_radius, 0.0))


FACE_TABLE_ROWS = 16
"""Rows of :func:`face_table`: a, b, c (6), edges b-a, c-b, a-c (6), 1/|edge|^2 (3),
1/(2 * signed area) (1)."""


def face_table(tri_xy: Tensor) -> Tensor:
    """Per-face constants of the pair tests, one column per face: (16, N).

    Stored row-major by quantity so that gathering the pairs' faces gives contiguous rows.

    Args:
        tri_xy: (N, 3, 2) face corners in pixels.
    """
    a, b, c = tri_xy[:, 0], tri_xy[:, 1], tri_xy[:, 2]
    e0, e1, e2 = b - a, c - b, a - c
    inv_len = 1.0 / torch.stack([(e * e).sum(-1) for e in (e0, e1, e2)], -1).clamp_min(1e-30)
    area2 = _cross(e0, c - a)
    inv_area = torch.where(area2.abs() > 0, 1.0 / area2, torch.zeros_like(area2))
    return torch.cat([a, b, c, e0, e1, e2, inv_len, inv_area[:, None]], dim=1).t().contiguous()


def pair_tests(rows: Tensor, px: Tensor, py: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Inside test, unsigned squared boundary distance and screen barycentrics of pairs.

    Same results as :func:`barycentric` and :func:`signed_sq_dist`, with fewer temporaries
    (this is the hot loop of the silhouette's first pass).

    Args:
        rows: (16, P) columns of :func:`face_table`, one per pair.
        px, py: (P,) pixel-centre coordinates, pixels.
    Returns:
        ``inside (P,) bool``, ``d2 (P,)`` pixels squared (unsigned), ``bary (P, 3)``.
    """
    t = rows.unbind(0)
    corners = ((t[0], t[1]), (t[2], t[3]), (t[4], t[5]))
    d2 = None
    edge_fn = []
    for k, (ox, oy) in enumerate(corners):
        ex, ey = t[6 + 2 * k], t[7 + 2 * k]
        vx, vy = px - ox, py - oy
        # Edge k runs from corner k to corner k+1; its edge function is the weight of the
        # opposite corner k+2.
        edge_fn.append((ex * vy - ey * vx) * t[15])
        s = ((vx * ex + vy * ey) * t[12 + k]).clamp_(0.0, 1.0)
        dist = (vx - s * ex).square_() + (vy - s * ey).square_()
        d2 = dist if d2 is None else torch.minimum(d2, dist)
    w = torch.stack([edge_fn[1], edge_fn[2], edge_fn[0]], dim=-1)
    inside = (edge_fn[0] > 0) & (edge_fn[1] > 0) & (edge_fn[2] > 0)
    return inside, d2, w


def nearest_edge(rows: Tensor, px: Tensor, py: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The triangle edge nearest to each point and where on it.

    Args:
        rows: (16, P) columns of :func:`face_table`, one per pair.
        px, py: (P,) point coordinates, pixels.
    Returns:
        ``k (P,)`` int64 edge index (edge k joins corner k to corner (k+1) % 3), ``t (P,)``
        position of the nearest point q on that edge in [0, 1], ``rx, ry (P,)`` = p - q.
    """
    t = rows.unbind(0)

    def edge(k: int) -> list[Tensor]:
        ox, oy, ex, ey = t[2 * k], t[2 * k + 1], t[6 + 2 * k], t[7 + 2 * k]
        vx, vy = px - ox, py - oy
        s = ((vx * ex + vy * ey) * t[12 + k]).clamp_(0.0, 1.0)
        rx, ry = vx - s * ex, vy - s * ey
        return [rx * rx + ry * ry, torch.full_like(px, k, dtype=torch.long), s, rx, ry]

    best = edge(0)
    for k in (1, 2):
        cand = edge(k)
        closer = cand[0] < best[0]
        best = [torch.where(closer, new, old) for new, old in zip(cand, best)]
    return best[1], best[2], best[3], best[4]
