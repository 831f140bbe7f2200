"""Push -> edit from another process -> pull, on a real FiftyOne database (see conftest)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hiu_cli.main import main
from hiu_data.io import rle
from hiu_data.io.parquet import HandDataset
from tests.review.pseudo_rows import PSEUDO_SOURCE, WIDTH

# A reviewer's session, as another process writing into the same database: tags in the App's
# way (sample tags, label tags), one keypoint moved and one mask redrawn through the Python API.
EDIT_SCRIPT = """
import sys
import numpy as np
import fiftyone as fo

ds = fo.load_dataset(sys.argv[1])
by_image = {s["hiu_image_id"]: s for s in ds}
s = by_image["img000"]; s.tags.append("accepted"); s.save()
s = by_image["img001"]; s.tags.append("accepted")
left = [k for k in s["hands"].keypoints if k["hiu_sample_id"].endswith("/left")][0]
left.tags.append("rejected"); s.save()
s = by_image["img002"]; kp = s["hands"].keypoints[0]
points = [list(p) for p in kp.points]; points[8][0] += 5.0 / %(width)d
kp.points = points; kp.tags.append("fix"); s.save()
s = by_image["img004"]; s.tags.append("fix"); s.save()
s = by_image["img005"]; det = s["hand_masks"].detections[0]
det.bounding_box = [0.25, 0.25, 0.5, 0.5]; det.mask = np.ones((9, 7), bool); s.save()
s = by_image["img006"]; s["hands"].keypoints = []; s.save()
s = by_image["img003"]
s["hands"].keypoints.append(fo.Keypoint(label="left", points=[[0.1 + 0.01 * j, 0.5] for j in range(21)]))
s.save()
""" % {"width": WIDTH}


def _shard_hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.parquet"))}


def _rows(folder: Path) -> dict:
    return {s.sample_id: s for s in HandDataset(folder)}


def test_push_builds_a_sorted_dataset_with_skeleton_masks_and_cached_images(pseudo_dir: Path, review_name: str,
                                                                            fiftyone_env: dict[str, str]) -> None:
    from hiu_data.review.push import push
    import fiftyone as fo

    result = push(pseudo_dir, review_name, threshold=0.5)
    assert (result.images, result.hands, result.low_confidence) == (7, 8, 3)
    ds = fo.load_dataset(review_name)
    assert ds.persistent and len(ds) == 7
    confidences = ds.values("confidence")
    assert confidences == sorted(confidences)  # least confident first
    assert ds.values("hiu_image_id")[0] == "img006"
    assert [("low_confidence" in t) for t in ds.values("tags")] == [c < 0.5 for c in confidences]
    assert ds.skeletons["hands"].edges[0] == [0, 1] and len(ds.skeletons["hands"].labels) == 21
    source = _rows(pseudo_dir)
    for sample in ds:
        assert Path(sample.filepath).parent == Path(fiftyone_env["HIU_HOME"]) / "review" / review_name
        for kp in sample["hands"].keypoints:
            row = source[kp["hiu_sample_id"]]
            assert Path(sample.filepath).read_bytes() == row.image_bytes  # never re-encoded
            assert kp.label == row.hand_side and len(kp.points) == 21
            np.testing.assert_allclose(np.asarray(kp.points, float) * [row.width, row.height], row.keypoints_2d,
                                       atol=1e-4)
            np.testing.assert_allclose(kp.confidence, row.keypoint_confidence, atol=1e-6)
        masks = {d["hiu_sample_id"]: d for d in sample["hand_masks"].detections}
        for sid in masks:
            assert masks[sid].mask.sum() == rle.area(source[sid].mask)
    assert "wild/unlabeled/img004" not in {d["hiu_sample_id"] for d in ds.values("hand_masks.detections", unwind=True)}


def test_review_edits_from_another_process_come_back_and_the_rest_is_unchanged(
        pseudo_dir: Path, review_name: str, fiftyone_env: dict[str, str], tmp_path: Path) -> None:
    assert main(["review", "push", str(pseudo_dir), "--name", review_name]) == 0
    done = subprocess.run([sys.executable, "-c", EDIT_SCRIPT, review_name], env={**os.environ, **fiftyone_env},
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert main(["review", "pull", review_name, str(tmp_path / "out")]) == 0

    source, pulled = _rows(pseudo_dir), _rows(tmp_path / "out" / "wild")
    added = [sid for sid in pulled if sid not in source]
    assert sorted(set(pulled) - set(added)) == sorted(source) and len(added) == 1  # every hand, and the new one
    for split in ("train", "unlabeled"):  # the shards of a split keep the source order
        ids = [sid for sid, row in pulled.items() if row.split == split and sid in source]
        assert ids == [sid for sid in source if sid in ids]

    accepted = pulled["wild/unlabeled/img000"]
    assert (accepted.review_status, accepted.label_source, accepted.split) == ("accepted", "human", "train")
    assert accepted.extras["review"] == {"dataset": review_name, "status": "accepted", "tags": ["accepted"], "edited": []}
    assert set(accepted.differences(source["wild/unlabeled/img000"])) == {"review_status", "label_source", "split", "extras"}

    left, right = pulled["wild/unlabeled/img001/left"], pulled["wild/unlabeled/img001/right"]
    assert (left.review_status, left.label_source, left.split) == ("rejected", PSEUDO_SOURCE, "unlabeled")
    assert left.keypoints_2d is not None  # rejected hands keep their pseudo-labels, for the record
    assert (right.review_status, right.label_source) == ("accepted", "human")

    moved, before = pulled["wild/unlabeled/img002"], source["wild/unlabeled/img002"]
    assert (moved.review_status, moved.label_source) == ("corrected", "human")
    assert moved.extras["review"]["edited"] == ["keypoints_2d"]
    assert moved.keypoints_2d[8, 0] == pytest.approx(before.keypoints_2d[8, 0] + 5.0, abs=1e-3)
    np.testing.assert_allclose(np.delete(moved.keypoints_2d, 8, 0), np.delete(before.keypoints_2d, 8, 0), atol=1e-4)
    assert moved.keypoint_confidence[8] == 1.0 and moved.visibility[8] == 2
    assert moved.keypoints_3d is None and moved.mano_pose is None  # no longer consistent with the 2D
    assert moved.mask == before.mask

    assert pulled["wild/unlabeled/img003"].equals(source["wild/unlabeled/img003"])  # untouched
    new = pulled[added[0]]
    assert added[0].startswith("wild/train/img003/added-") and new.image_bytes == source["wild/unlabeled/img003"].image_bytes
    assert (new.review_status, new.label_source, new.hand_side, new.split) == ("corrected", "human", "left", "train")
    np.testing.assert_allclose(new.keypoints_2d[:, 0], (0.1 + 0.01 * np.arange(21)) * WIDTH, atol=1e-4)
    deleted = pulled["wild/unlabeled/img006"]
    assert deleted.review_status == "rejected" and deleted.keypoints_2d is not None
    flagged = pulled["wild/unlabeled/img004"]
    assert flagged.review_status == "pending" and flagged.extras["review"]["tags"] == ["fix"]
    assert flagged.differences(source["wild/unlabeled/img004"]) == ["extras"]

    redrawn = pulled["wild/unlabeled/img005"]
    assert redrawn.review_status == "corrected" and redrawn.extras["review"]["edited"] == ["mask"]
    expected = np.zeros((72, 96), np.uint8)
    expected[18:54, 24:72] = 1
    np.testing.assert_array_equal(rle.decode(redrawn.mask), expected)
    assert redrawn.keypoints_3d is not None and redrawn.keypoints_2d is not None

    # Pulling again gives the same shards.
    assert main(["review", "pull", review_name, str(tmp_path / "again")]) == 0
    assert _shard_hashes(tmp_path / "again" / "wild") == _shard_hashes(tmp_path / "out" / "wild")


def test_review_errors_are_one_line(pseudo_dir: Path, review_name: str, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["review", "pull", "no-such-review", str(tmp_path / "x")]) == 1
    assert "FiftyOne dataset 'no-such-review' is not registered" in capsys.readouterr().err
    assert main(["review", "push", str(pseudo_dir), "--name", review_name]) == 0
    capsys.readouterr()
    assert main(["review", "push", str(pseudo_dir), "--name", review_name]) == 1
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main(["review", "pull", review_name, str(pseudo_dir.parent)]) == 1
    assert "would overwrite the pushed dataset" in capsys.readouterr().err
    manifest = pseudo_dir / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"sha256": "', '"sha256": "0'))
    assert main(["review", "pull", review_name, str(tmp_path / "y")]) == 1
    err = capsys.readouterr().err
    assert "differs from the dataset pushed" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "y" / "wild").exists()
