"""Synthetic hand generation throughput at 224 x 224 (goal: >= 50 images/s on 2 cores).

Measures, in one run:

- ``render only``: the baseline floor, :func:`hiu_model.render.render_rgb` on the posed
  hands and forearms of the same scenes (what the z-buffer alone costs);
- ``generate, 1 worker`` and ``generate, N workers``: the whole pipeline (sampling, posing,
  rendering, compositing, labels, JPEG + RLE encoding) as ``hiu-data synth`` runs it, without
  the Parquet writing;
- ``synth to parquet``: ``write_synth`` end to end, shards and manifest included.

Prints wall-clock images/s and the CPU seconds per image (all processes), so numbers taken
while other work shares the machine can be read as well: ``2 / cpu_s_per_image`` is the rate
two idle cores would give.

    .venv/bin/python bench/synth.py [--n 320] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _timed(label: str, n: int, fn) -> tuple[float, float]:  # noqa: ANN001
    wall, cpu = time.perf_counter(), _cpu()
    fn()
    wall, cpu = time.perf_counter() - wall, _cpu() - cpu
    print(f"{label:<28} {n / wall:8.1f} images/s   {1000 * cpu / n:7.1f} ms CPU/image   ({n} images, {wall:.1f} s)")
    return n / wall, cpu / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=320)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()

    import torch

    from hiu_data.synth import scene
    from hiu_data.synth.generate import generate_scenes, write_synth
    from hiu_data.synth.profiles import profile_for

    torch.set_num_threads(1)
    profile = profile_for("parquet", args.size)
    print(f"synthetic hands, {args.size}x{args.size}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    list(generate_scenes(scene.CHUNK, 99, profile))  # build the hand models outside the timings

    chunks = []
    for start in range(0, args.n, scene.CHUNK):
        specs = [scene.sample_scene(0, i, profile, "train") for i in range(start, min(start + scene.CHUNK, args.n))]
        scene.pose_and_place(specs)
        chunks.append(specs)
    floor, _ = _timed("render only (baseline)", args.n,
                      lambda: [scene.render_hands(c, profile.width, profile.height) for c in chunks])
    one, _ = _timed("generate, 1 worker", args.n, lambda: list(generate_scenes(args.n, 0, profile)))
    many, cpu_many = _timed(f"generate, {args.workers} workers", args.n,
                            lambda: list(generate_scenes(args.n, 0, profile, workers=args.workers)))
    with tempfile.TemporaryDirectory() as tmp:
        _timed(f"synth to parquet, {args.workers} w", args.n,
                               lambda: write_synth(Path(tmp), args.n, 0, size=args.size, workers=args.workers))
    print(f"pipeline / render-only: {one / floor:.2f}   {args.workers} workers / 1 worker: {many / one:.2f}")
    print(f"two idle cores (from CPU time): {2 / cpu_many:.0f} images/s   goal >= 50 images/s")


if __name__ == "__main__":
    main()
