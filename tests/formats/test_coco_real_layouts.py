"""``convert coco`` on files laid out as the public ones are: mmpose's hand files (OneHand10K,
FreiHAND, CMU Panoptic, RHD conversions) and COCO-WholeBody person annotations.

The files are written here key by key in those layouts (not by hiu's writer), so a
misunderstanding shared by the writer and the reader cannot hide behind a round trip.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hiu_data.formats import coco
from hiu_data.io import rle
from hiu_data.skeleton import NUM_JOINTS
from tests.formats.hands import _TEMPLATE, noise_image

W, H = 80, 60
# mmpose's hand categories name the points in OpenPose order (its RHD file too, see below).
MMPOSE_NAMES = ["wrist"] + [f"{finger}{k}" for finger in ("thumb", "forefinger", "middle_finger", "ring_finger",
                                                          "pinky_finger") for k in range(1, 5)]
MMPOSE_SKELETON = [[1 if k == 0 else 1 + f * 4 + k, 2 + f * 4 + k] for f in range(5) for k in range(4)]
# RHD's own order: wrist, then each finger tip -> MCP (datasets.md section 0).
RHD_FROM_OPENPOSE = [0, 4, 3, 2, 1, 8, 7, 6, 5, 12, 11, 10, 9, 16, 15, 14, 13, 20, 19, 18, 17]


def open_hand(dx: float = 0.0) -> np.ndarray:
    """(21, 2) an open right hand in OpenPose order, COCO pixel indices inside an 80 x 60 image."""
    return (_TEMPLATE[:, :2] * 250 + [40 + dx, 55]).round(2)


def rectangle(x: float, y: float, w: float, h: float) -> list[list[float]]:
    """The box as mmpose's hand conversions write ``segmentation``: its 8-point outline."""
    return [[x, y, x, y + h / 2, x, y + h, x + w / 2, y + h, x + w, y + h, x + w, y + h / 2, x + w, y, x + w / 2, y]]


def _image_root(tmp_path: Path, *names: str) -> Path:
    root = tmp_path / "images"
    root.mkdir(exist_ok=True)
    for name in names:
        (root / name).write_bytes(noise_image(np.random.default_rng(0), W, H))
    return root


def _write(tmp_path: Path, name: str, content: dict) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(content))
    return path


def mmpose_hand_file(annotations: list[dict], images: list[dict] | None = None) -> dict:
    return {"info": {"description": "hand"}, "licenses": [],
            "images": images or [{"file_name": "9.jpg", "height": H, "width": W, "id": 9}],
            "annotations": annotations,
            "categories": [{"supercategory": "hand", "id": 1, "name": "hand", "keypoints": MMPOSE_NAMES,
                            "skeleton": MMPOSE_SKELETON}]}


def test_mmpose_hand_file_v1_marks_labelled_points(tmp_path: Path) -> None:
    # OneHand10K / FreiHAND / Panoptic as mmpose converts them: v is 1 for every labelled point
    # (mmpose reads min(1, v)), 0 with (0, 0) for the others.
    kp = np.concatenate([open_hand(), np.ones((NUM_JOINTS, 1))], axis=1)
    kp[8] = 0
    kp[20, 0] = -1.5  # a tip just past the left border, labelled
    ann = {"bbox": [28, 8, 32, 47], "keypoints": kp.reshape(-1).tolist(), "category_id": 1, "id": 9, "image_id": 9,
           "iscrowd": 0, "area": 32 * 47}
    path = _write(tmp_path, "onehand10k_test.json", mmpose_hand_file([ann]))
    (row,) = coco.read(path, image_root=_image_root(tmp_path, "9.jpg"))
    assert row.visibility[8] == 0 and row.visibility[20] == 1
    assert (np.delete(row.visibility, [8, 20]) == 2).all()  # labelled and inside the image: not "occluded"
    np.testing.assert_allclose(row.keypoints_2d[0], kp[0, :2] + 0.5)


def test_mmpose_hand_file_box_outline_is_no_mask(tmp_path: Path) -> None:
    # mmpose's hand conversions (OneHand10K, FreiHAND, Panoptic) write the box's outline as
    # segmentation: a rectangle is no hand mask, and training a mask head on it would teach boxes.
    kp = np.concatenate([open_hand(), np.ones((NUM_JOINTS, 1))], axis=1).reshape(-1).tolist()
    anns = [{"bbox": [28, 8, 32, 47], "keypoints": kp, "category_id": 1, "id": 9, "image_id": 9,
             "segmentation": rectangle(28, 8, 32, 47), "iscrowd": 0, "area": 32 * 47},
            {"bbox": [28.4, 8.2, 31.5, 46.9], "keypoints": kp, "category_id": 1, "id": 10, "image_id": 9,
             "segmentation": [[28.4, 8.2, 59.9, 8.2, 59.9, 55.1, 28.4, 55.1]], "iscrowd": 0, "area": 31.5 * 46.9}]
    path = _write(tmp_path, "freihand_train.json", mmpose_hand_file(anns))
    assert [row.mask for row in coco.read(path, image_root=_image_root(tmp_path, "9.jpg"))] == [None, None]


def test_a_file_using_v2_keeps_coco_occlusion_flags(tmp_path: Path) -> None:
    kp = np.concatenate([open_hand(), np.full((NUM_JOINTS, 1), 2.0)], axis=1)
    kp[3:5, 2] = 1
    other = kp.copy()
    other[:, 2] = 1  # every point occluded: in a file that uses 2, a 1 means occluded
    anns = [{"id": 1, "image_id": 9, "category_id": 1, "keypoints": kp.reshape(-1).tolist(), "bbox": [28, 8, 32, 47]},
            {"id": 2, "image_id": 9, "category_id": 1, "keypoints": other.reshape(-1).tolist(), "bbox": [28, 8, 32, 47]}]
    path = _write(tmp_path, "hands_val.json", mmpose_hand_file(anns))
    first, second = coco.read(path, image_root=_image_root(tmp_path, "9.jpg"))
    assert first.visibility.tolist() == [2, 2, 2, 1, 1] + [2] * 16
    assert (second.visibility == 1).all()


def test_mmpose_rhd_file_nested_points_in_rhd_order(tmp_path: Path) -> None:
    # mmpose's RHD file: keypoints as 21 [x, y, 1] lists in RHD's order (tip -> MCP) although
    # the category names them thumb1..thumb4; hand_type names the side.
    hand = open_hand()
    raw = np.concatenate([hand[RHD_FROM_OPENPOSE], np.ones((NUM_JOINTS, 1))], axis=1)
    images = [{"file_name": "00111.png", "height": H, "width": W, "id": 111,
               "cam_param": {"focal": [299.0, 299.0], "princpt": [160.0, 160.0]}}]
    ann = {"id": 111, "image_id": 111, "category_id": 1, "iscrowd": 0, "bbox": [28.5, 8.0, 31.2, 47.1],
           "area": 31.2 * 47.1, "keypoints": raw.tolist(), "joint_cam": np.ones((NUM_JOINTS, 3)).tolist(),
           "hand_type": "left"}
    path = _write(tmp_path, "rhd_test.json", mmpose_hand_file([ann], images))
    (row,) = coco.read(path, image_root=_image_root(tmp_path, "00111.png"))
    assert row.hand_side == "left" and "hand_side_known" not in (row.extras or {})
    np.testing.assert_allclose(row.keypoints_2d, hand + 0.5, atol=1e-4)


def _person(ann_id: int, left: np.ndarray | None, right: np.ndarray | None, **changes: object) -> dict:
    """A COCO-WholeBody person annotation with every key of the release."""
    def part(points: np.ndarray | None) -> tuple[list[float], list[float], bool]:
        if points is None:
            return [0.0] * 63, [0.0, 0.0, 0.0, 0.0], False
        xy = points[:, :2]
        box = [float(xy[:, 0].min()) - 1, float(xy[:, 1].min()) - 1, float(np.ptp(xy[:, 0])) + 2,
               float(np.ptp(xy[:, 1])) + 2]
        return points.reshape(-1).tolist(), box, True
    (lk, lb, lv), (rk, rb, rv) = part(left), part(right)
    ann = {"segmentation": [[20.5, 5.2, 60.1, 5.2, 60.1, 58.9, 20.5, 58.9]], "num_keypoints": 3, "area": 1890.3,
           "iscrowd": 0, "keypoints": [40, 10, 2, 42, 9, 2, 38, 9, 1] + [0] * 42, "image_id": 785,
           "bbox": [20.5, 5.2, 39.6, 53.7], "category_id": 1, "id": ann_id,
           "face_box": [35.1, 5.0, 10.2, 9.8], "lefthand_box": lb, "righthand_box": rb,
           "lefthand_kpts": lk, "righthand_kpts": rk, "face_kpts": [40.0, 12.0, 1.0] * 68,
           "face_valid": True, "lefthand_valid": lv, "righthand_valid": rv, "foot_valid": False,
           "foot_kpts": [0] * 18}
    ann.update(changes)
    return ann


def test_coco_wholebody_hand_v_is_a_reliability_score(tmp_path: Path) -> None:
    # data_format.md of COCO-WholeBody: hand (and face) points may carry a float v, and v > 0
    # means the point is reliable; the release's hands have fractional v, all 1, or 1 and 2.
    rng = np.random.default_rng(1)
    fractional = np.concatenate([open_hand(-8), rng.uniform(0.02, 0.75, (NUM_JOINTS, 1))], axis=1)
    all_one = np.concatenate([open_hand(8), np.ones((NUM_JOINTS, 1))], axis=1)
    one_two = np.concatenate([open_hand(), np.full((NUM_JOINTS, 1), 2.0)], axis=1)
    one_two[[4, 8], 2] = 1
    crowd = {"segmentation": {"counts": [300, 40, W * H - 340], "size": [H, W]}, "num_keypoints": 0, "area": 40,
             "iscrowd": 1, "keypoints": [0] * 51, "image_id": 785, "bbox": [5, 0, 1, 40], "category_id": 1, "id": 900,
             "face_box": [0, 0, 0, 0], "lefthand_box": [0, 0, 0, 0], "righthand_box": [0, 0, 0, 0],
             "lefthand_kpts": [0] * 63, "righthand_kpts": [0] * 63, "face_kpts": [0] * 204, "face_valid": False,
             "lefthand_valid": False, "righthand_valid": False, "foot_valid": False, "foot_kpts": [0] * 18}
    content = {
        "info": {"description": "COCO-WholeBody", "version": "1.0", "year": "2020"},
        "licenses": [{"url": "http://creativecommons.org/licenses/by/2.0/", "id": 4, "name": "Attribution License"}],
        "categories": [{"supercategory": "person", "id": 1, "name": "person",
                        "keypoints": ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
                                      "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
                                      "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle"],
                        "skeleton": [[16, 14], [14, 12], [17, 15], [15, 13], [12, 13]]}],
        "images": [{"license": 4, "file_name": "000000000785.jpg", "coco_url": "http://x/val2017/000000000785.jpg",
                    "height": H, "width": W, "date_captured": "2013-11-19 21:22:42", "id": 785},
                   {"license": 4, "file_name": "000000001000.jpg", "height": H, "width": W, "id": 1000}],
        "annotations": [_person(442619, fractional, all_one), _person(442620, None, one_two), crowd],
    }
    path = _write(tmp_path, "coco_wholebody_val_v1.0.json", content)
    rows = {r.sample_id: r for r in coco.read(path, image_root=_image_root(tmp_path, "000000000785.jpg"))}
    assert sorted(rows) == ["coco/val/442619/left", "coco/val/442619/right", "coco/val/442620/right"]
    assert (rows["coco/val/442619/left"].visibility == 2).all()
    assert (rows["coco/val/442619/right"].visibility == 2).all()
    assert rows["coco/val/442620/right"].visibility.tolist() == [2, 2, 2, 2, 1, 2, 2, 2, 1] + [2] * 12
    np.testing.assert_allclose(rows["coco/val/442619/left"].keypoints_2d, fractional[:, :2] + 0.5, atol=1e-4)


@pytest.mark.parametrize("bbox, expected", [
    ([30, 10, 0, 0], "from the keypoints"),
    ([20, 5, 75, 70], [20, 5, 60, 55]),
])
def test_hand_boxes_of_zero_size_or_past_the_border(tmp_path: Path, bbox: list, expected: object) -> None:
    kp = np.concatenate([open_hand(), np.ones((NUM_JOINTS, 1))], axis=1)
    anns = [{"id": 1, "image_id": 9, "category_id": 1, "keypoints": kp.reshape(-1).tolist(), "bbox": bbox},
            # a placeholder: no labelled point and no box is no hand to train or evaluate on
            {"id": 2, "image_id": 9, "category_id": 1, "keypoints": [0] * 63, "bbox": [0, 0, 0, 0], "num_keypoints": 0}]
    path = _write(tmp_path, "hands_train.json", mmpose_hand_file(anns))
    (row,) = coco.read(path, image_root=_image_root(tmp_path, "9.jpg"))
    x, y, w, h = row.bbox.tolist()
    assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= W and y + h <= H
    if expected == "from the keypoints":
        labelled = row.keypoints_2d
        assert x <= labelled[:, 0].min() and x + w >= labelled[:, 0].max()
        assert y <= labelled[:, 1].min() and y + h >= labelled[:, 1].max()
    else:
        assert [x, y, w, h] == expected


def test_hand_segmentation_as_uncompressed_rle_and_polygons(tmp_path: Path) -> None:
    kp = np.concatenate([open_hand(), np.ones((NUM_JOINTS, 1))], axis=1).reshape(-1).tolist()
    anns = [{"id": 1, "image_id": 9, "category_id": 1, "keypoints": kp, "bbox": [28, 8, 32, 47],
             "segmentation": {"size": [H, W], "counts": [30 * H + 10, 40, W * H - 30 * H - 50]}},
            {"id": 2, "image_id": 9, "category_id": 1, "keypoints": kp, "bbox": [28, 8, 32, 47],
             "segmentation": [[30, 10, 55, 12, 50, 50, 32, 45]]}]
    path = _write(tmp_path, "hands_train.json", mmpose_hand_file(anns))
    first, second = coco.read(path, image_root=_image_root(tmp_path, "9.jpg"))
    assert rle.area(first.mask) == 40 and first.mask["size"] == [H, W]
    assert 600 < rle.area(second.mask) < 1000
