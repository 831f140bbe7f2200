"""Anatomical joint axes and rotation conversions."""

from __future__ import annotations

import numpy as np
import torch

from hiu_data.skeleton import JOINT_INDEX
from hiu_model.hand_pose import axis_angle_to_matrix, matrix_to_axis_angle, prototype_angles
from hiu_model.mano import HandModel


def test_rotation_round_trip_including_near_pi():
    g = torch.Generator().manual_seed(0)
    axis = torch.nn.functional.normalize(torch.randn(200, 3, generator=g, dtype=torch.float64), dim=-1)
    angle = torch.rand(200, 1, generator=g, dtype=torch.float64) * (np.pi - 1e-6)
    angle[:5] = torch.tensor([[0.0], [1e-9], [np.pi - 1e-7], [np.pi - 1e-4], [3.0]], dtype=torch.float64)
    aa = axis * angle
    back = matrix_to_axis_angle(axis_angle_to_matrix(aa))
    assert torch.allclose(axis_angle_to_matrix(back), axis_angle_to_matrix(aa), atol=1e-9)
    assert torch.allclose(back[5:], aa[5:], atol=1e-9)


def _palmar_offset(side: str, angles: np.ndarray) -> float:
    """How far (m) the index tip moves towards the palm side when the given angles are applied."""
    hand = HandModel(side, kind="procedural", dtype=torch.float64)
    flat = hand.pose_from_angles(torch.zeros(1, 15, 3, dtype=torch.float64))
    bent = hand.pose_from_angles(torch.as_tensor(angles, dtype=torch.float64)[None])
    tip = JOINT_INDEX["index_tip"]
    a, b = hand(flat, torch.zeros(1, 10)).joints[0, tip], hand(bent, torch.zeros(1, 10)).joints[0, tip]
    palmar = torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64)  # both models' palms face -y
    return float((b - a) @ palmar)


def test_flexion_curls_towards_the_palm_on_both_sides():
    angles = np.zeros((15, 3))
    angles[0:3, 0] = np.deg2rad([40.0, 40.0, 20.0])  # index MCP, PIP, DIP flexion
    assert _palmar_offset("right", angles) > 0.04
    assert _palmar_offset("left", angles) > 0.04


def test_fist_closes_the_hand():
    hand = HandModel("right", kind="procedural")
    pose = hand.pose_from_angles(torch.as_tensor(prototype_angles("fist"), dtype=torch.float32)[None])
    joints = hand(pose, torch.zeros(1, 10)).joints[0]
    spread = hand(hand.pose_from_angles(torch.zeros(1, 15, 3)), torch.zeros(1, 10)).joints[0]
    tips = [JOINT_INDEX[f"{f}_tip"] for f in ("index", "middle", "ring", "little")]
    wrist = JOINT_INDEX["wrist"]
    assert ((joints[tips] - joints[wrist]).norm(dim=-1) < 0.6 * (spread[tips] - spread[wrist]).norm(dim=-1)).all()
