"""append_dataset: new shards beside a dataset's own, which keep their names and bytes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from hiu_data.io.append import DatasetChangedError, append_dataset
from hiu_data.io.parquet import MANIFEST, HandDataset, load_manifest, sha256_file, write_dataset
from tests.data_io.records import random_records


def _renamed(records: list, prefix: str) -> list:
    return [dataclasses.replace(r, sample_id=f"{prefix}{r.sample_id}") for r in records]


def test_appended_rows_follow_the_existing_ones_which_stay_byte_identical(tmp_path: Path) -> None:
    base = write_dataset(random_records(9, seed=0), tmp_path / "out", "synthetic",
                         options={"made": "first"}, source_root=tmp_path)
    (base / "notes.txt").write_text("a person's notes")
    shards = {p.name: p.read_bytes() for p in base.glob("*.parquet")}
    extra = _renamed(random_records(5, seed=1), "more/")
    addition = write_dataset(extra, tmp_path / "new", "synthetic")
    sha = sha256_file(base / MANIFEST)
    append_dataset(base, addition, manifest_sha256=sha, record={"by": "test"})

    for name, data in shards.items():
        assert (base / name).read_bytes() == data
    assert (base / "notes.txt").read_text() == "a person's notes"
    manifest = load_manifest(base)
    assert manifest["counts"] == {"test": 3 + 2, "train": 6 + 3}  # random_records: every 4th row is test
    assert manifest["options"]["made"] == "first" and manifest["source_root"] == str(tmp_path)
    (record,) = manifest["options"]["additions"]
    assert record["by"] == "test" and record["rows"] == {"test": 2, "train": 3}
    assert sorted(record["shard_files"]) == ["test-add001-00000-of-00001.parquet",
                                             "train-add001-00000-of-00001.parquet"]
    rows = list(HandDataset(base))
    assert sorted(r.sample_id for r in rows) == sorted(r.sample_id for r in random_records(9, seed=0) + extra)
    for entry in manifest["shards"]:
        assert sha256_file(base / entry["file"]) == entry["sha256"]
    assert sorted(p.name for p in base.parent.iterdir()) == ["synthetic"]  # no staging folder left

    # A second addition takes the next free tag.
    again = write_dataset(_renamed(random_records(2, seed=2), "again/"), tmp_path / "again", "synthetic")
    append_dataset(base, again, manifest_sha256=sha256_file(base / MANIFEST))
    additions = load_manifest(base)["options"]["additions"]
    assert [a["shard_files"][0].split("-")[1] for a in additions] == ["add001", "add002"]
    assert len(HandDataset(base)) == 9 + 5 + 2


def test_a_dataset_changed_since_the_plan_or_of_another_name_is_refused(tmp_path: Path) -> None:
    base = write_dataset(random_records(4, seed=0), tmp_path / "out", "synthetic")
    before = {p.name: p.read_bytes() for p in base.iterdir()}
    addition = write_dataset(_renamed(random_records(2, seed=1), "more/"), tmp_path / "new", "synthetic")
    with pytest.raises(DatasetChangedError, match="changed while rows were being added"):
        append_dataset(base, addition, manifest_sha256="0" * 64)
    other = write_dataset(random_records(2, seed=1, dataset="other"), tmp_path / "other", "other")
    with pytest.raises(DatasetChangedError, match="dataset 'other' cannot join"):
        append_dataset(base, other, manifest_sha256=sha256_file(base / MANIFEST))
    assert {p.name: p.read_bytes() for p in base.iterdir()} == before
    assert sorted(p.name for p in base.parent.iterdir()) == ["synthetic"]
    assert json.loads((base / MANIFEST).read_text())["counts"] == {"test": 1, "train": 3}
