"""Summary of converted dataset folders: manifests, counts, label coverage (``hiu-data info``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.compute as pc

from hiu_data.io.parquet import HandDataset

LABEL_COLUMNS = ("keypoints_2d", "keypoints_3d", "camera_K", "mano_pose", "mano_betas", "mask",
                 "keypoint_confidence", "confidence", "review_status", "extras")


def dataset_info(path: str | Path) -> dict[str, Any]:
    """Per dataset folder: manifest essentials, rows per split, and how many rows carry each label column.

    Returns:
        ``{"datasets": [{"path", "dataset", "tool_version", "created", "schema_version", "options",
        "skipped", "splits": {split: rows}, "hand_side": {side: rows}, "labels": {column: rows}}]}``
    """
    out = []
    for folder in HandDataset(path).dataset_dirs:
        ds = HandDataset(folder)
        manifest = ds.manifests[folder]
        table = ds.to_table(columns=["split", "hand_side", *LABEL_COLUMNS])
        splits = {str(k): int(v) for k, v in zip(*_value_counts(table, "split"))}
        sides = {str(k): int(v) for k, v in zip(*_value_counts(table, "hand_side"))}
        labels = {name: int(len(table) - table.column(name).null_count) for name in LABEL_COLUMNS}
        out.append({
            "path": str(folder), "dataset": manifest.get("dataset"), "tool_version": manifest.get("tool_version"),
            "created": manifest.get("created"), "schema_version": manifest.get("schema_version"),
            "options": manifest.get("options"), "skipped": manifest.get("skipped", {}).get("count", 0),
            "rows": len(table), "splits": splits, "hand_side": sides, "labels": labels,
            "shards": len(manifest.get("shards", [])),
        })
    return {"datasets": out}


def _value_counts(table: Any, column: str) -> tuple[list[Any], list[int]]:
    counts = pc.value_counts(table.column(column)).to_pylist()
    return [c["values"] for c in counts], [c["counts"] for c in counts]
