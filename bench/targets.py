"""Target generation throughput: heat-maps + POF + mask per sample on one core.

    python bench/targets.py [--n 300] [--repeat 5] [--size 64] [--sigma 2.0]

Inputs are realistic: hand-made hands (tests/targets/handmade.py) cropped as the data loader
crops them (with augmentation), 21 joints, 3D, and the full-image RLE mask with its affine.
hiu's vectorised targets (hiu_data.targets) run next to a straightforward reference measured
in the same run: the per-joint / per-bone window loop of common pose codebases (a Gaussian
evaluated on a 6-sigma window around each joint; each bone's band evaluated on its own box).
Both produce the same targets (checked before timing). Goal (issue 5): >= 2,000 samples/s and
>= 3x the reference.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hiu_data.skeleton import BONES, NUM_BONES, NUM_JOINTS  # noqa: E402
from hiu_data.targets import bone_directions, encode_heatmaps, encode_pof, mask_target  # noqa: E402
from bench.timing import interleaved_rates  # noqa: E402
from hiu_model.data import DataOptions, crop_for, sample_augment  # noqa: E402
from tests.targets.handmade import make_hand  # noqa: E402

cv2.setNumThreads(1)


def reference_heatmaps(kp: np.ndarray, valid: np.ndarray, size: int, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-joint window loop (sub-pixel centre, 3-sigma window), as common codebases write it."""
    heatmaps = np.zeros((NUM_JOINTS, size, size), np.float32)
    weights = np.zeros(NUM_JOINTS, np.float32)
    radius = 3 * sigma
    for j in range(NUM_JOINTS):
        if not valid[j]:
            continue
        x, y = kp[j]
        left, top = int(max(0, np.floor(x - radius))), int(max(0, np.floor(y - radius)))
        right, bottom = int(min(size, np.ceil(x + radius) + 1)), int(min(size, np.ceil(y + radius) + 1))
        if left >= right or top >= bottom:
            continue
        xs = np.arange(left, right, dtype=np.float32) + 0.5
        ys = np.arange(top, bottom, dtype=np.float32)[:, None] + 0.5
        heatmaps[j, top:bottom, left:right] = np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma * sigma))
        weights[j] = 1
    return heatmaps, weights


def reference_pof(kp: np.ndarray, kp3: np.ndarray, valid: np.ndarray, size: int, band: float) -> np.ndarray:
    """Per-bone loop over each bone's box (OpenPose part-affinity style), capsule band."""
    pof = np.zeros((NUM_BONES, 3, size, size), np.float32)
    for b, (p, c) in enumerate(BONES):
        if not (valid[p] and valid[c]):
            continue
        a, e = kp[p].astype(np.float64), kp[c].astype(np.float64)
        v = e - a
        length = np.hypot(*v)
        if length < 1e-3:
            continue
        u = v / length
        d3 = kp3[c] - kp3[p]
        z = d3[2] / np.linalg.norm(d3)
        x0, y0 = int(max(0, np.floor(min(a[0], e[0]) - band))), int(max(0, np.floor(min(a[1], e[1]) - band)))
        x1, y1 = int(min(size, np.ceil(max(a[0], e[0]) + band) + 1)), int(min(size, np.ceil(max(a[1], e[1]) + band) + 1))
        if x0 >= x1 or y0 >= y1:
            continue
        xs, ys = np.meshgrid(np.arange(x0, x1) + 0.5, np.arange(y0, y1) + 0.5)
        t = np.clip((xs - a[0]) * u[0] + (ys - a[1]) * u[1], 0, length)
        dist = np.hypot(xs - a[0] - t * u[0], ys - a[1] - t * u[1])
        on = dist <= band
        pof[b, 0, y0:y1, x0:x1][on] = u[0]
        pof[b, 1, y0:y1, x0:x1][on] = u[1]
        pof[b, 2, y0:y1, x0:x1][on] = z
    return pof.reshape(3 * NUM_BONES, size, size)


def inputs(n: int, size: int, seed: int = 0) -> list[tuple]:
    """``n`` augmented hands: 2D (21, 2) map px, 3D (21, 3) m, valid (21,), mask RLE, (2, 3) image->map affine."""
    options = DataOptions(heatmap_size=size, mask_size=size)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        sample = make_hand(i, "left" if i % 2 else "right")
        t = crop_for(sample, options, sample_augment(rng, options))
        kp2 = t.points_to_crop(sample.keypoints_2d) * np.float32(size / options.input_size)
        out.append((kp2, t.rotate_3d(sample.keypoints_3d), np.ones(NUM_JOINTS, bool), sample.mask, t.scaled(size)))
    return out


def run_hiu(data: list[tuple], size: int, sigma: float, band: float) -> None:
    """hiu's targets (heat-maps, POF, mask) of every input."""
    for kp2, kp3, valid, mask, affine in data:
        encode_heatmaps(kp2, valid, (size, size), sigma)
        encode_pof(kp2, kp3, valid, (size, size), band)
        mask_target(mask, (size, size), affine)


def run_reference(data: list[tuple], size: int, sigma: float, band: float) -> None:
    """The reference heat-maps and POF (same mask) of every input: the baseline of the ratio."""
    for kp2, kp3, valid, mask, affine in data:
        reference_heatmaps(kp2, valid, size, sigma)
        reference_pof(kp2, kp3, valid, size, band)
        mask_target(mask, (size, size), affine)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--sigma", type=float, default=2.0)
    parser.add_argument("--band", type=float, default=1.5)
    args = parser.parse_args()
    data = inputs(args.n, args.size)
    s, sig, band = args.size, args.sigma, args.band
    for kp2, kp3, valid, _, _ in data[:20]:  # same targets (the reference truncates at 3 sigma)
        hm, _ = encode_heatmaps(kp2, valid, (s, s), sig)
        assert np.abs(hm - reference_heatmaps(kp2, valid, s, sig)[0]).max() < 0.012
        pof, _ = encode_pof(kp2, kp3, valid, (s, s), band)
        assert (np.abs(pof - reference_pof(kp2, kp3, valid, s, band)) > 1e-4).mean() < 1e-3
    assert bone_directions(data[0][0], data[0][1], data[0][2])[1].all()
    rates = interleaved_rates({
        "hiu": lambda d: run_hiu(d, s, sig, band),
        "reference": lambda d: run_reference(d, s, sig, band),
        "heat-maps": lambda d: all(encode_heatmaps(k, v, (s, s), sig) for k, _, v, _, _ in d),
        "POF": lambda d: all(encode_pof(k, k3, v, (s, s), band) for k, k3, v, _, _ in d),
        "mask": lambda d: all(mask_target(m, (s, s), a) is not None for _, _, _, m, a in d),
    }, data, args.repeat, chunk=25)
    print(f"targets: {NUM_JOINTS} heat-maps + {3 * NUM_BONES} POF channels + mask at {s}x{s}, one core, n={len(data)}")
    print(f"  {'samples/s':24s} {'wall (best)':>12s} {'CPU time':>10s}")
    for name in ("hiu", "reference"):
        label = "hiu (vectorised)" if name == "hiu" else "reference (loops)"
        print(f"  {label:24s} {rates[name][0]:12.0f} {rates[name][1]:10.0f}")
    print(f"  {'ratio hiu / reference':24s} {rates['hiu'][0] / rates['reference'][0]:11.2f}x"
          f" {rates['hiu'][1] / rates['reference'][1]:9.2f}x")
    print("  hiu per sample (wall): " + ", ".join(f"{k} {1e6 / rates[k][0]:.0f} us" for k in ("heat-maps", "POF", "mask")))


if __name__ == "__main__":
    main()
