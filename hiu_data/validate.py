"""Checks of a converted dataset folder (the library side of ``hiu-data validate``).

Each check counts the rows it looked at and the rows it flags, and keeps a few examples
(``sample_id: detail``). This module runs them and checks the manifest; the checks of label
values are in :mod:`hiu_data.validate_labels`, the image and mask decoding in
:mod:`hiu_data.validate_images`. Two kinds:

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
from hiu_data.io.parquet import MANIFEST, find_dataset_dirs, load_manifest, manifest_counts, sha256_file
from hiu_data.schema import check_schema
from hiu_data.validate_images import check_images_and_masks
from hiu_data.validate_labels import (BONE_RANGES, ORDER_2D_FAIL_FRACTION, ORDER_TESTS_TO_FLAG,  # noqa: F401
                                      LabelRows, check_3d, check_ids_and_fields, check_keypoints, check_order,
                                      check_reprojection)

HARD, STATISTICAL = "hard", "statistical"


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
    rows = LabelRows(table)
    check_ids_and_fields(rows, checks)
    check_keypoints(rows, checks, tolerance_px)
    # Pseudo-labels are model predictions: their 2D (heat-map branch) and 3D (mesh branch) come
    # from two heads whose disagreement is what `confidence` scores, and a person reviews them.
    # The label-quality statistics therefore judge only labels that claim to be ground truth.
    pseudo = pc.starts_with(table.column("label_source"), "pseudo:").to_numpy(zero_copy_only=False)
    truth = rows if not pseudo.any() else LabelRows(table.filter(pa.array(~pseudo)))
    percentiles = check_reprojection(truth, checks["reprojection"], reprojection_px)
    check_3d(truth, checks["plausible_3d"])
    check_order(truth, checks["joint_order"], checks["joint_order_2d"])
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

