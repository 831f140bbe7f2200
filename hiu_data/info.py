"""Summary of converted dataset folders: manifests, counts, label coverage (``hiu-data info``).

Every count is taken from the rows of the shards, not from the manifest (``hiu-data
validate`` checks that the two agree).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hiu_data.io.parquet import HandDataset
from hiu_data.schema import HAND_SIDES, REVIEW_STATUSES, SPLITS

LABEL_COLUMNS = ("keypoints_2d", "keypoints_3d", "camera_K", "mano_pose", "mano_betas", "mask",
                 "keypoint_confidence", "confidence", "review_status", "extras")
KEYPOINT_COLUMNS = ("keypoints_2d", "keypoints_3d")
"""Columns whose rows can be partly labelled (NaN joints): their labelled joints are counted."""


def dataset_info(path: str | Path) -> dict[str, Any]:
    """Per dataset folder: manifest essentials, rows per split, and how many rows carry each label column.

    Returns:
        ``{"datasets": [{"path", "dataset", "tool_version", "created", "schema_version", "options",
        "skipped", "rows", "images", "shards", "splits": {split: rows}, "hand_side": {side: rows},
        "images_by_split": {split: images}, "images_by_side": {side: images with a hand of that side},
        "labels": {column: rows with a value}, "labelled_joints": {keypoint column: joints with
        finite coordinates, summed over the rows}, "label_source": {source: rows},
        "review_status": {status: rows}}]}``; the last is empty for a dataset nobody reviewed.
    """
    out = []
    for folder in HandDataset(path).dataset_dirs:
        ds = HandDataset(folder)
        manifest = ds.manifests[folder]
        table = ds.to_table(columns=["split", "image_id", "hand_side", "label_source", *LABEL_COLUMNS])
        labels = {name: int(len(table) - table.column(name).null_count) for name in LABEL_COLUMNS}
        out.append({
            "path": str(folder), "dataset": manifest.get("dataset"), "tool_version": manifest.get("tool_version"),
            "created": manifest.get("created"), "schema_version": manifest.get("schema_version"),
            "options": manifest.get("options"), "skipped": manifest.get("skipped", {}).get("count", 0),
            "rows": len(table), "images": len(pc.unique(table.column("image_id"))),
            "splits": _value_counts(table, "split", SPLITS), "hand_side": _value_counts(table, "hand_side", HAND_SIDES),
            "images_by_split": _images_per_value(table, "split", SPLITS),
            "images_by_side": _images_per_value(table, "hand_side", HAND_SIDES),
            "labels": labels,
            "labelled_joints": {name: _labelled_joints(table.column(name)) for name in KEYPOINT_COLUMNS},
            "label_source": _value_counts(table, "label_source"),
            "review_status": _value_counts(table, "review_status", REVIEW_STATUSES),
            "shards": len(manifest.get("shards", [])),
        })
    return {"datasets": out}


def _value_counts(table: pa.Table, column: str, order: tuple[str, ...] = ()) -> dict[str, int]:
    """Rows per value of a string column: the values of ``order`` in that order, then any
    other value, most frequent first; nulls are not counted."""
    counts = [c for c in pc.value_counts(table.column(column)).to_pylist() if c["values"] is not None]
    rank = {value: i for i, value in enumerate(order)}
    counts.sort(key=lambda c: (rank.get(c["values"], len(rank)), -c["counts"], c["values"]))
    return {str(c["values"]): int(c["counts"]) for c in counts}


def _images_per_value(table: pa.Table, column: str, order: tuple[str, ...]) -> dict[str, int]:
    """Distinct ``image_id`` per value of a string column, in the order of :func:`_value_counts`."""
    grouped = table.group_by(column).aggregate([("image_id", "count_distinct")]).to_pylist()
    counts = {str(g[column]): int(g["image_id_count_distinct"]) for g in grouped if g[column] is not None}
    return {value: counts[value] for value in _value_counts(table, column, order)}


def _labelled_joints(column: pa.ChunkedArray) -> int:
    """Joints with finite coordinates in a (J, D) keypoint column; null rows hold none."""
    total = 0
    for chunk in column.chunks:
        # flatten() leaves out null rows; a joint is labelled when all its coordinates are finite.
        joints = chunk.flatten()
        if len(joints) == 0:
            continue
        values = joints.flatten().to_numpy(zero_copy_only=False)
        total += int(np.isfinite(values.reshape(len(joints), -1)).all(axis=1).sum())
    return total
