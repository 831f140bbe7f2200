"""Synthetic training batches for the model tests: procedural hands rendered at crop size.

Each sample is a right hand (the model's frame) posed from the prototype gestures with noise,
randomly oriented, shaded with ``render_rgb`` over a random flat background, seen by a pinhole
camera at 1 m that makes the hand fill most of the crop. Targets come from
``hiu_data.targets``, so the batch has exactly the keys and shapes of
``hiu_model.data.HandCropDataset`` items, collated.
"""

from __future__ import annotations

import numpy as np
import torch

from hiu_data.skeleton import NUM_JOINTS
from hiu_data.targets import encode_heatmaps, encode_pof, mask_target
from hiu_model.config import Config
from hiu_model.hand_pose import PROTOTYPES, prototype_angles
from hiu_model.mano import HandModel
from hiu_model.render import project, render_rgb
from hiu_model.rotations import axis_angle_to_matrix, matrix_to_axis_angle

DEPTH_M = 1.0
HAND_FILL = 0.75  # share of the crop side that the hand's longer extent covers
SKIN = (0.85, 0.62, 0.5)


def synthetic_batch(cfg: Config, count: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """``count`` rendered hands with every label, collated like the data loader's batches."""
    rng = np.random.default_rng(seed)
    size, hm, ms = cfg.model.input_size, cfg.model.heatmap_size, cfg.model.mask_size
    hand = HandModel(side="right", kind="procedural")
    names = sorted(PROTOTYPES)
    angles = np.stack([prototype_angles(names[i % len(names)]) + rng.normal(0, 0.08, (15, 3)) for i in range(count)])
    # Random orientation, with the palm roughly towards the camera so the hand reads as a hand.
    orient = axis_angle_to_matrix(torch.as_tensor(rng.normal(0, 0.5, (count, 3)), dtype=torch.float32))
    flip = axis_angle_to_matrix(torch.tensor([[np.pi / 2, 0.0, 0.0]]))
    global_orient = matrix_to_axis_angle(orient @ flip)
    pose = hand.pose_from_angles(torch.as_tensor(angles, dtype=torch.float32), global_orient).float()
    betas = torch.as_tensor(rng.normal(0, 0.5, (count, 10)), dtype=torch.float32)
    with torch.no_grad():
        posed = hand(pose, betas)
    root = posed.joints[:, :1]
    joints, vertices = posed.joints - root, posed.vertices - root
    # Camera: the hand's bounding box centred in the crop, its longer side HAND_FILL of it.
    lo, hi = vertices[..., :2].amin(1), vertices[..., :2].amax(1)
    focal = (HAND_FILL * size * DEPTH_M / (hi - lo).amax(-1)).float()
    centre = (lo + hi) / 2
    K = torch.zeros(count, 3, 3)
    K[:, 0, 0], K[:, 1, 1], K[:, 2, 2] = focal, focal, 1.0
    K[:, :2, 2] = size / 2
    shift = torch.cat([-centre, torch.full((count, 1), DEPTH_M)], dim=1)[:, None]
    rgb, _, coverage = render_rgb(vertices + shift, hand.faces, K, (size, size),
                                  torch.tensor(SKIN).expand(hand.num_verts, 3))
    background = torch.as_tensor(rng.uniform(0, 1, (count, 1, 1, 3)), dtype=torch.float32)
    rgb = torch.where(coverage[..., None], rgb, background)
    keypoints_2d = project(joints + shift, K)

    items: dict[str, list] = {key: [] for key in ("heatmaps", "heatmap_weights", "pof", "pof_weights", "mask")}
    valid = np.ones(NUM_JOINTS, dtype=bool)
    for i in range(count):
        kp_map = keypoints_2d[i].numpy() * hm / size
        heatmaps, weights = encode_heatmaps(kp_map, valid, (hm, hm), cfg.data.sigma)
        pof, pof_weights = encode_pof(kp_map, joints[i].numpy(), valid, (hm, hm), cfg.data.pof_band)
        for key, value in zip(items, (heatmaps, weights, pof, pof_weights,
                                      mask_target(coverage[i].numpy(), (ms, ms)))):
            items[key].append(torch.as_tensor(value))
    mean, std = torch.tensor(cfg.data.mean), torch.tensor(cfg.data.std)
    return {
        "image": ((rgb - mean) / std).permute(0, 3, 1, 2).contiguous(),
        "keypoints_2d": keypoints_2d.float(), "visibility": torch.full((count, NUM_JOINTS), 2, dtype=torch.uint8),
        **{key: torch.stack(value) for key, value in items.items()},
        "keypoints_3d": joints.float(), "root_3d": shift[:, 0].float(), "camera_K": K,
        "mano_pose": pose, "mano_betas": betas,
        **{flag: torch.ones(count) for flag in ("has_2d", "has_3d", "has_mask", "has_mano")},
        "mirrored": torch.zeros(count, dtype=torch.bool), "index": torch.arange(count),
    }
