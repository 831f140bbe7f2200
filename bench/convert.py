"""Conversion throughput: raw tree written by a format's writer -> ``convert`` with embedded
images, next to the time to merely read the same raw files (the ``cat``-speed floor) in the
same run.

    python bench/convert.py [--formats freihand] [--samples 20000] [--workers 1 2]

Goal (issue 3): FreiHAND >= 2,000 samples/s on the 2-core machine, within 3x of the read
floor. Both the floor and the conversions run on a warm page cache (the tree is read once
before timing), so the floor is what reading the bytes costs, not the disk.

Each format is one ``bench_<name>(samples, work) -> Path`` function that writes a raw tree
and returns its root; add a format by adding a function and a ``CASES`` entry.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.formats.hands

import pyarrow as pa  # noqa: E402

from hiu_data.convert import convert  # noqa: E402
from hiu_data.formats import freihand  # noqa: E402
from hiu_data.formats._common import bbox_from_keypoints, project, visibility_in_image  # noqa: E402
from hiu_data.schema import HandSample  # noqa: E402
from tests.formats.hands import blob_mask, noise_image, random_hand  # noqa: E402


def bench_freihand(samples: int, work: Path) -> Path:
    """A FreiHAND v2 training tree of ``samples`` images: samples / 4 annotations x 4 versions,
    224 x 224 JPEGs (a pool of 256 distinct images), masks, K / xyz / MANO JSON lists."""
    rng = np.random.default_rng(0)
    width, height = freihand.IMAGE_SIZE
    pool = [noise_image(rng, width, height, ".jpg") for _ in range(256)]
    n = samples // len(freihand.VERSIONS)
    records = []
    labels = []
    for idx in range(n):
        xyz, K = random_hand(rng, (width, height))
        kp2d = project(xyz, K)
        vis = visibility_in_image(kp2d, width, height)
        labels.append((xyz, K, kp2d, vis, blob_mask(rng, kp2d, width, height), rng.normal(size=48) * 0.2,
                       rng.normal(size=10)))
    for v, version in enumerate(freihand.VERSIONS):
        for idx, (xyz, K, kp2d, vis, mask, pose, betas) in enumerate(labels):
            records.append(HandSample(
                sample_id=f"freihand/train/{idx + n * v:08d}", dataset="freihand", split="train", subset=version,
                image_id=f"{idx + n * v:08d}", image_bytes=pool[(idx * 7 + v) % len(pool)], width=width, height=height,
                hand_side="right", bbox=bbox_from_keypoints(kp2d, vis, width, height), keypoints_2d=kp2d,
                visibility=vis, keypoints_3d=xyz, camera_K=K, mano_pose=pose,
                mano_betas=betas, mask=mask, extras={"annotation_index": idx}))
    root = work / "FreiHAND_pub_v2"
    freihand.write(records, root)
    return root


CASES: dict[str, Callable[[int, Path], Path]] = {"freihand": bench_freihand}

# The Converters II cases (CMU, InterHand2.6M) live in bench/convert_more.py beside this file.
from convert_more import CASES as _CONVERTERS_II_CASES  # noqa: E402

CASES.update(_CONVERTERS_II_CASES)


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def cpu_seconds() -> float:
    """User + system CPU seconds of this process (all its threads) and its finished children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def read_floor(files: list[Path]) -> tuple[float, float, float]:
    """Seconds to read every file: a Python read loop (wall, CPU), and ``cat`` over all of them (wall)."""
    t, c = time.perf_counter(), cpu_seconds()
    total = 0
    for path in files:
        with open(path, "rb") as f:
            total += len(f.read())
    python_s, python_cpu = time.perf_counter() - t, cpu_seconds() - c
    listing = "\0".join(str(p) for p in files).encode()
    t = time.perf_counter()
    subprocess.run(["xargs", "-0", "cat"], input=listing, stdout=subprocess.DEVNULL, check=True)
    cat_s = time.perf_counter() - t
    return python_s, python_cpu, cat_s


def main(description: str = __doc__, formats: list[str] | None = None) -> None:
    """Run the bench; ``description`` and the default ``formats`` (all of :data:`CASES`) let
    bench/convert_more.py run it as its own script."""
    formats = list(CASES) if formats is None else formats
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--formats", nargs="+", default=formats, choices=list(CASES),
                        help=f"default: {' '.join(formats)}")
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=2, help="timed conversions per setting (best is reported)")
    args = parser.parse_args()
    pa.array([0])  # pyarrow imports pandas on its first array; keep that out of the timings
    work = Path(tempfile.mkdtemp(prefix="hiu-bench-convert-"))
    try:
        for name in args.formats:
            t = time.perf_counter()
            root = CASES[name](args.samples, work / name)
            files = _files(root)
            size_mb = sum(p.stat().st_size for p in files) / 1e6
            print(f"{name}: wrote {len(files)} raw files ({size_mb:.0f} MB) in {time.perf_counter() - t:.1f} s")
            read_floor(files)  # warm the page cache
            floors = [read_floor(files) for _ in range(args.repeats)]
            python_s, python_cpu, cat_s = min(f[0] for f in floors), min(f[1] for f in floors), min(f[2] for f in floors)
            print(f"  read floor (every raw file once, warm cache): python loop {python_s:.2f} s "
                  f"({python_cpu:.2f} s CPU), cat {cat_s:.2f} s; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
            for workers in args.workers:
                best, best_cpu, rows = float("inf"), float("inf"), 0
                for _ in range(args.repeats):
                    out = work / f"out-{name}"
                    t, c = time.perf_counter(), cpu_seconds()
                    result = convert(name, root, out, workers=workers, overwrite=True)
                    best, best_cpu = min(best, time.perf_counter() - t), min(best_cpu, cpu_seconds() - c)
                    rows = sum(result.counts.values())
                print(f"  convert --workers {workers}: {rows} samples in {best:.2f} s = {rows / best:,.0f} samples/s; "
                      f"{best / cat_s:.2f}x the cat floor, {best / python_s:.2f}x the python-loop floor; "
                      f"{best_cpu:.2f} s CPU = {best_cpu / python_cpu:.2f}x the loop's CPU")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
