"""hiu-data pseudo-label on generated images: one row per hand, confidences in [0, 1], shards,
resume and merge (an untrained tiny checkpoint: these tests check the mechanics)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from hiu_cli.main import main
from hiu_data.io.parquet import HandDataset
from hiu_model import pseudo_label as pl
from hiu_model import pseudo_row
from tests.pseudo.tiny import tiny_checkpoint

IMAGES = {"a.png": [([4, 6, 40, 44], "right")], "b/c.jpg": [([2, 2, 30, 30], "left"), ([30, 20, 30, 36], None)],
          "d.png": [([10, 10, 50, 40], "right")]}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("run"), 0)


@pytest.fixture(scope="module")
def images_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wild")
    rng = np.random.default_rng(0)
    annotations, images = [], []
    for k, (rel, boxes) in enumerate(IMAGES.items()):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / rel), rng.integers(0, 255, (64, 72, 3), dtype=np.uint8))
        images.append({"id": k, "file_name": rel})
        for box, side in boxes:
            annotations.append({"image_id": k, "bbox": box, "score": 0.9, **({"hand_side": side} if side else {})})
    (root / "detections.json").write_text(json.dumps({"images": images, "annotations": annotations}))
    return root


@pytest.fixture(scope="module")
def whole(checkpoint: Path, images_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> pl.PseudoLabelResult:
    """One unsharded run, in chunks of one image."""
    out = tmp_path_factory.mktemp("whole")
    return pl.pseudo_label(checkpoint, images_dir, out, boxes=images_dir / "detections.json", chunk_images=1)


def _rows(folder: Path) -> list:
    return list(HandDataset(folder))


def test_every_hand_gets_a_pending_pseudo_row(whole: pl.PseudoLabelResult, images_dir: Path) -> None:
    result = whole
    rows = _rows(result.path)
    assert result.path.name == "pseudo" and result.hands == len(rows) == 4
    assert [r.sample_id for r in rows] == ["pseudo/unlabeled/a.png/box0", "pseudo/unlabeled/b/c.jpg/box0",
                                           "pseudo/unlabeled/b/c.jpg/box1", "pseudo/unlabeled/d.png/box0"]
    sha = result.label_source.split(":")[1]
    assert len(sha) == 64 and result.label_source.startswith("pseudo:")
    for row in rows:
        assert (row.split, row.review_status, row.label_source) == ("unlabeled", "pending", result.label_source)
        assert 0.0 <= row.confidence <= 1.0
        assert ((row.keypoint_confidence >= 0) & (row.keypoint_confidence <= 1)).all()
        assert row.keypoints_2d.shape == (21, 2) and row.mask is not None and row.mano_pose is not None
        assert set(row.extras["pseudo"]["scores"]) >= {"peak", "keypoint_agreement", "mask_silhouette_iou", "consistency"}
        assert row.image_bytes == (images_dir / row.sample_id.split("/", 2)[2].rsplit("/", 1)[0]).read_bytes()
        assert row.keypoints_3d[:, 2].min() > 0  # in front of the assumed camera
        assert row.camera_K[0, 0] == max(row.width, row.height)
    assert rows[1].hand_side == "left" and rows[2].extras.get("hand_side_known") is None


def test_camera_frame_joints_project_onto_the_weak_perspective_joints() -> None:
    from types import SimpleNamespace

    rng = np.random.default_rng(1)
    joints = np.concatenate([rng.normal(0, 0.04, (21, 2)), np.zeros((21, 1))], 1).astype(np.float32)
    joints[0] = 0.0  # wrist-relative, in the wrist's depth plane: weak perspective is then exact
    affine = np.array([[-2.0, 0.0, 300.0], [0.0, 2.0, -40.0]], np.float32)  # mirrored crop, 2 crop px per image px
    camera = np.array([900.0, 70.0, 60.0], np.float32)  # s px/m, tx, ty in crop pixels
    prediction = SimpleNamespace(keypoints_3d=joints, camera=camera, crop_affine=affine)
    K = pseudo_row.assumed_camera(320, 240)
    xyz = pseudo_row.camera_frame_joints(prediction, K)
    projected = xyz[:, :2] / xyz[:, 2:] * K[0, 0] + K[:2, 2]
    # Predictions give 3D in the image's axes; the mirrored crop saw x flipped.
    crop_points = camera[0] * joints[:, :2] * [-1.0, 1.0] + camera[1:]
    image_points = np.stack([(crop_points[:, 0] - 300.0) / -2.0, (crop_points[:, 1] + 40.0) / 2.0], 1)
    np.testing.assert_allclose(projected, image_points, atol=1e-3)
    assert xyz[0, 2] == pytest.approx(K[0, 0] / (900.0 / 2.0))


def test_shards_resume_and_merge_to_the_unsharded_result(checkpoint: Path, images_dir: Path, tmp_path: Path,
                                                         whole: pl.PseudoLabelResult) -> None:
    boxes = images_dir / "detections.json"

    def interrupt(_: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # killed after its first chunk
        pl.pseudo_label(checkpoint, images_dir, tmp_path / "sharded", boxes=boxes, shard=(0, 2), chunk_images=1,
                        progress=interrupt)
    again = pl.pseudo_label(checkpoint, images_dir, tmp_path / "sharded", boxes=boxes, shard=(0, 2), chunk_images=1)
    assert (again.chunks_done, again.chunks_resumed, again.path) == (2, 1, None)  # images 0 and 2; waits for shard 1
    with pytest.raises(pl.PseudoLabelError, match="different chunk_images"):
        pl.pseudo_label(checkpoint, images_dir, tmp_path / "sharded", boxes=boxes, shard=(1, 2), chunk_images=4)
    with pytest.raises(pl.PseudoLabelError, match="different tta_rotation_deg"):  # shards must predict alike
        pl.pseudo_label(checkpoint, images_dir, tmp_path / "sharded", boxes=boxes, shard=(1, 2), chunk_images=1,
                        tta_rotation=30.0)
    last = pl.pseudo_label(checkpoint, images_dir, tmp_path / "sharded", boxes=boxes, shard=(1, 2), chunk_images=1)
    assert last.path == tmp_path / "sharded" / "pseudo" and not (tmp_path / "sharded" / ".pseudo.parts").exists()
    merged, expected = _rows(last.path), _rows(whole.path)
    assert [r.sample_id for r in merged] == [r.sample_id for r in expected]
    for a, b in zip(merged, expected):
        assert a.differences(b, atol=1e-4) == []


def test_cli_errors_are_one_line(checkpoint: Path, images_dir: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pseudo-label", str(checkpoint), str(images_dir), str(tmp_path), "--shard", "2/2"]) == 1
    assert "--shard '2/2': need 0 <= i < n" in capsys.readouterr().err
    assert main(["pseudo-label", str(tmp_path / "nope"), str(images_dir), str(tmp_path)]) == 1
    assert "nope" in capsys.readouterr().err


def test_joints_predicted_outside_the_image_are_marked_not_visible() -> None:
    from types import SimpleNamespace

    import numpy as np

    from hiu_data.schema import HandSample
    from hiu_model.pseudo_row import labelled_row

    kp = np.full((21, 2), 10.0, np.float32)
    kp[3] = [-5.0, 10.0]
    kp[4] = [10.0, 40.0]
    row = HandSample(sample_id="folder/unlabeled/a.jpg", dataset="folder", split="unlabeled", image_id="folder/unlabeled/a.jpg",
                     width=30, height=20, hand_side="right", bbox=[0, 0, 30, 20], visibility=np.zeros(21))
    prediction = SimpleNamespace(keypoints_2d=kp, mask=None, scores={"consistency": 0.4}, hand_side="right",
                                 mano_pose=None, mano_betas=None, keypoint_confidence=np.full(21, 0.5),
                                 keypoints_3d=None, camera=None)
    out = labelled_row(row, prediction, b"", "pseudo", "pseudo:abc")
    assert out.visibility[3] == 1 and out.visibility[4] == 1
    assert (np.delete(out.visibility, [3, 4]) == 2).all()


def test_corrupt_images_are_skipped_and_counted(checkpoint: Path, images_dir: Path, tmp_path: Path) -> None:
    from hiu_data.io.parquet import load_manifest

    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "good.png").write_bytes((images_dir / "a.png").read_bytes())
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(Exception, match="broken.jpg"):
        pl.pseudo_label(checkpoint, folder, tmp_path / "strict")
    assert not (tmp_path / "strict" / "pseudo").exists()
    result = pl.pseudo_label(checkpoint, folder, tmp_path / "out", on_error="skip")
    assert [s.sample_id for s in result.skipped] == ["folder/unlabeled/broken.jpg"]
    assert len(_rows(result.path)) == 1
    assert load_manifest(result.path)["skipped"]["count"] == 1


def test_cli_ctrl_c_keeps_finished_chunks_and_says_how_to_go_on(checkpoint: Path, images_dir: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    label_chunk, calls = pl._label_chunk, []

    def ctrl_c_in_the_second_chunk(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return label_chunk(*args, **kwargs)

    command = ["pseudo-label", str(checkpoint), str(images_dir), str(tmp_path), "--chunk-images", "1",
               "--boxes", str(images_dir / "detections.json")]
    monkeypatch.setattr(pl, "_label_chunk", ctrl_c_in_the_second_chunk)
    assert main(command) == 130
    err = capsys.readouterr().err.strip()
    assert err == (f"interrupted: shard 0/1 stopped with 1 images labelled and kept in {tmp_path / '.pseudo.parts'}; "
                   "run the same command again to continue")
    monkeypatch.setattr(pl, "_label_chunk", label_chunk)
    assert main(command) == 0
    assert f"(1 of {len(IMAGES)} chunks were already done)" in " ".join(capsys.readouterr().err.split())
    assert len(_rows(tmp_path / "pseudo")) == sum(len(boxes) for boxes in IMAGES.values())


@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden", ""])
def test_the_dataset_name_is_a_plain_folder_name(checkpoint: Path, images_dir: Path, tmp_path: Path, name: str) -> None:
    with pytest.raises(pl.PseudoLabelError, match="must be a plain folder name"):
        pl.pseudo_label(checkpoint, images_dir, tmp_path / "out", name=name)
    assert not (tmp_path / "escape").exists() and not (tmp_path / "out").exists()


def test_ctrl_c_during_the_merge_lets_the_same_command_finish(checkpoint: Path, images_dir: Path, tmp_path: Path,
                                                               whole: pl.PseudoLabelResult,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    boxes = images_dir / "detections.json"
    writer = pl.DatasetWriter

    def ctrl_c_in_the_merge(out, name, **kwargs):  # noqa: ANN001, ANN003, ANN202
        if kwargs.get("options") is not None:  # only the merge records the run's options
            raise KeyboardInterrupt
        return writer(out, name, **kwargs)

    monkeypatch.setattr(pl, "DatasetWriter", ctrl_c_in_the_merge)
    with pytest.raises(KeyboardInterrupt):
        pl.pseudo_label(checkpoint, images_dir, tmp_path, boxes=boxes, chunk_images=1)
    assert not (tmp_path / "pseudo").exists()
    monkeypatch.setattr(pl, "DatasetWriter", writer)
    again = pl.pseudo_label(checkpoint, images_dir, tmp_path, boxes=boxes, chunk_images=1)
    assert again.chunks_resumed == len(IMAGES) and again.path == tmp_path / "pseudo"
    assert [r.sample_id for r in _rows(again.path)] == [r.sample_id for r in _rows(whole.path)]


@pytest.mark.parametrize("change", ["replace", "rewrite"])
def test_a_folder_changed_under_an_interrupted_run_is_refused(checkpoint: Path, images_dir: Path, tmp_path: Path,
                                                              change: str) -> None:
    import shutil

    folder = tmp_path / "images"
    shutil.copytree(images_dir, folder, ignore=shutil.ignore_patterns("*.json"))

    def interrupt(_: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # a.png labelled and kept
        pl.pseudo_label(checkpoint, folder, tmp_path / "out", chunk_images=1, progress=interrupt)
    if change == "replace":  # same number of images, another one first: every position shifts
        (folder / "a.png").rename(folder / "0.png")
    else:  # the labelled image itself is now another picture
        cv2.imwrite(str(folder / "a.png"), np.zeros((40, 90, 3), np.uint8))
    with pytest.raises(pl.PseudoLabelError, match="different image_files"):
        pl.pseudo_label(checkpoint, folder, tmp_path / "out", chunk_images=1)
    assert not (tmp_path / "out" / "pseudo").exists()


def test_a_chunk_is_decoded_a_batch_of_images_at_a_time(checkpoint: Path, images_dir: Path, tmp_path: Path,
                                                         whole: pl.PseudoLabelResult,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from hiu_model import predict

    # Large photos: a chunk (256 images by default) decoded at once, with a full-image mask per
    # hand and side tried, would need tens of GB; memory must follow --batch-size instead.
    predict_images, images_per_call = predict.predict_images, []

    def counted(model, cfg, images, **kwargs):  # noqa: ANN001, ANN003, ANN202
        images_per_call.append(len(images))
        return predict_images(model, cfg, images, **kwargs)

    monkeypatch.setattr(predict, "predict_images", counted)
    result = pl.pseudo_label(checkpoint, images_dir, tmp_path, boxes=images_dir / "detections.json", batch_size=2)
    assert result.chunks_done == 1 and images_per_call == [2, 1]
    assert [r.sample_id for r in _rows(result.path)] == [r.sample_id for r in _rows(whole.path)]


def test_two_shards_finishing_together_both_report_the_dataset(checkpoint: Path, images_dir: Path, tmp_path: Path,
                                                                whole: pl.PseudoLabelResult,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    boxes = images_dir / "detections.json"
    first = pl.pseudo_label(checkpoint, images_dir, tmp_path, boxes=boxes, shard=(0, 2), chunk_images=1)
    assert first.path is None
    merge = pl._merge

    def the_other_shard_merges_first(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        merge(*args, **kwargs)  # the other shard: writes the dataset and removes the parts folder
        return merge(*args, **kwargs)  # this shard, a moment later

    monkeypatch.setattr(pl, "_merge", the_other_shard_merges_first)
    last = pl.pseudo_label(checkpoint, images_dir, tmp_path, boxes=boxes, shard=(1, 2), chunk_images=1)
    assert last.path == tmp_path / "pseudo" and not (tmp_path / ".pseudo.parts").exists()
    assert [r.sample_id for r in _rows(last.path)] == [r.sample_id for r in _rows(whole.path)]


def test_images_without_a_box_are_counted_and_said(checkpoint: Path, images_dir: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    folder = tmp_path / "wild"
    shutil.copytree(images_dir, folder)
    for extra in ("e.png", "b/f.png"):  # not in detections.json
        cv2.imwrite(str(folder / extra), np.zeros((20, 20, 3), np.uint8))
    result = pl.pseudo_label(checkpoint, folder, tmp_path / "api", boxes=folder / "detections.json")
    assert result.without_boxes == 2 and result.images == len(IMAGES)
    assert main(["pseudo-label", str(checkpoint), str(folder), str(tmp_path / "cli"),
                 "--boxes", str(folder / "detections.json")]) == 0
    assert "2 images of the folder have no box in" in " ".join(capsys.readouterr().err.split())
    unboxed = pl.pseudo_label(checkpoint, folder, tmp_path / "all")
    assert unboxed.without_boxes == 0 and unboxed.images == len(IMAGES) + 2


def test_an_update_whose_new_images_have_no_box_says_so(checkpoint: Path, images_dir: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    folder = tmp_path / "wild"
    shutil.copytree(images_dir, folder)
    boxes = folder / "detections.json"
    pl.pseudo_label(checkpoint, folder, tmp_path / "out", boxes=boxes)
    for extra in ("e.png", "b/f.png"):  # added later, and not in detections.json
        cv2.imwrite(str(folder / extra), np.zeros((20, 20, 3), np.uint8))
    capsys.readouterr()
    assert main(["pseudo-label", str(checkpoint), str(folder), str(tmp_path / "out"), "--boxes", str(boxes),
                 "--update"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    # not only "nothing to add": the two new images were passed over for want of a box
    assert "nothing to add" in err and f"2 images of the folder have no box in {boxes}" in err


def test_detections_of_an_image_deleted_since_are_left_out_with_or_without_update(
        checkpoint: Path, images_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    """The detections file of a first round names an image removed from the folder since: an update
    keeps that image's rows (docs/review.md, section 5) and a fresh run labels the others; both
    leave its boxes out and say how many."""
    import shutil

    folder = tmp_path / "wild"
    shutil.copytree(images_dir, folder)
    boxes = folder / "detections.json"
    pl.pseudo_label(checkpoint, folder, tmp_path / "out", boxes=boxes)
    (folder / "b" / "c.jpg").unlink()
    capsys.readouterr()
    left_out = "2 boxes name 1 image that is not in the folder (b/c.jpg): left out"
    with caplog.at_level("WARNING"):
        assert main(["pseudo-label", str(checkpoint), str(folder), str(tmp_path / "out"), "--boxes", str(boxes),
                     "--update"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert left_out in caplog.text and "their rows are kept" in err and "nothing to add" in err
    assert len(_rows(tmp_path / "out" / "pseudo")) == 4
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert main(["pseudo-label", str(checkpoint), str(folder), str(tmp_path / "fresh"), "--boxes", str(boxes)]) == 0
    assert left_out in caplog.text
    assert sorted(r.image_id for r in _rows(tmp_path / "fresh" / "pseudo")) == ["pseudo/a.png", "pseudo/d.png"]


def test_a_shard_that_finishes_before_the_others_says_it_exits(checkpoint: Path, images_dir: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pseudo-label", str(checkpoint), str(images_dir), str(tmp_path), "--shard", "0/2"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    # the process ends here: it does not wait for the other shards, as "waiting for" suggested
    assert "waiting" not in err
    assert f"shard 0/2 is done; the dataset {tmp_path / 'pseudo'} is written by the last shard to finish" in err
    assert not (tmp_path / "pseudo").exists()
