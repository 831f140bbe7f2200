"""Soft silhouette forward + backward on the CPU: hiu's renderer against a dense baseline.

Workload as in PyTorch3D's published CPU timing of its soft rasteriser: a batch of 32 ico-spheres
of 1,280 faces, faces_per_pixel 50, sigma 1e-4 NDC^2 (converted to pixels^2) and PyTorch3D's
blur radius ln(1e4 - 1) * sigma, at 64x64 and 128x128; the loss is a weighted sum of alpha.
``--mesh hand`` uses the procedural hand (2,260 faces) instead.

The baseline, measured in the same run, is the straightforward dense computation
(:mod:`hiu_model.render_backends`: every face against every pixel, plain autograd), run on a
few of the meshes pixel-chunk by pixel-chunk (backward per chunk, so its memory stays
bounded) and scaled to the batch. Each configuration runs in a fresh subprocess so that its
peak memory (ru_maxrss above the resident size after set-up) is its own.

    python bench/render.py                 # spheres, 64 and 128, batch 32
    python bench/render.py --mesh hand --threads 1
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PYTORCH3D_REFERENCE_S = {64: 7.7, 128: 31.7}
"""PyTorch3D CPU, 32 ico-spheres of 1,280 faces, K = 50, sigma = 1e-4, fwd + bwd (PyTorch3D's published figure)."""


def icosphere(level: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit ico-sphere: (V, 3) float64 vertices and (20 * 4**level, 3) int64 faces (outward)."""
    t = (1.0 + 5**0.5) / 2.0
    verts = [(-1, t, 0), (1, t, 0), (-1, -t, 0), (1, -t, 0), (0, -1, t), (0, 1, t), (0, -1, -t), (0, 1, -t),
             (t, 0, -1), (t, 0, 1), (-t, 0, -1), (-t, 0, 1)]
    faces = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4), (11, 10, 2),
             (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8), (3, 8, 9), (4, 9, 5), (2, 4, 11),
             (6, 2, 10), (8, 6, 7), (9, 8, 1)]
    v = [tuple(c / math.sqrt(sum(x * x for x in p)) for c in p) for p in verts]
    for _ in range(level):
        cache: dict[tuple[int, int], int] = {}

        def mid(i: int, j: int) -> int:
            key = (min(i, j), max(i, j))
            if key not in cache:
                m = [(a + b) / 2 for a, b in zip(v[i], v[j])]
                n = math.sqrt(sum(x * x for x in m))
                v.append(tuple(x / n for x in m))
                cache[key] = len(v) - 1
            return cache[key]

        new = []
        for a, b, c in faces:
            ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
            new += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
        faces = new
    return torch.tensor(v, dtype=torch.float64), torch.tensor(faces, dtype=torch.long)


def scene(mesh: str, batch: int, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Meshes (B, V, 3) in front of a camera K (B, 3, 3) so that each covers about 30% of the image."""
    g = torch.Generator().manual_seed(0)
    if mesh == "sphere":
        unit, faces = icosphere(3)
        verts = unit.float()[None] * 0.25 * (1 + 0.1 * torch.rand(batch, 1, 1, generator=g))
    else:
        from hiu_model.mano import HandModel

        hand = HandModel("right", kind="procedural")
        pose = torch.randn(batch, 48, generator=g) * 0.3
        with torch.no_grad():
            out = hand(pose, torch.zeros(batch, 10)).vertices
        verts, faces = out - out.mean(1, keepdim=True), hand.faces
        verts = verts * (0.25 / verts.norm(dim=-1).amax(1, keepdim=True)[..., None])
    offset = torch.cat([(torch.rand(batch, 1, 2, generator=g) - 0.5) * 0.2, torch.full((batch, 1, 1), 2.0)], -1)
    focal = 1.3 * size
    K = torch.tensor([[focal, 0.0, size / 2], [0.0, focal, size / 2], [0.0, 0.0, 1.0]]).expand(batch, 3, 3)
    return (verts + offset).contiguous(), faces, K.contiguous()


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_one(which: str, mesh: str, batch: int, size: int, repeats: int, baseline_images: int) -> dict:
    """Time one configuration in this process; returns seconds for the whole batch and peak memory."""
    from hiu_model.render import blur_for_sigma, sigma_from_ndc, soft_silhouette
    from hiu_model.render_backends import dense_log_miss
    from hiu_model.raster import project

    verts, faces, K = scene(mesh, batch, size)
    sigma = sigma_from_ndc(1e-4, (size, size))
    blur = blur_for_sigma(sigma)
    weight = torch.rand(batch, size, size, generator=torch.Generator().manual_seed(1))
    base_rss = _rss_bytes()

    def ours() -> torch.Tensor:
        x = verts.clone().requires_grad_()
        alpha = soft_silhouette(x, faces, K, (size, size), sigma=sigma, blur_radius=blur, faces_per_pixel=50)
        (alpha * weight).sum().backward()
        return alpha.detach()

    def dense() -> torch.Tensor:
        rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
        pixels = torch.stack([cols.reshape(-1), rows.reshape(-1)], -1).float() + 0.5
        out = []
        for b in range(baseline_images):
            x = verts[b:b + 1].clone().requires_grad_()
            parts = []
            for start in range(0, size * size, 1024):
                xy = project(x, K[b:b + 1])
                total = dense_log_miss(xy, x[..., 2], faces, pixels[start:start + 1024], sigma, blur, 50)
                alpha = -torch.expm1(total)
                (alpha * weight[b].reshape(1, -1)[:, start:start + 1024]).sum().backward()
                parts.append(alpha.detach())
            out.append(torch.cat(parts, 1).view(size, size))
        return torch.stack(out)

    fn = ours if which == "ours" else dense
    result = fn()  # warm-up (and the values for the agreement check)
    times, cpu_times = [], []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    scale = batch / baseline_images if which == "dense" else 1.0
    seconds, cpu_seconds = statistics.median(times) * scale, statistics.median(cpu_times) * scale
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base_rss
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "times": times, "peak_mib": peak / 2**20, "faces": int(faces.shape[0]),
            "alpha_head": result[:baseline_images].reshape(-1).tolist() if size <= 64 else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mesh", choices=("sphere", "hand"), default="sphere")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline-images", type=int, default=2, help="meshes the dense baseline runs on")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        which, size = args.child[0], int(args.child[1])
        print(json.dumps(run_one(which, args.mesh, args.batch, size, args.repeats, args.baseline_images)))
        return
    print(f"soft silhouette fwd+bwd, CPU, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"batch {args.batch} x {args.mesh}, K=50, sigma=1e-4 NDC^2, load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores")
    for size in args.sizes:
        res = {}
        for which in ("ours", "dense"):
            cmd = [sys.executable, __file__, "--mesh", args.mesh, "--batch", str(args.batch), "--repeats",
                   str(args.repeats), "--baseline-images", str(args.baseline_images), "--child", which, str(size)]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            res[which] = json.loads(out.strip().splitlines()[-1])
        ours, dense = res["ours"], res["dense"]
        agree = ""
        if ours["alpha_head"] is not None:
            diff = max(abs(a - b) for a, b in zip(ours["alpha_head"], dense["alpha_head"]))
            agree = f"  max |alpha - dense| {diff:.1e}"
        line = (f"{size}x{size} ({ours['faces']} faces): hiu {ours['seconds']:.3f} s wall / {ours['cpu_seconds']:.3f} s CPU"
                f" (peak +{ours['peak_mib']:.0f} MiB)  dense {dense['seconds']:.1f} s wall / {dense['cpu_seconds']:.1f} s CPU"
                f" (peak +{dense['peak_mib']:.0f} MiB; {args.baseline_images} meshes, scaled to {args.batch})  "
                f"dense/hiu {dense['seconds'] / ours['seconds']:.0f}x wall, "
                f"{dense['cpu_seconds'] / ours['cpu_seconds']:.0f}x CPU{agree}")
        if args.mesh == "sphere" and args.batch == 32 and size in PYTORCH3D_REFERENCE_S:
            ref = PYTORCH3D_REFERENCE_S[size]
            line += f"  PyTorch3D ref {ref} s: {ref / ours['seconds']:.0f}x"
        print(line, flush=True)


if __name__ == "__main__":
    main()
