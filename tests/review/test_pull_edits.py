"""Review edits a reviewer can make through FiftyOne's Python API, and how pull treats them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from hiu_cli.main import main
from hiu_data.io.parquet import HandDataset


def _edit(name: str, image_id: str, change: Callable[[Any, Any], None]) -> None:
    """Apply ``change(fo, sample)`` to the FiftyOne sample of ``image_id`` and save it."""
    import fiftyone as fo
    from fiftyone import ViewField as F

    sample = fo.load_dataset(name).one(F("hiu_image_id") == image_id)
    change(fo, sample)
    sample.save()


def _pull_fails(name: str, out: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """Run pull, expect one ``error:`` line and exit 1 with nothing written; return the line."""
    assert main(["review", "pull", name, str(out)]) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert not out.exists() or not any(out.iterdir())
    return lines[0]


def _rows(folder: Path) -> dict[str, Any]:
    return {s.sample_id: s for s in HandDataset(folder)}


def test_an_added_hand_without_21_points_is_one_error_line(pseudo_dir: Path, review_name: str, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from hiu_data.review.push import push

    push(pseudo_dir, review_name)
    _edit(review_name, "img003",
          lambda fo, s: s["hands"].keypoints.append(fo.Keypoint(label="left", points=[[0.1, 0.5]] * 20)))
    line = _pull_fails(review_name, tmp_path / "out", capsys)
    assert review_name in line and "img003" in line and "expected 21 keypoints, got 20" in line



def test_a_shard_rewritten_since_the_push_is_refused_even_with_the_same_manifest(
        pseudo_dir: Path, review_name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pyarrow.parquet as pq

    from hiu_data.review.push import push

    push(pseudo_dir, review_name)
    shard = next(pseudo_dir.glob("*.parquet"))
    table = pq.read_table(shard)
    pq.write_table(table.slice(0, len(table) - 1), shard)  # one hand gone; manifest.json untouched
    line = _pull_fails(review_name, tmp_path / "out", capsys)
    assert shard.name in line and "changed since" in line


def test_a_hand_side_corrected_on_the_keypoints_label_comes_back(pseudo_dir: Path, review_name: str,
                                                                 tmp_path: Path) -> None:
    from hiu_data.review.push import push

    push(pseudo_dir, review_name)

    def flip(fo: Any, sample: Any) -> None:
        sample["hands"].keypoints[0].label = "left"

    _edit(review_name, "img000", flip)
    assert main(["review", "pull", review_name, str(tmp_path / "out")]) == 0
    before, after = _rows(pseudo_dir)["wild/unlabeled/img000"], _rows(tmp_path / "out" / "wild")["wild/unlabeled/img000"]
    assert before.hand_side == "right" and after.hand_side == "left"
    assert (after.review_status, after.label_source, after.split) == ("corrected", "human", "train")
    assert after.extras["review"]["edited"] == ["hand_side"]
    assert after.mano_pose is None and after.mano_betas is None  # fitted to the right hand's model
    assert after.keypoints_2d is not None and after.keypoints_3d is not None and after.mask == before.mask


def test_a_keypoints_label_that_is_not_a_side_is_one_error_line(pseudo_dir: Path, review_name: str, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    from hiu_data.review.push import push

    push(pseudo_dir, review_name)

    def rename(fo: Any, sample: Any) -> None:
        sample["hands"].keypoints[0].label = "hand"

    _edit(review_name, "img000", rename)
    line = _pull_fails(review_name, tmp_path / "out", capsys)
    assert "wild/unlabeled/img000" in line and "'hand' is not a hand side" in line


def test_a_hand_added_on_a_rejected_image_is_rejected_not_trained_on(pseudo_dir: Path, review_name: str,
                                                                      tmp_path: Path) -> None:
    from hiu_data.review.push import push

    push(pseudo_dir, review_name)

    def add_then_reject(fo: Any, sample: Any) -> None:
        sample["hands"].keypoints.append(fo.Keypoint(label="left", points=[[0.1 + 0.01 * j, 0.5] for j in range(21)]))
        sample.tags.append("rejected")

    _edit(review_name, "img002", add_then_reject)
    assert main(["review", "pull", review_name, str(tmp_path / "out")]) == 0
    pulled = _rows(tmp_path / "out" / "wild")
    added = [row for sid, row in pulled.items() if "/added-" in sid]
    assert len(added) == 1 and added[0].sample_id.startswith("wild/unlabeled/img002/added-")
    assert (added[0].review_status, added[0].split) == ("rejected", "unlabeled")
    assert added[0].extras["review"]["tags"] == ["rejected"]
    assert pulled["wild/unlabeled/img002"].review_status == "rejected"


def test_a_copied_hand_that_keeps_its_sample_id_is_one_error_line(pseudo_dir: Path, review_name: str,
                                                                   tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from hiu_data.review.push import push

    push(pseudo_dir, review_name)

    def copy_and_move(fo: Any, sample: Any) -> None:  # a second hand made from the first
        copy = sample["hands"].keypoints[0].copy()
        copy.points = [[x + 0.1, y] for x, y in copy.points]
        sample["hands"].keypoints.append(copy)

    _edit(review_name, "img005", copy_and_move)
    line = _pull_fails(review_name, tmp_path / "out", capsys)
    assert "wild/unlabeled/img005 has two keypoints labels" in line and "hiu_sample_id" in line


def test_a_moved_source_says_to_pass_source(pseudo_dir: Path, review_name: str, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from hiu_data.review.push import push

    push(pseudo_dir, review_name)
    moved = tmp_path / "moved"
    pseudo_dir.parent.rename(moved)
    line = _pull_fails(review_name, tmp_path / "out", capsys)
    assert str(pseudo_dir) in line and "no longer there" in line and "--source" in line
    assert main(["review", "pull", review_name, str(tmp_path / "out"), "--source", str(moved / "wild")]) == 0



def test_a_second_round_keeps_the_first_rounds_record(pseudo_dir: Path, review_name: str, tmp_path: Path) -> None:
    import fiftyone as fo

    from hiu_data.review.push import push

    push(pseudo_dir, review_name)
    _edit(review_name, "img002", lambda fo, s: s.tags.append("accepted"))
    assert main(["review", "pull", review_name, str(tmp_path / "round1")]) == 0
    second = review_name + "-2"
    try:
        push(tmp_path / "round1" / "wild", second)
        _edit(second, "img002", lambda fo, s: s.tags.append("rejected"))
        assert main(["review", "pull", second, str(tmp_path / "round2")]) == 0
    finally:
        if fo.dataset_exists(second):
            fo.delete_dataset(second)
    first = _rows(tmp_path / "round1" / "wild")["wild/unlabeled/img002"]
    again = _rows(tmp_path / "round2" / "wild")["wild/unlabeled/img002"]
    assert again.review_status == "rejected" and again.split == "train"
    assert again.extras["review"]["dataset"] == second and again.extras["review"]["status"] == "rejected"
    assert again.extras["review_history"] == [first.extras["review"]]
    assert first.extras["review"]["status"] == "accepted" and "review_history" not in first.extras
