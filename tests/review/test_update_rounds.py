"""A second review round after pseudo-label --update, on a real FiftyOne database (see conftest):
new images come first and unreviewed, reviewed ones keep their status; and a review round
open while the pushed dataset is updated can still be pulled."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hiu_cli.main import main
from hiu_data.io.parquet import HandDataset
from tests.pseudo.tiny import draw_images, tiny_checkpoint

FIRST = {"a.png": (40, 48), "b.png": (44, 52), "c.png": (48, 40)}
LATER = {"d.png": (36, 60), "e.png": (50, 50)}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("run"), 0)


def _tag(name: str, tags: dict[str, str]) -> None:
    """Tag the FiftyOne samples of some images (``{relative path: tag}``) as a reviewer would."""
    import fiftyone as fo

    for sample in fo.load_dataset(name):
        tag = tags.get(sample["hiu_image_id"].split("/", 1)[1])
        if tag is not None:
            sample.tags.append(tag)
            sample.save()


def _rows(folder: Path) -> dict[str, Any]:
    return {r.image_id.split("/", 1)[1]: r for r in HandDataset(folder)}


def _label(checkpoint: Path, images: Path, out: Path, *extra: str) -> None:
    assert main(["pseudo-label", str(checkpoint), str(images), str(out), *extra]) == 0


def test_a_second_round_shows_the_new_images_first_and_keeps_the_reviewed_ones(
        checkpoint: Path, tmp_path: Path, review_name: str, fiftyone_env: dict[str, str],
        capsys: pytest.CaptureFixture[str]) -> None:
    import fiftyone as fo

    images = tmp_path / "images"
    draw_images(images, FIRST, 0)
    _label(checkpoint, images, tmp_path / "out")
    assert main(["review", "push", str(tmp_path / "out" / "pseudo"), "--name", review_name]) == 0
    _tag(review_name, {"a.png": "accepted", "b.png": "rejected"})
    assert main(["review", "pull", review_name, str(tmp_path / "reviewed")]) == 0
    round1 = _rows(tmp_path / "reviewed" / "pseudo")

    draw_images(images, LATER, 1)
    _label(checkpoint, images, tmp_path / "reviewed", "--update")
    second = f"{review_name}-2"
    capsys.readouterr()
    try:
        assert main(["review", "push", str(tmp_path / "reviewed" / "pseudo"), "--name", second]) == 0
        err = " ".join(capsys.readouterr().err.split())
        assert "3 images to review come first; the 2 images decided in an earlier round come last" in err
        ds = fo.load_dataset(second)
        order = [image_id.split("/", 1)[1] for image_id in ds.values("hiu_image_id")]
        reviewed = dict(zip(order, ds.values("reviewed")))
        assert reviewed == {"a.png": True, "b.png": True, "c.png": False, "d.png": False, "e.png": False}
        assert sorted(order[:3]) == ["c.png", "d.png", "e.png"]  # still to review: first
        statuses = {kp["hiu_sample_id"]: kp["review_status"] for kp in ds.values("hands.keypoints", unwind=True)}
        assert statuses == {r.sample_id: r.review_status for r in round1.values()} | {
            f"pseudo/unlabeled/{rel}": "pending" for rel in LATER}

        _tag(second, {"d.png": "accepted"})
        assert main(["review", "pull", second, str(tmp_path / "round2")]) == 0
        round2 = _rows(tmp_path / "round2" / "pseudo")
        assert {rel: r.review_status for rel, r in round2.items()} == {
            "a.png": "accepted", "b.png": "rejected", "c.png": "pending", "d.png": "accepted", "e.png": "pending"}
        for rel in ("a.png", "b.png", "c.png"):  # the second round said nothing about them
            assert round2[rel].differences(round1[rel]) == []
        assert round2["d.png"].extras["review"]["dataset"] == second
    finally:
        if fo.dataset_exists(second):
            fo.delete_dataset(second)


def test_a_pushed_dataset_updated_before_its_pull_still_pulls_with_its_new_rows(
        checkpoint: Path, tmp_path: Path, review_name: str, fiftyone_env: dict[str, str]) -> None:
    images, pushed = tmp_path / "images", tmp_path / "out" / "pseudo"
    draw_images(images, FIRST, 0)
    _label(checkpoint, images, tmp_path / "out")
    assert main(["review", "push", str(pushed), "--name", review_name]) == 0
    _tag(review_name, {"a.png": "accepted"})
    draw_images(images, LATER, 1)
    _label(checkpoint, images, tmp_path / "out", "--update")  # while the round is open

    assert main(["review", "pull", review_name, str(tmp_path / "reviewed")]) == 0
    pulled, source = _rows(tmp_path / "reviewed" / "pseudo"), _rows(pushed)
    assert sorted(pulled) == sorted([*FIRST, *LATER])
    assert pulled["a.png"].review_status == "accepted" and pulled["a.png"].split == "train"
    for rel in ("b.png", "c.png", *LATER):
        assert pulled[rel].differences(source[rel]) == []
