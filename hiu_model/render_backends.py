"""Other implementations of :func:`hiu_model.render.soft_silhouette`'s contract.

**Dense reference** (:func:`soft_silhouette_dense`, :func:`dense_log_miss`): every face
against every pixel, no culling or chunking, plain autograd; the straightforward transcription
of PyTorch3D's rasterise-then-blend semantics, except which K faces a crowded pixel keeps (the
smallest distances, not the nearest depths; see :mod:`hiu_model.render`). The tests compare
the fast renderer with it and ``bench/render.py`` times it as the baseline. Memory grows as
``B * F * pixels``: use it on small meshes or a few pixels at a time (``pixels``).

**PyTorch3D backend** (:func:`soft_silhouette_pytorch3d`, used only when PyTorch3D imports).
Conventions are translated so both backends see the same scene:

- camera frame: ours is x right, y down, z forward; PyTorch3D's view frame is x left, y up,
  z forward, so the world-to-view rotation is ``diag(-1, -1, 1)`` (symmetric, so the same in
  PyTorch3D's row-vector convention) and the translation is zero;
- intrinsics: ``PerspectiveCameras(in_ndc=False)`` takes fx, fy, cx, cy in screen pixels, whose
  pixel centres are at +0.5 like ours, so K passes unchanged;
- sigma and blur radius: pixels squared here, NDC squared there, where one NDC unit is
  ``min(H, W) / 2`` pixels.

The one difference left is on purpose: where more than ``faces_per_pixel`` faces reach a pixel,
PyTorch3D keeps the nearest in depth and the torch backend those with the smallest distance, so
there PyTorch3D's alpha is lower (it is never higher than the untruncated alpha, to which the
torch backend is closer).

PyTorch3D is not installable on the development machines (no Linux wheel on PyPI), so that
path is exercised only by ``tests/test_render.py::test_pytorch3d_backend_agrees``, which is
skipped where PyTorch3D is missing.
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
    """Per-pixel ``sum_k log(1 - sigmoid(-d_k / sigma))`` over the K candidates with the smallest d.

    Faces tied in d at the K-th place are picked in ``torch.topk``'s order, not by face index
    as :func:`hiu_model.render.soft_silhouette` does; tied faces have equal terms, so alpha is
    the same either way (only which vertices receive the gradient can differ).

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
        valid = (tz[:, None] > Z_NEAR).all(-1) & (area2.abs() > AREA_EPS) & (inside | (d2 < blur))
        key = torch.where(valid, dist, torch.full_like(dist, float("inf")))
        k = min(faces_per_pixel, key.shape[-1])
        near_key, strongest = torch.topk(key, k, dim=-1, largest=False)
        chosen = torch.isfinite(near_key)
    log_miss = F.logsigmoid(torch.gather(dist, -1, strongest) / sigma)
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




def soft_silhouette_pytorch3d(vertices: Tensor, faces: Tensor, K: Tensor, image_size: tuple[int, int],
                              sigma: float, blur: float, faces_per_pixel: int, hard: bool) -> Tensor:
    """Same contract as :func:`hiu_model.render.soft_silhouette` (sigma, blur in pixels squared)."""
    from pytorch3d.renderer import (
        BlendParams,
        MeshRasterizer,
        PerspectiveCameras,
        RasterizationSettings,
        SoftSilhouetteShader,
    )
    from pytorch3d.structures import Meshes

    bsz = vertices.shape[0]
    height, width = image_size
    ndc_px = min(height, width) / 2.0
    rot = torch.diag(vertices.new_tensor([-1.0, -1.0, 1.0])).expand(bsz, 3, 3)
    cameras = PerspectiveCameras(
        focal_length=torch.stack([K[:, 0, 0], K[:, 1, 1]], -1), principal_point=K[:, :2, 2],
        R=rot, T=vertices.new_zeros(bsz, 3), in_ndc=False,
        image_size=torch.tensor([[height, width]] * bsz), device=vertices.device,
    )
    settings = RasterizationSettings(
        image_size=(height, width), blur_radius=0.0 if hard else blur / ndc_px**2,
        faces_per_pixel=faces_per_pixel, bin_size=0, perspective_correct=True,
    )
    meshes = Meshes(verts=list(vertices), faces=[faces] * bsz)
    fragments = MeshRasterizer(cameras=cameras, raster_settings=settings)(meshes)
    if hard:
        return (fragments.pix_to_face[..., 0] >= 0).to(vertices.dtype)
    shader = SoftSilhouetteShader(blend_params=BlendParams(sigma=sigma / ndc_px**2))
    return shader(fragments, meshes)[..., 3]
