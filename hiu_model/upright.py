"""Upright crops: the hand turned so that it points up, in training and at inference.

A hand can lie at any in-plane angle in a photo, and a small network spends much of its
capacity on telling the fingers apart at every angle. Turning each crop so that the hand points
up (the wrist below the middle finger's knuckle), as MediaPipe Hands turns its region of interest
before the landmark network, leaves it one orientation to learn, within the rotation
augmentation's range (``DataOptions.rotation_deg``). With ``DataOptions.upright``:

- **training** crops are turned by :func:`upright_rotation` of the row's 2D labels (wrist, joint
  0, and middle-finger MCP, joint 9); the random rotation is drawn around that. Rows without both
  joints (fingertip-only labels, unlabeled images) keep the box's axes.
- **inference** has no labels: :func:`search_upright` runs the network on the crop turned to
  each of ``count`` evenly spaced angles, keeps the angle whose heat-maps are most confident
  (the network is confident where the hand looks as in training), and corrects it by that pass's
  own wrist and knuckle, then once more by a pass at the corrected angle (whose hand is nearer
  upright, so read better). The caller then crops once more at the angle found, so the final pass
  sees the hand upright, and maps its predictions back through that crop's transform (the crop
  affine, the 3D rotation), as for any crop: ``count + 2`` passes per hand in all.

Angles follow :func:`hiu_model.crop.make_crop_transform`: degrees, positive turns the crop's
content clockwise on screen (image y points down). The mirroring of left hands comes after the
turn and keeps "up" up.

Measured (bench/RESULTS.md, issue 9; heat-map PCK@0.1 / projected-mesh PCK@0.1 / mask IoU on
held-out synthetic hands): 1,200 ``tiny`` steps, 300 hands, 0.737 / 0.691 / 0.865 with crops on
the box's axes, 0.837 / 0.820 / 0.879 upright by the search (8 angles, no refining pass), 0.859 /
0.849 / 0.882 upright by the labels (an oracle, for what the search leaves); the 15-minute
``tiny`` run, 572 hands: 0.771 / 0.753 / 0.871 -> 0.872 / 0.865 / 0.884.

The unlabeled rows of training (``--unlabeled``, seen by the self-supervised losses only) keep the
box's axes: their angle is unknown when the loader crops them. Rotation test-time augmentation
(:mod:`hiu_model.tta`) turns the upright crop by its angles: at 30 degrees, the edge of the
training rotations, it lowered the heat-map PCK of the run above (0.872 -> 0.865) and raised the
mask IoU (0.884 -> 0.891).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

WRIST, MIDDLE_MCP = 0, 9
"""The two joints that give a hand's direction: the palm's axis, rarely occluded both at once."""

DEFAULT_SEARCH_ANGLES = 12
"""Candidate angles of the inference search: 30 degrees apart, so the hand is within 15 degrees
of one of them, inside the ``tiny`` presets' training rotations (+-30 degrees, ``tiny-fp32`` +-20). On the 572
held-out hands of the 15-minute ``tiny`` run (heat-map PCK@0.1): 8 angles 0.865, 12 angles 0.868;
with the refining pass 0.868 and 0.872."""


def upright_rotation(keypoints_2d: np.ndarray | None, visibility: np.ndarray | None = None) -> float | None:
    """The crop rotation that turns a hand upright, from its 2D keypoints.

    Args:
        keypoints_2d: (21, 2) image pixels (NaN where missing), or None.
        visibility: (21,) COCO flags (0 = not labelled); None treats finite points as labelled.
    Returns:
        Degrees for :func:`hiu_model.crop.make_crop_transform` after which the wrist -> middle
        MCP direction points up (negative crop y), in (-180, 180]; None when either joint is not
        labelled or the two coincide.
    """
    if keypoints_2d is None:
        return None
    points = np.asarray(keypoints_2d, np.float64)[[WRIST, MIDDLE_MCP]]
    if not np.isfinite(points).all():
        return None
    if visibility is not None and not (np.asarray(visibility)[[WRIST, MIDDLE_MCP]] > 0).all():
        return None
    dx, dy = points[1] - points[0]
    if math.hypot(dx, dy) < 1e-6:
        return None
    return wrap_degrees(-90.0 - math.degrees(math.atan2(dy, dx)))


def wrap_degrees(angle: float | np.ndarray) -> float | np.ndarray:
    """Angles in degrees wrapped into (-180, 180] (scalar or array, float64)."""
    wrapped = 180.0 - np.mod(180.0 - np.asarray(angle, np.float64), 360.0)
    return float(wrapped) if np.ndim(wrapped) == 0 else wrapped


def search_angles(count: int = DEFAULT_SEARCH_ANGLES) -> np.ndarray:
    """(count,) float64 evenly spaced candidate angles in degrees, starting at 0 (the box's axes)."""
    if count < 1:
        raise ValueError(f"the upright search needs at least one angle, not {count}")
    return wrap_degrees(np.arange(count) * (360.0 / count))


def confidence(peaks: np.ndarray) -> np.ndarray:
    """(B,) mean of the per-joint heat-map peaks, each clipped to [0, 1], from (B, 21) peaks."""
    return np.clip(np.asarray(peaks, np.float64), 0.0, 1.0).mean(axis=-1)


def correction(keypoints_crop: np.ndarray) -> np.ndarray:
    """(B,) degrees to add to the crop rotation so the predicted hand points straight up.

    ``keypoints_crop`` (B, 21, 2) crop pixels of the pass; the crop's rotation is about its
    centre, so the correction is the angle between the predicted wrist -> middle MCP direction
    and "up" (0 for a hand already upright, NaN-free: coinciding points give 0).
    """
    points = np.asarray(keypoints_crop, np.float64)
    delta = points[:, MIDDLE_MCP] - points[:, WRIST]
    degenerate = np.hypot(delta[:, 0], delta[:, 1]) < 1e-6
    angle = wrap_degrees(-90.0 - np.degrees(np.arctan2(delta[:, 1], delta[:, 0])))
    return np.where(degenerate, 0.0, angle)


Pass = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
"""``run(angles)``: the network on the batch's crops turned by ``angles`` ((B,) degrees) ->
(heat-map peaks (B, 21), heat-map keypoints (B, 21, 2) in crop pixels)."""


def search_upright(run: Pass, mirrored: np.ndarray, count: int = DEFAULT_SEARCH_ANGLES) -> np.ndarray:
    """The angle at which to crop each hand of a batch so that it stands upright.

    Runs ``run`` at each of :func:`search_angles` ``(count)``, keeps per hand the most
    :func:`confidence` one and adds its :func:`correction`, then runs once more at that angle and
    adds that pass's correction (``count + 1`` calls of ``run``).

    Args:
        run: the network on the batch turned by given angles (:data:`Pass`).
        mirrored: (B,) bool, the crops that are mirrored (left hands): the mirror comes after
            the turn, so a turn of the crop by ``+a`` turns a mirrored crop's content by ``-a``
            and the correction read in it is negated.
    Returns:
        (B,) float64 degrees in (-180, 180].
    """
    sign = np.where(np.asarray(mirrored, bool), -1.0, 1.0)
    best = np.full(len(sign), -np.inf)
    chosen = np.zeros(len(sign))
    for angle in search_angles(count):
        peaks, keypoints = run(np.full(len(sign), angle))
        score = confidence(peaks)
        better = score > best
        best = np.where(better, score, best)
        chosen = np.where(better, angle + sign * correction(keypoints), chosen)
    _, keypoints = run(wrap_degrees(chosen))
    return wrap_degrees(chosen + sign * correction(keypoints))
