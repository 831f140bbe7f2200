"""Heat-map, POF and mask targets: encode/decode round trips, weights, band geometry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hiu_data.io import rle
from hiu_data.skeleton import BONES, NUM_BONES, NUM_JOINTS
from hiu_data.targets import (HEATMAP_REACH, bone_directions, decode_heatmaps, decode_pof, encode_heatmaps,
                              encode_pof, mask_target, soft_argmax)

ALL = np.ones(NUM_JOINTS, bool)


def _hand_2d(rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """Random sub-pixel joints spread like a hand over the middle of a map."""
    return rng.uniform(0.2 * size, 0.8 * size, (NUM_JOINTS, 2)).astype(np.float32)


@pytest.mark.parametrize("size,sigma", [((64, 64), 2.0), ((32, 48), 1.0), ((64, 64), 3.0)])
def test_heatmap_encode_decode_recovers_subpixel_keypoints(size: tuple[int, int], sigma: float) -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        kp = np.stack([rng.uniform(1, size[1] - 1, NUM_JOINTS), rng.uniform(1, size[0] - 1, NUM_JOINTS)], -1)
        hm, weights = encode_heatmaps(kp, ALL, size, sigma)
        assert hm.shape == (NUM_JOINTS,) + size and hm.dtype == np.float32
        assert np.all(weights == 1)
        decoded, peaks = decode_heatmaps(hm)
        assert np.abs(decoded - kp).max() < 0.1
        assert np.all(peaks > 0.7) and np.all(peaks <= 1.0)


@pytest.mark.parametrize("smoothing", [0.5, 1.0, 2.0])
def test_smoothed_decode_still_recovers_target_keypoints(smoothing: float) -> None:
    rng = np.random.default_rng(4)
    kp = rng.uniform(12, 52, (NUM_JOINTS, 2))  # away from the border, where the blur is one-sided
    hm, _ = encode_heatmaps(kp, ALL, (64, 64), 2.0)
    decoded, peaks = decode_heatmaps(hm, smoothing)
    assert np.abs(decoded - kp).max() < 0.1
    np.testing.assert_array_equal(peaks, decode_heatmaps(hm)[1])  # confidence of the maps as given


def test_smoothed_decode_follows_the_mass_not_a_single_spike() -> None:
    # A broad bump (peak 0.9) and, far from it, one pixel slightly higher (1.0): the plain arg-max
    # takes the spike, the blurred maps the bump.
    hm, _ = encode_heatmaps(np.array([[10.5, 20.5]]), np.ones(1, bool), (32, 32), 2.5)
    hm = 0.9 * hm
    hm[0, 5, 25] = 1.0
    plain, _ = decode_heatmaps(hm)
    smoothed, peaks = decode_heatmaps(hm, 1.0)
    np.testing.assert_allclose(plain[0], [25.5, 5.5])
    assert np.abs(smoothed[0] - [10.5, 20.5]).max() < 0.1
    assert peaks[0] == pytest.approx(1.0)


def test_heatmap_peak_is_at_the_pixel_centre_convention() -> None:
    hm, _ = encode_heatmaps(np.array([[3.5, 5.5]]), np.ones(1, bool), (8, 8), 1.0)
    assert hm[0, 5, 3] == pytest.approx(1.0)  # row 5, column 3 has its centre at (3.5, 5.5)
    assert hm[0, 5, 2] == pytest.approx(hm[0, 5, 4]) == pytest.approx(np.exp(-0.5))


def test_decode_is_batched() -> None:
    rng = np.random.default_rng(2)
    kps = [_hand_2d(rng) for _ in range(3)]
    batch = np.stack([encode_heatmaps(k, ALL, (64, 64), 2.0)[0] for k in kps])
    decoded, peaks = decode_heatmaps(batch)
    assert decoded.shape == (3, NUM_JOINTS, 2) and peaks.shape == (3, NUM_JOINTS)
    assert np.abs(decoded - np.stack(kps)).max() < 0.1


def test_missing_and_far_outside_joints_get_zero_weight_and_zero_maps() -> None:
    kp = _hand_2d(np.random.default_rng(3))
    valid = ALL.copy()
    valid[4] = False
    kp[7] = np.nan  # labelled as valid but NaN: still dropped
    kp[9] = (-HEATMAP_REACH * 2.0 - 1, 30)  # far left of the map
    kp[10] = (-1.0, 30)  # just outside: its Gaussian still shows
    hm, weights = encode_heatmaps(kp, valid, (64, 64), 2.0)
    assert weights[4] == weights[7] == weights[9] == 0
    assert not hm[[4, 7, 9]].any()
    assert weights[10] == 1 and hm[10].max() > 0.5
    assert not np.isnan(hm).any()


def test_soft_argmax_matches_keypoints_and_has_gradients() -> None:
    rng = np.random.default_rng(4)
    kp = _hand_2d(rng)
    hm, _ = encode_heatmaps(kp, ALL, (64, 64), 2.5)
    tensor = torch.from_numpy(hm)[None].requires_grad_(True)
    out = soft_argmax(tensor)
    assert out.shape == (1, NUM_JOINTS, 2)
    assert (out[0].detach().numpy() - kp).__abs__().max() < 0.05
    out.sum().backward()
    assert tensor.grad is not None and torch.isfinite(tensor.grad).all() and tensor.grad.abs().sum() > 0


def _segment_distance(px: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    t = np.clip(((px - a) @ ab) / (ab @ ab), 0, 1)
    return np.linalg.norm(px - (a + t[:, None] * ab), axis=1)


@pytest.mark.parametrize("far", [False, True], ids=["inside", "reaching-far-outside"])
def test_pof_is_unit_on_the_band_and_zero_off_it(far: bool) -> None:
    rng = np.random.default_rng(5)
    kp2 = _hand_2d(rng)
    if far:  # a zoomed-in crop: the thumb and the little finger leave the map by far
        kp2[4] = (-900.0, 20.0)
        kp2[20] = (2000.0, 3000.0)
    kp3 = rng.normal(size=(NUM_JOINTS, 3))
    band = 1.5
    pof, weights = encode_pof(kp2, kp3, ALL, (64, 64), band)
    assert pof.shape == (3 * NUM_BONES, 64, 64) and weights.shape == (3 * NUM_BONES,)
    assert np.all(weights == 1)
    yy, xx = np.mgrid[0:64, 0:64]
    centres = np.stack([xx.ravel() + 0.5, yy.ravel() + 0.5], -1)
    expected, _ = bone_directions(kp2, kp3, ALL)
    for b, (parent, child) in enumerate(BONES):
        field = pof[3 * b:3 * b + 3].reshape(3, -1).T
        distance = _segment_distance(centres, kp2[parent].astype(np.float64), kp2[child].astype(np.float64))
        on = distance <= band - 1e-3
        off = distance > band + 1e-3
        assert on.sum() > 0
        np.testing.assert_allclose(np.hypot(field[on, 0], field[on, 1]), 1.0, atol=1e-5)
        np.testing.assert_allclose(field[on], np.broadcast_to(expected[b], field[on].shape), atol=1e-5)
        assert not field[off].any()
        d3 = kp3[child] - kp3[parent]
        assert field[on, 2][0] == pytest.approx(d3[2] / np.linalg.norm(d3), abs=1e-5)


def test_pof_decode_recovers_bone_directions() -> None:
    rng = np.random.default_rng(6)
    for _ in range(5):
        kp2 = _hand_2d(rng)
        kp3 = rng.normal(size=(NUM_JOINTS, 3))
        pof, _ = encode_pof(kp2, kp3, ALL, (64, 64), 1.5)
        decoded = decode_pof(pof, kp2)
        expected, weights = bone_directions(kp2, kp3, ALL)
        np.testing.assert_allclose(decoded, expected, atol=1e-4)


def test_pof_weights_mask_z_without_3d_and_bones_of_missing_joints() -> None:
    rng = np.random.default_rng(7)
    kp2 = _hand_2d(rng)
    pof, weights = encode_pof(kp2, None, ALL, (64, 64), 1.5)
    w = weights.reshape(NUM_BONES, 3)
    assert np.all(w[:, :2] == 1) and np.all(w[:, 2] == 0)
    assert not pof.reshape(NUM_BONES, 3, 64, 64)[:, 2].any()
    valid = ALL.copy()
    valid[6] = False  # index PIP: bones 5->6 and 6->7 lose both endpoints' support
    pof, weights = encode_pof(kp2, rng.normal(size=(NUM_JOINTS, 3)), valid, (64, 64), 1.5)
    w = weights.reshape(NUM_BONES, 3)
    dropped = [b for b, (p, c) in enumerate(BONES) if 6 in (p, c)]
    assert len(dropped) == 2 and np.all(w[dropped] == 0)
    assert not pof.reshape(NUM_BONES, 3, 64, 64)[dropped].any()
    kept = [b for b in range(NUM_BONES) if b not in dropped]
    assert np.all(w[kept] == 1)
    assert np.isnan(decode_pof(pof, np.where(valid[:, None], kp2, np.nan))[dropped]).all()


def test_pof_degenerate_bone_has_no_direction() -> None:
    kp2 = _hand_2d(np.random.default_rng(8))
    kp2[2] = kp2[1]  # thumb CMC -> MCP has zero 2D length
    _, weights = encode_pof(kp2, None, ALL, (64, 64), 1.5)
    assert np.all(weights.reshape(NUM_BONES, 3)[1] == 0)


def test_mask_target_resizes_and_crops() -> None:
    full = np.zeros((100, 200), np.uint8)
    full[20:60, 40:120] = 1
    m = mask_target(rle.encode(full), (50, 100))
    assert m.dtype == np.float32 and set(np.unique(m)) == {0.0, 1.0}
    assert m[10:30, 20:60].all() and m.sum() == 20 * 40
    # crop [40, 120) x [20, 60) into 16 x 8 target pixels: everything is hand
    affine = np.array([[16 / 80, 0, -40 * 16 / 80], [0, 8 / 40, -20 * 8 / 40]])
    assert mask_target(full, (8, 16), affine).all()
    # shifted by 2 target pixels: the first two columns are outside the box
    shifted = affine + np.array([[0, 0, 2], [0, 0, 0]])
    m = mask_target(full, (8, 16), shifted)
    assert not m[:, :2].any() and m[:, 2:].all()
