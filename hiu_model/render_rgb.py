"""Shaded RGB rendering (z-buffer, Lambert) for synthetic images and visibility.

Not differentiable: the synthetic data generator uses it to draw hands and to read the depth
buffer (a joint is visible when it is not much farther than the surface at its pixel). Same
camera and pixel conventions as :mod:`hiu_model.render`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hiu_model.raster import (
    DEFAULT_MAX_PAIRS,
    barycentric,
    face_boxes,
    face_vertices,
    iter_pairs,
    pixel_centres,
    project,
)

DEFAULT_LIGHT_DIR: tuple[float, float, float] = (0.35, -0.55, -1.0)
"""Direction from the surface towards the light, camera frame (up-right, towards the camera)."""


def vertex_normals(vertices: Tensor, faces: Tensor) -> Tensor:
    """Area-weighted unit vertex normals.

    Args:
        vertices: (B, V, 3) float, any frame.
        faces: (F, 3) int64.
    Returns:
        (B, V, 3) unit normals in the same frame (zero vectors for unused vertices).
    """
    tri = vertices[:, faces]  # (B, F, 3, 3)
    fn = torch.linalg.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0], dim=-1)
    vn = torch.zeros_like(vertices)
    for k in range(3):
        vn.index_add_(1, faces[:, k], fn)
    return torch.nn.functional.normalize(vn, dim=-1, eps=1e-12)


@torch.no_grad()
def rasterize_nearest(
    vertices: Tensor, faces: Tensor, K: Tensor, image_size: tuple[int, int],
    max_pairs: int = DEFAULT_MAX_PAIRS,
) -> tuple[Tensor, Tensor, Tensor]:
    """Z-buffer: the nearest face at each pixel centre and its perspective-correct barycentrics.

    Args:
        vertices: (B, V, 3) camera frame, metres.
        faces: (F, 3) int64.
        K: (B, 3, 3) or (3, 3) intrinsics.
        image_size: (H, W).
    Returns:
        ``(face (B, H, W) int64 with -1 for background, bary (B, H, W, 3) float,
        depth (B, H, W) float metres with inf for background)``.
    """
    height, width = image_size
    bsz, num_faces = vertices.shape[0], faces.shape[0]
    xy = project(vertices, K)
    tri_xy, tri_z = face_vertices(xy, vertices[..., 2], faces)
    boxes = face_boxes(tri_xy, tri_z, image_size, 0.0)
    npix = bsz * height * width
    depth = vertices.new_full((npix,), float("inf"))
    face = torch.full((npix,), -1, dtype=torch.long, device=vertices.device)
    bary_out = vertices.new_zeros(npix, 3)
    for inst, px, py in iter_pairs(boxes, max_pairs):
        p = pixel_centres(px, py, vertices.dtype)
        bary = barycentric(p, tri_xy[inst])
        keep = (bary > 0).all(-1)
        inst, px, py, bary = inst[keep], px[keep], py[keep], bary[keep]
        w = bary / tri_z[inst]
        z = 1.0 / w.sum(-1)
        pix = torch.div(inst, num_faces, rounding_mode="floor") * (height * width) + py * width + px
        # Merge this chunk into the buffer: a pair wins where it is nearer than what is there.
        depth_before = depth.clone()
        depth.scatter_reduce_(0, pix, z, reduce="amin")
        win = (z == depth[pix]) & (z < depth_before[pix])
        order = torch.nonzero(win).squeeze(1)
        face[pix[order]] = inst[order] % num_faces
        bary_out[pix[order]] = w[order] * z[order].unsqueeze(-1)
    return (
        face.view(bsz, height, width),
        bary_out.view(bsz, height, width, 3),
        depth.view(bsz, height, width),
    )


@torch.no_grad()
def render_rgb(
    vertices: Tensor,
    faces: Tensor,
    K: Tensor,
    image_size: tuple[int, int],
    vertex_colors: Tensor,
    light_dir: tuple[float, float, float] | Tensor = DEFAULT_LIGHT_DIR,
    ambient: float = 0.35,
    background: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> tuple[Tensor, Tensor, Tensor]:
    """Render shaded meshes with a z-buffer and Lambert lighting (smooth vertex normals).

    Lighting is two-sided (normals are turned towards the camera), so face winding does not
    matter. ``shade = ambient + (1 - ambient) * max(0, n . l)``.

    Args:
        vertices: (B, V, 3) camera frame (x right, y down, z forward), metres.
        faces: (F, 3) int64.
        K: (B, 3, 3) or (3, 3) row-major intrinsics.
        image_size: (H, W) pixels.
        vertex_colors: (B, V, 3) or (V, 3) linear RGB in [0, 1].
        light_dir: (3,) or (B, 3) direction from the surface towards the light, camera frame.
        ambient: share of light that reaches every surface, in [0, 1].
        background: RGB in [0, 1] of pixels no face covers.
    Returns:
        ``rgb (B, H, W, 3)`` float in [0, 1], ``depth (B, H, W)`` camera z in metres at each
        pixel centre (inf for background), ``mask (B, H, W)`` bool coverage.
    """
    height, width = image_size
    bsz = vertices.shape[0]
    vertices = vertices.detach()
    faces = faces.to(vertices.device)
    face, bary, depth = rasterize_nearest(vertices, faces, K, image_size)
    mask = face >= 0
    colors = vertex_colors.to(device=vertices.device, dtype=vertices.dtype)
    if colors.dim() == 2:
        colors = colors.unsqueeze(0).expand(bsz, -1, -1)
    normals = vertex_normals(vertices, faces)
    light = torch.as_tensor(light_dir, dtype=vertices.dtype, device=vertices.device)
    light = torch.nn.functional.normalize(light.reshape(-1, 3), dim=-1).expand(bsz, 3)

    rgb = vertices.new_empty(bsz, height, width, 3)
    rgb[:] = torch.as_tensor(background, dtype=vertices.dtype, device=vertices.device)
    b_idx, row, col = torch.nonzero(mask, as_tuple=True)
    corners = faces[face[b_idx, row, col]]  # (P, 3)
    w = bary[b_idx, row, col].unsqueeze(-1)  # (P, 3, 1)
    col_px = (colors[b_idx.unsqueeze(1), corners] * w).sum(1)
    n = (normals[b_idx.unsqueeze(1), corners] * w).sum(1)
    n = torch.nn.functional.normalize(n, dim=-1, eps=1e-12)
    # Camera ray through the surface point; flip normals that face away from the camera.
    point = (vertices[b_idx.unsqueeze(1), corners] * w).sum(1)
    n = torch.where(((n * point).sum(-1, keepdim=True) > 0), -n, n)
    lambert = (n * light[b_idx]).sum(-1).clamp_min(0.0)
    shade = ambient + (1.0 - ambient) * lambert
    rgb[b_idx, row, col] = (col_px * shade.unsqueeze(-1)).clamp(0.0, 1.0)
    return rgb, depth, mask
