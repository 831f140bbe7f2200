"""Shards round trip, manifest, atomic writes, schema version checks, random access."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from hiu_data.errors import OutputExistsError, SchemaError
from hiu_data.io.parquet import MANIFEST, DatasetWriter, HandDataset, sha256_file, write_dataset
from hiu_data.schema import arrow_schema, samples_to_table, table_to_samples
from tests.data_io.records import random_records


def _by_id(samples):  # noqa: ANN001, ANN202
    return {s.sample_id: s for s in samples}


def test_records_table_records_round_trip() -> None:
    records = random_records(30)
    table = samples_to_table(records)
    assert table.schema.equals(arrow_schema())
    back = table_to_samples(table)
    for a, b in zip(records, back):
        assert a.differences(b) == []


def test_write_read_round_trip_with_nans_nulls_and_both_image_modes(tmp_path: Path) -> None:
    records = random_records(100)
    folder = write_dataset(records, tmp_path, "synthetic", row_group_rows=8, max_shard_bytes=2000)
    ds = HandDataset(folder)
    assert len(ds) == 100
    got = _by_id(ds)
    assert got.keys() == _by_id(records).keys()
    for sid, rec in _by_id(records).items():
        assert rec.differences(got[sid]) == [], sid
    # NaN keypoints survive as NaN, nulls as None, reference paths as paths
    some_nan = next(r for r in records if r.keypoints_2d is not None and np.isnan(r.keypoints_2d).any())
    assert np.isnan(got[some_nan.sample_id].keypoints_2d).sum() == np.isnan(some_nan.keypoints_2d).sum()
    ref = next(r for r in records if r.image_bytes is None)
    assert got[ref.sample_id].image_path == ref.image_path and got[ref.sample_id].image_bytes is None


def test_shards_are_named_counted_and_hashed(tmp_path: Path) -> None:
    folder = write_dataset(random_records(60), tmp_path, "synthetic", row_group_rows=4, max_shard_bytes=3000)
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["counts"] == {"test": 15, "train": 45}
    assert manifest["schema_version"] == 1 and manifest["tool_version"]
    train = sorted(s["file"] for s in manifest["shards"] if s["split"] == "train")
    assert len(train) > 1
    assert train[0] == f"train-00000-of-{len(train):05d}.parquet"
    for shard in manifest["shards"]:
        assert sha256_file(folder / shard["file"]) == shard["sha256"]
        assert pq.ParquetFile(folder / shard["file"]).metadata.num_rows == shard["rows"]
    assert sum(s["rows"] for s in manifest["shards"]) == 60


def test_image_column_uncompressed_others_zstd(tmp_path: Path) -> None:
    folder = write_dataset(random_records(20), tmp_path, "synthetic")
    meta = pq.ParquetFile(next(folder.glob("train-*.parquet"))).metadata.row_group(0)
    codecs = {meta.column(i).path_in_schema: meta.column(i) for i in range(meta.num_columns)}
    assert codecs["image.bytes"].compression == "UNCOMPRESSED"
    assert "RLE_DICTIONARY" not in codecs["image.bytes"].encodings
    assert codecs["sample_id"].compression == "ZSTD"


def test_split_filter_and_random_access(tmp_path: Path) -> None:
    records = random_records(50)
    folder = write_dataset(records, tmp_path, "synthetic", row_group_rows=4)
    test = HandDataset(folder, split="test")
    assert len(test) == sum(r.split == "test" for r in records)
    assert all(s.split == "test" for s in test)
    full = HandDataset(folder)
    expected = _by_id(records)
    for i in [len(full) - 1, 0, 17, 3, -1]:
        sample = full[i]
        assert sample.differences(expected[sample.sample_id]) == []
    with pytest.raises(IndexError):
        full[len(full)]


def _count_row_group_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    reads: list[int] = []
    original = pq.ParquetFile.read_row_group

    def counting(self, i, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        reads.append(i)
        return original(self, i, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", counting)
    return reads


def test_random_access_reads_each_row_group_once_when_the_cache_holds_the_dataset(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_dataset(random_records(40), tmp_path, "synthetic", row_group_rows=4)
    order = np.random.default_rng(0).permutation(40)
    ds = HandDataset(folder)
    reads = _count_row_group_reads(monkeypatch)
    for _ in range(2):  # two shuffled epochs
        for i in order:
            ds[int(i)]
    groups = sum(len(shard.group_starts) - 1 for shard in ds.shards)
    assert len(reads) == groups


def test_row_group_cache_is_bounded_by_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_dataset(random_records(40), tmp_path, "synthetic", row_group_rows=4)
    ds = HandDataset(folder, cache_bytes=1)  # holds only the group in use
    reads = _count_row_group_reads(monkeypatch)
    first = ds[0]
    for i in range(40):
        ds[i]
    assert ds[0].differences(first) == []
    groups = sum(len(shard.group_starts) - 1 for shard in ds.shards)
    assert len(reads) == groups + 1  # each group once, then the first again


def test_several_dataset_folders_read_as_one(tmp_path: Path) -> None:
    write_dataset(random_records(10, dataset="a"), tmp_path, "a")
    write_dataset(random_records(7, seed=1, dataset="b"), tmp_path, "b")
    ds = HandDataset(tmp_path)
    assert len(ds) == 17
    assert {s.dataset for s in ds} == {"a", "b"}
    assert len(HandDataset([tmp_path / "a", tmp_path / "b"], split="train")) == 12


def test_interrupted_write_leaves_no_dataset_folder(tmp_path: Path) -> None:
    records = random_records(40)
    with pytest.raises(RuntimeError):
        with DatasetWriter(tmp_path, "synthetic", row_group_rows=4) as writer:
            for i, r in enumerate(records):
                if i == 25:
                    raise RuntimeError("boom")
                writer.add(r)
    assert list(tmp_path.iterdir()) == []



def test_a_value_that_does_not_fit_names_the_rows_and_leaves_nothing(tmp_path: Path) -> None:
    records = random_records(5)
    # The last rows are written when the writer commits: that failure must clean up too.
    records[3] = dataclasses.replace(records[3], width=2**31)
    same_split = [r.sample_id for r in records if r.split == records[3].split]  # rows are buffered per split
    with pytest.raises(SchemaError, match=rf"one of {same_split[0]} .. {same_split[-1]}: a value does not "
                                          "fit the hand_sample schema"):
        write_dataset(records, tmp_path, "synthetic")
    assert list(tmp_path.iterdir()) == []

def test_existing_output_refused_unless_overwrite(tmp_path: Path) -> None:
    write_dataset(random_records(4), tmp_path, "synthetic")
    with pytest.raises(OutputExistsError):
        write_dataset(random_records(4), tmp_path, "synthetic")
    write_dataset(random_records(6), tmp_path, "synthetic", overwrite=True)
    assert len(HandDataset(tmp_path / "synthetic")) == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synthetic"]


def test_wrong_schema_version_is_a_clear_error(tmp_path: Path) -> None:
    folder = write_dataset(random_records(4), tmp_path, "synthetic")
    shard = next(folder.glob("train-*.parquet"))
    table = pq.read_table(shard)
    meta = dict(table.schema.metadata)
    meta[b"hiu.schema_version"] = b"99"
    pq.write_table(table.replace_schema_metadata(meta), shard)
    with pytest.raises(SchemaError, match=r"schema version 99.*re-convert"):
        HandDataset(folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["schema_version"] = 7
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(SchemaError, match=str(folder / MANIFEST)):
        HandDataset(folder)


def test_not_a_dataset_folder(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="not a converted dataset"):
        HandDataset(tmp_path)
