"""A forearm behind each synthetic hand: a tapered tube, bare skin or in a sleeve.

Hands in photographs come with arms; a hand floating with a cut wrist looks like a glove and
teaches a network that the wrist is the end of the object. The forearm is rendered with the
hands (its depth occludes joints like any surface) but it is not part of the hand: its pixels
are never in a hand mask.

Geometry, per hand (camera frame, metres): the tube starts 10 mm inside the palm's base and
runs away from the fingers along the posed wrist -> middle-MCP line, bent by a random wrist
flexion (±35°) and deviation (±15°); the cross-section is an ellipse that widens from the
wrist (about 56 x 34 mm) towards the elbow (about 66 x 52 mm), wider across the palm than
through it, scaled with the hand. Arms pointing at the camera would hide the hand, so those get a 3 cm
stub that only closes the wrist; arms never reach behind the camera.
"""

from __future__ import annotations

import numpy as np

from hiu_data.skeleton import FINGERS, ROOT
from hiu_data.synth.poses import axis_angle_to_matrix

AROUND, ALONG = 14, 7
STUB_M = 0.03
"""Length of the forearm stub drawn when a full forearm would point at the camera."""


def _tube_faces() -> np.ndarray:
    faces = []
    for k in range(ALONG - 1):
        for i in range(AROUND):
            a, b = k * AROUND + i, k * AROUND + (i + 1) % AROUND
            c, d = a + AROUND, b + AROUND
            faces += [(a, b, c), (b, d, c)]
    wrist_cap, elbow_cap = ALONG * AROUND, ALONG * AROUND + 1  # centre vertices closing both ends
    last = (ALONG - 1) * AROUND
    faces += [(wrist_cap, (i + 1) % AROUND, i) for i in range(AROUND)]
    faces += [(elbow_cap, last + i, last + (i + 1) % AROUND) for i in range(AROUND)]
    return np.asarray(faces, dtype=np.int64)


FACES: np.ndarray = _tube_faces()
"""(F, 3) faces of the forearm tube (same for every forearm, so they batch)."""
NUM_VERTS: int = ALONG * AROUND + 2


def hand_axes(joints: np.ndarray, side: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(forward, radial, palmar) unit vectors of a posed hand from its (21, 3) HAND21 joints."""
    forward = joints[FINGERS["middle"][0]] - joints[ROOT]
    forward /= np.linalg.norm(forward)
    radial = joints[FINGERS["index"][0]] - joints[FINGERS["little"][0]]
    radial -= forward * (radial @ forward)
    radial /= np.linalg.norm(radial)
    palmar = np.cross(radial, forward) * (1.0 if side == "right" else -1.0)
    return forward, radial, palmar


def sample_forearm(rng: np.random.Generator, joints: np.ndarray, side: str, sleeve_share: float = 0.4
                   ) -> tuple[np.ndarray, np.ndarray] | None:
    """Vertices and per-vertex albedo multipliers of one forearm, or None (no forearm).

    Args:
        joints: (21, 3) posed HAND21 joints, camera frame, metres.
    Returns:
        ``(vertices (NUM_VERTS, 3) camera frame, sleeve (NUM_VERTS,) bool)`` or None.
    """
    forward, radial, palmar = hand_axes(joints, side)
    hand_length = float(np.linalg.norm(joints[FINGERS["middle"][-1]] - joints[ROOT]))
    scale = hand_length / 0.19
    bend = axis_angle_to_matrix(np.cross(forward, palmar) * np.deg2rad(rng.uniform(-35, 35))) @ \
        axis_angle_to_matrix(palmar * np.deg2rad(rng.uniform(-15, 15)))
    axis = bend @ -forward
    across = bend @ radial
    through = np.cross(axis, across)
    length = rng.uniform(0.15, 0.3) * scale
    wrist = joints[ROOT] + 0.010 * scale * forward
    if axis[2] < -0.55:
        # Pointing at the camera the arm would hide the hand: keep a stub that closes the wrist.
        length = STUB_M * scale
    while length > STUB_M * scale and (wrist + length * axis)[2] < 0.05:
        length *= 0.7  # never reach behind the camera
    end = wrist + length * axis
    if end[2] < 0.05:
        return None
    t = np.linspace(0.0, 1.0, ALONG) ** 1.3
    half_width = scale * (0.028 + 0.005 * np.minimum(t * 4, 1.0) + 0.005 * t)
    half_thick = scale * (0.017 + 0.007 * np.minimum(t * 4, 1.0) + 0.002 * t)
    angle = np.linspace(0.0, 2 * np.pi, AROUND, endpoint=False)
    ring = (np.cos(angle)[None, :, None] * half_width[:, None, None] * across
            + np.sin(angle)[None, :, None] * half_thick[:, None, None] * through)
    centres = wrist + (t * length)[:, None] * axis
    vertices = np.concatenate([(centres[:, None, :] + ring).reshape(-1, 3), wrist[None], end[None]], axis=0)
    sleeve = np.zeros(NUM_VERTS, bool)
    if rng.random() < sleeve_share:
        rows = np.repeat(t >= rng.uniform(0.2, 0.6), AROUND)
        sleeve[:len(rows)], sleeve[-1] = rows, True
        # Cloth is looser than skin.
        tube = vertices[:len(rows)]
        tube[rows] = centres.repeat(AROUND, 0)[rows] + 1.25 * ring.reshape(-1, 3)[rows]
    return vertices, sleeve
