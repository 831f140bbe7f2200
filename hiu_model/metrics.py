"""Hand-pose metrics, numpy only, each with the protocol it follows.

These are the numbers hand-pose papers report; :mod:`hiu_model.evaluate` runs a model over
converted datasets and feeds its predictions here. Shapes use N samples, J joints (HAND21),
V mesh vertices. Every function takes a ``valid`` mask where labels can be missing; a joint
that is not valid (or whose ground truth is not finite) never counts, neither as a hit nor as a
miss. A labelled joint whose *prediction* is not finite (a diverged model) is a miss at every
threshold and makes the mean errors infinite, as in the reference code where NaN compares false;
it is never silently left out.

Aggregation (one rule for every PCK/AUC, as in mmpose ``keypoint_pck_accuracy`` and the
FreiHAND / hand3d AUC code): the PCK of each joint is taken over the samples where that joint
is labelled, then averaged over the joints that are labelled at least once. Errors (EPE,
MPJPE) are pooled over every valid joint of every sample.

2D protocols (pixels of the stored image):
- ``PCK@t``: error below ``t`` times the box size, the box size being ``max(w, h)`` of the
  ground-truth box (mmpose ``PCKAccuracy(norm_item="bbox")``).
- ``AUC 0-30 px``: PCK at 20 evenly spaced pixel thresholds on [0, 30] (hand3d ``eval2d``),
  trapezoid integral divided by the range, so a perfect predictor scores 1. mmpose's
  ``AUC(norm_factor=30)`` is a different number: the mean of the PCK at 0, 1.5, ..., 28.5 px
  (a left Riemann sum, strict ``<``), a few hundredths lower for the same predictions.
- Ties: an error equal to the threshold is a hit (``<=``, hand3d / FreiHAND ``EvalUtil``); mmpose
  and FreiHAND's F-score use ``<``, which differs only for errors exactly on a threshold.
- ``EPE``: mean Euclidean error in pixels.
- ``PCKh@0.7``: error below 0.7 times the sample's ``head_size`` (CMU Panoptic protocol of
  mmpose); only samples that carry a head size count.

3D protocols (millimetres, root-relative: the wrist, HAND21 joint 0, is subtracted from both
prediction and ground truth; no scale is estimated, the model predicts metric 3D):
- ``PCK3D`` on [20, 50] mm and its AUC: 31 thresholds, 1 mm apart, trapezoid divided by the
  range (papers differ in the step count: hand3d uses 12, Minimal-Hand 15, bihand 20; the
  finer grid is the closest to the integral they all approximate).
- ``MPJPE``: mean joint error; ``PA-MPJPE``: after the FreiHAND similarity alignment.
- FreiHAND's ``align_w_scale``: both sets centred on their own centroid (the mean over points,
  not the root), divided by their Frobenius norm, rotated by the orthogonal Procrustes
  solution with its scale, and moved back onto the ground truth's scale and centroid. Like
  ``scipy.linalg.orthogonal_procrustes`` it does not exclude reflections; joints and vertices
  are aligned separately.
- ``PA-MPVPE`` and ``F@5 mm`` / ``F@15 mm`` on vertices after that alignment; the F-score uses
  nearest-neighbour distances both ways: P is the share of predicted vertices within the
  threshold of a ground-truth vertex, R the share of ground-truth vertices within it of a
  predicted one, ``F = 2PR / (P + R)`` (0 when both are 0), averaged over samples.

Masks: ``IoU`` is the hand IoU of each sample averaged over samples (an empty prediction of
an empty mask scores 1); ``mIoU`` is the mean over the two classes, background and hand, of
the IoU accumulated over all pixels of all samples (the semantic-segmentation convention).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

PCK_2D_THRESHOLDS: tuple[float, ...] = (0.05, 0.1, 0.2)
"""Fractions of the box size at which 2D PCK is reported."""
AUC_2D_RANGE_PX: tuple[float, float, int] = (0.0, 30.0, 20)
"""(start, stop, count) of the pixel thresholds of the 2D AUC."""
PCKH_THRESHOLD: float = 0.7
PCK_3D_REPORTED_MM: tuple[float, ...] = (20.0, 30.0, 40.0, 50.0)
AUC_3D_RANGE_MM: tuple[float, float, int] = (20.0, 50.0, 31)
F_SCORE_THRESHOLDS_MM: tuple[float, ...] = (5.0, 15.0)


def joint_errors(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Euclidean distance per joint.

    Args:
        pred, gt: (N, J, D) float, same unit and frame (pixels for D=2, any length unit for D=3).
    Returns:
        (N, J) float64 distances in the input unit (NaN where either input is NaN).
    """
    diff = np.asarray(pred, np.float64) - np.asarray(gt, np.float64)
    return np.sqrt(np.sum(diff * diff, axis=-1))


def _counted(errors: np.ndarray, valid: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(errors, mask) to aggregate: without ``valid`` the finite errors count; with it every valid
    entry counts and a non-finite error there becomes +inf (a miss, never a dropped joint)."""
    if valid is None:
        return errors, np.isfinite(errors)
    mask = np.asarray(valid, bool)
    return np.where(mask & ~np.isfinite(errors), np.inf, errors), mask


def pck_curve(errors: np.ndarray, valid: np.ndarray | None, thresholds: np.ndarray) -> np.ndarray:
    """PCK at each threshold: per-joint share of valid errors ``<= t``, averaged over joints.

    Args:
        errors: (N, J) float errors in the unit of ``thresholds`` (already normalised if the
            protocol normalises).
        valid: (N, J) bool labelled joints (a non-finite error there is a miss), or None for
            all finite errors.
        thresholds: (T,) float.
    Returns:
        (T,) float64 in [0, 1]; NaN when no joint is valid anywhere.
    """
    errors, mask = _counted(np.asarray(errors, np.float64), valid)
    counts = mask.sum(axis=0)  # (J,)
    joints = counts > 0
    if not joints.any():
        return np.full(len(thresholds), np.nan)
    safe = np.where(mask, errors, np.inf)
    hits = (safe[None, :, :] <= np.asarray(thresholds, np.float64)[:, None, None]).sum(axis=1)  # (T, J)
    per_joint = hits[:, joints] / counts[joints]
    return per_joint.mean(axis=1)


def auc(errors: np.ndarray, valid: np.ndarray | None, start: float, stop: float, count: int) -> float:
    """Area under the PCK curve on ``linspace(start, stop, count)``, divided by the range.

    Args:
        errors: (N, J) float errors in the unit of the range.
        valid: (N, J) bool or None.
    Returns:
        float in [0, 1] (1 when every error is at most ``start``); NaN when nothing is valid.
    """
    thresholds = np.linspace(start, stop, count)
    curve = pck_curve(errors, valid, thresholds)
    return float(np.trapezoid(curve, thresholds) / (stop - start))


def mean_error(errors: np.ndarray, valid: np.ndarray | None) -> float:
    """Mean of the valid errors pooled over samples and joints (NaN when none is valid; inf when
    a valid error is not finite)."""
    errors, mask = _counted(np.asarray(errors, np.float64), valid)
    return float(errors[mask].mean()) if mask.any() else float("nan")


def box_size(bbox: np.ndarray) -> np.ndarray:
    """Normaliser of 2D PCK: ``max(w, h)`` of (N, 4) x, y, w, h boxes in pixels -> (N,)."""
    bbox = np.asarray(bbox, np.float64)
    return np.maximum(bbox[:, 2], bbox[:, 3])


def metrics_2d(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray, bbox: np.ndarray,
               head_size: np.ndarray | None = None) -> dict[str, float]:
    """2D keypoint metrics in image pixels.

    Args:
        pred, gt: (N, J, 2) float pixels in the stored image's frame.
        valid: (N, J) bool, labelled joints (non-finite ``gt`` is unlabelled too; non-finite
            ``pred`` at a labelled joint is a miss).
        bbox: (N, 4) float ground-truth boxes x, y, w, h in pixels (PCK normaliser).
        head_size: (N,) float pixels, NaN where a sample has none; None if no sample has one.
    Returns:
        ``pck@0.05``, ``pck@0.1``, ``pck@0.2`` (box-normalised), ``auc_0_30px``, ``epe_px``,
        and ``pckh@0.7`` when any head size is given.
    """
    errors = joint_errors(pred, gt)
    valid = np.asarray(valid, bool) & np.isfinite(np.asarray(gt, np.float64)).all(-1)
    norm = box_size(bbox)[:, None]
    # A zero-area box has no scale: its joints leave box-normalised PCK (as in mmpose).
    normed = errors / np.where(norm > 0, norm, 1.0)
    curve = pck_curve(normed, valid & (norm > 0), np.array(PCK_2D_THRESHOLDS))
    out = {f"pck@{t:g}": float(v) for t, v in zip(PCK_2D_THRESHOLDS, curve)}
    out["auc_0_30px"] = auc(errors, valid, *AUC_2D_RANGE_PX)
    out["epe_px"] = mean_error(errors, valid)
    if head_size is not None:
        head = np.asarray(head_size, np.float64)[:, None]
        has_head = np.isfinite(head) & (head > 0)
        if has_head.any():
            by_head = errors / np.where(has_head, head, 1.0)
            out[f"pckh@{PCKH_THRESHOLD:g}"] = float(
                pck_curve(by_head, valid & has_head, np.array([PCKH_THRESHOLD]))[0])
    return out


def align_similarity(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """FreiHAND ``align_w_scale``: the similarity transform of ``pred`` closest to ``gt``.

    Args:
        gt, pred: (N, P, 3) float point sets in the same unit; point i corresponds in both.
    Returns:
        (N, P, 3) float64: ``pred`` rotated (reflections allowed, as in FreiHAND), scaled and
        translated onto ``gt`` in the least-squares sense, in the unit of ``gt``.
    """
    gt = np.asarray(gt, np.float64)
    pred = np.asarray(pred, np.float64)
    gt_mean = gt.mean(axis=1, keepdims=True)
    pred_mean = pred.mean(axis=1, keepdims=True)
    gt_c = gt - gt_mean
    pred_c = pred - pred_mean
    gt_norm = np.linalg.norm(gt_c, axis=(1, 2), keepdims=True) + 1e-8
    pred_norm = np.linalg.norm(pred_c, axis=(1, 2), keepdims=True) + 1e-8
    gt_c /= gt_norm
    pred_c /= pred_norm
    # Orthogonal Procrustes: R minimising |gt_c R - pred_c| is U Vt of svd(gt_c^T pred_c); its
    # scale is the sum of the singular values. pred_c R^T then lies on gt_c.
    u, sing, vt = np.linalg.svd(np.einsum("npi,npj->nij", gt_c, pred_c))
    rotation = u @ vt
    scale = sing.sum(axis=1)[:, None, None]
    return np.einsum("npj,nij->npi", pred_c, rotation) * scale * gt_norm + gt_mean


def f_score(gt: np.ndarray, pred: np.ndarray, threshold: float) -> float:
    """F-score of two point clouds at a distance threshold (FreiHAND's vertex F-score).

    Args:
        gt: (P, 3), pred: (Q, 3) float points in one unit; ``threshold`` in that unit.
    Returns:
        ``2 P R / (P + R)`` with P the share of predicted points within ``threshold`` of the
        ground truth and R the share of ground-truth points within it of the prediction.
    """
    to_pred, _ = cKDTree(pred).query(gt, k=1)
    to_gt, _ = cKDTree(gt).query(pred, k=1)
    recall = float(np.mean(to_pred <= threshold))
    precision = float(np.mean(to_gt <= threshold))
    total = precision + recall
    return 2.0 * precision * recall / total if total > 0 else 0.0


def metrics_3d(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None,
               root: int = 0) -> dict[str, float]:
    """Root-relative 3D joint metrics in millimetres.

    Args:
        pred, gt: (N, J, 3) float metres in one frame (camera or any, they are made
            root-relative here).
        valid: (N, J) bool labelled joints or None; samples whose root is not valid are left
            out entirely (root-relative errors are undefined for them).
        root: joint subtracted from both sets (HAND21 wrist).
    Returns:
        ``pck3d@20mm`` .. ``pck3d@50mm``, ``auc_20_50mm``, ``mpjpe_mm``, ``pa_mpjpe_mm`` and
        FreiHAND's aligned ``pa_auc_0_50mm`` (100 thresholds).
    """
    pred = np.asarray(pred, np.float64) * 1000.0
    gt = np.asarray(gt, np.float64) * 1000.0
    valid = np.isfinite(gt).all(-1) if valid is None else (np.asarray(valid, bool) & np.isfinite(gt).all(-1))
    valid = valid & valid[:, root:root + 1]
    pred_rel = pred - pred[:, root:root + 1]
    gt_rel = gt - gt[:, root:root + 1]
    errors = joint_errors(pred_rel, gt_rel)
    out = {f"pck3d@{t:g}mm": float(v) for t, v in
           zip(PCK_3D_REPORTED_MM, pck_curve(errors, valid, np.array(PCK_3D_REPORTED_MM)))}
    out["auc_20_50mm"] = auc(errors, valid, *AUC_3D_RANGE_MM)
    out["mpjpe_mm"] = mean_error(errors, valid)
    # Procrustes needs the same point set on both sides: align on the valid joints only, and
    # only hands with at least 3 of them (fewer points do not fix a rotation).
    pa_valid = valid & (valid.sum(axis=1) >= 3)[:, None]
    aligned_errors = np.full(errors.shape, np.inf)
    for i in np.flatnonzero(pa_valid.any(axis=1)):
        keep = valid[i]
        if np.isfinite(pred_rel[i, keep]).all():  # else the SVD fails; the hand stays all misses
            aligned = align_similarity(gt_rel[i:i + 1, keep], pred_rel[i:i + 1, keep])
            aligned_errors[i, keep] = joint_errors(aligned, gt_rel[i:i + 1, keep])[0]
    out["pa_mpjpe_mm"] = mean_error(aligned_errors, pa_valid)
    out["pa_auc_0_50mm"] = auc(aligned_errors, pa_valid, 0.0, 50.0, 100)
    return out


def metrics_mesh(pred_vertices: np.ndarray, gt_vertices: np.ndarray) -> dict[str, float]:
    """FreiHAND vertex metrics after similarity alignment, in millimetres.

    Args:
        pred_vertices, gt_vertices: (N, V, 3) float metres, same mesh topology. Samples whose
            ground truth is not finite are unlabelled and left out; a non-finite prediction
            scores F = 0 and makes ``pa_mpvpe_mm`` infinite.
    Returns:
        ``pa_mpvpe_mm``, ``f@5mm``, ``f@15mm`` (aligned, mean over samples; NaN for none).
    """
    pred = np.asarray(pred_vertices, np.float64) * 1000.0
    gt = np.asarray(gt_vertices, np.float64) * 1000.0
    labelled = np.isfinite(gt).all(axis=(1, 2)) if gt.ndim == 3 else np.zeros(len(gt), bool)
    pred, gt = pred[labelled], gt[labelled]
    if len(gt) == 0:
        return {"pa_mpvpe_mm": float("nan"), **{f"f@{t:g}mm": float("nan") for t in F_SCORE_THRESHOLDS_MM}}
    finite = np.isfinite(pred).all(axis=(1, 2))
    aligned = np.full(gt.shape, np.inf)
    if finite.any():
        aligned[finite] = align_similarity(gt[finite], pred[finite])
    out = {"pa_mpvpe_mm": float(joint_errors(aligned, gt).mean())}
    for t in F_SCORE_THRESHOLDS_MM:
        out[f"f@{t:g}mm"] = float(np.mean([f_score(g, a, t) if ok else 0.0
                                           for g, a, ok in zip(gt, aligned, finite)]))
    return out


def mask_counts(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-sample confusion counts of binary masks.

    Args:
        pred, gt: (N, H, W) bool (or 0/1) masks on the same pixel grid.
    Returns:
        (N, 4) int64: true positives, false positives, false negatives, true negatives.
    """
    pred = np.asarray(pred, bool)
    gt = np.asarray(gt, bool)
    axes = (1, 2)
    tp = (pred & gt).sum(axes)
    fp = (pred & ~gt).sum(axes)
    fn = (~pred & gt).sum(axes)
    tn = (~pred & ~gt).sum(axes)
    return np.stack([tp, fp, fn, tn], axis=1).astype(np.int64)


def metrics_mask(counts: np.ndarray) -> dict[str, float]:
    """Mask IoU (per-sample hand IoU, averaged) and mIoU (background and hand, pooled).

    Args:
        counts: (N, 4) int from :func:`mask_counts` (tp, fp, fn, tn per sample).
    Returns:
        ``mask_iou`` and ``mask_miou`` in [0, 1]; NaN for no samples.
    """
    counts = np.asarray(counts, np.float64).reshape(-1, 4)
    if len(counts) == 0:
        return {"mask_iou": float("nan"), "mask_miou": float("nan")}
    tp, fp, fn, tn = counts.T
    union = tp + fp + fn
    per_sample = np.where(union > 0, tp / np.where(union > 0, union, 1.0), 1.0)
    total = counts.sum(axis=0)
    hand = total[0] / max(total[0] + total[1] + total[2], 1.0)
    background = total[3] / max(total[3] + total[1] + total[2], 1.0)
    return {"mask_iou": float(per_sample.mean()), "mask_miou": float((hand + background) / 2.0)}
