"""Differentiable soft silhouettes in pure PyTorch, with PyTorch3D's ``SoftSilhouetteShader`` semantics
(except which faces a pixel keeps when more than ``faces_per_pixel`` reach it).

For each pixel centre p and each face f whose projection is within the blur band:

- ``d = dist(p, f)``: the signed squared 2D distance from p to the boundary of the projected
  triangle, negative when p is strictly inside (all screen barycentrics > 0);
- candidates are the faces with p inside or ``d < blur_radius``; faces with a vertex behind the
  camera (z <= 1e-8 m) or of zero screen area are skipped;
- ``alpha = 1 - prod_k (1 - sigmoid(-d_k / sigma))`` over the candidates, or, with
  ``faces_per_pixel = K``, over the K candidates with the **smallest d** (the largest coverage
  probabilities; ties go to the lower face index).

That last choice is where this renderer departs from PyTorch3D, which keeps the K candidates
nearest in **depth**. The product does not depend on depth order, and every dropped face can only
lower alpha, so the smallest-d subset is the one closest to the untruncated alpha: the terms left
out are the smallest. By depth, the K nearest are often front faces in the band around an edge
while the faces that cover the pixel lie behind them. Measured by ``bench/render_truncation.py``
(145 synthetic hands at the presets' mask sizes, PyTorch3D's sigma; bench/RESULTS.md): more
than 50 faces reach some pixel of 82-99 % of the hands; K = 50 by depth then moves alpha by up
to 0.003 (tiny) to 0.4 (paper, zoomed-out crops) and the loss gradient by up to 0.2-11 %
(relative norm), K = 50 by smallest d by at most 9e-4 and 0.12 %; K = 8 by depth loses whole
fingers (alpha off by up to 1). The model blends every candidate
(``ModelConfig.silhouette_faces_per_pixel = None``), which costs no more here.

**Units**: this module works in pixels of the output image, so ``sigma`` and ``blur_radius``
are in **pixels squared**; the softness is the same number of pixels at every resolution.
PyTorch3D works in NDC units, where the shorter image side spans 2: a PyTorch3D value converts
with :func:`sigma_from_ndc` (multiply by ``(min(H, W) / 2) ** 2``). Defaults: ``sigma = 1 px^2``
(the probability outside an edge is 0.27 at 1 px, 0.018 at 2 px) and, as PyTorch3D recommends,
``blur_radius = ln(1 / 1e-4 - 1) * sigma`` (9.2 px^2, a 3 px band).

``hard=True`` is the sigma -> 0 limit with no blur band: alpha is 1 where a face covers the
pixel centre, else 0 (no gradient).

Cost and memory: faces are culled to the pixels of their screen box grown by the band
(:mod:`hiu_model.raster`), pairs are processed in chunks, and the differentiable pass only
recomputes the kept (pixel, face) pairs, so memory scales with the silhouette's area times
``faces_per_pixel``, not with ``faces * pixels``.

The camera is a pinhole with intrinsics K in the camera frame (x right, y down, z forward,
metres); pixels follow HAND21 (origin at the top-left corner, pixel centres at +0.5).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from hiu_model.raster import (
    barycentric,
    face_boxes,
    face_table,
    face_vertices,
    iter_pairs,
    margin_from_blur,
    nearest_edge,
    pair_tests,
    pixel_centres,
    project,
)
from hiu_model.render_rgb import render_rgb

__all__ = ["project", "soft_silhouette", "render_rgb", "sigma_from_ndc", "blur_for_sigma", "pytorch3d_available",
           "DEFAULT_SIGMA"]

SILHOUETTE_MAX_PAIRS: int = 1 << 18
"""Pairs per chunk of pass 1: small enough that a chunk's temporaries stay in cache."""
DEFAULT_SIGMA: float = 1.0
"""Default sigma in pixels squared."""
BLUR_PROBABILITY: float = 1e-4
"""The blur band ends where a face's coverage probability drops to this (PyTorch3D's advice)."""


def sigma_from_ndc(sigma_ndc: float, image_size: tuple[int, int]) -> float:
    """Convert a PyTorch3D sigma or blur radius (NDC units squared) to pixels squared."""
    return sigma_ndc * (min(image_size) / 2.0) ** 2


def blur_for_sigma(sigma: float) -> float:
    """The blur radius (same units as sigma) at which sigmoid(-d / sigma) = 1e-4."""
    return math.log(1.0 / BLUR_PROBABILITY - 1.0) * sigma


def pytorch3d_available() -> bool:
    """True when PyTorch3D can be imported (then ``backend="pytorch3d"`` works)."""
    try:
        import pytorch3d.renderer  # noqa: F401
    except ImportError:
        return False
    return True


def soft_silhouette(
    vertices: Tensor,
    faces: Tensor,
    K: Tensor,
    image_size: tuple[int, int],
    sigma: float | None = None,
    blur_radius: float | None = None,
    faces_per_pixel: int | None = None,
    hard: bool = False,
    backend: str = "torch",
    max_pairs: int = SILHOUETTE_MAX_PAIRS,
) -> Tensor:
    """Soft silhouettes of a batch of meshes sharing one topology.

    Args:
        vertices: (B, V, 3) float32/64, camera frame (x right, y down, z forward), metres.
        faces: (F, 3) int64 vertex indices.
        K: (B, 3, 3) or (3, 3) row-major intrinsics of the output image.
        image_size: (H, W) pixels.
        sigma: sharpness in pixels squared (default :data:`DEFAULT_SIGMA`).
        blur_radius: band in pixels squared beyond an edge in which faces still count (default
            :func:`blur_for_sigma` of sigma).
        faces_per_pixel: K, the number of faces blended per pixel: the K candidates with the
            smallest signed distance d (not PyTorch3D's K nearest in depth; see the module
            docstring). None blends every candidate, exactly and at no extra cost (no sort is
            needed). Where more than K faces reach a pixel (closed meshes with small faces:
            front, back and neighbouring faces in the band), the faces left out are those whose
            coverage probability is lowest, so alpha is underestimated by at most
            ``1 - prod(1 - p)`` over them, and which faces are kept switches as the mesh moves
            (the gradient cannot see those switches).
        hard: return the binary coverage (sigma -> 0, no band) instead.
        backend: "torch" (this module) or "pytorch3d" (needs PyTorch3D; same semantics).
        max_pairs: chunk size in (pixel, face) pairs; bounds the peak memory.
    Returns:
        (B, H, W) alpha in [0, 1], the dtype of ``vertices``; differentiable with respect to
        ``vertices`` (and K) unless ``hard``.
    """
    sigma = DEFAULT_SIGMA if sigma is None else float(sigma)
    blur = blur_for_sigma(sigma) if blur_radius is None else float(blur_radius)
    if faces_per_pixel is None:
        faces_per_pixel = faces.shape[0]
    if sigma <= 0 or blur < 0 or faces_per_pixel < 1:
        raise ValueError(f"need sigma > 0, blur_radius >= 0, faces_per_pixel >= 1 (got {sigma}, {blur}, {faces_per_pixel})")
    faces = faces.to(vertices.device)
    if K.dim() == 2:
        K = K.unsqueeze(0).expand(vertices.shape[0], 3, 3)
    if backend == "pytorch3d":
        from hiu_model.render_backends import soft_silhouette_pytorch3d

        return soft_silhouette_pytorch3d(vertices, faces, K, image_size, sigma, blur, faces_per_pixel, hard)
    if backend != "torch":
        raise ValueError(f"backend must be 'torch' or 'pytorch3d', not {backend!r}")
    xy = project(vertices, K)
    if hard:
        return _hard_coverage(xy.detach(), vertices[..., 2].detach(), faces, image_size, max_pairs).to(vertices.dtype)
    inst, pix, inside, dist = _candidates(xy.detach(), vertices[..., 2].detach(), faces, image_size, blur,
                                          max_pairs)
    keep = _strongest_k(pix, dist, inst % faces.shape[0], faces_per_pixel)
    return _blend(xy, faces, inst[keep], pix[keep], inside[keep], dist[keep], image_size, sigma)


def _pixel_index(inst: Tensor, px: Tensor, py: Tensor, num_faces: int, image_size: tuple[int, int]) -> Tensor:
    """Flat pixel index ``b * H * W + y * W + x`` of pairs whose face instance is ``b * F + f``."""
    height, width = image_size
    return torch.div(inst, num_faces, rounding_mode="floor") * (height * width) + py * width + px


@torch.no_grad()
def _candidates(xy: Tensor, z: Tensor, faces: Tensor, image_size: tuple[int, int], blur: float,
                max_pairs: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Pass 1 (no grad): every (face, pixel) pair in the band with its distance.

    Returns:
        ``inst (P,)`` face instances, ``pix (P,)`` flat pixels, ``inside (P,)`` bool,
        ``dist (P,)`` signed squared distance in pixels squared.
    """
    tri_xy, tri_z = face_vertices(xy, z, faces)
    boxes = face_boxes(tri_xy, tri_z, image_size, margin_from_blur(blur))
    table = face_table(tri_xy)
    out: list[list[Tensor]] = [[], [], [], []]
    for inst, px, py in iter_pairs(boxes, max_pairs):
        inside, d2, _ = pair_tests(table[:, inst], px.to(xy.dtype) + 0.5, py.to(xy.dtype) + 0.5)
        idx = torch.nonzero(inside | (d2 < blur)).squeeze(1)
        inst, inside = inst[idx], inside[idx]
        dist = torch.where(inside, -d2[idx], d2[idx])
        pix = _pixel_index(inst, px[idx], py[idx], faces.shape[0], image_size)
        for lst, value in zip(out, (inst, pix, inside, dist)):
            lst.append(value)
    if not out[0]:
        empty = torch.zeros(0, dtype=torch.long, device=xy.device)
        return empty, empty, torch.zeros(0, dtype=torch.bool, device=xy.device), xy.new_zeros(0)
    return tuple(torch.cat(lst) for lst in out)  # type: ignore[return-value]


def _ordered_bits(values: Tensor) -> Tensor:
    """int64 keys in [0, 2^32) that order like the float32 roundings of ``values``.

    IEEE floats of one sign order like their bit patterns; flipping the magnitude bits of the
    negative ones makes the whole range monotonic (-0.0 sorts just below +0.0).
    """
    bits = values.float().view(torch.int32).long()
    return (bits ^ ((bits >> 31) & 0x7FFFFFFF)) + (1 << 31)


@torch.no_grad()
def _strongest_k(pix: Tensor, dist: Tensor, faces_of: Tensor, k: int) -> Tensor:
    """Indices of the candidates kept: per pixel the ``k`` with the smallest signed distance.

    Those have the largest coverage probabilities, i.e. the largest terms of the product. Ties
    (equal float32 distances: faces sharing the nearest edge or vertex) go to the lower face
    index, so results do not depend on batching or chunking.
    """
    everything = torch.arange(pix.numel(), device=pix.device)
    if pix.numel() == 0:
        return everything
    crowded = torch.bincount(pix)[pix] > k
    if not bool(crowded.any()):
        return everything
    sub = torch.nonzero(crowded).squeeze(1)
    # (pixel, distance) packs into one integer key; a first stable sort by face makes ties
    # deterministic.
    order = torch.argsort(faces_of[sub], stable=True)
    order = order[torch.argsort(((pix[sub] << 32) | _ordered_bits(dist[sub]))[order], stable=True)]
    _, group = torch.unique_consecutive(pix[sub][order], return_counts=True)
    rank = torch.arange(order.numel(), device=pix.device) - torch.repeat_interleave(torch.cumsum(group, 0) - group, group)
    return torch.cat([everything[~crowded], sub[order[rank < k]]])


class _BlendFn(torch.autograd.Function):
    """Sum of log-misses per pixel, ``S = sum_k logsigmoid(d_k / sigma)``, with an analytic backward.

    The distances come from pass 1 (same vertex values, no graph); the backward differentiates
    ``d = +-|p - q|^2`` with q the nearest point on the nearest edge (a, b), q = a + t (b - a):
    ``dd/da = -+2 (1 - t) (p - q)``, ``dd/db = -+2 t (p - q)`` (the envelope theorem; t's own
    change does not contribute). This avoids a per-pair autograd graph of ~40 operations.
    """

    @staticmethod
    def forward(ctx, xy: Tensor, faces: Tensor, inst: Tensor, pix: Tensor, inside: Tensor,  # type: ignore[override]
                dist: Tensor, image_size: tuple[int, int], sigma: float) -> Tensor:
        ctx.save_for_backward(xy, faces, inst, pix, inside, dist)
        ctx.sigma, ctx.image_size = sigma, image_size
        npix = xy.shape[0] * image_size[0] * image_size[1]
        return xy.new_zeros(npix).index_add_(0, pix, F.logsigmoid(dist / sigma))

    @staticmethod
    def backward(ctx, grad_total: Tensor):  # type: ignore[override]
        xy, faces, inst, pix, inside, dist = ctx.saved_tensors
        bsz, num_verts = xy.shape[:2]
        height, width = ctx.image_size
        num_faces = faces.shape[0]
        tri_xy, _ = face_vertices(xy.detach(), xy.new_ones(xy.shape[:2]), faces)
        table = face_table(tri_xy)
        grad = xy.new_zeros(bsz * num_verts, 2)
        # Chunks bound the temporaries (about 20 values per pair) like pass 1's.
        for lo in range(0, inst.numel(), SILHOUETTE_MAX_PAIRS):
            sl = slice(lo, lo + SILHOUETTE_MAX_PAIRS)
            i, local = inst[sl], pix[sl] % (height * width)
            px = (local % width).to(xy.dtype) + 0.5
            py = torch.div(local, width, rounding_mode="floor").to(xy.dtype) + 0.5
            k, t, rx, ry = nearest_edge(table[:, i], px, py)
            sign = torch.where(inside[sl], 2.0, -2.0).to(xy.dtype)  # d(+-|r|^2)/dq = -+2 r
            coef = grad_total[pix[sl]] * torch.sigmoid(-dist[sl] / ctx.sigma) * (sign / ctx.sigma)
            corners = faces[i % num_faces] + (torch.div(i, num_faces, rounding_mode="floor") * num_verts)[:, None]
            r = torch.stack([rx, ry], dim=-1)
            grad.index_add_(0, corners.gather(1, k[:, None]).squeeze(1), (coef * (1.0 - t))[:, None] * r)
            grad.index_add_(0, corners.gather(1, ((k + 1) % 3)[:, None]).squeeze(1), (coef * t)[:, None] * r)
        return grad.view_as(xy), None, None, None, None, None, None, None


def _blend(xy: Tensor, faces: Tensor, inst: Tensor, pix: Tensor, inside: Tensor, dist: Tensor,
           image_size: tuple[int, int], sigma: float) -> Tensor:
    """Pass 2: ``alpha = 1 - exp(sum_k log(1 - sigmoid(-d_k / sigma)))`` per pixel."""
    height, width = image_size
    total = _BlendFn.apply(xy, faces, inst, pix, inside, dist, image_size, sigma)
    return (-torch.expm1(total)).view(xy.shape[0], height, width)


@torch.no_grad()
def _hard_coverage(xy: Tensor, z: Tensor, faces: Tensor, image_size: tuple[int, int], max_pairs: int) -> Tensor:
    """(B, H, W) 1.0 where some face strictly contains the pixel centre, else 0.0."""
    height, width = image_size
    bsz = xy.shape[0]
    tri_xy, tri_z = face_vertices(xy, z, faces)
    boxes = face_boxes(tri_xy, tri_z, image_size, 0.0)
    alpha = xy.new_zeros(bsz * height * width)
    for inst, px, py in iter_pairs(boxes, max_pairs):
        inside = (barycentric(pixel_centres(px, py, xy.dtype), tri_xy[inst]) > 0).all(-1)
        alpha[_pixel_index(inst[inside], px[inside], py[inside], faces.shape[0], image_size)] = 1.0
    return alpha.view(bsz, height, width)
