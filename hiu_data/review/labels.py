"""Hand labels <-> FiftyOne label values, and the rules that turn a review into a status.

Pure numpy: nothing here imports FiftyOne, so the conversions and the decision rules are
tested without a database. :mod:`hiu_data.review.push` wraps these values into
``fo.Keypoint`` / ``fo.Detection`` objects and :mod:`hiu_data.review.pull` reads them back.

Coordinates. FiftyOne stores keypoints and boxes relative to the image, (0, 0) at the
top-left *corner* and (1, 1) at the bottom-right corner. hiu's 2D convention is the same
continuous frame in pixels, so ``x_rel = x_px / width`` with no half-pixel shift. Missing
joints stay in their slot as NaN, which the App does not draw.

Masks. A hand mask is pushed as an instance mask: the bounding box is the mask's tight
box in whole pixels and the mask array is the full-image mask cropped to that box, so the
round trip is exact. An edited mask of any size is resized (nearest) to its box and pasted
into an empty full-size image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import cv2
import numpy as np

from hiu_data.io import rle
from hiu_data.skeleton import NUM_JOINTS

ACCEPTED, REJECTED, FIX = "accepted", "rejected", "fix"
LOW_CONFIDENCE = "low_confidence"
DECISION_TAGS: tuple[str, ...] = (REJECTED, FIX, ACCEPTED)
"""Tags a reviewer sets, most cautious first: when one level holds several, the first wins."""
KEYPOINT_TOLERANCE_PX = 1e-3
"""A joint moved by more than this (pixels) counts as edited; the relative-coordinate round
trip through float64 and back to float32 stays far below it."""


def keypoints_to_relative(keypoints_2d: np.ndarray | None, width: int, height: int) -> list[list[float]]:
    """HAND21 pixels (J, 2) float32 (NaN = missing; None = no labels) -> J relative [x, y] pairs.

    A sample without 2D labels gets J NaN points so that a tool can fill the slots later.
    """
    if keypoints_2d is None:
        return [[float("nan"), float("nan")] for _ in range(NUM_JOINTS)]
    scale = np.array([width, height], dtype=np.float64)
    rel = np.asarray(keypoints_2d, dtype=np.float64) / scale
    return [[float(x), float(y)] for x, y in rel]


def keypoints_from_relative(points: Iterable[Iterable[float | None]], width: int, height: int) -> np.ndarray:
    """Relative [x, y] pairs (None or NaN = missing) -> (J, 2) float32 image pixels.

    Raises ValueError when the list does not hold exactly J points.
    """
    rows = [[np.nan if v is None else float(v) for v in p] for p in points]
    arr = np.asarray(rows, dtype=np.float64).reshape(-1, 2) if rows else np.zeros((0, 2))
    if arr.shape[0] != NUM_JOINTS:
        raise ValueError(f"expected {NUM_JOINTS} keypoints, got {arr.shape[0]}")
    return (arr * np.array([width, height], dtype=np.float64)).astype(np.float32)


def confidences_to_list(keypoint_confidence: np.ndarray | None) -> list[float] | None:
    """(J,) float32 per-joint confidence -> a list of floats (None stays None)."""
    return None if keypoint_confidence is None else [float(c) for c in keypoint_confidence]


@dataclass(frozen=True)
class InstanceMask:
    """A hand mask as FiftyOne stores an instance: relative box and the mask inside it.

    ``bounding_box`` is [x, y, w, h] relative to the image; ``mask`` is (h_px, w_px) bool.
    """

    bounding_box: list[float]
    mask: np.ndarray


def mask_to_instance(mask: dict[str, Any] | None, width: int, height: int) -> InstanceMask | None:
    """A full-image RLE -> its tight whole-pixel box and the cropped mask (None when empty)."""
    if mask is None:
        return None
    full = rle.decode(mask).astype(bool)
    ys, xs = np.nonzero(full)
    if xs.size == 0:
        return None
    x0, x1, y0, y1 = int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1
    box = [x0 / width, y0 / height, (x1 - x0) / width, (y1 - y0) / height]
    return InstanceMask(box, full[y0:y1, x0:x1].copy())


def instance_to_full_mask(bounding_box: Iterable[float], mask: np.ndarray, width: int, height: int) -> np.ndarray:
    """Paste an instance mask into a (height, width) bool image.

    The box is rounded to whole pixels; a mask whose shape differs from the box (an editor
    may store any resolution) is resized with nearest-neighbour sampling. Parts outside the
    image are clipped.
    """
    bx, by, bw, bh = (float(v) for v in bounding_box)
    x0, y0 = int(round(bx * width)), int(round(by * height))
    w, h = int(round(bw * width)), int(round(bh * height))
    full = np.zeros((height, width), dtype=bool)
    if w <= 0 or h <= 0:
        return full
    crop = np.asarray(mask)
    if crop.ndim == 3:  # an RGB or single-channel-with-axis mask from an external tool
        crop = crop[..., 0]
    crop = crop != 0
    if crop.shape != (h, w):
        crop = cv2.resize(crop.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
    xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + w, width), min(y0 + h, height)
    if xa < xb and ya < yb:
        full[ya:yb, xa:xb] = crop[ya - y0:yb - y0, xa - x0:xb - x0]
    return full


def full_mask_of(mask: dict[str, Any] | None, width: int, height: int) -> np.ndarray:
    """A sample's mask as a (height, width) bool image (all False when it has none)."""
    if mask is None:
        return np.zeros((height, width), dtype=bool)
    return rle.decode(mask).astype(bool)


def keypoints_changed(original: np.ndarray | None, current: np.ndarray) -> np.ndarray:
    """(J,) bool: joints whose pixels differ (presence or position beyond the tolerance).

    ``original`` (J, 2) pixels or None (no 2D labels = all missing); ``current`` (J, 2).
    """
    before = np.full((NUM_JOINTS, 2), np.nan, np.float64) if original is None else original.astype(np.float64)
    after = current.astype(np.float64)
    missing_before, missing_after = np.isnan(before).any(1), np.isnan(after).any(1)
    moved = np.abs(np.nan_to_num(before) - np.nan_to_num(after)).max(1) > KEYPOINT_TOLERANCE_PX
    return (missing_before != missing_after) | (~missing_before & ~missing_after & moved)


def corrected_visibility(original: np.ndarray, current: np.ndarray, changed: np.ndarray) -> np.ndarray:
    """(J,) uint8 COCO visibility after an edit.

    A joint the reviewer placed becomes 2 (labelled, visible); one removed becomes 0; the
    others keep their value (an occluded joint that was only moved stays 1).
    """
    vis = np.asarray(original, dtype=np.uint8).copy()
    missing = np.isnan(current).any(1)
    vis[changed & ~missing & (vis == 0)] = 2
    vis[missing] = 0
    return vis


@dataclass(frozen=True)
class Decision:
    """What a review says about one hand.

    ``status`` is the row's new ``review_status``, or None when the review says nothing about
    the hand (the row is kept exactly as it was, so a second review round cannot demote an
    earlier decision); ``tag`` the decision tag that counted (or None); ``human`` is True
    when the labels are now a person's (accepted or corrected).
    """

    status: str | None
    tag: str | None
    human: bool


def _first_decision(tags: Iterable[str]) -> str | None:
    present = set(tags)
    return next((t for t in DECISION_TAGS if t in present), None)


def decide(sample_tags: Iterable[str], label_tags: Iterable[str], edited: bool, deleted: bool = False) -> Decision:
    """The review status of one hand from its tags and edits.

    Rules (the issue leaves their details open; these are what a reviewer would expect):

    - a label tag (on the hand's keypoints or mask) overrides the image's sample tag, so a
      reviewer can accept an image and reject one of its two hands;
    - within one level the most cautious tag wins: ``rejected`` over ``fix`` over ``accepted``;
    - ``rejected`` (or a hand whose keypoints label was deleted) -> ``rejected``, edits ignored;
    - an edited keypoint or mask -> ``corrected``, with or without a tag: editing is reviewing;
    - ``accepted`` -> ``accepted``;
    - ``fix`` without an edit -> ``pending`` (flagged for a later round, nothing lost);
    - no tag and no edit -> no decision (``status`` None: the row stays as it was).
    """
    tag = _first_decision(label_tags) or _first_decision(sample_tags)
    if deleted or tag == REJECTED:
        return Decision("rejected", REJECTED if tag == REJECTED else None, False)
    if edited:
        return Decision("corrected", tag, True)
    if tag == ACCEPTED:
        return Decision("accepted", tag, True)
    if tag == FIX:
        return Decision("pending", tag, False)
    return Decision(None, None, False)

