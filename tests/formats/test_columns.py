"""Column-wise tables (the readers' fast path) equal the record-wise ones; DatasetWriter.add_table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hiu_data.errors import SchemaError
from hiu_data.formats._columns import hand_table
from hiu_data.io.parquet import DatasetWriter, HandDataset
from hiu_data.schema import _ARRAY_SHAPES, samples_to_table, table_to_samples
from tests.data_io.records import random_records


def _columns(records) -> dict:  # noqa: ANN001
    cols = {name: [getattr(r, name) for r in records] for name in (
        "sample_id", "dataset", "split", "subset", "image_id", "hand_side", "label_source", "review_status", "width",
        "height", "image_bytes", "image_path", "mask", "extras", "confidence")}
    for name, shape in [*_ARRAY_SHAPES.items(), ("bbox", (4,)), ("visibility", (21,))]:
        valid = np.array([getattr(r, name) is not None for r in records])
        values = np.stack([getattr(r, name) if getattr(r, name) is not None else np.zeros(shape) for r in records])
        cols[name] = (values, valid)
    return cols


def test_hand_table_matches_samples_to_table() -> None:
    records = random_records(24)
    table = hand_table(len(records), **_columns(records))
    assert table.schema.equals(samples_to_table(records).schema)
    for a, b in zip(records, table_to_samples(table)):
        assert a.differences(b) == []


def test_hand_table_rejects_unknown_and_missized_columns() -> None:
    with pytest.raises(TypeError, match="unknown columns"):
        hand_table(1, keypoints=np.zeros((1, 21, 2)))
    with pytest.raises(TypeError, match=r"missing required columns \['sample_id'"):
        hand_table(1, bbox=np.zeros((1, 4)))
    base = dict(sample_id=["a", "b"], dataset="x", split="train", image_id=["a", "b"], width=[4, 4], height=[4, 4],
                hand_side="left", visibility=np.zeros((2, 21)))
    with pytest.raises(ValueError, match="needs 2 x 4 values"):
        hand_table(2, bbox=np.zeros((1, 4)), **base)


def test_add_table_and_add_keep_order(tmp_path: Path) -> None:
    records = [r for r in random_records(40) if r.split == "train"]
    with DatasetWriter(tmp_path, "mixed") as writer:
        writer.add(records[0])
        writer.add_table(samples_to_table(records[1:20]))
        for r in records[20:]:
            writer.add(r)
    got = list(HandDataset(tmp_path / "mixed"))
    assert [s.sample_id for s in got] == [r.sample_id for r in records]
    with pytest.raises(SchemaError, match="one split"):
        with DatasetWriter(tmp_path, "bad") as writer:
            writer.add_table(samples_to_table(random_records(8)))
    assert not (tmp_path / "bad").exists()
