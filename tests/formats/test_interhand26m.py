"""InterHand2.6M: multi-view two-hand round trips (world mm -> camera metres, 42 -> 2 x 21, MANO),
the 5 fps subset, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from hiu_data.errors import CorruptImageError, DatasetFormatError
from hiu_data.formats import Skipped, interhand26m as ih
from hiu_data.formats._common import UnsupportedSampleError, bbox_from_keypoints, project, visibility_in_image
from hiu_data.schema import HandSample
from hiu_data.skeleton import JOINT_INDEX, NUM_JOINTS
from tests.formats.hands import noise_image, random_hand

W, H = 334, 512


def _camera(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    camrot = cv2.Rodrigues(rng.uniform(-0.08, 0.08, 3).reshape(3, 1))[0]
    return camrot, rng.uniform(-15, 15, 3)


def interhand_records(frames: int, seed: int = 0, cameras: int = 2) -> list[HandSample]:
    """Frames seen by several cameras; odd frames hold only a right hand, even frames both hands."""
    rng = np.random.default_rng(seed)
    K0 = np.array([[1200.0, 0, W / 2], [0, 1200.0, H / 2], [0, 0, 1]])
    views = [_camera(rng) for _ in range(cameras)]
    out = []
    for f in range(frames):
        sides = ("right",) if f % 2 else ("right", "left")
        world: dict[str, np.ndarray] = {}
        fits: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for side in sides:
            kp, _ = random_hand(rng, (W, H), K=K0, side=side, fill=0.35)
            kp[:, 0] += 0.05 if side == "right" else -0.05
            world[side] = kp * 1000.0
            world[side][rng.uniform(size=NUM_JOINTS) < 0.15] = np.nan
            fits[side] = (rng.normal(0, 0.3, 48), rng.normal(0, 1, 10), rng.normal(0, 0.1, 3))
        image_id_base = f"Capture1/ROM03_test_seq/cam{{cam}}/image{1000 + f}"
        for c, (camrot, campos) in enumerate(views):
            cam = str(400000 + c)
            stem = image_id_base.format(cam=cam)
            image = noise_image(rng, W, H)
            for side in sides:
                kp3 = (world[side] - campos) @ camrot.T / 1000.0
                kp2 = project(kp3, K0)
                vis = visibility_in_image(kp2, W, H)
                pose, betas, trans = fits[side]
                pose_c = pose.copy()
                pose_c[:3] = cv2.Rodrigues(camrot @ cv2.Rodrigues(pose[:3].reshape(3, 1))[0])[0].reshape(3)
                extras = {"capture": 1, "camera": cam, "frame_idx": 1000 + f, "subject": 3,
                          "hand_type": "interacting" if len(sides) == 2 else "right", "hand_type_valid": 1,
                          "camrot": camrot.tolist(), "campos": campos.tolist(), "mano_trans": trans.tolist()}
                out.append(HandSample(
                    sample_id=f"interhand26m/train/{stem}/{side}", dataset="interhand26m", split="train",
                    subset="ROM03_test_seq", image_id=f"interhand26m/train/{stem}", image_bytes=image, width=W,
                    height=H, hand_side=side, keypoints_2d=kp2.astype(np.float32), keypoints_3d=kp3.astype(np.float32),
                    camera_K=K0.astype(np.float32), visibility=vis, bbox=bbox_from_keypoints(kp2, vis, W, H),
                    mano_pose=pose_c, mano_betas=betas, extras=extras,
                ))
    return out


def _read(root: Path, **kwargs) -> list:
    return list(ih.read(root, **kwargs))


def test_round_trip_multi_view_two_hands(tmp_path: Path) -> None:
    records = interhand_records(3)
    ih.write(records, tmp_path)
    data = json.loads(ih.annotation_path(tmp_path, "train", "data").read_text())
    assert len(data["images"]) == 6 and data["images"][0]["file_name"].startswith("Capture1/ROM03_test_seq/cam400000/")
    joints = json.loads(ih.annotation_path(tmp_path, "train", "joint_3d").read_text())
    assert set(joints["1"]) == {"1000", "1001", "1002"}  # one world entry per frame, shared by the views
    back = {r.sample_id: r for r in _read(tmp_path)}
    assert set(back) == {r.sample_id for r in records}
    for r in records:
        got = back[r.sample_id]
        assert r.differences(got, atol=1e-4) == [], (r.sample_id, r.differences(got, atol=1e-4))
    pair = [b for b in back.values() if b.image_id.endswith("cam400000/image1000")]
    assert sorted(b.hand_side for b in pair) == ["left", "right"]


def test_world_mm_to_camera_metres_and_joint_order(tmp_path: Path) -> None:
    records = interhand_records(1, cameras=1)
    ih.write(records, tmp_path)
    joints = json.loads(ih.annotation_path(tmp_path, "train", "joint_3d").read_text())["1"]["1000"]
    world = np.array(joints["world_coord"])
    camera = json.loads(ih.annotation_path(tmp_path, "train", "camera").read_text())["1"]
    camrot, campos = np.array(camera["camrot"]["400000"]), np.array(camera["campos"]["400000"])
    right = next(r for r in _read(tmp_path) if r.hand_side == "right")
    # raw joint 20 is the right wrist, raw 0 the right thumb tip, raw 41 the left wrist
    for raw, name in ((20, "wrist"), (0, "thumb_tip"), (16, "little_tip")):
        j = JOINT_INDEX[name]
        if np.isfinite(right.keypoints_3d[j]).all():
            np.testing.assert_allclose(right.keypoints_3d[j], camrot @ (world[raw] - campos) / 1000.0, atol=1e-6)
    assert np.abs(right.keypoints_3d[np.isfinite(right.keypoints_3d)]).max() < 2.0  # metres, not mm


def test_five_fps_subset_reads_the_frames_that_exist(tmp_path: Path) -> None:
    records = interhand_records(4)
    ih.write(records, tmp_path)
    for path in (tmp_path / "images" / "train").rglob("image1001.jpg"):
        path.unlink()
    back = _read(tmp_path)
    assert back and not any("image1001" in b.sample_id for b in back)
    assert len(back) == len(records) - 2  # frame 1001 has one hand in two views
    for path in (tmp_path / "images" / "train").rglob("*.jpg"):
        path.unlink()
    with pytest.raises(DatasetFormatError, match="none of the"):
        _read(tmp_path)


def test_mano_optional_and_foreign_records(tmp_path: Path) -> None:
    records = interhand_records(1, cameras=1)
    for r in records:
        r.mano_pose = r.mano_betas = None
        r.extras.pop("mano_trans")
    ih.write(records, tmp_path / "a")
    assert not ih.annotation_path(tmp_path / "a", "train", "MANO_NeuralAnnot").exists()
    back = _read(tmp_path / "a")
    assert all(b.mano_pose is None for b in back)
    foreign = [HandSample(**{**r.__dict__, "dataset": "synth", "sample_id": f"synth/train/{i}", "image_id": "synth/0",
                             "extras": None, "subset": None}) for i, r in enumerate(records)]
    ih.write(foreign, tmp_path / "b")
    again = _read(tmp_path / "b")
    assert len(again) == 2 and len({a.image_id for a in again}) == 1
    for f in foreign:
        got = next(a for a in again if a.hand_side == f.hand_side)
        np.testing.assert_allclose(got.keypoints_3d, f.keypoints_3d, atol=1e-6)
        np.testing.assert_allclose(got.keypoints_2d, f.keypoints_2d, atol=1e-3)
    with pytest.raises(UnsupportedSampleError, match="synth/train/0"):
        ih.write([HandSample(**{**foreign[0].__dict__, "keypoints_3d": None})], tmp_path / "c")


def test_old_layout_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetFormatError, match="annotations"):
        _read(tmp_path)
    (tmp_path / "annotations" / "all").mkdir(parents=True)
    with pytest.raises(DatasetFormatError, match="v0.0"):
        _read(tmp_path)
    ih.write(interhand_records(1, cameras=1), tmp_path / "raw")
    ih.annotation_path(tmp_path / "raw", "train", "camera").unlink()
    with pytest.raises(DatasetFormatError, match="InterHand2.6M_train_camera.json"):
        _read(tmp_path / "raw")
    with pytest.raises(DatasetFormatError, match="test"):
        _read(tmp_path / "raw", splits=["test"])


@pytest.mark.parametrize("kind", ["joint_valid", "nan", "no_camera", "no_frame", "truncated"])
def test_bad_annotations_name_file_and_sample(tmp_path: Path, kind: str) -> None:
    ih.write(interhand_records(2, cameras=1), tmp_path)
    data_path = ih.annotation_path(tmp_path, "train", "data")
    joint_path = ih.annotation_path(tmp_path, "train", "joint_3d")
    camera_path = ih.annotation_path(tmp_path, "train", "camera")
    data, joints, cameras = (json.loads(p.read_text()) for p in (data_path, joint_path, camera_path))
    if kind == "joint_valid":
        data["annotations"][0]["joint_valid"] = [[1]] * 40
        data_path.write_text(json.dumps(data))
        expected = "joint_valid"
    elif kind == "nan":
        joints["1"]["1000"]["world_coord"][3][0] = float("nan")
        joint_path.write_text(json.dumps(joints))
        expected = "NaN"
    elif kind == "no_camera":
        del cameras["1"]["focal"]["400000"]
        camera_path.write_text(json.dumps(cameras))
        expected = "no focal"
    elif kind == "no_frame":
        del joints["1"]["1000"]
        joint_path.write_text(json.dumps(joints))
        expected = "frame 1000"
    else:
        data_path.write_text(data_path.read_text()[:-30])
        with pytest.raises(DatasetFormatError, match="InterHand2.6M_train_data.json: (truncated|malformed) JSON"):
            _read(tmp_path)
        return
    with pytest.raises(DatasetFormatError, match=expected) as err:
        _read(tmp_path)
    assert "image1000" in str(err.value)
    items = _read(tmp_path, on_error="skip")
    skipped = [i for i in items if isinstance(i, Skipped)]
    assert len(skipped) == (1 if kind != "no_camera" else 2)



@pytest.mark.parametrize("frame_entry, expected", [
    ([1], "a frame's entry must be an object of 'left' / 'right' fits"),
    ({"right": "x", "left": "x"}, "fit must be an object with 'pose' and 'shape'"),
])
def test_malformed_mano_fits_name_the_file(tmp_path: Path, frame_entry: object, expected: str) -> None:
    ih.write(interhand_records(1, cameras=1), tmp_path)
    mano_path = ih.annotation_path(tmp_path, "train", "MANO_NeuralAnnot")
    fits = json.loads(mano_path.read_text())
    capture = next(iter(fits))
    frame = next(iter(fits[capture]))
    fits[capture][frame] = frame_entry
    mano_path.write_text(json.dumps(fits))
    with pytest.raises(DatasetFormatError, match=expected) as err:
        _read(tmp_path)
    assert mano_path.name in str(err.value)

def test_corrupt_image_is_reported(tmp_path: Path) -> None:
    ih.write(interhand_records(1, cameras=1), tmp_path)
    (jpg,) = (tmp_path / "images" / "train").rglob("*.jpg")
    jpg.write_bytes(b"not a jpeg")
    with pytest.raises(CorruptImageError, match="image1000.jpg"):
        _read(tmp_path)


def test_workers_give_the_same_rows_in_order(tmp_path: Path) -> None:
    ih.write(interhand_records(2), tmp_path)
    one, two = _read(tmp_path), _read(tmp_path, workers=2)
    assert [a.sample_id for a in one] == [b.sample_id for b in two]
    assert all(a.equals(b) for a, b in zip(one, two))


def test_image_batch_folder_beside_the_annotations(tmp_path: Path) -> None:
    # The image tars unpack to InterHand2.6M_5fps_batch1/images/<split>/..., the annotation zip to
    # annotations/: users keep both in one folder and give that one.
    records = interhand_records(2, cameras=1)
    dataset = tmp_path / "InterHand2.6M"
    ih.write(records, dataset)
    (dataset / "InterHand2.6M_5fps_batch1").mkdir()
    (dataset / "images").rename(dataset / "InterHand2.6M_5fps_batch1" / "images")
    got = _read(dataset, images="reference")
    assert len(got) == len(records)
    assert got[0].image_path == "InterHand2.6M_5fps_batch1/images/train/Capture1/ROM03_test_seq/cam400000/image1000.jpg"
    assert len(_read(tmp_path)) == len(records)  # RAW_ROOT one level above the dataset folder
    with pytest.raises(DatasetFormatError, match=r"annotations: a folder inside the InterHand2.6M dataset; give .*InterHand2.6M as"):
        _read(dataset / "annotations")
