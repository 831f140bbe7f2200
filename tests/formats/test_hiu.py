"""HIU-Data (assumed layout): two-hand round trips with split masks and 3D, hand_type
consistency reports, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from hiu_data.errors import CorruptImageError, DatasetFormatError
from hiu_data.formats import Skipped, hiu
from hiu_data.formats._common import UnsupportedSampleError, bbox_from_keypoints, project, visibility_in_image
from hiu_data.io import rle
from hiu_data.schema import HandSample
from hiu_data.skeleton import BONES, NUM_JOINTS
from tests.formats.hands import noise_image, random_hand

W, H = 160, 120


def _skeleton_mask(kp2: np.ndarray) -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    for a, b in BONES:
        if np.isfinite(kp2[[a, b]]).all():
            cv2.line(mask, tuple(np.floor(kp2[a]).astype(int).tolist()), tuple(np.floor(kp2[b]).astype(int).tolist()),
                     1, 5)
    return mask


def hiu_records(n: int, seed: int = 0) -> list[HandSample]:
    """Images with a right hand on the left half and, every other image, a left hand on the right half."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        split = ("train", "test")[i % 2]
        stem = f"{split}/{hiu.DEFAULT_SUBSET}/{'abcdefghij'[i]}{i:09d}" if i % 3 else f"{'qwertyuiop'[i]}{i:09d}"
        split = split if i % 3 else "train"
        image = noise_image(rng, W, H, ".jpg" if i % 2 else ".png")
        sides = ("right", "left") if i % 2 == 0 else ("right",)
        with_3d = i % 4 == 0
        for side in sides:
            kp3, K = random_hand(rng, (W, H), side=side, fill=0.35)
            kp2 = project(kp3, K)
            kp2[:, 0] += -W / 4 if side == "right" else W / 4
            kp2[rng.uniform(size=NUM_JOINTS) < 0.1] = np.nan
            kp3[np.isnan(kp2).any(axis=1)] = np.nan
            vis = visibility_in_image(kp2, W, H)
            out.append(HandSample(
                sample_id=f"hiu/{split}/{stem}/{side}", dataset="hiu", split=split,
                subset=hiu.DEFAULT_SUBSET if i % 3 else None, image_id=f"hiu/{stem}", image_bytes=image,
                width=W, height=H, hand_side=side, keypoints_2d=kp2.astype(np.float32),
                keypoints_3d=kp3.astype(np.float32) if with_3d else None, visibility=vis,
                bbox=bbox_from_keypoints(kp2, vis, W, H), mask=rle.encode(_skeleton_mask(kp2)) if i % 3 != 1 else None,
            ))
    return out


def _read(root: Path, **kwargs) -> list:
    return list(hiu.read(root, **kwargs))


def test_round_trip_two_hands_masks_and_3d(tmp_path: Path) -> None:
    records = hiu_records(6)
    hiu.write(records, tmp_path)
    assert (tmp_path / "test" / hiu.DEFAULT_SUBSET / "b000000001.json").is_file()
    assert (tmp_path / "q000000000_mask.png").is_file()
    raw = json.loads((tmp_path / "q000000000.json").read_text())
    assert raw["hand_type"] == [1, 1] and np.array(raw["pts3d_2hand"]).max() > 10  # millimetres
    back = {r.sample_id: r for r in _read(tmp_path)}
    assert set(back) == {r.sample_id for r in records}
    for r in records:
        assert r.differences(back[r.sample_id], atol=1e-4) == [], (r.sample_id, r.differences(back[r.sample_id], 1e-4))


def test_blocks_are_right_then_left(tmp_path: Path) -> None:
    records = [r for r in hiu_records(1)]
    hiu.write(records, tmp_path)
    raw = np.array(json.loads((tmp_path / "q000000000.json").read_text())["pts2d_2hand"])
    left = next(r for r in _read(tmp_path) if r.hand_side == "left")
    ok = np.isfinite(left.keypoints_2d).all(axis=1)
    np.testing.assert_allclose(left.keypoints_2d[ok], raw[NUM_JOINTS:][ok], atol=1e-4)
    assert raw[NUM_JOINTS:, 0][ok].mean() > W / 2  # the left hand was drawn on the right half


def test_metres_are_recognised(tmp_path: Path) -> None:
    hiu.write(hiu_records(1), tmp_path)
    path = tmp_path / "q000000000.json"
    data = json.loads(path.read_text())
    data["pts3d_2hand"] = (np.array(data["pts3d_2hand"]) / 1000).tolist()
    path.write_text(json.dumps(data))
    (a, b) = _read(tmp_path)
    assert np.nanmax(np.abs(a.keypoints_3d)) < 5


def test_millimetres_of_a_lone_left_hand(tmp_path: Path) -> None:
    left = next(r for r in hiu_records(1) if r.hand_side == "left")
    hiu.write([left], tmp_path)
    (back,) = _read(tmp_path)
    assert back.hand_side == "left"
    np.testing.assert_allclose(back.keypoints_3d, left.keypoints_3d, atol=1e-6)


@pytest.mark.parametrize("hand_type, kept", [([1, 0], ["right"]), ([0, 1], ["left"]), ([0, 0], [])])
def test_a_hand_flagged_absent_is_not_read_whatever_its_block_holds(tmp_path: Path, hand_type: list[int],
                                                                   kept: list[str]) -> None:
    # The maintainer: hand_type "indicates if the corresponding hand exists in the image"
    # (MandyMo/HIU-DMTL issue #3); an absent hand's block is filler (issue #4), here even
    # pixel-like values.
    hiu.write(hiu_records(1), tmp_path)
    path = tmp_path / "q000000000.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "hand_type": hand_type}))
    assert sorted(r.hand_side for r in _read(tmp_path)) == kept


def test_absent_hand_filler_of_the_release(tmp_path: Path) -> None:
    """A one-hand image as issue #4 shows it: the absent block holds [2.0, -0.67]-like points."""
    right = next(r for r in hiu_records(1) if r.hand_side == "right")
    hiu.write([right], tmp_path)
    path = tmp_path / "q000000000.json"
    data = json.loads(path.read_text())
    assert data["hand_type"] == [1, 0] and data["pts2d_2hand"][NUM_JOINTS:] == [[2.0, -0.67]] * NUM_JOINTS
    ys = np.linspace(-0.9, -0.1, NUM_JOINTS)  # the y of the filler varies; x == 2.0 marks it
    data["pts2d_2hand"][NUM_JOINTS:] = [[2.0, float(y)] for y in ys]
    path.write_text(json.dumps(data))
    (back,) = _read(tmp_path)
    assert back.hand_side == "right" and back.differences(right, atol=1e-4) == []
    # with hand_type_valid 0 the sides come from the blocks: the filler block is no hand
    path.write_text(json.dumps({**data, "hand_type": [0, 1], "hand_type_valid": 0}))
    (back,) = _read(tmp_path)
    assert back.hand_side == "right" and back.extras == {"hand_type_valid": 0}


@pytest.mark.parametrize("hand_type", [[1, 1], [0, 1]])
def test_a_hand_flagged_present_without_labels_is_reported_not_fixed(tmp_path: Path, hand_type: list[int]) -> None:
    right = next(r for r in hiu_records(1) if r.hand_side == "right")
    hiu.write([right], tmp_path)
    path = tmp_path / "q000000000.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "hand_type": hand_type}))
    with pytest.raises(DatasetFormatError, match="inconsistent hand_type .* left hand is flagged present") as err:
        _read(tmp_path)
    assert "q000000000" in str(err.value)
    (item,) = _read(tmp_path, on_error="skip")
    assert isinstance(item, Skipped)
    path.write_text(json.dumps({**data, "hand_type": hand_type, "hand_type_valid": 0}))
    rows = _read(tmp_path)
    assert [r.hand_side for r in rows] == ["right"] and rows[0].extras == {"hand_type_valid": 0}


@pytest.mark.parametrize("kind", ["malformed", "shape", "flags", "not_pixels", "mask_size", "mask_folder"])
def test_bad_samples(tmp_path: Path, kind: str) -> None:
    hiu.write(hiu_records(2), tmp_path)
    path = tmp_path / "q000000000.json"
    data = json.loads(path.read_text())
    if kind == "malformed":
        path.write_text("{'pts2d_2hand': ")
    elif kind == "shape":
        path.write_text(json.dumps({**data, "pts2d_2hand": data["pts2d_2hand"][:21]}))
    elif kind == "flags":
        path.write_text(json.dumps({**data, "hand_type": ["right"]}))
    elif kind == "not_pixels":
        data["pts2d_2hand"][3] = [2000.0, -900.0]
        path.write_text(json.dumps(data))
    elif kind == "mask_size":
        (tmp_path / "q000000000_mask.png").write_bytes(cv2.imencode(".png", np.zeros((10, 10), np.uint8))[1].tobytes())
    else:  # a folder where the mask belongs is named, not taken for "no mask"
        (tmp_path / "q000000000_mask.png").unlink()
        (tmp_path / "q000000000_mask.png").mkdir()
    with pytest.raises(DatasetFormatError, match="q000000000"):
        _read(tmp_path)
    items = _read(tmp_path, on_error="skip")
    assert sum(isinstance(i, Skipped) for i in items) == 1 and len(items) == 2


def test_missing_root_image_and_splits(tmp_path: Path) -> None:
    with pytest.raises(DatasetFormatError, match="no HIU-Data"):
        _read(tmp_path)
    hiu.write(hiu_records(3), tmp_path)
    assert {r.split for r in _read(tmp_path, splits=["test"])} == {"test"}
    (tmp_path / "test" / hiu.DEFAULT_SUBSET / "b000000001.jpg").unlink()
    with pytest.raises(CorruptImageError, match="b000000001.jpg"):
        _read(tmp_path)


def test_writer_refuses_partial_masks_and_duplicate_sides(tmp_path: Path) -> None:
    a, b = hiu_records(1)
    with pytest.raises(UnsupportedSampleError, match="mask"):
        hiu.write([a, HandSample(**{**b.__dict__, "mask": None})], tmp_path / "x")
    with pytest.raises(UnsupportedSampleError, match="second right"):
        hiu.write([a, HandSample(**{**a.__dict__, "sample_id": "other"})], tmp_path / "y")


def test_foreign_records_get_a_layout(tmp_path: Path) -> None:
    records = [HandSample(**{**r.__dict__, "dataset": "synth", "image_id": "synth/0007", "sample_id": f"synth/{k}",
                             "subset": None, "split": "val"}) for k, r in enumerate(hiu_records(1))]
    hiu.write(records, tmp_path)
    back = _read(tmp_path)
    assert {b.split for b in back} == {"val"} and len(back) == 2
    assert back[0].image_id == f"hiu/val/{hiu.DEFAULT_SUBSET}/synth_0007"
