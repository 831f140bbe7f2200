"""The checks of ``hiu-data validate`` that look at label values (:mod:`hiu_data.validate` runs
them and describes each): ``fields``, ``duplicate_ids``, ``visibility_nan``,
``keypoints_in_image``, ``bbox_in_image``, ``reprojection``, ``plausible_3d``, ``joint_order``
and ``joint_order_2d``.

They work on whole columns at once: :class:`LabelRows` holds a dataset's label columns as
numpy arrays (2D keypoints (N, J, 2) pixels, 3D (N, J, 3) metres in the camera frame, K
(N, 3, 3) pixels, NaN where missing) and each check flags rows of it in a collector
(``hiu_data.validate._Check``: ``add(checked, flagged_ids, details)``, ``max_examples``,
``note``).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Callable

import numpy as np
import pyarrow as pa

from hiu_data.formats._common import project
from hiu_data.schema import HAND_SIDES, REVIEW_STATUSES, SPLITS
from hiu_data.skeleton import BONES, FINGERS, JOINT_INDEX, NUM_JOINTS, ROOT

if TYPE_CHECKING:
    from hiu_data.validate import _Check

# Human bone-length ranges in metres (generous: children to large adults, annotation noise).
METACARPAL_RANGE = (0.03, 0.15)
THUMB_BASE_RANGE = (0.01, 0.08)
PHALANX_RANGE = (0.005, 0.08)
BONE_RANGES = np.array([PHALANX_RANGE if parent != ROOT else THUMB_BASE_RANGE if child == FINGERS["thumb"][0]
                        else METACARPAL_RANGE for parent, child in BONES])
"""(NUM_BONES, 2) min, max length in metres of each bone of ``BONES``."""
ORDER_TESTS_TO_FLAG = 3
ORDER_2D_FAIL_FRACTION = 0.25


class LabelRows:
    """Numeric columns of the label table as numpy arrays (nulls as NaN with a validity mask)."""

    def __init__(self, table: pa.Table) -> None:
        self.n = len(table)
        self.ids = np.asarray(table.column("sample_id").to_pylist(), dtype=object)
        self.split = table.column("split").to_pylist()
        self.review = table.column("review_status").to_pylist()
        self.side = table.column("hand_side").to_pylist()
        self.width = table.column("width").to_numpy().astype(np.float64)
        self.height = table.column("height").to_numpy().astype(np.float64)
        self.bbox, _ = fixed_size_values(table, "bbox", (4,))
        self.vis, _ = fixed_size_values(table, "visibility", (NUM_JOINTS,))
        self.kp2d, self.has2d = fixed_size_values(table, "keypoints_2d", (NUM_JOINTS, 2))
        self.kp3d, self.has3d = fixed_size_values(table, "keypoints_3d", (NUM_JOINTS, 3))
        self.K, self.hasK = fixed_size_values(table, "camera_K", (3, 3))


def fixed_size_values(table: pa.Table, name: str, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    column = table.column(name).combine_chunks()
    valid = ~np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    flat = column
    while pa.types.is_fixed_size_list(flat.type):
        flat = flat.values  # nulls keep their (zero) slots in a fixed-size list's child array
    values = np.asarray(flat.to_numpy(zero_copy_only=False), dtype=np.float64).reshape((len(table),) + shape)
    values[~valid] = np.nan
    return values, valid


def flag_rows(check: _Check, rows: LabelRows, considered: np.ndarray, bad: np.ndarray, detail: Callable[[int], str]) -> None:
    idx = np.flatnonzero(considered & bad)
    check.add(int(considered.sum()), list(rows.ids[idx]), [detail(int(i)) for i in idx[: check.max_examples]])


def check_ids_and_fields(rows: LabelRows, checks: dict[str, _Check]) -> None:
    counts = Counter(rows.ids.tolist())
    dupes = [sid for sid, c in counts.items() if c > 1]
    checks["duplicate_ids"].add(rows.n, dupes, [f"{counts[d]} rows" for d in dupes[:5]])
    split_ok = np.array([s in SPLITS for s in rows.split])
    side_ok = np.array([s in HAND_SIDES for s in rows.side])
    # A misspelt status ("Rejected") would let a hand a person rejected back into training.
    review_ok = np.array([r is None or r in REVIEW_STATUSES for r in rows.review], bool)
    vis_ok = np.isin(rows.vis, (0, 1, 2)).all(axis=1)
    size_ok = (rows.width > 0) & (rows.height > 0)
    K = rows.K
    with np.errstate(invalid="ignore"):
        k_ok = ~rows.hasK | (np.isfinite(K).all(axis=(1, 2)) & (K[:, 0, 0] > 0) & (K[:, 1, 1] > 0)
                             & np.all(K[:, 2] == np.array([0.0, 0.0, 1.0]), axis=1))
    bad = ~(split_ok & side_ok & vis_ok & size_ok & k_ok & review_ok)
    flag_rows(checks["fields"], rows, np.ones(rows.n, bool), bad,
          lambda i: f"split={rows.split[i]!r} side={rows.side[i]!r} size={rows.width[i]:.0f}x{rows.height[i]:.0f}"
                    + ("" if k_ok[i] else " camera_K is not an intrinsics matrix")
                    + ("" if review_ok[i] else f" review_status={rows.review[i]!r}"))


def check_keypoints(rows: LabelRows, checks: dict[str, _Check], tol: float) -> None:
    finite2d = np.isfinite(rows.kp2d).all(axis=2)
    labelled = rows.vis > 0
    mismatch = np.where(rows.has2d[:, None], labelled != finite2d, labelled).any(axis=1)
    mismatch |= np.isinf(rows.kp2d).any(axis=(1, 2)) | np.isinf(rows.kp3d).any(axis=(1, 2))
    missing3d = rows.has3d & (labelled & ~np.isfinite(rows.kp3d).all(axis=2)).any(axis=1)
    flag_rows(checks["visibility_nan"], rows, np.ones(rows.n, bool), mismatch | missing3d,
          lambda i: "visibility > 0 must match finite 2D (and 3D where present)")
    x, y = rows.kp2d[..., 0], rows.kp2d[..., 1]
    w, h = rows.width[:, None], rows.height[:, None]
    with np.errstate(invalid="ignore"):
        outside = (rows.vis == 2) & ((x < -tol) | (y < -tol) | (x > w + tol) | (y > h + tol))
    flag_rows(checks["keypoints_in_image"], rows, rows.has2d, outside.any(axis=1),
          lambda i: f"visible joint {int(np.argmax(outside[i]))} at {rows.kp2d[i, np.argmax(outside[i])].round(1).tolist()} "
                    f"outside {rows.width[i]:.0f}x{rows.height[i]:.0f}")
    bx, by, bw, bh = rows.bbox.T
    eps = 1e-3
    with np.errstate(invalid="ignore"):
        bad_box = ~np.isfinite(rows.bbox).all(axis=1) | (bw < 0) | (bh < 0) | (bx < -eps) | (by < -eps) \
            | (bx + bw > rows.width + eps) | (by + bh > rows.height + eps)
    flag_rows(checks["bbox_in_image"], rows, np.ones(rows.n, bool), bad_box,
          lambda i: f"bbox {rows.bbox[i].round(1).tolist()} in {rows.width[i]:.0f}x{rows.height[i]:.0f}")


def check_reprojection(rows: LabelRows, check: _Check, threshold: float) -> dict[str, float] | None:
    considered = rows.has2d & rows.has3d & rows.hasK
    if not considered.any():
        check.note = "no rows with 2D, 3D and K"
        return None
    with np.errstate(invalid="ignore", divide="ignore"):
        uv = project(rows.kp3d[considered], rows.K[considered])
        err = np.linalg.norm(uv - rows.kp2d[considered], axis=2)
        usable = (rows.vis[considered] > 0) & np.isfinite(err) & (rows.kp3d[considered][..., 2] > 0)
    worst = np.where(usable, err, 0.0).max(axis=1)
    bad = np.zeros(rows.n, bool)
    bad[considered] = worst > threshold
    worst_all = np.zeros(rows.n)
    worst_all[considered] = worst
    flag_rows(check, rows, considered, bad, lambda i: f"worst joint {worst_all[i]:.2f} px off (threshold {threshold} px)")
    values = err[usable]
    if values.size == 0:
        return None
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"joints": int(values.size), "p50": float(p50), "p90": float(p90), "p99": float(p99),
            "max": float(values.max()), "threshold": float(threshold)}


def check_3d(rows: LabelRows, check: _Check) -> None:
    parents, children = np.array(BONES).T
    lengths = np.linalg.norm(rows.kp3d[:, children] - rows.kp3d[:, parents], axis=2)  # NaN where missing
    ranges = BONE_RANGES
    with np.errstate(invalid="ignore"):
        wrong = (lengths < ranges[:, 0]) | (lengths > ranges[:, 1])
        behind = (rows.vis > 0) & (rows.kp3d[..., 2] <= 0)
    bad = wrong.any(axis=1) | behind.any(axis=1)

    def detail(i: int) -> str:
        if wrong[i].any():
            b = int(np.argmax(wrong[i]))
            lo, hi = ranges[b]
            return f"bone {BONES[b]} is {lengths[i, b]:.4g} m, expected {lo}-{hi} m (wrong unit?)"
        return "a labelled joint is behind the camera (z <= 0)"

    flag_rows(check, rows, rows.has3d, bad, detail)


def order_failures(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, J, D) points -> ((N,) failed chain tests of 6, (N,) thumb-base test failed).

    Chain tests: each finger's first joint nearer the wrist than its second (5), the middle MCP
    between the index and ring MCPs (1). Thumb test: the thumb's base (CMC, about 3 cm from
    the wrist) nearer the wrist than the little MCP (about 7 cm); it catches a reversed finger
    order (STB's little -> thumb) that leaves the chains intact. NaN comparisons do not fail.
    """
    dist = np.linalg.norm(points - points[:, ROOT:ROOT + 1], axis=2)
    failed = np.zeros(len(points), int)
    with np.errstate(invalid="ignore"):
        for chain in FINGERS.values():
            failed += dist[:, chain[0]] > dist[:, chain[1]]
        index, middle, ring = (points[:, JOINT_INDEX[n]] for n in ("index_mcp", "middle_mcp", "ring_mcp"))
        span = np.linalg.norm(index - ring, axis=1)
        failed += (np.linalg.norm(index - middle, axis=1) > span) | (np.linalg.norm(middle - ring, axis=1) > span)
        thumb = dist[:, FINGERS["thumb"][0]] > dist[:, FINGERS["little"][0]]
    return failed, thumb


def check_order(rows: LabelRows, check: _Check, check_2d: _Check) -> None:
    """Joint order from 3D rows (``check``) and, for rows without 3D, from 2D (``check_2d``)."""
    use3d = rows.has3d & np.isfinite(rows.kp3d).all(axis=(1, 2))
    # 2D rows need the wrist and most joints; tests with a missing joint compare NaN and pass
    use2d = ~use3d & rows.has2d & (rows.vis[:, ROOT] > 0) & ((rows.vis > 0).sum(axis=1) >= 15)
    failed = np.zeros(rows.n, int)
    thumb = np.zeros(rows.n, bool)
    failed[use3d], thumb[use3d] = order_failures(rows.kp3d[use3d])
    failed[use2d] = order_failures(rows.kp2d[use2d])[0]  # foreshortening makes the thumb test unsafe in 2D
    bad = (failed >= ORDER_TESTS_TO_FLAG) | thumb

    def detail(i: int) -> str:
        thumb_text = ", thumb base farther than the little MCP" if thumb[i] else ""
        return f"{failed[i]} of 6 finger-chain tests fail{thumb_text} (joints permuted?)"

    flag_rows(check, rows, use3d, bad, detail)
    flag_rows(check_2d, rows, use2d, bad, detail)
