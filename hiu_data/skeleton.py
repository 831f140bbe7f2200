"""The HAND21 skeleton and the joint-order tables of every supported dataset.

HAND21 is the FreiHAND / OpenPose order: 0 wrist; 1-4 thumb CMC, MCP, IP, tip; 5-8 index
MCP, PIP, DIP, tip; 9-12 middle; 13-16 ring; 17-20 little. Names, finger chains and draw
colours come from the package data file ``hiu_schemas/hand21.json``; the number of joints is
derived from it and never typed twice.

Every raw order is mapped by a *gather* table ``canon = raw[G]``: HAND21 slot ``i`` takes raw
index ``G[i]``. The RHD and STB tables are involutions (their own inverse), so a gather /
scatter mix-up goes unnoticed there; the InterHand2.6M table is not, and the tests check
named joints for each table.
"""

from __future__ import annotations

import numpy as np

import hiu_schemas

_SPEC = hiu_schemas.hand21()

SKELETON_NAME: str = _SPEC["name"]
JOINT_NAMES: tuple[str, ...] = tuple(_SPEC["joints"])
NUM_JOINTS: int = len(JOINT_NAMES)
JOINT_INDEX: dict[str, int] = {name: i for i, name in enumerate(JOINT_NAMES)}
FINGER_NAMES: tuple[str, ...] = tuple(_SPEC["fingers"])
FINGERS: dict[str, tuple[int, ...]] = {
    finger: tuple(JOINT_INDEX[j] for j in chain) for finger, chain in _SPEC["fingers"].items()
}
ROOT: int = JOINT_INDEX[_SPEC["root"]]


def _bones() -> tuple[tuple[int, int], ...]:
    bones = []
    for chain in FINGERS.values():
        parent = ROOT
        for child in chain:
            bones.append((parent, child))
            parent = child
    return tuple(bones)


BONES: tuple[tuple[int, int], ...] = _bones()
"""The 20 (parent, child) joint pairs of the tree, finger by finger, base to tip."""
NUM_BONES: int = len(BONES)
PARENTS: tuple[int, ...] = tuple(
    [-1] + [parent for parent, _ in sorted(BONES, key=lambda b: b[1])]
)
"""Parent joint of each HAND21 joint (-1 for the wrist)."""
TIPS: tuple[int, ...] = tuple(chain[-1] for chain in FINGERS.values())
"""Fingertip joint indices in finger order thumb, index, middle, ring, little."""

FINGER_COLORS: dict[str, tuple[int, int, int]] = {
    k: tuple(v) for k, v in _SPEC["colors"].items()  # type: ignore[misc]
}


def bone_colors() -> list[tuple[int, int, int]]:
    """RGB draw colour of each bone in ``BONES`` order (the colour of its finger)."""
    finger_of_joint = {j: f for f, chain in FINGERS.items() for j in chain}
    return [FINGER_COLORS[finger_of_joint[child]] for _, child in BONES]


def joint_colors() -> list[tuple[int, int, int]]:
    """RGB draw colour of each joint (the wrist takes the palm colour)."""
    finger_of_joint = {j: f for f, chain in FINGERS.items() for j in chain}
    return [FINGER_COLORS[finger_of_joint.get(j, "palm")] for j in range(NUM_JOINTS)]


# --- Gather tables: canon = raw[G] -------------------------------------------------------

FREIHAND_TO_HAND21 = np.arange(NUM_JOINTS)
"""FreiHAND is already HAND21."""
CMU_TO_HAND21 = np.arange(NUM_JOINTS)
"""CMU Panoptic HandDB (OpenPose hand format) is already HAND21."""

# RHD: wrist, then per finger tip -> MCP (thumb, index, middle, ring, little); 42 joints with
# the left hand first (0-20) and the right hand second (21-41).
RHD_TO_HAND21 = np.array([0, 4, 3, 2, 1, 8, 7, 6, 5, 12, 11, 10, 9, 16, 15, 14, 13, 20, 19, 18, 17])
RHD_LEFT_TO_HAND21 = RHD_TO_HAND21
RHD_RIGHT_TO_HAND21 = RHD_TO_HAND21 + NUM_JOINTS

# STB: palm centre, then per finger MCP -> tip in the order little, ring, middle, index, thumb.
# Slot 0 receives the palm centre; converters replace it by a wrist estimate.
STB_TO_HAND21 = np.array([0, 17, 18, 19, 20, 13, 14, 15, 16, 9, 10, 11, 12, 5, 6, 7, 8, 1, 2, 3, 4])

# InterHand2.6M: per finger tip -> base (thumb, index, middle, ring, little), wrist last;
# right hand 0-20, left hand 21-41.  Not an involution.
INTERHAND_TO_HAND21 = np.array(
    [20, 3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12, 19, 18, 17, 16]
)
INTERHAND_RIGHT_TO_HAND21 = INTERHAND_TO_HAND21
INTERHAND_LEFT_TO_HAND21 = INTERHAND_TO_HAND21 + NUM_JOINTS

# Dexter+Object labels only the 5 fingertips (thumb, index, middle, ring, little): a scatter
# into HAND21 slots, the other joints stay missing.
DEXTER_TIPS_TO_HAND21_SLOTS = np.array(TIPS)

# MANO: 16 kinematic joints (wrist, index1-3, middle1-3, little1-3, ring1-3, thumb1-3) followed by
# 5 tip vertices (thumb, index, middle, ring, little) -> HAND21 (manopth / HaMeR order).
MANO21_TO_HAND21 = np.array([0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20])
MANO_JOINT_NAMES: tuple[str, ...] = (
    "wrist",
    "index1", "index2", "index3",
    "middle1", "middle2", "middle3",
    "little1", "little2", "little3",
    "ring1", "ring2", "ring3",
    "thumb1", "thumb2", "thumb3",
)
MANO_PARENTS: tuple[int, ...] = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)


def gather(raw: np.ndarray, table: np.ndarray, axis: int = -2) -> np.ndarray:
    """Reorder raw joints into HAND21: ``out[..., i, :] = raw[..., table[i], :]``.

    Args:
        raw: array with the raw joint axis at ``axis`` (e.g. (N, 42, 3) for RHD).
        table: (21,) int gather table from this module.
    Returns:
        Array with the joint axis replaced by the 21 HAND21 joints; same dtype.
    """
    return np.take(raw, table, axis=axis)


def scatter(canon: np.ndarray, table: np.ndarray, num_raw: int, axis: int = -2) -> np.ndarray:
    """Inverse of :func:`gather`: put HAND21 joints back in raw slots.

    Raw slots no table entry points at are filled with NaN (float) or 0 (integer).
    Used by the writers that produce raw dataset layouts.
    """
    canon = np.moveaxis(np.asarray(canon), axis, 0)
    fill = np.nan if np.issubdtype(canon.dtype, np.floating) else 0
    out = np.full((num_raw,) + canon.shape[1:], fill, dtype=canon.dtype)
    out[np.asarray(table)] = canon
    return np.moveaxis(out, 0, axis)
