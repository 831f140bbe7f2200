"""Metrics against hand-computed cases and their invariances."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from hiu_model import metrics


def test_2d_hand_computed_case() -> None:
    gt = np.zeros((2, 3, 2))
    pred = gt.copy()
    # Box sizes 100 and 200 px: errors 4 px (0.04 box), 15 px (0.15), 30 px (0.15 of 200).
    pred[0, 0] = [4.0, 0.0]
    pred[0, 1] = [0.0, 15.0]
    pred[1, 2] = [30.0, 0.0]
    valid = np.ones((2, 3), bool)
    bbox = np.array([[0, 0, 100, 50], [0, 0, 80, 200]], float)
    out = metrics.metrics_2d(pred, gt, valid, bbox)
    # Joint 0: errors 0.04, 0 -> pck@0.05 1; joint 1: 0.15, 0 -> 0.5; joint 2: 0, 0.15 -> 0.5.
    assert out["pck@0.05"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert out["pck@0.1"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert out["pck@0.2"] == pytest.approx(1.0)
    assert out["epe_px"] == pytest.approx((4 + 15 + 30) / 6)
    assert "pckh@0.7" not in out


def test_2d_invalid_joints_do_not_count() -> None:
    gt = np.zeros((1, 2, 2))
    pred = np.array([[[0.0, 0.0], [500.0, 0.0]]])
    valid = np.array([[True, False]])
    out = metrics.metrics_2d(pred, gt, valid, np.array([[0, 0, 10, 10]], float))
    assert out["pck@0.05"] == 1.0 and out["epe_px"] == 0.0 and out["auc_0_30px"] == 1.0
    # NaN ground truth is never valid either.
    gt[0, 0] = np.nan
    out = metrics.metrics_2d(pred, gt, np.ones((1, 2), bool), np.array([[0, 0, 10, 10]], float))
    assert out["epe_px"] == 500.0



def test_nan_prediction_is_a_miss_not_an_unlabelled_joint() -> None:
    # Two labelled hands of one joint, 1 px off in a 100 px box; the second prediction is NaN
    # (a diverged model). As in mmpose and FreiHAND, where NaN < thr is false, it is a miss:
    # PCK 1/2 at every threshold, not 1/1 with the NaN hand dropped.
    gt = np.zeros((2, 1, 2))
    pred = np.array([[[1.0, 0.0]], [[np.nan, np.nan]]])
    out = metrics.metrics_2d(pred, gt, np.ones((2, 1), bool), np.array([[0, 0, 100, 100]] * 2, float),
                             head_size=np.array([10.0, 10.0]))
    assert out["pck@0.05"] == 0.5 and out["pckh@0.7"] == 0.5
    assert out["auc_0_30px"] < 0.5
    assert out["epe_px"] == np.inf
    # A zero-area box leaves box-normalised PCK (nothing to normalise by), but not EPE / AUC.
    out = metrics.metrics_2d(pred[:1].repeat(2, 0), gt, np.ones((2, 1), bool),
                             np.array([[0, 0, 100, 100], [0, 0, 0, 0]], float))
    assert out["pck@0.05"] == 1.0 and out["epe_px"] == 1.0


def test_nan_3d_and_vertex_predictions_score_as_misses(rng: np.random.Generator) -> None:
    gt = _hand(rng, 2)
    pred = gt.copy()
    pred[1, 7] = np.nan  # one joint of the second hand; Procrustes cannot use that hand
    out = metrics.metrics_3d(pred, gt)
    assert out["pck3d@20mm"] == pytest.approx(41 / 42)
    assert out["mpjpe_mm"] == np.inf and out["pa_mpjpe_mm"] == np.inf
    assert out["pa_auc_0_50mm"] < 0.51
    verts = _hand(rng, 2, points=50)
    bad = verts.copy()
    bad[1, 0] = np.nan
    mesh = metrics.metrics_mesh(bad, verts)
    assert mesh["f@5mm"] == pytest.approx(0.5) and mesh["pa_mpvpe_mm"] == np.inf
    # A sample without a finite ground-truth mesh is unlabelled: left out, not a miss.
    mesh = metrics.metrics_mesh(verts, bad)
    assert mesh["f@5mm"] == 1.0 and mesh["pa_mpvpe_mm"] < 1e-6

def test_auc_of_constant_error() -> None:
    # All errors equal 15 px: PCK is 0 below 15 px and 1 from 15 px on; on the 20-point grid
    # the curve steps between 14.21 and 15.79 px, so the trapezoid area is (30 - 15) / 30.
    errors = np.full((4, 21), 15.0)
    assert metrics.auc(errors, None, 0.0, 30.0, 20) == pytest.approx(0.5, abs=1e-9)
    assert metrics.auc(np.zeros((4, 21)), None, 0.0, 30.0, 20) == 1.0
    assert metrics.auc(np.full((4, 21), 31.0), None, 0.0, 30.0, 20) == 0.0


def test_pckh_uses_head_size() -> None:
    gt = np.zeros((2, 1, 2))
    pred = np.array([[[6.0, 0.0]], [[6.0, 0.0]]])
    out = metrics.metrics_2d(pred, gt, np.ones((2, 1), bool), np.array([[0, 0, 1, 1]] * 2, float),
                             head_size=np.array([10.0, 5.0]))
    assert out["pckh@0.7"] == pytest.approx(0.5)  # 6 <= 7 hits, 6 > 3.5 misses
    out = metrics.metrics_2d(pred, gt, np.ones((2, 1), bool), np.array([[0, 0, 1, 1]] * 2, float),
                             head_size=np.array([10.0, np.nan]))
    assert out["pckh@0.7"] == 1.0  # the sample without head size is left out


def _hand(rng: np.random.Generator, n: int, points: int = 21) -> np.ndarray:
    return rng.normal(scale=0.05, size=(n, points, 3)) + np.array([0.0, 0.0, 0.6])


def test_3d_zero_for_identical_and_hand_computed(rng: np.random.Generator) -> None:
    gt = _hand(rng, 3)
    out = metrics.metrics_3d(gt, gt)
    assert out["mpjpe_mm"] == 0.0 and out["pa_mpjpe_mm"] < 1e-6
    assert out["auc_20_50mm"] == 1.0 and out["pck3d@20mm"] == 1.0
    # A global translation disappears (root-relative); moving one non-root joint by 25 mm
    # gives MPJPE 25/21 mm and misses only that joint at 20 mm.
    pred = gt + np.array([0.1, -0.2, 0.3])
    pred[:, 5, 0] += 0.025
    out = metrics.metrics_3d(pred, gt)
    assert out["mpjpe_mm"] == pytest.approx(25.0 / 21)
    assert out["pck3d@20mm"] == pytest.approx(20 / 21)
    assert out["pck3d@30mm"] == pytest.approx(1.0)


def test_pa_metrics_invariant_to_similarity_of_prediction(rng: np.random.Generator) -> None:
    gt = _hand(rng, 4)
    pred = gt + rng.normal(scale=0.004, size=gt.shape)
    base = metrics.metrics_3d(pred, gt)
    base_mesh = metrics.metrics_mesh(pred, gt)
    rot = Rotation.random(4, random_state=1).as_matrix()
    moved = np.einsum("nij,npj->npi", rot, pred) * 1.7 + np.array([0.3, -0.1, 2.0])
    out = metrics.metrics_3d(moved, gt)
    out_mesh = metrics.metrics_mesh(moved, gt)
    assert out["pa_mpjpe_mm"] == pytest.approx(base["pa_mpjpe_mm"], rel=1e-6)
    assert out["pa_auc_0_50mm"] == pytest.approx(base["pa_auc_0_50mm"], rel=1e-6)
    assert out_mesh["pa_mpvpe_mm"] == pytest.approx(base_mesh["pa_mpvpe_mm"], rel=1e-6)
    assert out_mesh["f@5mm"] == pytest.approx(base_mesh["f@5mm"])
    assert out["mpjpe_mm"] > 10 * base["mpjpe_mm"]  # the unaligned metric does see it


def test_align_similarity_recovers_exact_transform(rng: np.random.Generator) -> None:
    gt = _hand(rng, 2, points=50)
    rot = Rotation.random(2, random_state=2).as_matrix()
    pred = np.einsum("nij,npj->npi", rot, gt) * 0.5 - 1.0
    np.testing.assert_allclose(metrics.align_similarity(gt, pred), gt, atol=1e-9)


def test_f_score_cases(rng: np.random.Generator) -> None:
    verts = _hand(rng, 1, points=200)[0]
    assert metrics.f_score(verts, verts, 0.001) == 1.0
    # Two points; the prediction hits one of them exactly and misses the other by 10 units.
    gt = np.array([[0.0, 0, 0], [100.0, 0, 0]])
    pred = np.array([[0.0, 0, 0], [110.0, 0, 0]])
    assert metrics.f_score(gt, pred, 5.0) == pytest.approx(0.5)
    assert metrics.f_score(gt, pred, 15.0) == 1.0
    # Precision 1 (one predicted point, on the GT), recall 1/2: F = 2/3.
    assert metrics.f_score(gt, pred[:1], 5.0) == pytest.approx(2 / 3)
    out = metrics.metrics_mesh(verts[None], verts[None])
    assert out["pa_mpvpe_mm"] < 1e-6 and out["f@5mm"] == 1.0 and out["f@15mm"] == 1.0


def test_mask_iou_and_miou() -> None:
    gt = np.zeros((2, 4, 4), bool)
    pred = np.zeros((2, 4, 4), bool)
    gt[0, :2, :2] = True          # 4 px
    pred[0, :2, :] = True         # 8 px, 4 overlap -> IoU 0.5
    counts = metrics.mask_counts(pred, gt)  # sample 1: both empty -> IoU 1
    out = metrics.metrics_mask(counts)
    assert out["mask_iou"] == pytest.approx(0.75)
    # Pooled: hand tp 4, fp 4, fn 0 -> 0.5; background tn 24, fp 4 -> 24/28.
    assert out["mask_miou"] == pytest.approx((0.5 + 24 / 28) / 2)
    assert metrics.metrics_mask(metrics.mask_counts(gt, gt)) == {"mask_iou": 1.0, "mask_miou": 1.0}


def test_eval_table_shows_infinite_error_apart_from_undefined() -> None:
    from hiu_cli.evaluate import _cell

    assert _cell(float("inf")) == "inf" and _cell(float("nan")) == "—" and _cell(None) == "—"
    assert _cell(0.5) == "0.500" and _cell(12.345) == "12.35"
