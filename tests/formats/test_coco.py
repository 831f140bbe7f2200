"""COCO: export -> pycocotools -> convert coco round trip, COCO-WholeBody and OneHand10K-style
files, and bad input."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO

from hiu_cli.main import main
from hiu_data.convert import convert
from hiu_data.errors import CorruptImageError, DatasetFormatError, HiuError, OutputExistsError
from hiu_data.formats import Skipped, coco
from hiu_data.formats._common import bbox_from_keypoints, project, visibility_in_image
from hiu_data.io import rle
from hiu_data.io.coco import export_coco
from hiu_data.io.parquet import HandDataset, write_dataset
from hiu_data.schema import HandSample
from hiu_data.skeleton import JOINT_NAMES, NUM_JOINTS
from tests.formats.hands import blob_mask, noise_image, random_hand


def mixed_records(n: int, seed: int = 0) -> list[HandSample]:
    """Rows of every label kind: 2D+3D+K+MANO+mask, 2D only, occluded points, no labels, pseudo-labels."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        w, h = (64, 48) if i % 2 else (50, 50)
        image = noise_image(rng, w, h, ".png" if i % 3 == 0 else ".jpg")
        for side in (("left", "right") if i % 4 == 0 else ("right",)):
            kp3, K = random_hand(rng, (w, h), side=side, fill=0.7)
            kp2 = project(kp3, K)
            kp2[rng.uniform(size=NUM_JOINTS) < 0.15] = np.nan
            vis = visibility_in_image(kp2, w, h)
            vis[(vis == 2) & (rng.uniform(size=NUM_JOINTS) < 0.2)] = 1
            labelled = i % 5 != 3
            pseudo = i % 3 == 1
            out.append(HandSample(
                sample_id=f"src/{'train' if i % 2 else 'val'}/{i}/{side}", dataset="src",
                split="train" if i % 2 else "val", subset=None if i % 2 else "s1", image_id=f"src/img/{i}",
                image_bytes=image, width=w, height=h, hand_side=side,
                keypoints_2d=kp2.astype(np.float32) if labelled else None,
                visibility=vis if labelled else np.zeros(NUM_JOINTS, np.uint8),
                bbox=bbox_from_keypoints(kp2, vis, w, h) if labelled else np.array([1, 2, 30, 20], np.float32),
                keypoints_3d=kp3 if labelled and i % 2 == 0 else None, camera_K=K if i % 2 == 0 else None,
                mano_pose=rng.normal(size=48) if i % 4 == 0 else None,
                mano_betas=rng.normal(size=10) if i % 4 == 0 else None,
                mask=blob_mask(rng, kp2, w, h) if i % 3 != 2 else None,
                label_source="pseudo:abc" if pseudo else "dataset",
                keypoint_confidence=rng.uniform(size=NUM_JOINTS) if pseudo else None,
                confidence=0.25 if pseudo else None, review_status="pending" if pseudo else None,
                extras={"scale": 0.5} if i % 2 else None,
            ))
    return out


def test_export_pycocotools_convert_round_trip(tmp_path: Path) -> None:
    records = mixed_records(8)
    dataset = write_dataset(records, tmp_path / "conv", "src")
    assert main(["export", "coco", str(dataset), str(tmp_path / "coco" / "hands.json")]) == 0
    api = COCO(str(tmp_path / "coco" / "hands.json"))
    (category,) = api.loadCats(api.getCatIds())
    assert category["name"] == "hand" and category["keypoints"] == list(JOINT_NAMES)
    assert [1, 2] in category["skeleton"] and len(category["skeleton"]) == NUM_JOINTS - 1
    assert len(api.getAnnIds()) == len(records) and len(api.getImgIds()) == 8
    first = next(a for a in api.loadAnns(api.getAnnIds()) if a["hiu"]["sample_id"] == records[0].sample_id)
    np.testing.assert_array_equal(api.annToMask(first), rle.decode(records[0].mask))
    kp = np.array(first["keypoints"]).reshape(NUM_JOINTS, 3)
    ok = records[0].visibility > 0
    np.testing.assert_allclose(kp[ok, :2], records[0].keypoints_2d[ok] - 0.5, atol=1e-4)  # COCO pixel indices
    assert first["num_keypoints"] == int(ok.sum()) and first["hand_side"] == records[0].hand_side
    assert kp[ok, 2].tolist() == records[0].visibility[ok].tolist()
    for image in api.loadImgs(api.getImgIds()):
        assert (tmp_path / "coco" / "images" / image["file_name"]).is_file()

    assert main(["convert", "coco", str(tmp_path / "coco" / "hands.json"), str(tmp_path / "coco" / "images"),
                 str(tmp_path / "back")]) == 0
    converted = HandDataset(tmp_path / "back" / "coco")
    assert converted.manifests[converted.dataset_dirs[0]]["counts"] == {"train": 4, "val": 6}
    back = list(converted)
    by_origin = {b.extras["origin_sample_id"]: b for b in back}
    for r in records:
        got = by_origin[r.sample_id]
        extras = {k: v for k, v in got.extras.items() if k != "origin_sample_id"} or None
        assert extras == r.extras
        diff = set(r.differences(got, atol=1e-5)) - {"sample_id", "dataset", "image_id", "extras"}
        assert diff == set(), (r.sample_id, diff)
    pair = [b for b in back if b.extras["origin_sample_id"].startswith("src/val/0/")]
    assert len(pair) == 2 and pair[0].image_id == pair[1].image_id


def test_origin_sample_id_survives_two_round_trips(tmp_path: Path) -> None:
    records = mixed_records(4)
    data = write_dataset(records, tmp_path / "conv", "src")
    for trip in (1, 2):
        json_path = tmp_path / f"coco{trip}" / "hands.json"
        export_coco(data, json_path)
        write_dataset(list(coco.read(json_path, image_root=json_path.parent / "images")), tmp_path / f"back{trip}",
                      "coco")
        data = tmp_path / f"back{trip}" / "coco"
        back = list(HandDataset(data))
        # The id of the row in the first dataset, not that of the dataset exported this time.
        assert sorted(b.extras["origin_sample_id"] for b in back) == sorted(r.sample_id for r in records), trip
        by_origin = {b.extras["origin_sample_id"]: b for b in back}
        for r in records:
            extras = {k: v for k, v in by_origin[r.sample_id].extras.items() if k != "origin_sample_id"} or None
            assert extras == r.extras, (trip, r.sample_id)


def test_export_options_splits_and_refusals(tmp_path: Path) -> None:
    dataset = write_dataset(mixed_records(4), tmp_path / "conv", "src")
    result = export_coco(dataset, tmp_path / "val.json", splits=["val"], image_dir=tmp_path / "imgs")
    data = json.loads((tmp_path / "val.json").read_text())
    assert result.annotations == 3 and {a["hiu"]["split"] for a in data["annotations"]} == {"val"}
    assert all((tmp_path / "imgs" / im["file_name"]).is_file() for im in data["images"])
    with pytest.raises(OutputExistsError):
        export_coco(dataset, tmp_path / "val.json")
    assert main(["export", "coco", str(tmp_path / "nowhere"), str(tmp_path / "x.json")]) == 1
    assert not (tmp_path / "x.json").exists()
    with pytest.raises(HiuError, match="no rows to export in split\\(s\\) nosuch"):
        export_coco(dataset, tmp_path / "none.json", splits=["nosuch"])
    assert not (tmp_path / "none.json").exists()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(HiuError, match="afile: exists and is not a folder"):
        export_coco(dataset, tmp_path / "y.json", image_dir=tmp_path / "afile")
    assert not (tmp_path / "y.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_coco_writer_and_reader_as_a_format(tmp_path: Path) -> None:
    records = mixed_records(3)
    coco.write(records, tmp_path / "raw")
    result = convert("coco", tmp_path / "raw" / coco.ANNOTATION_FILE, tmp_path / "out", images="reference",
                     image_root=tmp_path / "raw" / "images")
    assert sum(result.counts.values()) == len(records)
    back = list(coco.read(tmp_path / "raw", images="reference"))
    assert len(back) == len(records) and all(Path(b.image_path).is_absolute() and b.image_bytes is None for b in back)
    assert {b.split for b in coco.read(tmp_path / "raw" / coco.ANNOTATION_FILE, splits=["val"])} == {"val"}


def _image(tmp_path: Path, name: str, w: int = 80, h: int = 60) -> None:
    (tmp_path / "img").mkdir(exist_ok=True)
    (tmp_path / "img" / name).write_bytes(noise_image(np.random.default_rng(0), w, h))


def test_coco_wholebody_hands(tmp_path: Path) -> None:
    _image(tmp_path, "000001.jpg")
    left = np.zeros((NUM_JOINTS, 3))
    left[:, :2] = np.linspace(10, 30, NUM_JOINTS)[:, None]
    left[:, 2] = 2
    left[5] = 0
    wholebody = {
        "images": [{"id": 1, "file_name": "000001.jpg", "width": 80, "height": 60}],
        "categories": [{"id": 1, "name": "person", "keypoints": ["nose"] * 17}],
        "annotations": [{"id": 9, "image_id": 1, "category_id": 1, "keypoints": [0] * 51, "segmentation": [[0, 0, 5, 0, 5, 5]],
                         "lefthand_kpts": left.reshape(-1).tolist(), "lefthand_box": [9, 9, 22, 22], "lefthand_valid": True,
                         "righthand_kpts": [0.0] * 63, "righthand_box": [0, 0, 0, 0], "righthand_valid": False}],
    }
    (tmp_path / "coco_wholebody_val_v1.0.json").write_text(json.dumps(wholebody))
    (row,) = coco.read(tmp_path / "coco_wholebody_val_v1.0.json", image_root=tmp_path / "img")
    assert row.sample_id == "coco/val/9/left" and row.hand_side == "left" and row.split == "val"
    assert row.mask is None and row.bbox.tolist() == [9, 9, 22, 22]
    np.testing.assert_allclose(row.keypoints_2d[0], left[0, :2] + 0.5)
    assert row.visibility[5] == 0 and np.isnan(row.keypoints_2d[5]).all()


def test_onehand10k_style_file_with_polygons(tmp_path: Path) -> None:
    _image(tmp_path, "a.jpg")
    kps = np.zeros((NUM_JOINTS, 3))
    kps[:, :2] = [20, 20]
    kps[:, 2] = 1
    onehand = {
        "images": [{"id": 3, "file_name": "a.jpg", "width": 80, "height": 60}],
        "categories": [{"id": 1, "name": "hand", "keypoints": [f"k{i}" for i in range(NUM_JOINTS)]}],
        "annotations": [{"id": 4, "image_id": 3, "category_id": 1, "keypoints": kps.reshape(-1).tolist(),
                         "bbox": [10, 10, 20, 20], "segmentation": [[10, 10, 30, 10, 30, 25, 20, 30, 10, 25]], "iscrowd": 0},
                        {"id": 5, "image_id": 3, "category_id": 1, "keypoints": kps.reshape(-1).tolist(), "iscrowd": 1}],
    }
    (tmp_path / "onehand10k_test.json").write_text(json.dumps(onehand))
    (row,) = coco.read(tmp_path / "onehand10k_test.json", image_root=tmp_path / "img", pixel_offset=0)
    assert row.split == "test" and row.extras == {"hand_side_known": False} and row.hand_side == "right"
    assert (row.visibility == 2).all() and row.keypoints_2d[0].tolist() == [20, 20]
    assert 320 <= rle.area(row.mask) <= 390 and row.mask["size"] == [60, 80]


def _hand_file(tmp_path: Path, **changes: object) -> Path:
    _image(tmp_path, "a.jpg")
    ann = {"id": 1, "image_id": 1, "category_id": 1, "keypoints": [10.0, 10.0, 2] * NUM_JOINTS, "bbox": [1, 1, 5, 5]}
    data = {"images": [{"id": 1, "file_name": "a.jpg", "width": 80, "height": 60}],
            "categories": [{"id": 1, "name": "hand", "keypoints": list(JOINT_NAMES)}], "annotations": [ann]}
    for key, value in changes.items():
        target = data if key in data else ann
        target[key] = value
    path = tmp_path / "hands.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("changes, expected", [
    ({"keypoints": [1.0, 2.0, 2] * 17}, "keypoints has shape"),
    ({"keypoints": [[1.0, 2.0, 2]] * 20}, r"keypoints has shape \(20, 3\), expected \(21, 3\)"),
    ({"categories": [{"id": 1, "name": "person", "keypoints": ["a"] * 17}]}, "no hand keypoints"),
    ({"image_id": 77}, "image id 77"),
    ({"segmentation": {"size": [10, 10], "counts": "abc"}}, "segmentation size"),
    ({"images": [{"id": 1, "file_name": "a.jpg", "width": 81, "height": 60}]}, r"width 81 but the file has 80$"),
    ({"images": [{"id": 1, "file_name": "a.jpg", "width": 60, "height": 80}]},
     r"width 60 but the file has 80 \(width and height swapped: a file with an EXIF orientation is read upright"),
    ({"images": [{"id": 1, "file_name": "a.jpg", "width": "wide", "height": 60}]}, "must be whole numbers, got 'wide' x 60"),
    ({"keypoints": [float("nan"), 1.0, 2] * NUM_JOINTS}, "NaN"),
    ({"hiu": {"label_source": 5}}, "hiu.label_source must be a string, not 5"),
    ({"hiu": {"confidence": "high"}}, "hiu.confidence must be a number, not 'high'"),
    ({"hiu": {"extras": [1, 2]}}, r"hiu.extras must be an object, not \[1, 2\]"),
    ({"segmentation": [[1, 2]]}, "segmentation is neither RLE nor polygons"),
    ({"image_id": [1]}, r"annotations\[\].image_id must be a number or a string, not \[1\]"),
    ({"category_id": {"a": 1}}, "category_id must be a number or a string"),
    ({"images": [{"id": 1, "file_name": "a.jpg", "width": 1e400, "height": 60}]}, "must be whole numbers, got inf"),
])
def test_bad_coco_files(tmp_path: Path, changes: dict, expected: str) -> None:
    path = _hand_file(tmp_path, **changes)
    with pytest.raises(DatasetFormatError, match=expected) as err:
        list(coco.read(path, image_root=tmp_path / "img"))
    assert "hands.json" in str(err.value)


def test_missing_image_and_not_a_coco_dict(tmp_path: Path) -> None:
    path = _hand_file(tmp_path)
    (tmp_path / "img" / "a.jpg").unlink()
    with pytest.raises(CorruptImageError, match="a.jpg"):
        list(coco.read(path, image_root=tmp_path / "img"))
    assert isinstance(next(coco.read(path, image_root=tmp_path / "img", on_error="skip")), Skipped)
    path.write_text("[1, 2]")
    with pytest.raises(DatasetFormatError, match="COCO dict"):
        list(coco.read(path, image_root=tmp_path / "img"))


def test_export_file_names_are_safe_and_keep_one_suffix() -> None:
    from hiu_data.io.coco import file_name_for

    assert file_name_for("folder/sub/a.JPG", b"\xff\xd8") == "folder/sub/a.jpg"
    assert file_name_for("freihand/train/0001", b"\x89PNG\r\n\x1a\n") == "freihand/train/0001.png"
    assert file_name_for("../x y/..", b"\xff\xd8") == "x_y.jpg"


def test_cocoeval_keypoints_runs_with_the_category_sigmas(tmp_path: Path) -> None:
    from pycocotools.cocoeval import COCOeval

    export_coco(write_dataset(mixed_records(8), tmp_path / "conv", "src"), tmp_path / "hands.json")
    gt = COCO(str(tmp_path / "hands.json"))
    (category,) = gt.loadCats(gt.getCatIds())
    assert len(category["sigmas"]) == NUM_JOINTS
    labelled = [a for a in gt.loadAnns(gt.getAnnIds()) if a["num_keypoints"] > 0]

    def average_precision(shift_px: float) -> float:
        rng = np.random.default_rng(0)
        dets = []
        for ann in labelled:
            kp = np.array(ann["keypoints"], dtype=np.float64).reshape(NUM_JOINTS, 3)
            kp[:, :2] += rng.normal(0, shift_px, (NUM_JOINTS, 2)) if shift_px else 0
            dets.append({"image_id": ann["image_id"], "category_id": ann["category_id"],
                         "keypoints": kp.reshape(-1).tolist(), "score": 1.0})
        evaluator = COCOeval(gt, gt.loadRes(dets), "keypoints")
        evaluator.params.kpt_oks_sigmas = np.array(category["sigmas"])
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
        return float(evaluator.stats[0])

    assert average_precision(0.0) == pytest.approx(1.0)
    assert 0.0 <= average_precision(1.0) < 1.0


def test_unlabeled_rows_keep_their_split(tmp_path: Path) -> None:
    # pseudo-labels and image-folder rows are split "unlabeled"; back as "train" they would be trained on
    records = [dataclasses.replace(r, split="unlabeled", sample_id=f"pseudo/unlabeled/{i}")
               for i, r in enumerate(mixed_records(3))]
    export_coco(write_dataset(records, tmp_path / "conv", "pseudo"), tmp_path / "coco" / "pseudo_train.json")
    back = list(coco.read(tmp_path / "coco" / "pseudo_train.json"))
    assert {b.split for b in back} == {"unlabeled"} and len(back) == len(records)
    assert list(coco.read(tmp_path / "coco" / "pseudo_train.json", splits=["train"])) == []
    for r, b in zip(records, sorted(back, key=lambda b: b.extras["origin_sample_id"])):
        assert set(r.differences(b)) <= {"sample_id", "dataset", "image_id", "extras"}


def test_export_meets_mmpose_coco_style_loading(tmp_path: Path) -> None:
    """What mmpose's BaseCocoStyleDataset (OneHand10KDataset) reads and filters, checked on an export."""
    import cv2

    records = mixed_records(8)
    export_coco(write_dataset(records, tmp_path / "conv", "src"), tmp_path / "hands.json")
    api = COCO(str(tmp_path / "hands.json"))
    kept = 0
    for image_id in api.getImgIds():
        assert isinstance(image_id, int)  # mmpose's sample_interval takes img_id % n
        image = api.loadImgs(image_id)[0]
        pixels = cv2.imread(str(tmp_path / "images" / image["file_name"]))
        assert pixels.shape[:2] == (image["height"], image["width"])
        for ann in api.loadAnns(api.getAnnIds(imgIds=image_id, iscrowd=False)):
            kp = np.asarray(ann["keypoints"], dtype=np.float32).reshape(-1, 3)
            assert kp.shape == (NUM_JOINTS, 3) and ann["num_keypoints"] == int((kp[:, 2] > 0).sum())
            # mmpose drops an instance whose keypoint values are all 0 or whose num_keypoints is 0:
            # the same hands, those without labels
            assert (max(ann["keypoints"]) == 0) == (ann["num_keypoints"] == 0)
            x, y, w, h = ann["bbox"]
            x1, x2 = np.clip([x, x + w], 0, image["width"] - 1)
            y1, y2 = np.clip([y, y + h], 0, image["height"] - 1)
            if ann["num_keypoints"]:
                assert x2 > x1 and y2 > y1
                kept += 1
    assert kept == sum(r.keypoints_2d is not None and bool((r.visibility > 0).any()) for r in records)
