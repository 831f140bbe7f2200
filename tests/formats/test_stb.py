"""STB: writer -> reader round trips, joint order, mm -> m, palm -> wrist, the three cameras,
splits by sequence, bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io

from hiu_data.errors import CorruptImageError, DatasetFormatError, HiuError
from hiu_data.formats import Skipped, stb
from hiu_data.formats._common import bbox_from_keypoints, project, visibility_in_image
from hiu_data.schema import HandSample
from hiu_data.skeleton import JOINT_INDEX
from tests.formats.hands import assert_records_equal, noise_image, random_hand

W, H = stb.IMAGE_SIZE


def _record(rng, seq: str, stream: str, frame: int, xyz: np.ndarray, palm: np.ndarray) -> HandSample:
    K = stb.CAMERA[stream].astype(np.float32)
    xyz = xyz.astype(np.float32)
    kp2d = project(xyz.astype(np.float64), K.astype(np.float64)).astype(np.float32)
    vis = visibility_in_image(kp2d, W, H)
    sid = f"stb/{stb.split_of(seq)}/{seq}/{stream}_{frame}"
    return HandSample(sample_id=sid, dataset="stb", split=stb.split_of(seq), subset=seq, image_id=sid,
                      image_bytes=noise_image(rng, W, H, ".png"), width=W, height=H, hand_side="left",
                      bbox=bbox_from_keypoints(kp2d, vis, W, H), keypoints_2d=kp2d, visibility=vis, keypoints_3d=xyz,
                      camera_K=K, extras={"camera": stream, "palm_3d": palm.astype(np.float32).tolist(),
                                          "wrist": stb.WRIST_FORMULA})


def make_records(layout: dict[str, int], seed: int = 0) -> list[HandSample]:
    """``{sequence: frames}``: BB_left, BB_right and SK_color records of left hands, stream by stream."""
    rng = np.random.default_rng(seed)
    out = []
    for seq, frames in layout.items():
        bb, sk = [], []
        for frame in range(frames):
            xyz, _ = random_hand(rng, (W, H), stb.BB_K, side="left", fill=0.4)
            palm = stb.wrist_to_palm(xyz[0], xyz[JOINT_INDEX["ring_mcp"]]).astype(np.float32).astype(np.float64)
            bb.append((frame, xyz, palm))
            xyz_c, _ = random_hand(rng, (W, H), stb.SK_COLOR_K, side="left", fill=0.4)
            palm_c = stb.wrist_to_palm(xyz_c[0], xyz_c[JOINT_INDEX["ring_mcp"]]).astype(np.float32).astype(np.float64)
            sk.append((frame, xyz_c, palm_c))
        shift = np.array([stb.BB_BASELINE_M, 0, 0])
        out += [_record(rng, seq, "BB_left", f, x, p) for f, x, p in bb]
        out += [_record(rng, seq, "BB_right", f, x - shift, p - shift) for f, x, p in bb]
        out += [_record(rng, seq, "SK_color", f, x, p) for f, x, p in sk]
    return out


def read_all(root: Path, **kwargs) -> list[HandSample]:
    items = list(stb.read(root, **kwargs))
    assert not any(isinstance(i, Skipped) for i in items)
    return items


def test_round_trip_all_cameras_and_splits(tmp_path: Path) -> None:
    records = make_records({"B1Counting": 2, "B3Random": 2})
    stb.write(records, tmp_path)
    assert (tmp_path / "labels" / "B1Counting_SK.mat").is_file()
    assert (tmp_path / "images" / "B3Random" / "BB_right_1.png").is_file()
    got = read_all(tmp_path)
    assert_records_equal(records, got, atol=2e-6)  # sequence by sequence (B1 first), stream by stream
    assert {s.split for s in got if s.subset == "B1Counting"} == {"test"}
    assert all(s.hand_side == "left" for s in got)
    assert_records_equal(got, read_all(tmp_path, workers=2))
    only_sk = read_all(tmp_path, cameras=["SK_color"], splits=["test"], images="reference")
    assert [s.sample_id for s in only_sk] == ["stb/test/B1Counting/SK_color_0", "stb/test/B1Counting/SK_color_1"]
    assert only_sk[0].image_path == "images/B1Counting/SK_color_0.png"


def test_images_directly_under_the_sequence_folder(tmp_path: Path) -> None:
    stb.write(make_records({"B2Counting": 1}), tmp_path)
    (tmp_path / "images" / "B2Counting").rename(tmp_path / "B2Counting")
    assert len(read_all(tmp_path)) == 3


def _hand_para_tree(tmp_path: Path, seq: str = "B1Random") -> Path:
    para = np.zeros((3, 21, 1))
    para[0, :, 0] = np.arange(21)  # x (mm) encodes the raw joint index
    para[2, :, 0] = 500.0
    (tmp_path / "labels").mkdir()
    scipy.io.savemat(str(tmp_path / "labels" / f"{seq}_BB.mat"), {"handPara": para})
    scipy.io.savemat(str(tmp_path / "labels" / f"{seq}_SK.mat"), {"handPara": para})
    (tmp_path / "images" / seq).mkdir(parents=True)
    for stream in stb.STREAMS:
        (tmp_path / "images" / seq / f"{stream}_0.png").write_bytes(noise_image(np.random.default_rng(0), W, H, ".png"))
    return tmp_path


def test_named_joints_units_palm_and_frames(tmp_path: Path) -> None:
    left, right, colour = read_all(_hand_para_tree(tmp_path))
    x = left.keypoints_3d[:, 0]
    assert x[JOINT_INDEX["little_mcp"]] == pytest.approx(0.001)  # raw 1: little MCP, metres
    assert x[JOINT_INDEX["little_tip"]] == pytest.approx(0.004)
    assert x[JOINT_INDEX["index_mcp"]] == pytest.approx(0.013)
    assert x[JOINT_INDEX["thumb_tip"]] == pytest.approx(0.020)
    assert left.keypoints_3d[5, 2] == pytest.approx(0.5)
    assert left.extras["palm_3d"] == pytest.approx([0.0, 0.0, 0.5])
    ring = x[JOINT_INDEX["ring_mcp"]]
    assert ring == pytest.approx(0.005) and x[0] == pytest.approx(ring + 2 * (0.0 - ring))  # wrist from palm
    assert right.keypoints_3d[:, 0] == pytest.approx(x - 0.120054)  # baseline
    assert np.allclose(right.keypoints_2d[:, 0], 822.79041 * (x - 0.120054) / 0.5 + 318.47345, atol=1e-3)
    R = cv2.Rodrigues(np.array([0.00531, -0.01196, 0.00301]))[0]
    label = np.stack([np.arange(21) / 1000.0, np.zeros(21), np.full(21, 0.5)], axis=1)
    colour_palm = R.T @ (label[0] - np.array([-24.0381, -0.4563, -1.2326]) / 1000)
    assert colour.extras["palm_3d"] == pytest.approx(colour_palm.tolist(), abs=1e-7)
    assert colour.camera_K[0, 0] == pytest.approx(607.92271) and left.split == "test"


def test_writer_refuses_right_hands_unpaired_stereo_and_wrong_sequence(tmp_path: Path) -> None:
    records = make_records({"B2Counting": 1})
    bb_left = records[0]
    with pytest.raises(HiuError, match="both BB_left and BB_right"):
        stb.write([bb_left], tmp_path / "a")
    bb_left.hand_side = "right"
    with pytest.raises(HiuError, match="left hands only"):
        stb.write([bb_left], tmp_path / "b")
    sk = records[2]
    sk.split = "test"
    with pytest.raises(HiuError, match="does not belong to split"):
        stb.write([sk], tmp_path / "c")


def test_writer_without_palm_or_camera_extras(tmp_path: Path) -> None:
    sk = make_records({"B4Random": 1})[2]
    palm = sk.extras["palm_3d"]
    sk.extras = None
    stb.write([sk], tmp_path)
    (got,) = read_all(tmp_path)
    assert got.extras["camera"] == "SK_color" and got.extras["palm_3d"] == pytest.approx(palm, abs=1e-7)
    assert np.allclose(got.keypoints_3d, sk.keypoints_3d, atol=1e-6)


# --- bad input ---------------------------------------------------------------------------


def test_missing_folders_and_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetFormatError, match="no labels/ folder; expected the STB label files"):
        list(stb.read(tmp_path))
    root = _hand_para_tree(tmp_path)
    with pytest.raises(DatasetFormatError, match="no label file of the train split"):
        list(stb.read(root, splits=["train"]))
    (root / "images" / "B1Random" / "SK_color_0.png").unlink()
    with pytest.raises(CorruptImageError, match=r"SK_color_0.png \(sample stb/test/B1Random/SK_color_0\): missing"):
        list(stb.read(root))
    shutil.rmtree(root / "images")
    with pytest.raises(DatasetFormatError, match=r"images/B1Random: missing folder; expected the STB images"):
        list(stb.read(root))


@pytest.mark.parametrize("damage, message", [
    ("truncate", "not a readable MATLAB .mat file"),
    ("no_var", "no handPara variable"),
    ("shape", r"handPara has shape \(21, 3, 1\)"),
])
def test_malformed_mat(tmp_path: Path, damage: str, message: str) -> None:
    root = _hand_para_tree(tmp_path)
    path = root / "labels" / "B1Random_BB.mat"
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:150])
    elif damage == "no_var":
        scipy.io.savemat(str(path), {"joints": np.zeros((3, 21, 1))})
    else:
        scipy.io.savemat(str(path), {"handPara": np.zeros((21, 3, 1))})
    with pytest.raises(DatasetFormatError, match=rf"B1Random_BB.mat: {message}"):
        list(stb.read(root))


def test_nan_frame_fails_or_is_skipped(tmp_path: Path) -> None:
    stb.write(make_records({"B5Counting": 3}), tmp_path)
    path = tmp_path / "labels" / "B5Counting_SK.mat"
    para = scipy.io.loadmat(str(path))["handPara"]
    para[1, 4, 1] = np.nan
    scipy.io.savemat(str(path), {"handPara": para})
    with pytest.raises(DatasetFormatError, match=r"B5Counting_SK.mat \(sample stb/train/B5Counting/SK_color_1\): frame 1"):
        list(stb.read(tmp_path))
    items = list(stb.read(tmp_path, on_error="skip"))
    assert [i.sample_id for i in items if isinstance(i, Skipped)] == ["stb/train/B5Counting/SK_color_1"]
    assert len(items) == 9


def test_unknown_camera_or_split(tmp_path: Path) -> None:
    with pytest.raises(HiuError, match="no camera 'SK_depth'"):
        list(stb.read(tmp_path, cameras=["SK_depth"]))
    with pytest.raises(HiuError, match="no split 'val'"):
        list(stb.read(tmp_path, splits=["val"]))


def test_raw_root_above_or_inside_the_dataset_folder(tmp_path: Path) -> None:
    records = make_records({"B1Counting": 1})
    stb.write(records, tmp_path / "STB")
    got = read_all(tmp_path, images="reference", cameras=["SK_color"])
    assert [s.image_path for s in got] == ["STB/images/B1Counting/SK_color_0.png"]
    with pytest.raises(DatasetFormatError, match=r"labels: a folder inside the STB dataset; give .*STB as RAW_ROOT"):
        list(stb.read(tmp_path / "STB" / "labels"))
