"""Random HandSample records covering every column kind (NaN keypoints, nulls, both image modes)."""

from __future__ import annotations

import numpy as np

from hiu_data.io import images, rle
from hiu_data.schema import HandSample
from hiu_data.skeleton import NUM_JOINTS


def random_records(n: int, seed: int = 0, dataset: str = "synthetic") -> list[HandSample]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        h, w = int(rng.integers(8, 24)), int(rng.integers(8, 24))
        kp2 = rng.uniform(0, min(h, w), size=(NUM_JOINTS, 2)).astype(np.float32)
        vis = rng.integers(0, 3, size=NUM_JOINTS).astype(np.uint8)
        kp2[vis == 0] = np.nan
        mask = np.zeros((h, w), np.uint8)
        mask[2:h - 2, 3:w - 1] = 1
        embed = i % 3 != 2
        out.append(HandSample(
            sample_id=f"{dataset}/{'train' if i % 4 else 'test'}/{i:05d}",
            dataset=dataset,
            split="train" if i % 4 else "test",
            subset=None if i % 5 == 0 else f"sub{i % 2}",
            image_id=f"img{i // 2}",
            image_bytes=images.encode(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) if embed else None,
            image_path=None if embed else f"images/{i:05d}.png",
            width=w, height=h,
            hand_side="left" if i % 2 else "right",
            bbox=rng.uniform(0, 10, 4),
            keypoints_2d=None if i % 7 == 3 else kp2,
            visibility=vis,
            keypoints_3d=None if i % 2 else rng.normal(size=(NUM_JOINTS, 3)),
            camera_K=None if i % 2 else np.array([[500.0, 0, w / 2], [0, 500.0, h / 2], [0, 0, 1]]),
            mano_pose=None if i % 3 else rng.normal(size=48),
            mano_betas=None if i % 3 else rng.normal(size=10),
            mask=None if i % 4 == 1 else rle.encode(mask),
            label_source="dataset" if i % 6 else "pseudo:abc123",
            keypoint_confidence=None if i % 6 else rng.uniform(0, 1, NUM_JOINTS),
            confidence=None if i % 6 else float(rng.uniform()),
            review_status=None if i % 6 else "pending",
            extras=None if i % 2 else {"scale": float(rng.uniform()), "uv_root": [1.5, 2.5]},
        ))
    return out
