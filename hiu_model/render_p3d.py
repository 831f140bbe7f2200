"""The PyTorch3D backend of :func:`hiu_model.render.soft_silhouette` (used only when importable).

Conventions are translated so both backends see the same scene:

- camera frame: ours is x right, y down, z forward; PyTorch3D's view frame is x left, y up,
  z forward, so the world-to-view rotation is ``diag(-1, -1, 1)`` (symmetric, so the same in
  PyTorch3D's row-vector convention) and the translation is zero;
- intrinsics: ``PerspectiveCameras(in_ndc=False)`` takes fx, fy, cx, cy in screen pixels, whose
  pixel centres are at +0.5 like ours, so K passes unchanged;
- sigma and blur radius: pixels squared here, NDC squared there, where one NDC unit is
  ``min(H, W) / 2`` pixels.

PyTorch3D is not installable on the development machines (no Linux wheel on PyPI), so this
path is exercised only by ``tests/test_render.py::test_pytorch3d_backend_agrees``, which is
skipped where PyTorch3D is missing.
"""

from __future__ import annotations

import torch
from torch import Tensor


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
