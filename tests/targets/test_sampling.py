"""Dataset mixing: weights, determinism, ranks, resuming; the loader with and without workers."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from hiu_data.errors import HiuError
from hiu_model.data import DataOptions, MixedSampler, build_loader
from hiu_model.sampling import DataSource, as_source
from tests.targets.handmade import write_hands

TINY = DataOptions(input_size=48, heatmap_size=12, mask_size=12)


def _source_of(index: int, lengths: list[int]) -> int:
    return int(np.searchsorted(np.cumsum(lengths), index, side="right"))


def test_sampler_respects_weights() -> None:
    lengths, weights = [100, 10, 1000], [0.5, 0.3, 0.2]
    sampler = MixedSampler(lengths, weights, num_samples=20000, seed=1)
    counts = Counter(_source_of(i, lengths) for i in sampler)
    assert len(sampler) == sum(counts.values()) == 20000
    for s, w in enumerate(weights):
        assert counts[s] / 20000 == pytest.approx(w, abs=0.015)
    default = MixedSampler(lengths, num_samples=20000, seed=1)
    counts = Counter(_source_of(i, lengths) for i in default)
    assert counts[2] / 20000 == pytest.approx(1000 / 1110, abs=0.015)


def test_sampler_walks_each_source_in_shuffled_passes() -> None:
    sampler = MixedSampler([10, 5], [1.0, 0.0], num_samples=25, seed=3)
    counts = Counter(sampler)
    assert set(counts) == set(range(10)) and set(counts.values()) == {2, 3}


def test_sampler_is_deterministic_and_changes_with_epoch() -> None:
    a = MixedSampler([50, 70], [1, 1], num_samples=200, seed=5, keys=True)
    b = MixedSampler([50, 70], [1, 1], num_samples=200, seed=5, keys=True)
    first = list(a)
    assert first == list(b)
    assert len({key for _, key, _ in first}) == 200
    a.set_epoch(1)
    assert list(a) != first
    a.set_epoch(0, start=37)
    assert list(a) == first[37:] and len(a) == 200 - 37


def test_sampler_turns_augmentation_off_from_plain_from() -> None:
    sampler = MixedSampler([50, 70], [1, 1], num_samples=100, seed=5, keys=True)
    augmented = list(sampler)
    assert all(augment for _, _, augment in augmented)
    sampler.set_epoch(0, plain_from=60)
    plain = list(sampler)
    assert [item[:2] for item in plain] == [item[:2] for item in augmented]
    assert [augment for _, _, augment in plain] == [True] * 60 + [False] * 40
    # Resuming inside the epoch keeps counting positions from the epoch's first draw.
    sampler.set_epoch(0, start=70, plain_from=60)
    assert list(sampler) == plain[70:]
    sampler.set_epoch(0, start=30, plain_from=60)
    assert list(sampler) == plain[30:]


def test_ranks_split_one_sequence_without_overlap() -> None:
    whole = list(MixedSampler([30, 40], [2, 1], num_samples=90, seed=2))
    parts = [list(MixedSampler([30, 40], [2, 1], num_samples=90, seed=2, rank=r, world_size=3)) for r in range(3)]
    assert [len(p) for p in parts] == [30, 30, 30]
    for r, part in enumerate(parts):
        assert part == whole[r::3]


def test_sampler_rejects_weight_on_an_empty_source() -> None:
    with pytest.raises(ValueError, match="no rows"):
        MixedSampler([10, 0], [1, 1])


@pytest.fixture(scope="module")
def two_sources(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("sources")
    return write_hands(root, 6, seed=1, dataset="big"), write_hands(root, 3, seed=2, dataset="small", labels="2d")


def _batches(loader: torch.utils.data.DataLoader) -> list[dict[str, torch.Tensor]]:
    return [batch for batch in loader]


def test_loader_mixes_sources_deterministically_with_workers(two_sources: tuple[Path, Path]) -> None:
    big, small = two_sources
    sources = [(big, 1.0), {"path": small, "weight": 1.0}]
    serial = _batches(build_loader(sources, TINY, batch_size=4, num_samples=12, seed=9, num_workers=0))
    parallel = _batches(build_loader(sources, TINY, batch_size=4, num_samples=12, seed=9, num_workers=2))
    assert len(serial) == len(parallel) == 3
    for a, b in zip(serial, parallel):
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key
    sources_seen = torch.cat([b["source"] for b in serial])
    assert set(sources_seen.tolist()) == {0, 1}
    has_3d = torch.cat([b["has_3d"] for b in serial])
    assert torch.equal(has_3d, (sources_seen == 0).float())
    assert serial[0]["image"].shape == (4, 3, 48, 48)


def test_plain_draws_are_the_evaluation_crops(two_sources: tuple[Path, Path]) -> None:
    big, _ = two_sources
    loader = build_loader([big], TINY, batch_size=3, num_samples=6, seed=4)
    augmented = _batches(loader)
    loader.sampler.set_epoch(0, plain_from=3)  # type: ignore[attr-defined]
    mixed = _batches(loader)
    evaluation = build_loader([big], TINY, batch_size=6, train=False).dataset
    assert torch.equal(mixed[0]["image"], augmented[0]["image"])
    assert torch.equal(mixed[1]["index"], augmented[1]["index"])
    for row in range(3):
        index = int(mixed[1]["index"][row])
        assert not torch.equal(mixed[1]["crop_affine"][row], augmented[1]["crop_affine"][row])
        for name in ("image", "crop_affine", "heatmaps", "mask"):
            assert torch.equal(mixed[1][name][row], evaluation[index][name]), name


def test_evaluation_loader_reads_every_row_once_in_order(two_sources: tuple[Path, Path]) -> None:
    big, small = two_sources
    batches = _batches(build_loader([big, small], TINY, batch_size=4, train=False))
    index = torch.cat([b["index"] for b in batches]).tolist()
    source = torch.cat([b["source"] for b in batches]).tolist()
    assert list(zip(source, index)) == [(0, i) for i in range(6)] + [(1, i) for i in range(3)]


def test_loader_errors_name_the_folder(tmp_path: Path, two_sources: tuple[Path, Path]) -> None:
    with pytest.raises(HiuError, match="no such folder"):
        build_loader([tmp_path / "missing"], TINY)
    with pytest.raises(HiuError, match=r"no rows in split 'val' \(it has: train 6; a source picks its split"):
        build_loader([two_sources[0]], TINY, split="val")


def test_source_entries_of_every_form() -> None:
    assert as_source("a/b", "train") == DataSource("a/b", 1.0, "train")
    assert as_source(Path("a"), None) == DataSource("a", 1.0, None)
    assert as_source({"path": "a", "weight": 3}, "train") == DataSource("a", 3.0, "train")
    assert as_source({"path": "a", "split": "val"}, "train") == DataSource("a", 1.0, "val")
    assert as_source(("a", 2, "test"), "train") == DataSource("a", 2.0, "test")
    assert as_source(["a"], "train") == DataSource("a", 1.0, "train")
    assert as_source(DataSource("a", 2.0), "val") == DataSource("a", 2.0, "val")
    assert as_source(DataSource("a", 2.0, "test"), "val") == DataSource("a", 2.0, "test")


@pytest.mark.parametrize("entry, message", [
    ({"path": "a", "wieght": 2}, r"unknown keys \['wieght'\]"),
    ({"weight": 2}, "expected a mapping with 'path'"),
    ({"path": "a", "weight": "heavy"}, "weight 'heavy' is not a number"),
    (3, "expected a path or a mapping"),
    ([], "expected a path or a mapping"),
])
def test_bad_source_entries_are_named(entry: object, message: str) -> None:
    with pytest.raises(HiuError, match=message):
        as_source(entry, "train")
