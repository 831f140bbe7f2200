"""Test-time augmentation: the dense predictions averaged over in-plane rotations of the crop.

Pose estimators usually average a second pass on the flipped image ("flip test"). Here a flip
is no augmentation: crops are always in the right-hand frame (left hands are mirrored), so a
flipped crop shows a left hand, which the network never sees. An in-plane rotation is: the
training crops are rotated too (``DataOptions.rotation_deg``). :class:`RotationTTA` runs the
network on the crop and on copies rotated about the crop centre, rotates each copy's heat-maps
and mask back into the crop frame, and averages them, each copy weighted by how much of the pixel
it covered (normalised convolution: the zero padding of the turned-back copy and the turned-back
map of ones cancel, so the crop's corners, which turned copies leave out, keep the plain pass).

Only the dense branch is averaged: the last heat-maps (and the soft-arg-max keypoints read from
them) and the last mask. The mesh (pose, shape, 3D joints, vertices), the POF and the earlier
stacks are the un-rotated pass's. With ``model.camera_from_keypoints`` the mesh's camera is
solved again from the averaged keypoints (as the model solves it from its own), so the projected
joints, the silhouette and ``root_3d`` follow the averaged heat-maps; otherwise the regressed
camera is kept.

Rotation maths (pure functions): :func:`rotation_theta` gives the ``affine_grid`` matrix of a
rotation in normalised crop coordinates, :func:`rotate_maps` applies it. Rotating maps of any
resolution that cover the crop (image, heat-maps, mask) by ``+a`` and then by ``-a`` is the
identity inside the covered region, because all of them share the normalised frame
(``align_corners=False``: pixel centres at ``(i + 0.5) / n``).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from hiu_data.targets import soft_argmax
from hiu_model.weak_perspective import fit_weak_perspective


def rotation_theta(degrees: float, batch: int, like: torch.Tensor) -> torch.Tensor:
    """(batch, 2, 3) ``affine_grid`` matrices that rotate a map by ``degrees`` about its centre.

    Positive angles turn the content clockwise as seen on screen (image y down: a point right
    of the centre moves below it). The matrix maps output to input in normalised coordinates,
    as ``affine_grid`` expects; dtype and device follow ``like``.
    """
    angle = math.radians(degrees)
    cos, sin = math.cos(angle), math.sin(angle)
    theta = torch.tensor([[cos, sin, 0.0], [-sin, cos, 0.0]], dtype=like.dtype, device=like.device)
    return theta.expand(batch, 2, 3)


def rotate_maps(maps: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate (B, C, H, W) maps about their centre (bilinear; zero where nothing maps in).

    Any float dtype is computed in float32 and returned in float32.
    """
    values = maps.float()
    grid = F.affine_grid(rotation_theta(degrees, values.shape[0], values), list(values.shape), align_corners=False)
    return F.grid_sample(values, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def coverage(shape: Sequence[int], degrees: float, like: torch.Tensor) -> torch.Tensor:
    """(1, 1, H, W) float32 in [0, 1]: how much of each pixel of a map rotated by ``degrees`` and
    back was inside the rotated copy (1 in the middle, 0 in the corners the copy left out)."""
    ones = torch.ones(1, 1, *shape[-2:], dtype=torch.float32, device=like.device)
    return rotate_maps(rotate_maps(ones, degrees), -degrees)


def average_turned(plain: torch.Tensor, turned: Sequence[tuple[float, torch.Tensor]]) -> torch.Tensor:
    """Average (B, C, H, W) maps with copies predicted on turned crops, in the plain frame.

    ``turned`` holds ``(degrees, maps)`` pairs, each map in the frame of a crop turned by
    ``degrees`` (:func:`rotate_maps`). Each copy is turned back and weighted by its
    :func:`coverage` (normalised convolution); the plain maps weigh 1 everywhere. Float32.
    """
    total = plain.float()
    weight = torch.ones_like(total[:1, :1])
    for degrees, maps in turned:
        total = total + rotate_maps(maps, -degrees)
        weight = weight + coverage(maps.shape, degrees, total)
    return total / weight


class RotationTTA(nn.Module):
    """Wrap a :class:`hiu_model.model.HIUDMTL` so that its forward averages rotated passes.

    Args:
        model: the network.
        degrees: rotation angles of the extra passes (e.g. ``(-30, 30)``); the un-rotated pass
            always runs. An empty sequence makes the wrapper a plain pass.
    Forward: same arguments and :class:`hiu_model.model.HIUOutput` as the model, with
    ``heatmaps[-1]`` (B, 21, hm, hm), ``heatmap_keypoints`` (B, 21, 2) crop px and
    ``masks[-1]`` (B, 1, m, m) logits replaced by their rotation averages (float32).
    """

    def __init__(self, model: nn.Module, degrees: Sequence[float]) -> None:
        super().__init__()
        self.model = model
        self.degrees = tuple(float(d) for d in degrees if float(d) != 0.0)

    @property
    def cfg(self) -> Any:
        """The wrapped model's configuration (callers read the wrapper as the model)."""
        return self.model.cfg

    @property
    def hand_model(self) -> nn.Module | None:
        """The wrapped model's hand model, None without a mesh branch."""
        return getattr(self.model, "hand_model", None)

    def forward(self, image: torch.Tensor, camera_K: torch.Tensor | None = None,
                silhouette_rows: torch.Tensor | None = None) -> Any:
        """:meth:`hiu_model.model.HIUDMTL.forward` (``image`` (B, 3, S, S) float32 normalised crops,
        ``camera_K`` (B, 3, 3) crop intrinsics in pixels or None, ``silhouette_rows`` (n,) int64 or
        None) with the rotation-averaged maps of the class docstring."""
        output = self.model(image, camera_K, silhouette_rows)
        if not self.degrees or not (output.heatmaps or output.masks):
            return output
        # The turned passes only give dense maps: render no silhouette rows for them (the
        # renderer is about 40 % of a ``tiny`` forward pass on the CPU).
        no_rows = torch.zeros(0, dtype=torch.long, device=image.device)
        turned = [(degrees, self.model(rotate_maps(image, degrees).to(image.dtype), None, no_rows))
                  for degrees in self.degrees]
        if output.heatmaps:
            heatmaps = average_turned(output.heatmaps[-1], [(d, t.heatmaps[-1]) for d, t in turned])
            output.heatmaps[-1] = heatmaps
            beta = self.model.cfg.soft_argmax_beta
            output.heatmap_keypoints = soft_argmax(heatmaps, beta=beta) * (image.shape[-1] / heatmaps.shape[-1])
            if getattr(self.model.cfg, "camera_from_keypoints", False) and output.joints_3d is not None:
                self._refit_camera(output, heatmaps.amax(dim=(2, 3)).clamp_min(0), camera_K)
        if output.masks:
            probability = average_turned(torch.sigmoid(output.masks[-1].float()),
                                         [(d, torch.sigmoid(t.masks[-1].float())) for d, t in turned])
            probability = probability.clamp(1e-6, 1 - 1e-6)
            output.masks[-1] = torch.log(probability) - torch.log1p(-probability)
        return output

    def _refit_camera(self, output: Any, peaks: torch.Tensor, camera_K: torch.Tensor | None) -> None:
        """Solve the mesh's camera from the averaged keypoints (weights = their peaks, (B, 21))
        and redo what it places: projected joints, silhouette, ``root_3d``."""
        camera = fit_weak_perspective(output.joints_3d, output.heatmap_keypoints, peaks, fallback=output.camera)
        self.model.place_mesh(output, camera, camera_K, output.silhouette_rows)


def with_rotation_tta(model: nn.Module, degrees: float) -> nn.Module:
    """``model`` itself when ``degrees`` is 0, else :class:`RotationTTA` with passes at
    ``-degrees``, 0 and ``+degrees``."""
    if degrees < 0:
        raise ValueError(f"test-time rotation must be >= 0 degrees, not {degrees}")
    return RotationTTA(model, (-degrees, degrees)) if degrees else model


def without_tta(model: nn.Module) -> nn.Module:
    """The network inside a :class:`RotationTTA` (``model`` itself otherwise): for passes whose
    dense maps are not kept, such as the upright search's."""
    return model.model if isinstance(model, RotationTTA) else model
