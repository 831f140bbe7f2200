"""hiu-data info: what it prints is on stdout, true to the shards and complete."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hiu_cli.main import main
from hiu_data.io.parquet import write_dataset
from tests.data_io.records import random_records


def test_the_tables_go_to_stdout_and_paths_are_printed_verbatim(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    # A folder name with brackets, which rich would read as markup and drop.
    write_dataset(random_records(8), tmp_path / "hands[v2]", "synthetic")
    assert main(["info", str(tmp_path / "hands[v2]" / "synthetic")]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert str(tmp_path / "hands[v2]" / "synthetic") in captured.out
    assert "keypoints_2d" in captured.out and "train" in captured.out


def test_stats_is_the_same_command_as_info(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_dataset(random_records(6), tmp_path, "synthetic")
    assert main(["info", str(tmp_path / "synthetic"), "--json"]) == 0
    as_info = capsys.readouterr().out
    assert main(["stats", str(tmp_path / "synthetic"), "--json"]) == 0
    assert capsys.readouterr().out == as_info


def test_json_counts_images_sources_review_status_and_labelled_joints(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    records = random_records(24)
    statuses = iter(["accepted", "rejected", "corrected", "accepted"])
    for r in records:
        if r.review_status is not None:
            r.review_status = next(statuses)
            r.label_source = "human" if r.review_status == "corrected" else r.label_source
    # Fingertips only, as Dexter+Object labels them: a row with keypoints is not a fully labelled hand.
    for r in records[:4]:
        if r.keypoints_3d is not None:
            r.keypoints_3d[:16] = float("nan")
    write_dataset(records, tmp_path, "synthetic")
    assert main(["info", str(tmp_path / "synthetic"), "--json"]) == 0
    out = capsys.readouterr().out
    doc = json.loads(out)["datasets"][0]  # one JSON object, nothing else on stdout

    assert doc["images"] == len({r.image_id for r in records})
    sources: dict[str, int] = {}
    reviews: dict[str, int] = {}
    for r in records:
        sources[r.label_source] = sources.get(r.label_source, 0) + 1
        if r.review_status is not None:
            reviews[r.review_status] = reviews.get(r.review_status, 0) + 1
    assert doc["label_source"] == sources and len(sources) == 3
    assert doc["review_status"] == reviews and len(reviews) >= 2
    joints_2d = sum(int((~np.isnan(r.keypoints_2d).any(1)).sum()) for r in records if r.keypoints_2d is not None)
    joints_3d = sum(int((~np.isnan(r.keypoints_3d).any(1)).sum()) for r in records if r.keypoints_3d is not None)
    assert doc["labelled_joints"] == {"keypoints_2d": joints_2d, "keypoints_3d": joints_3d}
    assert joints_3d < 21 * doc["labels"]["keypoints_3d"]


def test_the_tables_show_review_status_sources_and_joint_coverage(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    records = random_records(12)
    for r in records:
        if r.review_status is not None:
            r.review_status = "accepted"
    write_dataset(records, tmp_path, "synthetic")
    assert main(["info", str(tmp_path / "synthetic")]) == 0
    out = capsys.readouterr().out
    assert "pseudo:abc123" in out and "accepted" in out
    assert f"{len({r.image_id for r in records})} images" in out
    assert "joints" in out


def test_a_dataset_without_3d_has_no_labelled_3d_joints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    records = random_records(6)
    for r in records:
        r.keypoints_3d = None  # 2D-only, as CMU's hand labels
    write_dataset(records, tmp_path, "twod")
    assert main(["info", str(tmp_path / "twod"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)["datasets"][0]
    assert doc["labels"]["keypoints_3d"] == 0 and doc["labelled_joints"]["keypoints_3d"] == 0
    assert doc["labelled_joints"]["keypoints_2d"] > 0


@pytest.mark.parametrize("damage", [
    lambda m: m["shards"][0].pop("file"),
    lambda m: m["shards"].__setitem__(0, m["shards"][0]["file"]),
    lambda m: m["shards"][0].__setitem__("split", 3),
    lambda m: m["shards"][0].__setitem__("file", "../other/" + m["shards"][0]["file"]),
], ids=["no-file", "entry-is-a-string", "split-not-a-string", "file-outside-the-folder"])
def test_a_damaged_shard_entry_is_a_one_line_error(damage, tmp_path: Path,  # noqa: ANN001
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_dataset(random_records(8), tmp_path, "synthetic")
    manifest = json.loads((folder / "manifest.json").read_text())
    damage(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    for command in (["info", str(folder)], ["info", str(folder), "--json"]):
        assert main(command) == 1
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.count("\n") == 1
        assert captured.err.startswith(f"error: {folder / 'manifest.json'}: shard entry 0 ")
    # validate reports it as its failed manifest check instead of stopping
    assert main(["validate", str(folder), "--json", "--skip-images"]) == 1
    report = json.loads(capsys.readouterr().out)
    manifest_check = next(c for c in report["datasets"][0]["checks"] if c["name"] == "manifest")
    assert manifest_check["status"] == "fail"


def test_images_are_counted_per_split_and_side_beside_the_hands(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    records = random_records(16)  # two hands (left, right) per image
    write_dataset(records, tmp_path, "synthetic")
    assert main(["info", str(tmp_path / "synthetic"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)["datasets"][0]
    for key, field in (("images_by_split", "split"), ("images_by_side", "hand_side")):
        expected: dict[str, set[str]] = {}
        for r in records:
            expected.setdefault(getattr(r, field), set()).add(r.image_id)
        assert doc[key] == {value: len(ids) for value, ids in expected.items()}, key

    assert main(["info", str(tmp_path / "synthetic")]) == 0
    # the first table: split or side, hands, images
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:4]]
            for line in capsys.readouterr().out.splitlines() if line.count("│") == 4}
    for split, hands in doc["splits"].items():
        assert rows[split] == [str(hands), str(doc["images_by_split"][split])]
    assert rows["left hands"] == [str(doc["hand_side"]["left"]), str(doc["images_by_side"]["left"])]


def test_one_hand_on_one_image_is_said_in_the_singular(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_dataset(random_records(1), tmp_path, "synthetic")
    assert main(["info", str(tmp_path / "synthetic")]) == 0
    assert "(1 hand on 1 image, 1 shard," in capsys.readouterr().out
