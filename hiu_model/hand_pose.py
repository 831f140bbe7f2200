"""Anatomical articulation of MANO-tree hands: joint axes, angles -> MANO pose, prototypes.

MANO poses are axis-angle rotations of each joint relative to its parent, expressed in the
template frame. Anatomical angles are easier to sample and to bound (joint limits are published as anatomical angles), so this
module derives, from a model's template joints, three axes per joint:

- **flexion**: positive curls the digit towards its pad (the palm; for the thumb, towards the
  palm and the little finger);
- **abduction**: positive spreads a finger away from the middle finger (the middle finger goes
  towards the thumb); for the thumb, positive moves it away from the palm plane (palmar
  abduction);
- **twist**: positive rotates the bone about its own axis (right-hand rule along the bone).

The axes come from geometry only (bone directions, palm normal, direction towards the little
finger), so they are correct for the right model, the left model (a mirror image) and MANO.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

DIGIT_JOINTS: dict[str, tuple[int, int, int]] = {
    "index": (1, 2, 3), "middle": (4, 5, 6), "little": (7, 8, 9), "ring": (10, 11, 12), "thumb": (13, 14, 15),
}
THUMB_PAD_TOWARDS_LITTLE = 0.8
"""The thumb pad faces the palm turned this much (sine) towards the little finger."""


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def palm_frame(template_joints: np.ndarray, side: str) -> tuple[np.ndarray, np.ndarray]:
    """Palmar normal and the unit direction from the index MCP to the little MCP.

    Args:
        template_joints: (16, 3) MANO-order joints of the template, any length unit.
        side: "right" or "left" (the cross product's sign flips with a mirror image).
    """
    j = np.asarray(template_joints, dtype=np.float64)
    sign = 1.0 if side == "right" else -1.0
    normal = sign * _unit(np.cross(j[1] - j[0], j[7] - j[0]))
    return normal, _unit(j[7] - j[1])


def joint_axes(template_joints: np.ndarray, side: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flexion, abduction and twist axes of joints 1..15 (see the module docstring).

    Args:
        template_joints: (16, 3) MANO-order template joints.
        side: "right" or "left".
    Returns:
        three (15, 3) float64 arrays of unit axes in the template frame, row ``j - 1`` for joint j.
    """
    j = np.asarray(template_joints, dtype=np.float64)
    normal, to_little = palm_frame(j, side)
    s = THUMB_PAD_TOWARDS_LITTLE
    flex, abd, twist = np.zeros((15, 3)), np.zeros((15, 3)), np.zeros((15, 3))
    for name, chain in DIGIT_JOINTS.items():
        for k, joint in enumerate(chain):
            # The last joint has no child joint: continue the previous bone.
            d = _unit(j[chain[k + 1]] - j[joint]) if k < 2 else _unit(j[joint] - j[chain[k - 1]])
            if name == "thumb" and k == 0:
                # Carpometacarpal: flexion sweeps across the palm, abduction lifts off it.
                pad, away = to_little, normal
            elif name == "thumb":
                pad = np.sqrt(1.0 - s * s) * normal + s * to_little
                away = normal
            else:
                pad = normal
                away = to_little if name in ("ring", "little") else -to_little
            pad = _unit(pad - np.dot(pad, d) * d)
            away = away - np.dot(away, d) * d - np.dot(away, pad) * pad
            away = _unit(away)
            # Rotating d about (d x t) turns it towards t.
            flex[joint - 1] = np.cross(d, pad)
            abd[joint - 1] = np.cross(d, away)
            twist[joint - 1] = d
    return flex, abd, twist


def axis_angle_to_matrix(aa: Tensor) -> Tensor:
    """Rodrigues' formula: (..., 3) axis-angle (radians) -> (..., 3, 3) rotation matrices."""
    angle = aa.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    axis = aa / angle
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    kmat = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(aa.shape[:-1] + (3, 3))
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device).expand_as(kmat)
    sin, cos = torch.sin(angle)[..., None], torch.cos(angle)[..., None]
    return eye + sin * kmat + (1.0 - cos) * (kmat @ kmat)


def matrix_to_axis_angle(rot: Tensor) -> Tensor:
    """(..., 3, 3) rotation matrices -> (..., 3) axis-angle with angle in [0, pi].

    Goes through a unit quaternion picked from the largest of its four squared components, so
    it is stable near 0 and near pi.
    """
    m = rot
    tr = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    cands = torch.stack([
        torch.stack([1 + tr, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1),
        torch.stack([m[..., 2, 1] - m[..., 1, 2], 1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2],
                     m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0]], -1),
        torch.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0],
                     1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2], m[..., 1, 2] + m[..., 2, 1]], -1),
        torch.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1],
                     1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2]], -1),
    ], dim=-2)  # (..., 4, 4): row i is 4 q_i * q
    diag = torch.stack([1 + tr, 1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2],
                        1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2], 1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2]], -1)
    best = diag.argmax(dim=-1, keepdim=True)
    q = torch.gather(cands, -2, best[..., None].expand(best.shape[:-1] + (1, 4))).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True)
    q = torch.where(q[..., :1] < 0, -q, q)
    vec_norm = q[..., 1:].norm(dim=-1, keepdim=True)
    angle = 2.0 * torch.atan2(vec_norm, q[..., :1])
    return q[..., 1:] * angle / vec_norm.clamp_min(1e-12)


def pose_from_angles(
    angles: Tensor, axes: tuple[np.ndarray, np.ndarray, np.ndarray], hands_mean: Tensor,
    global_orient: Tensor | None = None,
) -> Tensor:
    """MANO pose relative to the mean pose from anatomical joint angles.

    Each joint's rotation is ``R_flex @ R_abd @ R_twist`` about its axes (template frame).

    Args:
        angles: (B, 15, 3) radians (flexion, abduction, twist) of joints 1..15 in MANO order.
        axes: the three (15, 3) arrays of :func:`joint_axes`.
        hands_mean: (45,) the model's mean pose (axis-angle).
        global_orient: (B, 3) axis-angle of the root in the camera frame; zero if None.
    Returns:
        (B, 48) pose as :class:`hiu_model.mano.HandModel` takes it (relative to the mean pose).
    """
    dtype = angles.dtype
    rot = None
    for k in range(3):
        ax = torch.as_tensor(axes[k], dtype=dtype, device=angles.device)
        r = axis_angle_to_matrix(angles[..., k : k + 1] * ax)
        rot = r if rot is None else rot @ r
    hand = matrix_to_axis_angle(rot).reshape(angles.shape[0], 45) - hands_mean.to(dtype)
    root = angles.new_zeros(angles.shape[0], 3) if global_orient is None else global_orient.to(dtype)
    return torch.cat([root, hand], dim=1)


# Prototype gestures: per digit (flex1, flex2, flex3, abduction1, twist1) in degrees.
PROTOTYPES: dict[str, dict[str, tuple[float, float, float, float, float]]] = {
    "flat": {d: (0.0, 0.0, 0.0, 0.0, 0.0) for d in DIGIT_JOINTS},
    "open": {"thumb": (0, 5, 5, 5, 0), "index": (8, 10, 6, 4, 0), "middle": (10, 12, 8, 0, 0),
             "ring": (12, 14, 9, 3, 0), "little": (14, 16, 10, 6, 0)},
    "spread": {"thumb": (-25, 0, 0, 10, 0), "index": (0, 3, 2, 15, 0), "middle": (0, 3, 2, 0, 0),
               "ring": (0, 3, 2, 12, 0), "little": (0, 3, 2, 22, 0)},
    "fist": {"thumb": (40, 35, 30, 25, 20), "index": (85, 100, 60, 0, 0), "middle": (88, 100, 65, 0, 0),
             "ring": (90, 100, 65, 0, 0), "little": (90, 100, 65, 0, 0)},
    "point": {"thumb": (40, 35, 30, 25, 20), "index": (0, 5, 3, 0, 0), "middle": (85, 100, 65, 0, 0),
              "ring": (88, 100, 65, 0, 0), "little": (90, 100, 65, 0, 0)},
    "pinch": {"thumb": (30, 25, 25, 25, 25), "index": (40, 50, 30, -5, 0), "middle": (20, 20, 12, 0, 0),
              "ring": (22, 22, 14, 3, 0), "little": (25, 25, 15, 6, 0)},
    "thumbs_up": {"thumb": (-15, -5, -5, 10, 0), "index": (85, 100, 60, 0, 0), "middle": (88, 100, 65, 0, 0),
                  "ring": (90, 100, 65, 0, 0), "little": (90, 100, 65, 0, 0)},
}


def prototype_angles(name: str) -> np.ndarray:
    """(15, 3) float64 radians (flexion, abduction, twist) of a named prototype gesture.

    Flexion is spread over the three joints as given; abduction and twist act on the base
    joint only.
    """
    out = np.zeros((15, 3))
    for digit, (f1, f2, f3, ab, tw) in PROTOTYPES[name].items():
        j1, j2, j3 = DIGIT_JOINTS[digit]
        out[j1 - 1] = np.deg2rad([f1, ab, tw])
        out[j2 - 1, 0] = np.deg2rad(f2)
        out[j3 - 1, 0] = np.deg2rad(f3)
    return out
