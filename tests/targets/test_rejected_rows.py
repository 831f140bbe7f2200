"""Hands a reviewer rejected keep their row in the dataset but never reach a model."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from hiu_data.errors import HiuError
from hiu_data.io.parquet import write_dataset
from hiu_model.data import DataOptions, HandCropDataset
from hiu_model.sampling import build_loader
from tests.targets.handmade import make_hand

SMALL = DataOptions(input_size=64, heatmap_size=16, mask_size=16)


def _write(out: Path, statuses: list[str | None]) -> Path:
    hands = [replace(make_hand(40 + i, "left" if i % 2 else "right"), review_status=status)
             for i, status in enumerate(statuses)]
    return write_dataset(hands, out, "handmade")


def test_rejected_rows_are_not_items_and_the_rest_keep_their_order(tmp_path: Path) -> None:
    statuses = ["accepted", "rejected", None, "corrected", "rejected", "pending"]
    folder = _write(tmp_path, statuses)
    dataset = HandCropDataset(folder, options=SMALL, train=False)
    kept = [i for i, status in enumerate(statuses) if status != "rejected"]
    assert len(dataset) == len(kept) and dataset.rejected == 2
    stored_ids = [sample.sample_id for sample in dataset.records]
    assert [dataset.sample(i).sample_id for i in range(len(dataset))] == [stored_ids[i] for i in kept]
    assert all(dataset.sample(i).review_status != "rejected" for i in range(len(dataset)))
    # An item is the crop of its own row: its keypoints are those of the kept row, not of the
    # row at the same position in the file.
    for item_index, row in enumerate(kept):
        expected = dataset.sample(item_index).keypoints_2d
        assert np.allclose(dataset.records[row].keypoints_2d, expected)


def test_training_loader_never_draws_a_rejected_hand(tmp_path: Path) -> None:
    folder = _write(tmp_path, ["rejected", "accepted", "rejected", "accepted"])
    loader = build_loader([folder], SMALL, batch_size=2, num_samples=8, train=True)
    drawn = set()
    for batch in loader:
        drawn.update(int(i) for i in batch["index"])
    dataset = HandCropDataset(folder, options=SMALL, train=True)
    assert {dataset.sample(i).review_status for i in drawn} == {"accepted"}


def test_a_split_whose_hands_were_all_rejected_says_so(tmp_path: Path) -> None:
    folder = _write(tmp_path, ["rejected", "rejected"])
    with pytest.raises(HiuError, match="all 2 hand.*rejected in review"):
        build_loader([folder], SMALL, batch_size=1, num_samples=2, train=True)
