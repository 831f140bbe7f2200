"""Plausible hand articulations: grasp/gesture prototypes perturbed within per-joint limits.

Angles are anatomical, in degrees, for a **right** hand, one row per finger in the order
thumb, index, middle, ring, little (array (5, 4) float64):

- fingers: ``[MCP flexion, MCP abduction, PIP flexion, DIP flexion]``; flexion positive
  towards the palm, abduction positive towards the thumb side (radial);
- thumb: ``[CMC flexion, CMC abduction, MCP flexion, IP flexion]``; CMC flexion moves the
  thumb across the palm towards the little finger, CMC abduction lifts it out of the palm
  plane towards the palm side (palmar abduction), which together give opposition.

Limits follow the anatomy literature (active ranges of motion of adult fingers). Sampling each angle independently gives
implausible hands, so a sample is a prototype (open, fist, point, pinch, OK, thumbs-up,
spread, ...) optionally blended with a second one, plus a curl shared by all fingers, per-finger
noise, the DIP ≈ 2/3 PIP coupling and abduction that narrows as the MCP flexes; then clipped.

:func:`angles_to_full_pose` turns angles into MANO axis-angle rotations (16 joints, smplx
joint order, full pose = relative to the flat template). The rotation axes come from the rest
(flat, zero-pose) joints of whichever hand model renders them, so the same sampler drives
MANO and the procedural hand: flexion axes are ``bone × palm normal``, the abduction axis is
the palm normal. The thumb's MCP and IP flex about an axis tilted by :data:`THUMB_PAD_TILT_DEG`
towards the fingers, because the thumb pad faces the index finger, not the palm normal.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from hiu_data.skeleton import FINGERS, MANO21_TO_HAND21, ROOT

NUM_MANO_JOINTS = 16
FINGER_ORDER: tuple[str, ...] = ("thumb", "index", "middle", "ring", "little")

# (low, high) degrees per column, per finger (active ranges of motion; abduction widest for index/little).
LIMITS_DEG: np.ndarray = np.array([
    [[-15, 45], [0, 60], [0, 60], [-15, 80]],        # thumb: CMC flex, CMC abd, MCP, IP
    [[-30, 90], [-20, 20], [0, 110], [-10, 80]],     # index
    [[-30, 90], [-12, 12], [0, 110], [-10, 80]],     # middle
    [[-30, 90], [-15, 15], [0, 110], [-10, 80]],     # ring
    [[-30, 90], [-20, 20], [0, 110], [-10, 80]],     # little
], dtype=np.float64)

THUMB_PAD_TILT_DEG: float = 50.0
"""Tilt of the thumb pad from the palm normal towards the index finger (flexion axis of MCP/IP)."""
THUMB_TWIST_PER_ABDUCTION: float = 0.45
"""Pronation of the thumb about its own axis per degree of CMC abduction (opposition)."""


def _p(thumb: tuple, index: tuple, middle: tuple, ring: tuple, little: tuple) -> np.ndarray:
    return np.array([thumb, index, middle, ring, little], dtype=np.float64)


_CURLED = (85, 0, 100, 65)
PROTOTYPES: dict[str, np.ndarray] = {
    "flat": _p((0, 10, 5, 0), (0, 3, 0, 0), (0, 0, 0, 0), (0, -3, 0, 0), (0, -6, 0, 0)),
    "relaxed": _p((10, 25, 15, 15), (15, 2, 25, 15), (20, 0, 30, 20), (25, -3, 35, 22), (30, -6, 35, 22)),
    "spread": _p((-12, 10, 0, -5), (-5, 18, 5, 0), (-5, 0, 5, 0), (-5, -12, 5, 0), (-5, -18, 5, 0)),
    "fist": _p((15, 0, 50, 25), _CURLED, _CURLED, _CURLED, _CURLED),
    "point": _p((18, 3, 45, 30), (5, 0, 5, 0), (80, 0, 100, 65), (85, 0, 100, 65), (85, 0, 95, 60)),
    "victory": _p((20, 5, 45, 30), (0, 15, 0, 0), (0, -8, 0, 0), (85, 0, 100, 65), (85, 0, 95, 60)),
    "pinch": _p((8, 15, 35, 12), (45, 0, 50, 30), (25, 0, 30, 20), (25, -3, 35, 22), (30, -6, 35, 22)),
    "ok": _p((5, 10, 30, 35), (45, 0, 55, 35), (5, -5, 5, 5), (5, -10, 10, 5), (5, -15, 10, 5)),
    "thumbs_up": _p((-10, 15, 0, -5), _CURLED, _CURLED, _CURLED, _CURLED),
    "grasp": _p((20, 50, 20, 20), (45, 5, 55, 35), (50, 0, 60, 40), (55, -5, 60, 40), (60, -10, 60, 40)),
    "claw": _p((15, 40, 30, 40), (10, 10, 80, 60), (10, 0, 85, 60), (10, -8, 85, 60), (10, -15, 80, 55)),
    "rock": _p((18, 3, 45, 30), (0, 8, 0, 0), (85, 0, 100, 65), (85, 0, 100, 65), (0, -12, 0, 0)),
}
"""Gesture prototypes, (5, 4) degrees each in the layout of the module docstring."""


def sample_angles(rng: np.random.Generator, noise: float = 1.0,
                  prototypes: dict[str, np.ndarray] | None = None) -> tuple[np.ndarray, str]:
    """One plausible right-hand articulation.

    Args:
        noise: scale of the perturbations (0 returns the prototype itself, clipped).
        prototypes: name -> (5, 4) degrees; default :data:`PROTOTYPES`.
    Returns:
        ``(angles (5, 4) float64 degrees, prototype name)``.
    """
    prototypes = prototypes or PROTOTYPES
    names = sorted(prototypes)
    name = names[int(rng.integers(0, len(names)))]
    angles = prototypes[name].copy()
    if noise > 0 and rng.random() < 0.3:
        other = prototypes[names[int(rng.integers(0, len(names)))]]
        angles += rng.uniform(0.0, 0.5) * (other - angles)
    if noise > 0:
        fingers = angles[1:]
        curl = rng.normal(0.0, 10.0 * noise)
        fingers[:, 0] += curl + rng.normal(0.0, 7.0 * noise, 4)
        fingers[:, 2] += curl + rng.normal(0.0, 9.0 * noise, 4)
        # DIP follows about two thirds of PIP (tendon coupling), with a little freedom.
        coupled = (2.0 / 3.0) * fingers[:, 2] + rng.normal(0.0, 5.0 * noise, 4)
        fingers[:, 3] = 0.5 * fingers[:, 3] + 0.5 * coupled
        fingers[:, 1] += rng.normal(0.0, 4.0 * noise, 4)
        angles[0] += rng.normal(0.0, 7.0 * noise, 4)
    # Fingers converge as they flex: abduction shrinks with MCP flexion.
    converge = np.clip(1.0 - np.clip(angles[1:, 0], 0, None) / 120.0, 0.2, 1.0)
    angles[1:, 1] *= converge
    return np.clip(angles, LIMITS_DEG[..., 0], LIMITS_DEG[..., 1]), name


def axis_angle_to_matrix(axis_angle: np.ndarray) -> np.ndarray:
    """Rodrigues: (..., 3) axis-angle (radians) -> (..., 3, 3) rotation matrices."""
    axis_angle = np.asarray(axis_angle, dtype=np.float64)
    theta = np.linalg.norm(axis_angle, axis=-1, keepdims=True)
    axis = axis_angle / np.where(theta > 1e-12, theta, 1.0)
    x, y, z = axis[..., 0], axis[..., 1], axis[..., 2]
    zero = np.zeros_like(x)
    cross = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], axis=-1).reshape(axis.shape[:-1] + (3, 3))
    s, c = np.sin(theta)[..., None], np.cos(theta)[..., None]
    outer = axis[..., :, None] * axis[..., None, :]
    eye = np.broadcast_to(np.eye(3), outer.shape)
    return c * eye + s * cross + (1 - c) * outer


def matrix_to_axis_angle(matrix: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices -> (..., 3) axis-angle in radians (angle in [0, pi])."""
    matrix = np.asarray(matrix, dtype=np.float64)
    cos = np.clip((np.trace(matrix, axis1=-2, axis2=-1) - 1.0) / 2.0, -1.0, 1.0)
    theta = np.arccos(cos)
    vee = np.stack([matrix[..., 2, 1] - matrix[..., 1, 2], matrix[..., 0, 2] - matrix[..., 2, 0],
                    matrix[..., 1, 0] - matrix[..., 0, 1]], axis=-1)
    sin = np.sin(theta)
    small = sin > 1e-6
    axis = vee / np.where(small, 2.0 * sin, 1.0)[..., None]
    # Near pi the vee vector vanishes: take the axis from the symmetric part instead.
    near_pi = (~small) & (theta > 1.0)
    if np.any(near_pi):
        sym = (matrix[near_pi] + np.eye(3)) / 2.0
        col = np.argmax(np.einsum("...ii->...i", sym), axis=-1)
        ax = sym[np.arange(len(col)), :, col]
        axis[near_pi] = ax / np.linalg.norm(ax, axis=-1, keepdims=True)
    out = axis * theta[..., None]
    return np.where((~small & ~near_pi)[..., None], vee / 2.0, out)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def palm_frame(rest_joints: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Palm axes of a right hand from its rest joints.

    Args:
        rest_joints: (21, 3) HAND21 joints of the flat (zero full pose) hand, any metric frame.
    Returns:
        ``(forward, radial, palmar)`` unit (3,) vectors: wrist -> middle MCP, little MCP ->
        index MCP (towards the thumb) made orthogonal to forward, and the direction the palm
        faces (``radial × forward`` for a right hand).
    """
    forward = _unit(rest_joints[FINGERS["middle"][0]] - rest_joints[ROOT])
    radial = rest_joints[FINGERS["index"][0]] - rest_joints[FINGERS["little"][0]]
    radial = _unit(radial - forward * (radial @ forward))
    return forward, radial, np.cross(radial, forward)


def _hand21_to_mano_joint() -> dict[int, int]:
    """HAND21 joint -> MANO kinematic joint (0..15) for the 16 joints that rotate."""
    return {h: int(m) for h, m in enumerate(MANO21_TO_HAND21) if m < NUM_MANO_JOINTS}


@dataclass(frozen=True)
class _Recipe:
    """How each MANO joint's rotation is built from the angles (cached per rest skeleton).

    Rotation ``r`` is about unit ``axes[r]`` by ``scale[r] * angles[finger[r], column[r]]``
    degrees; joint ``joint[r]`` is the product of its rotations in the listed order.
    """

    axes: np.ndarray  # (R, 3)
    finger: np.ndarray  # (R,) int
    column: np.ndarray  # (R,) int
    scale: np.ndarray  # (R,)
    joint: np.ndarray  # (R,) MANO joint each rotation belongs to


@lru_cache(maxsize=8)
def _recipe(rest_bytes: bytes) -> _Recipe:
    rest_joints = np.frombuffer(rest_bytes, dtype=np.float64).reshape(-1, 3)
    to_mano = _hand21_to_mano_joint()
    _, radial, palmar = palm_frame(rest_joints)
    rows: list[tuple[np.ndarray, int, int, float, int]] = []
    for f, finger in enumerate(FINGER_ORDER):
        chain = FINGERS[finger]
        bones = [_unit(rest_joints[chain[k + 1]] - rest_joints[chain[k]]) for k in range(3)]
        base, middle, distal = (to_mano[chain[k]] for k in range(3))
        if finger == "thumb":
            lift = _unit(np.cross(bones[0], palmar))
            tilt = np.deg2rad(THUMB_PAD_TILT_DEG)
            pad = np.cos(tilt) * palmar - np.sin(tilt) * radial
            rows += [(lift, f, 1, 1.0, base), (palmar, f, 0, 1.0, base),
                     (bones[0], f, 1, THUMB_TWIST_PER_ABDUCTION, base),
                     (np.cross(bones[1], pad), f, 2, 1.0, middle), (np.cross(bones[2], pad), f, 3, 1.0, distal)]
        else:
            flex = [np.cross(b, palmar) for b in bones]
            rows += [(-palmar, f, 1, 1.0, base), (flex[0], f, 0, 1.0, base),
                     (flex[1], f, 2, 1.0, middle), (flex[2], f, 3, 1.0, distal)]
    return _Recipe(np.stack([_unit(r[0]) for r in rows]), np.array([r[1] for r in rows]),
                   np.array([r[2] for r in rows]), np.array([r[3] for r in rows]), np.array([r[4] for r in rows]))


def angles_to_full_pose(angles: np.ndarray, rest_joints: np.ndarray) -> np.ndarray:
    """Anatomical angles -> MANO full pose of the 15 finger joints (flat template = 0).

    Args:
        angles: (5, 4) degrees, layout of the module docstring (right hand).
        rest_joints: (21, 3) HAND21 joints of the flat right hand in the model frame.
    Returns:
        (16, 3) float64 axis-angle (radians) per MANO joint in smplx order (wrist, index1-3,
        middle1-3, little1-3, ring1-3, thumb1-3); row 0 (global orientation) is zero.
    """
    recipe = _recipe(np.ascontiguousarray(rest_joints, dtype=np.float64).tobytes())
    degrees = recipe.scale * np.asarray(angles, dtype=np.float64)[recipe.finger, recipe.column]
    parts = axis_angle_to_matrix(recipe.axes * np.deg2rad(degrees)[:, None])
    rotations = np.tile(np.eye(3), (NUM_MANO_JOINTS, 1, 1))
    for r, joint in enumerate(recipe.joint):  # in recipe order: left-to-right products
        rotations[joint] = rotations[joint] @ parts[r]
    return matrix_to_axis_angle(rotations)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly distributed (3, 3) rotation matrix (Shoemake's quaternion method)."""
    u1, u2, u3 = rng.random(3)
    q = np.array([np.sqrt(1 - u1) * np.sin(2 * np.pi * u2), np.sqrt(1 - u1) * np.cos(2 * np.pi * u2),
                  np.sqrt(u1) * np.sin(2 * np.pi * u3), np.sqrt(u1) * np.cos(2 * np.pi * u3)])
    x, y, z, w = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])
