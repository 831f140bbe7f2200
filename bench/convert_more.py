"""Conversion throughput of the Converters II formats (CMU, InterHand2.6M): the cases of
``bench/convert.py`` for those formats, measured the same way (raw tree written by the
format's writer -> ``convert`` with embedded images, next to the read floor of the same files).

    python bench/convert_more.py [--formats cmu interhand26m] [--samples 20000] [--workers 1 2] [--repeats 2]

``bench/convert.py`` registers these cases too (``--formats cmu interhand26m``); running this
file directly benches only them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.formats.hands

from hiu_data.formats import cmu, interhand26m  # noqa: E402
from hiu_data.formats._common import bbox_from_keypoints, project, visibility_in_image  # noqa: E402
from hiu_data.schema import HandSample  # noqa: E402
from tests.formats.hands import noise_image, random_hand  # noqa: E402


def bench_cmu(samples: int, work: Path) -> Path:
    """A CMU hand_labels tree of ``samples`` hands: manual_train / manual_test pairs of ``_l`` /
    ``_r`` JSON + JPEG files (400 x 300, a pool of 256 distinct images)."""
    rng = np.random.default_rng(0)
    width, height = 400, 300
    pool = [noise_image(rng, width, height, ".jpg") for _ in range(256)]
    records = []
    for idx in range(samples):
        image, side = idx // 2, ("left", "right")[idx % 2]
        subset = "manual_test" if image % 4 == 3 else "manual_train"
        xyz, K = random_hand(rng, (width, height), side=side, fill=0.4)
        kp2d = project(xyz, K)
        vis = visibility_in_image(kp2d, width, height)
        records.append(HandSample(
            sample_id=f"cmu/{cmu.SUBSET_SPLIT[subset]}/{subset}/{image:09d}_01_{side[0]}", dataset="cmu",
            split=cmu.SUBSET_SPLIT[subset], subset=subset, image_id=f"cmu/{subset}/{image:09d}_01",
            image_bytes=pool[image % len(pool)], width=width, height=height, hand_side=side,
            bbox=bbox_from_keypoints(kp2d, vis, width, height), keypoints_2d=kp2d, visibility=vis,
            extras={"head_size": 100.0}))
    root = work / "hand_labels_root"
    cmu.write(records, root)
    return root


def bench_interhand26m(samples: int, work: Path) -> Path:
    """An InterHand2.6M v1.0 train tree of about ``samples`` hands: frames of 4 cameras, two
    hands in every other frame, 334 x 512 JPEGs (a pool of 256), MANO fits for every hand."""
    import cv2

    rng = np.random.default_rng(0)
    width, height = interhand26m.IMAGE_SIZES[0]
    pool = [noise_image(rng, width, height, ".jpg") for _ in range(256)]
    K = np.array([[1200.0, 0, width / 2], [0, 1200.0, height / 2], [0, 0, 1]])
    views = [(cv2.Rodrigues(rng.uniform(-0.08, 0.08, 3).reshape(3, 1))[0], rng.uniform(-15, 15, 3)) for _ in range(4)]
    records, frame = [], 0
    while len(records) < samples:
        sides = ("right", "left") if frame % 2 == 0 else ("right",)
        world = {}
        for side in sides:
            kp, _ = random_hand(rng, (width, height), K=K, side=side, fill=0.35)
            kp[:, 0] += 0.05 if side == "right" else -0.05
            world[side] = kp * 1000.0
        pose, betas = rng.normal(0, 0.3, 48), rng.normal(size=10)
        for c, (camrot, campos) in enumerate(views):
            stem = f"Capture0/ROM01_bench/cam{400000 + c}/image{frame}"
            for side in sides:
                xyz = (world[side] - campos) @ camrot.T / 1000.0
                kp2d = project(xyz, K)
                vis = visibility_in_image(kp2d, width, height)
                extras = {"capture": 0, "camera": str(400000 + c), "frame_idx": frame, "hand_type_valid": 1,
                          "hand_type": "interacting" if len(sides) == 2 else "right",
                          "camrot": camrot.tolist(), "campos": campos.tolist(), "mano_trans": [0.0, 0.0, 0.5]}
                records.append(HandSample(
                    sample_id=f"interhand26m/train/{stem}/{side}", dataset="interhand26m", split="train",
                    subset="ROM01_bench", image_id=f"interhand26m/train/{stem}",
                    image_bytes=pool[(frame * 4 + c) % len(pool)], width=width, height=height, hand_side=side,
                    bbox=bbox_from_keypoints(kp2d, vis, width, height), keypoints_2d=kp2d, visibility=vis,
                    keypoints_3d=xyz, camera_K=K, mano_pose=pose, mano_betas=betas, extras=extras))
        frame += 1
    root = work / "InterHand2.6M"
    interhand26m.write(records, root)
    return root


CASES = {"cmu": bench_cmu, "interhand26m": bench_interhand26m}

if __name__ == "__main__":
    import convert  # bench/convert.py, beside this file (it registers these cases too)

    convert.main(description=__doc__, formats=list(CASES))
