"""A push that fails or is interrupted leaves FiftyOne as it was: no half-filled dataset, and a
dataset it was to replace (with a person's tags) untouched."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hiu_data.review import push as push_module


def _names(prefix: str) -> list[str]:
    import fiftyone as fo

    return [n for n in fo.list_datasets() if n.startswith(prefix)]


def test_an_interrupted_replacing_push_keeps_the_reviewed_dataset(pseudo_dir: Path, review_name: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import fiftyone as fo

    push_module.push(pseudo_dir, review_name)
    reviewed = fo.load_dataset(review_name)
    sample = reviewed.first()
    sample.tags.append("accepted")
    sample.save()
    real_add = push_module._add_samples

    def add_then_interrupt(fo_: Any, dataset: Any, images: list, threshold: float) -> int:
        real_add(fo_, dataset, images[:2], threshold)
        raise KeyboardInterrupt

    monkeypatch.setattr(push_module, "_add_samples", add_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        push_module.push(pseudo_dir, review_name, overwrite=True)
    assert _names(review_name) == [review_name]  # no ".pushing-" leftover
    kept = fo.load_dataset(review_name)
    assert len(kept) == len(reviewed) and "accepted" in kept.first().tags
    assert kept.info["hiu"]["images"] == len(reviewed)


def test_an_interrupted_first_push_leaves_no_dataset(pseudo_dir: Path, review_name: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupt(*args: Any) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(push_module, "_add_samples", interrupt)
    with pytest.raises(KeyboardInterrupt):
        push_module.push(pseudo_dir, review_name)
    assert _names(review_name) == []


def test_a_replacing_push_replaces(pseudo_dir: Path, review_name: str) -> None:
    import fiftyone as fo

    push_module.push(pseudo_dir, review_name)
    sample = fo.load_dataset(review_name).first()
    sample.tags.append("accepted")
    sample.save()
    push_module.push(pseudo_dir, review_name, overwrite=True)
    assert _names(review_name) == [review_name]
    assert all("accepted" not in s.tags for s in fo.load_dataset(review_name))
