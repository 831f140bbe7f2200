"""Checks of a converted dataset folder (the library side of ``hiu-data validate``).

Each check counts the rows it looked at and the rows it flags, and keeps a few examples
(``sample_id: detail``). Two kinds:

- **hard** checks fail on any flagged row: ``manifest`` (schema version, shards present,
  sha256, row counts), ``duplicate_ids``, ``fields`` (split, side, visibility values, image
  size, K a finite intrinsics matrix), ``visibility_nan`` (visibility > 0 exactly where the 2D is finite; no 2D -> all 0;
  labelled joints have finite 3D; no inf anywhere), ``keypoints_in_image`` (visible joints
  within the image, ``tolerance_px`` slack), ``bbox_in_image``, ``images`` (decodes, upright by
  its EXIF orientation, at the stored size; :mod:`hiu_data.validate_images`), ``masks`` (decodes
  to [H, W]);
- **statistical** checks flag individual rows but fail only when more than
  ``max_outlier_fraction`` of the rows they check are flagged (a systematic error such as a
  wrong joint order or unit), and warn otherwise: ``reprojection`` (3D through K onto the 2D,
  rows whose worst joint is off by more than ``reprojection_px``; pixel-error percentiles over
  all labelled joints are reported per dataset), ``plausible_3d`` (bone lengths within human
  ranges in metres, joints in front of the camera), ``joint_order`` (anatomical order tests:
  each finger's base nearer the wrist than its next joint and the middle MCP between index
  and ring, a row flagged when 3 or more of these 6 fail; with 3D also the thumb base nearer
  the wrist than the little MCP; from 3D), ``joint_order_2d`` (the same chain tests on rows
  without 3D; fails only when over a quarter of them are flagged, since foreshortened curled
  fingers fail a few percent of natural 2D hands).

A unit error (millimetres stored as metres) does not show in the reprojection (projection is
scale-free) but makes every bone hundreds of times too long; a reversed finger order (RHD's
tip -> MCP left as is) fails the order tests and the wrist -> MCP bone ranges; STB's reversed
finger order (little first) fails the thumb test.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hiu_data.errors import HiuError
from hiu_data.formats._common import project
from hiu_data.io.parquet import MANIFEST, find_dataset_dirs, load_manifest, manifest_counts, sha256_file
from hiu_data.schema import HAND_SIDES, REVIEW_STATUSES, SPLITS, check_schema
from hiu_data.skeleton import BONES, FINGERS, JOINT_INDEX, NUM_JOINTS, ROOT
from hiu_data.validate_images import check_images_and_masks

HARD, STATISTICAL = "hard", "statistical"
# Human bone-length ranges in metres (generous: children to large adults, annotation noise).
METACARPAL_RANGE = (0.03, 0.15)
THUMB_BASE_RANGE = (0.01, 0.08)
PHALANX_RANGE = (0.005, 0.08)
BONE_RANGES = np.array([PHALANX_RANGE if parent != ROOT else THUMB_BASE_RANGE if child == FINGERS["thumb"][0]
                        else METACARPAL_RANGE for parent, child in BONES])
"""(NUM_BONES, 2) min, max length in metres of each bone of ``BONES``."""
ORDER_TESTS_TO_FLAG = 3
ORDER_2D_FAIL_FRACTION = 0.25


@dataclass
class CheckResult:
    """One check over one dataset: ``status`` is ok, warn, fail or skipped."""

    name: str
    kind: str
    status: str
    checked: int
    flagged: int
    examples: list[str] = field(default_factory=list)
    note: str = ""


@dataclass
class DatasetReport:
    """The checks of one dataset folder; ``reprojection_px`` holds error percentiles (or None)."""

    path: str
    dataset: str
    rows: int
    checks: list[CheckResult]
    reprojection_px: dict[str, float] | None = None

    @property
    def ok(self) -> bool:
        """True when no check of this dataset failed (warnings allowed)."""
        return all(c.status != "fail" for c in self.checks)


@dataclass
class ValidationReport:
    """Reports of every dataset folder found under the validated path."""

    datasets: list[DatasetReport]

    @property
    def ok(self) -> bool:
        """True when every dataset folder passed."""
        return all(d.ok for d in self.datasets)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: ``{"ok", "datasets": [{path, dataset, rows, ok, reprojection_px, checks: [...]}]}``."""
        return {"ok": self.ok, "datasets": [{**asdict(d), "ok": d.ok} for d in self.datasets]}

    def to_json(self) -> str:
        """:meth:`to_dict` as indented JSON (what ``hiu-data validate --json`` prints)."""
        return json.dumps(self.to_dict(), indent=2)


class _Check:
    """Collects flagged rows of one check."""

    def __init__(self, name: str, kind: str, max_examples: int, min_fraction: float = 0.0) -> None:
        self.name, self.kind, self.max_examples = name, kind, max_examples
        self.min_fraction = min_fraction  # a statistical check never fails below this share
        self.checked, self.flagged, self.examples, self.note = 0, 0, [], ""

    def add(self, checked: int, flagged_ids: list[str] | np.ndarray, details: list[str] | None = None) -> None:
        self.checked += int(checked)
        self.flagged += len(flagged_ids)
        for i, sid in enumerate(flagged_ids[: self.max_examples - len(self.examples)]):
            self.examples.append(f"{sid}: {details[i]}" if details else str(sid))

    def result(self, max_fraction: float) -> CheckResult:
        if self.checked == 0:
            status = "skipped"
            self.note = self.note or "nothing to check"
        elif self.flagged == 0:
            status = "ok"
        elif self.kind == HARD or self.flagged > max(max_fraction, self.min_fraction) * self.checked:
            status = "fail"
        else:
            status = "warn"
        return CheckResult(self.name, self.kind, status, self.checked, self.flagged, self.examples, self.note)


def rows_to_check(path: str | Path) -> int:
    """Rows of every dataset folder at ``path`` as their manifests count them (a folder whose
    manifest cannot be read counts none: :func:`validate` reports it); the total of ``progress``."""
    return sum(manifest_counts(path).values())


def validate(path: str | Path, *, reprojection_px: float = 2.0, tolerance_px: float = 1.0,
             max_outlier_fraction: float = 0.01, check_images: bool = True, workers: int = 1,
             max_examples: int = 5, progress: Callable[[int], None] | None = None) -> ValidationReport:
    """Validate every converted dataset folder at ``path`` (see the module docstring for the checks).

    Args:
        reprojection_px: a row is flagged when a labelled joint's 3D projects farther than this
            from its 2D label (pixels).
        tolerance_px: slack for visible keypoints outside the image border (pixels).
        max_outlier_fraction: statistical checks fail above this fraction of flagged rows.
        check_images: decode every image (the slowest check); ``workers`` processes do it.
        progress: called with a number of rows whenever the image and mask check (the last and
            longest) has finished them.
    """
    return ValidationReport([_validate_one(folder, reprojection_px, tolerance_px, max_outlier_fraction, check_images,
                                           workers, max_examples, progress) for folder in find_dataset_dirs(path)])


def _validate_one(folder: Path, reprojection_px: float, tolerance_px: float, max_fraction: float, check_images: bool,
                  workers: int, max_examples: int, progress: Callable[[int], None] | None = None) -> DatasetReport:
    names = [("manifest", HARD), ("duplicate_ids", HARD), ("fields", HARD), ("visibility_nan", HARD),
             ("keypoints_in_image", HARD), ("bbox_in_image", HARD), ("images", HARD), ("masks", HARD),
             ("reprojection", STATISTICAL), ("plausible_3d", STATISTICAL), ("joint_order", STATISTICAL),
             ("joint_order_2d", STATISTICAL)]
    checks = {name: _Check(name, kind, max_examples) for name, kind in names}
    # In 2D, curled fingers seen end-on put a PIP nearer the wrist than its MCP: a few percent of
    # natural hands fail the chain tests (6 % of generated CMU-style views), while a permuted
    # order fails in most rows (59 % for RHD's tip->MCP order), so 2D fails only above a quarter.
    checks["joint_order_2d"].min_fraction = ORDER_2D_FAIL_FRACTION
    manifest, shards = _check_manifest(folder, checks["manifest"])
    dataset = str((manifest or {}).get("dataset", folder.name))
    if not shards:
        return DatasetReport(str(folder), dataset, 0, [c.result(max_fraction) for c in checks.values()])
    columns = ["sample_id", "split", "hand_side", "width", "height", "bbox", "visibility", "keypoints_2d", "keypoints_3d",
               "camera_K", "label_source", "review_status"]
    table = pa.concat_tables([pq.read_table(p, columns=columns, memory_map=True) for p in shards])
    rows = _Rows(table)
    _check_ids_and_fields(rows, checks)
    _check_keypoints(rows, checks, tolerance_px)
    # Pseudo-labels are model predictions: their 2D (heat-map branch) and 3D (mesh branch) come
    # from two heads whose disagreement is what `confidence` scores, and a person reviews them.
    # The label-quality statistics therefore judge only labels that claim to be ground truth.
    pseudo = pc.starts_with(table.column("label_source"), "pseudo:").to_numpy(zero_copy_only=False)
    truth = rows if not pseudo.any() else _Rows(table.filter(pa.array(~pseudo)))
    percentiles = _check_reprojection(truth, checks["reprojection"], reprojection_px)
    _check_3d(truth, checks["plausible_3d"])
    _check_order(truth, checks["joint_order"], checks["joint_order_2d"])
    if pseudo.any():
        for name in ("reprojection", "plausible_3d", "joint_order", "joint_order_2d"):
            checks[name].note = (checks[name].note + "; " if checks[name].note else "") + \
                f"{int(pseudo.sum())} pseudo-labelled rows not judged (ranked by confidence for review instead)"
    source_root = (manifest or {}).get("source_root")
    check_images_and_masks(shards, checks, check_images, source_root, workers, progress)
    return DatasetReport(str(folder), dataset, len(table), [c.result(max_fraction) for c in checks.values()], percentiles)


def _check_manifest(folder: Path, check: _Check) -> tuple[dict[str, Any] | None, list[Path]]:
    """Manifest problems go to ``check``; returns the manifest and the readable shard files."""
    try:
        manifest = load_manifest(folder)
    except HiuError as e:
        check.add(1, [str(folder / MANIFEST)], [str(e).split(": ", 1)[-1]])
        return None, []
    entries = manifest.get("shards", [])
    problems: list[tuple[str, str]] = []
    readable: list[Path] = []
    rows_per_split: Counter[str] = Counter()
    for entry in entries:
        path = folder / entry["file"]
        if not path.is_file():
            problems.append((entry["file"], "listed in the manifest but missing"))
            continue
        if sha256_file(path) != entry.get("sha256"):
            problems.append((entry["file"], "sha256 differs from the manifest (file changed or damaged)"))
        try:
            pf = pq.ParquetFile(path)
            check_schema(pf.schema_arrow, str(path))
        except (HiuError, pa.ArrowInvalid, OSError) as e:
            problems.append((entry["file"], f"unreadable or wrong schema ({str(e).split(': ', 1)[-1]})"))
            continue
        if pf.metadata.num_rows != entry.get("rows"):
            problems.append((entry["file"], f"{pf.metadata.num_rows} rows, the manifest says {entry.get('rows')}"))
        rows_per_split[entry["split"]] += pf.metadata.num_rows
        readable.append(path)
    for split, count in manifest.get("counts", {}).items():
        if rows_per_split.get(split, 0) != count:
            problems.append((MANIFEST, f"counts[{split!r}] = {count} but its shards hold {rows_per_split.get(split, 0)} rows"))
    listed = {e["file"] for e in entries}
    strays = sorted(p.name for p in folder.glob("*.parquet") if p.name not in listed)
    for stray in strays:
        problems.append((stray, "parquet file not listed in the manifest"))
    # Counted per file (the manifest, its shards, stray shards), so that flagged <= checked
    # however many problems one file has.
    by_file: dict[str, list[str]] = {}
    for file, problem in problems:
        by_file.setdefault(file, []).append(problem)
    check.add(1 + len(entries) + len(strays), list(by_file), ["; ".join(found) for found in by_file.values()])
    return manifest, readable


class _Rows:
    """Numeric columns of the label table as numpy arrays (nulls as NaN with a validity mask)."""

    def __init__(self, table: pa.Table) -> None:
        self.n = len(table)
        self.ids = np.asarray(table.column("sample_id").to_pylist(), dtype=object)
        self.split = table.column("split").to_pylist()
        self.review = table.column("review_status").to_pylist()
        self.side = table.column("hand_side").to_pylist()
        self.width = table.column("width").to_numpy().astype(np.float64)
        self.height = table.column("height").to_numpy().astype(np.float64)
        self.bbox, _ = _fixed(table, "bbox", (4,))
        self.vis, _ = _fixed(table, "visibility", (NUM_JOINTS,))
        self.kp2d, self.has2d = _fixed(table, "keypoints_2d", (NUM_JOINTS, 2))
        self.kp3d, self.has3d = _fixed(table, "keypoints_3d", (NUM_JOINTS, 3))
        self.K, self.hasK = _fixed(table, "camera_K", (3, 3))


def _fixed(table: pa.Table, name: str, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    column = table.column(name).combine_chunks()
    valid = ~np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    flat = column
    while pa.types.is_fixed_size_list(flat.type):
        flat = flat.values  # nulls keep their (zero) slots in a fixed-size list's child array
    values = np.asarray(flat.to_numpy(zero_copy_only=False), dtype=np.float64).reshape((len(table),) + shape)
    values[~valid] = np.nan
    return values, valid


def _flag(check: _Check, rows: _Rows, considered: np.ndarray, bad: np.ndarray, detail: Callable[[int], str]) -> None:
    idx = np.flatnonzero(considered & bad)
    check.add(int(considered.sum()), list(rows.ids[idx]), [detail(int(i)) for i in idx[: check.max_examples]])


def _check_ids_and_fields(rows: _Rows, checks: dict[str, _Check]) -> None:
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
    _flag(checks["fields"], rows, np.ones(rows.n, bool), bad,
          lambda i: f"split={rows.split[i]!r} side={rows.side[i]!r} size={rows.width[i]:.0f}x{rows.height[i]:.0f}"
                    + ("" if k_ok[i] else " camera_K is not an intrinsics matrix")
                    + ("" if review_ok[i] else f" review_status={rows.review[i]!r}"))


def _check_keypoints(rows: _Rows, checks: dict[str, _Check], tol: float) -> None:
    finite2d = np.isfinite(rows.kp2d).all(axis=2)
    labelled = rows.vis > 0
    mismatch = np.where(rows.has2d[:, None], labelled != finite2d, labelled).any(axis=1)
    mismatch |= np.isinf(rows.kp2d).any(axis=(1, 2)) | np.isinf(rows.kp3d).any(axis=(1, 2))
    missing3d = rows.has3d & (labelled & ~np.isfinite(rows.kp3d).all(axis=2)).any(axis=1)
    _flag(checks["visibility_nan"], rows, np.ones(rows.n, bool), mismatch | missing3d,
          lambda i: "visibility > 0 must match finite 2D (and 3D where present)")
    x, y = rows.kp2d[..., 0], rows.kp2d[..., 1]
    w, h = rows.width[:, None], rows.height[:, None]
    with np.errstate(invalid="ignore"):
        outside = (rows.vis == 2) & ((x < -tol) | (y < -tol) | (x > w + tol) | (y > h + tol))
    _flag(checks["keypoints_in_image"], rows, rows.has2d, outside.any(axis=1),
          lambda i: f"visible joint {int(np.argmax(outside[i]))} at {rows.kp2d[i, np.argmax(outside[i])].round(1).tolist()} "
                    f"outside {rows.width[i]:.0f}x{rows.height[i]:.0f}")
    bx, by, bw, bh = rows.bbox.T
    eps = 1e-3
    with np.errstate(invalid="ignore"):
        bad_box = ~np.isfinite(rows.bbox).all(axis=1) | (bw < 0) | (bh < 0) | (bx < -eps) | (by < -eps) \
            | (bx + bw > rows.width + eps) | (by + bh > rows.height + eps)
    _flag(checks["bbox_in_image"], rows, np.ones(rows.n, bool), bad_box,
          lambda i: f"bbox {rows.bbox[i].round(1).tolist()} in {rows.width[i]:.0f}x{rows.height[i]:.0f}")


def _check_reprojection(rows: _Rows, check: _Check, threshold: float) -> dict[str, float] | None:
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
    _flag(check, rows, considered, bad, lambda i: f"worst joint {worst_all[i]:.2f} px off (threshold {threshold} px)")
    values = err[usable]
    if values.size == 0:
        return None
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"joints": int(values.size), "p50": float(p50), "p90": float(p90), "p99": float(p99),
            "max": float(values.max()), "threshold": float(threshold)}


def _check_3d(rows: _Rows, check: _Check) -> None:
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

    _flag(check, rows, rows.has3d, bad, detail)


def _order_failures(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def _check_order(rows: _Rows, check: _Check, check_2d: _Check) -> None:
    """Joint order from 3D rows (``check``) and, for rows without 3D, from 2D (``check_2d``)."""
    use3d = rows.has3d & np.isfinite(rows.kp3d).all(axis=(1, 2))
    # 2D rows need the wrist and most joints; tests with a missing joint compare NaN and pass
    use2d = ~use3d & rows.has2d & (rows.vis[:, ROOT] > 0) & ((rows.vis > 0).sum(axis=1) >= 15)
    failed = np.zeros(rows.n, int)
    thumb = np.zeros(rows.n, bool)
    failed[use3d], thumb[use3d] = _order_failures(rows.kp3d[use3d])
    failed[use2d] = _order_failures(rows.kp2d[use2d])[0]  # foreshortening makes the thumb test unsafe in 2D
    bad = (failed >= ORDER_TESTS_TO_FLAG) | thumb

    def detail(i: int) -> str:
        thumb_text = ", thumb base farther than the little MCP" if thumb[i] else ""
        return f"{failed[i]} of 6 finger-chain tests fail{thumb_text} (joints permuted?)"

    _flag(check, rows, use3d, bad, detail)
    _flag(check_2d, rows, use2d, bad, detail)
