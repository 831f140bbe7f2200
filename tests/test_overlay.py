"""The overlay of ``hiu-data predict``: the same pixels as drawing on a float copy of the whole
image, without the memory of one."""

from __future__ import annotations

import tracemalloc

import cv2
import numpy as np
import pytest

from hiu_data.skeleton import BONES, bone_colors, joint_colors
from hiu_model import overlay
from hiu_model.overlay import draw_prediction
from hiu_model.predict import Prediction


def _reference(image: np.ndarray, predictions: list[Prediction]) -> np.ndarray:
    """The overlay drawn the straightforward way: the mask tint on a float32 copy of the whole
    image (40 % green over each mask in turn, rounded down once), the outlines traced on the
    whole silhouette, then the skeleton and the mesh joints."""
    canvas = image.astype(np.float32)
    for pred in predictions:
        if pred.mask is not None:
            canvas[pred.mask] = 0.6 * canvas[pred.mask] + 0.4 * np.array([40, 220, 90], np.float32)
    canvas = np.clip(canvas, 0, 255).astype(np.uint8)
    scale = max(image.shape[:2]) / 400.0
    thickness = max(1, int(round(2 * scale)))

    def point(p: np.ndarray) -> tuple[int, int]:
        return int(round((p[0] - 0.5) * 16)), int(round((p[1] - 0.5) * 16))

    for pred in predictions:
        if pred.silhouette is not None:
            contours, _ = cv2.findContours(pred.silhouette.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(canvas, contours, -1, (255, 215, 0), thickness, cv2.LINE_AA)
        for (parent, child), colour in zip(BONES, bone_colors()):
            cv2.line(canvas, point(pred.keypoints_2d[parent]), point(pred.keypoints_2d[child]), colour, thickness,
                     cv2.LINE_AA, 4)
        for joint, colour in enumerate(joint_colors()):
            shade = 0.4 + 0.6 * float(pred.keypoint_confidence[joint])
            cv2.circle(canvas, point(pred.keypoints_2d[joint]), int(16 * 2.5 * scale) + 8,
                       tuple(int(c * shade) for c in colour), -1, cv2.LINE_AA, 4)
        if pred.mesh_keypoints_2d is not None:
            for p in pred.mesh_keypoints_2d:
                cv2.circle(canvas, point(p), int(16 * 3 * scale) + 16, (255, 255, 255), 1, cv2.LINE_AA, 4)
    return canvas


def _hand(rng: np.random.Generator, height: int, width: int, mask: np.ndarray | None,
          silhouette: np.ndarray | None) -> Prediction:
    keypoints = (rng.random((21, 2)) * [width, height]).astype(np.float32)
    return Prediction(image_index=0, bbox=np.array([0, 0, width, height], np.float32), hand_side="right",
                      keypoints_2d=keypoints, keypoint_confidence=rng.random(21).astype(np.float32),
                      crop_affine=np.eye(2, 3, dtype=np.float32), mask=mask, silhouette=silhouette,
                      mesh_keypoints_2d=keypoints + rng.normal(0, 3, (21, 2)).astype(np.float32))


def _blob(height: int, width: int, rows: slice, cols: slice, rng: np.random.Generator) -> np.ndarray:
    mask = np.zeros((height, width), bool)
    mask[rows, cols] = rng.random(mask[rows, cols].shape) < 0.8
    return mask


@pytest.mark.parametrize("strip", [1 << 20, 50, 1])
def test_the_overlay_is_the_float_canvas_overlay(strip: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(overlay, "TINT_STRIP_PIXELS", strip)  # one strip, a few rows each, a row each
    rng = np.random.default_rng(7)
    height, width = 90, 130
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    image[:5] = 255  # tinted where the colour would overflow without the clip
    hands = [
        # overlapping masks (tinted twice), the second one and a silhouette on the image's border
        _hand(rng, height, width, _blob(height, width, slice(10, 60), slice(20, 90), rng),
              _blob(height, width, slice(0, 40), slice(100, 130), rng)),
        _hand(rng, height, width, _blob(height, width, slice(40, 90), slice(60, 130), rng),
              _blob(height, width, slice(30, 70), slice(10, 50), rng)),
        _hand(rng, height, width, None, None),
        _hand(rng, height, width, np.zeros((height, width), bool), np.zeros((height, width), bool)),
        _hand(rng, height, width, np.ones((height, width), bool), np.ones((height, width), bool)),
    ]
    for chosen in ([], hands[:1], hands[:2], hands[2:4], hands):
        before = image.copy()
        drawn = draw_prediction(image, chosen)
        assert drawn.dtype == np.uint8 and drawn.shape == image.shape
        np.testing.assert_array_equal(drawn, _reference(image, chosen))
        np.testing.assert_array_equal(image, before)  # a new array: the image is left as it was


def _peak_bytes(height: int, width: int) -> int:
    """Peak traced memory (numpy's arrays included) of drawing a hand whose mask and silhouette
    cover a whole (height, width) image."""
    image = np.full((height, width, 3), 120, np.uint8)
    whole = np.ones((height, width), bool)
    hand = _hand(np.random.default_rng(0), height, width, whole, whole)
    tracemalloc.start()
    try:
        draw_prediction(image, [hand])
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_overlay_of_a_large_image_has_no_float_copy_of_it() -> None:
    small, large = (1000, 1500), (2000, 3000)
    assert overlay.TINT_STRIP_PIXELS <= small[0] * small[1] / 4  # both images take several strips
    per_pixel = (_peak_bytes(*large) - _peak_bytes(*small)) / (large[0] * large[1] - small[0] * small[1])
    # The uint8 overlay (3 bytes a pixel) and the outline's uint8 silhouette (1); a float32 copy
    # of the image alone would be 12.
    assert per_pixel < 5, per_pixel
