"""How much the soft silhouette's faces-per-pixel limit K changes alpha and its gradient on hands.

Synthetic hands (the ``hiu-data synth`` scene sampler: its poses, views and framing) are
rendered the way the model renders them in training: root-relative vertices under a
weak-perspective camera that maps the crop (the keypoint box grown by the preset's margin,
times a crop scale; 1.25 is training's widest zoom-out) onto a ``mask_size`` image, with
PyTorch3D's sigma (1e-4 NDC^2) and blur radius. For each K, two ways of choosing the K faces of
a crowded pixel are compared with blending every candidate:

- ``depth``: the K nearest in depth (PyTorch3D's rasteriser; depth from perspective-correct
  barycentrics clipped onto the face);
- ``strongest``: the K with the smallest signed distance, i.e. the largest coverage
  probabilities (what :func:`hiu_model.render.soft_silhouette` keeps).

Per hand: max |alpha_K - alpha_all|, the relative error of a squared-error loss against a mask
target (the untruncated hard silhouette shifted by one pixel) and the relative error (norm) of
its gradient with respect to the projected vertices. Float64 throughout.

    python bench/render_truncation.py --hands 120
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hiu_model.raster import barycentric, face_vertices, project  # noqa: E402
from hiu_model.render import _blend, _candidates, _strongest_k, blur_for_sigma, sigma_from_ndc  # noqa: E402

PRESETS = {"tiny": (32, 128, 0.1), "paper": (64, 256, 0.25)}
"""mask size, input size, crop margin of the presets (hiu_model.config)."""


def synthetic_hands(n_scenes: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, str]]:
    """(vertices (V, 3), joints (21, 3), K (3, 3), side) of every hand of ``n_scenes`` scenes."""
    from hiu_data.synth import scene
    from hiu_data.synth.profiles import profile_for

    profile = profile_for("parquet")
    specs = [scene.sample_scene(seed, i, profile, "train") for i in range(n_scenes)]
    scene.pose_and_place(specs)
    return [(h.vertices, h.joints, s.K, h.side) for s in specs for h in s.hands]


def crop_view(vertices: np.ndarray, joints: np.ndarray, K: np.ndarray, side: str, mask_size: int,
              input_size: int, margin: float, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Camera-frame points (1, V, 3) and intrinsics (3, 3) of the model's silhouette of one crop."""
    uv = joints @ K.T
    uv = uv[:, :2] / uv[:, 2:]
    lo, hi = uv.min(0), uv.max(0)
    crop = max(hi - lo) * (1 + 2 * margin) * scale
    corner = (lo + hi) / 2 - crop / 2
    s = K[0, 0] / joints[0, 2] * input_size / crop
    t = (uv[0] - corner) * input_size / crop
    rel = torch.tensor(vertices - joints[0], dtype=torch.float64)[None]
    if side == "left":  # the crops of left hands are mirrored
        rel = rel * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
        t = np.array([input_size - t[0], t[1]])
    uv_crop = s * rel[..., :2] + torch.tensor(t)
    depth = rel[..., 2:] + 1.0  # as the model: a constant offset keeps the hand in front
    intrinsics = torch.diag(torch.tensor([mask_size / input_size, mask_size / input_size, 1.0], dtype=torch.float64))
    return torch.cat([uv_crop * depth, depth], -1), intrinsics


def clipped_depth(xy: torch.Tensor, z: torch.Tensor, faces: torch.Tensor, inst: torch.Tensor, pix: torch.Tensor,
                  size: int) -> torch.Tensor:
    """(P,) depth of each (face, pixel) pair as PyTorch3D's rasteriser orders faces."""
    tri_xy, tri_z = face_vertices(xy, z, faces)
    local = pix % (size * size)
    p = torch.stack([(local % size).to(xy.dtype) + 0.5, (local // size).to(xy.dtype) + 0.5], -1)
    w = barycentric(p, tri_xy[inst]) / tri_z[inst]
    w = (w / w.sum(-1, keepdim=True)).clamp_min(0.0)
    w = w / w.sum(-1, keepdim=True).clamp_min(1e-30)
    return (w * tri_z[inst]).sum(-1)


def nearest_in_depth(pix: torch.Tensor, depth: torch.Tensor, faces_of: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` candidates per pixel nearest in depth (ties to the lower face)."""
    order = torch.argsort(faces_of, stable=True)
    order = order[torch.argsort(depth[order], stable=True)]
    order = order[torch.argsort(pix[order], stable=True)]
    _, group = torch.unique_consecutive(pix[order], return_counts=True)
    rank = torch.arange(order.numel()) - torch.repeat_interleave(torch.cumsum(group, 0) - group, group)
    return order[rank < k]


def study(hands: list, preset: str, scale: float, ks: list[int]) -> None:
    from hiu_model.mano import HandModel

    size, input_size, margin = PRESETS[preset]
    faces = HandModel("right", kind="procedural").faces
    sigma = sigma_from_ndc(1e-4, (size, size))
    blur = blur_for_sigma(sigma)
    rows: dict[tuple[int, str], list[tuple[float, float, float]]] = {}
    truncated = {k: [0, 0] for k in ks}
    counts = []
    for vertices, joints, K, side in hands:
        points, intrinsics = crop_view(vertices, joints, K, side, size, input_size, margin, scale)
        xy = project(points, intrinsics)
        inst, pix, inside, dist = _candidates(xy, points[..., 2], faces, (size, size), blur, 1 << 18)
        per_pixel = torch.bincount(pix, minlength=size * size)
        counts.append(per_pixel[per_pixel > 0])
        faces_of = inst % faces.shape[0]

        def loss_and_grad(keep: torch.Tensor, target: torch.Tensor | None = None):
            x = xy.clone().requires_grad_()
            alpha = _blend(x, faces, inst[keep], pix[keep], inside[keep], dist[keep], (size, size), sigma)
            if target is None:
                target = torch.roll((alpha.detach() > 0.5).double(), 1, dims=2)
            loss = ((alpha - target) ** 2).mean()
            return alpha.detach(), loss.item(), torch.autograd.grad(loss, x)[0], target

        alpha_all, loss_all, grad_all, target = loss_and_grad(torch.arange(pix.numel()))
        depth = clipped_depth(xy, points[..., 2], faces, inst, pix, size)
        for k in ks:
            crowded = int((per_pixel > k).sum())
            truncated[k][0] += crowded > 0
            truncated[k][1] += crowded
            for name, keep in (("depth", nearest_in_depth(pix, depth, faces_of, k)),
                               ("strongest", _strongest_k(pix, dist, faces_of, k))):
                alpha, loss, grad, _ = loss_and_grad(keep, target)
                rows.setdefault((k, name), []).append((
                    (alpha - alpha_all).abs().max().item(), abs(loss - loss_all) / loss_all,
                    ((grad - grad_all).norm() / grad_all.norm()).item()))
    c = torch.cat(counts).double()
    print(f"\n{preset}: {size}x{size} masks, margin {margin}, crop scale {scale}, {len(hands)} hands, sigma "
          f"{sigma:.4f} px^2, blur {blur:.3f} px^2; faces per reached pixel: median {c.median().item():.0f}, "
          f"99th percentile {c.quantile(0.99).item():.0f}, max {c.max().item():.0f}")
    print("| K | hands truncated | truncated pixels / hand | keep | max dalpha (max / mean over hands) "
          "| loss rel. error (max) | gradient rel. error (max / mean) |")
    print("|---|---|---|---|---|---|---|")
    for k in ks:
        for name in ("depth", "strongest"):
            r = np.array(rows[(k, name)])
            print(f"| {k} | {truncated[k][0]}/{len(hands)} | {truncated[k][1] / len(hands):.1f} | {name} | "
                  f"{r[:, 0].max():.2g} / {r[:, 0].mean():.2g} | {r[:, 1].max():.2g} | "
                  f"{r[:, 2].max():.2g} / {r[:, 2].mean():.2g} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=120, help="synthetic scenes (some have two hands)")
    parser.add_argument("--k", type=int, nargs="+", default=[8, 20, 50, 100])
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 1.25])
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    hands = synthetic_hands(args.scenes)
    for scale in args.scales:
        for preset in PRESETS:
            study(hands, preset, scale, args.k)


if __name__ == "__main__":
    main()
