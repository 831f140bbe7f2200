"""Unlabeled folders: nested folders, the image file types, a corrupt image (reported; skipped with
--on-error skip), detection boxes, and the writer round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hiu_cli.main import main
from hiu_data.errors import CorruptImageError, DatasetFormatError, HiuError
from hiu_data.formats import Skipped, folder
from hiu_data.io import images
from hiu_data.io.parquet import HandDataset
from tests.formats.hands import noise_image


def _tree(root: Path) -> list[str]:
    rng = np.random.default_rng(0)
    files = {"a.jpg": (40, 30, ".jpg"), "sub/b.png": (32, 32, ".png"), "sub/deeper/c.webp": (48, 20, ".webp"),
             "sub/deeper/D.JPEG": (20, 24, ".jpg")}
    for rel, (w, h, ext) in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        (root / rel).write_bytes(images.encode(pixels, ext) if ext == ".webp" else noise_image(rng, w, h, ext))
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "x.jpg").write_bytes(noise_image(rng, 8, 8))
    return sorted(files)


def test_nested_folders_give_unlabeled_rows(tmp_path: Path) -> None:
    rels = _tree(tmp_path)
    rows = list(folder.read(tmp_path))
    assert [r.sample_id for r in rows] == [f"folder/unlabeled/{rel}" for rel in rels]
    c = next(r for r in rows if r.sample_id.endswith("c.webp"))
    assert (c.width, c.height) == (48, 20) and c.bbox.tolist() == [0, 0, 48, 20]
    for r in rows:
        assert r.split == "unlabeled" and r.keypoints_2d is None and r.mask is None and r.visibility.max() == 0
        assert r.extras == {"hand_side_known": False}
        assert r.image_bytes == (tmp_path / r.image_id.removeprefix("folder/")).read_bytes()


def test_corrupt_image_reported_or_skipped_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = tmp_path / "raw"
    _tree(raw)
    bad = raw / "sub" / "b.png"
    bad.write_bytes(bad.read_bytes()[:60])
    with pytest.raises(CorruptImageError, match="b.png"):
        list(folder.read(raw))
    items = list(folder.read(raw, on_error="skip"))
    assert [type(i) for i in items].count(Skipped) == 1 and len(items) == 4

    assert main(["convert", "folder", str(raw), str(tmp_path / "out")]) == 1
    assert "b.png" in capsys.readouterr().err
    assert not (tmp_path / "out" / "folder").exists()
    assert main(["convert", "folder", str(raw), str(tmp_path / "out"), "--on-error", "skip"]) == 0
    ds = HandDataset(tmp_path / "out" / "folder")
    assert len(ds) == 3 and ds.manifests[ds.dataset_dirs[0]]["skipped"]["count"] == 1
    assert ds.manifests[ds.dataset_dirs[0]]["skipped"]["samples"][0]["sample_id"] == "folder/unlabeled/sub/b.png"


def test_boxes_give_one_row_per_box(tmp_path: Path) -> None:
    _tree(tmp_path / "img")
    dets = {"images": [{"id": 7, "file_name": "a.jpg"}, {"id": 8, "file_name": "sub/b.png"}],
            "categories": [{"id": 1, "name": "left_hand"}, {"id": 2, "name": "hand"}],
            "annotations": [{"image_id": 7, "bbox": [1, 2, 10, 12], "score": 0.9, "category_id": 1},
                            {"image_id": 7, "bbox": [20, 2, 10, 12], "score": 0.2, "category_id": 2},
                            {"image_id": 8, "bbox": [3, 3, 5, 5], "score": 0.8, "category_id": 2, "hand_side": "right"}]}
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    rows = list(folder.read(tmp_path / "img", boxes=tmp_path / "dets.json"))
    assert [r.sample_id for r in rows] == ["folder/unlabeled/a.jpg/box0", "folder/unlabeled/a.jpg/box1",
                                           "folder/unlabeled/sub/b.png/box0"]
    assert rows[0].hand_side == "left" and rows[0].extras == {"detection_score": 0.9}
    assert rows[1].extras == {"hand_side_known": False, "detection_score": 0.2}
    assert rows[2].hand_side == "right" and rows[0].image_id == rows[1].image_id
    assert len(list(folder.read(tmp_path / "img", boxes=tmp_path / "dets.json", min_score=0.5))) == 2
    results = [{"image_id": "c.webp", "bbox": [0, 0, 4, 4], "score": 1.0, "is_left": 1}]
    (tmp_path / "results.json").write_text(json.dumps(results))
    (row,) = folder.read(tmp_path / "img", boxes=tmp_path / "results.json")
    assert row.image_id == "folder/sub/deeper/c.webp" and row.hand_side == "left"


@pytest.mark.parametrize("dets, expected", [
    ([{"image_id": "missing.jpg", "bbox": [0, 0, 1, 1]}], "none of its 1 boxes names an image of the folder"),
    ([{"image_id": "a.jpg", "bbox": [0, 0, -1, 1]}], "positive size"),
    ([{"image_id": "a.jpg"}], "needs 'bbox'"),
    ([{"image_id": 3, "bbox": [0, 0, 1, 1]}], "names no image"),
    ({"images": []}, "expected a COCO dict"),
    ([{"image_id": "a.jpg", "bbox": [0, 0, 1, 1], "score": "high"}], "score must be a finite number, not 'high'"),
    ([{"image_id": ["a.jpg"], "bbox": [0, 0, 1, 1]}], "image_id must be a number or a string"),
    ([{"image_id": "a.jpg", "bbox": [0, 0, 1, 1], "score": float("nan")}], "score must be a finite number, not nan"),
    ({"images": [{"id": [1], "file_name": "a.jpg"}], "annotations": []}, r"images\[\].id must be a number"),
    ([{"image_id": "a.jpg", "bbox": [40, 10, 5, 5]}], "box 0 of a.jpg: .* lies outside the 40x30 image"),
])
def test_bad_boxes_file(tmp_path: Path, dets: object, expected: str) -> None:
    _tree(tmp_path / "img")
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    with pytest.raises(DatasetFormatError, match=expected) as err:
        list(folder.read(tmp_path / "img", boxes=tmp_path / "dets.json"))
    assert "dets.json" in str(err.value)


def test_boxes_of_images_gone_from_the_folder_are_left_out_and_counted(tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    """A detections file made before some images were deleted still reads: the boxes of the
    deleted images are left out, and a warning says how many (a file naming no image of the
    folder at all is the wrong file, an error: see test_bad_boxes_file)."""
    _tree(tmp_path / "img")
    dets = [{"image_id": "a.jpg", "bbox": [0, 0, 4, 4]}, {"image_id": "gone.jpg", "bbox": [0, 0, 4, 4]},
            {"image_id": "gone.jpg", "bbox": [5, 5, 4, 4]}, {"image_id": "sub/old.png", "bbox": [0, 0, 4, 4]}]
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    with caplog.at_level("WARNING"):
        (row,) = folder.read(tmp_path / "img", boxes=tmp_path / "dets.json")
    assert row.sample_id == "folder/unlabeled/a.jpg/box0"
    assert "3 boxes name 2 images that are not in the folder (gone.jpg, sub/old.png): left out" in caplog.text


def test_a_box_naming_a_file_stem_two_images_share_is_refused(tmp_path: Path) -> None:
    _tree(tmp_path / "img")
    (tmp_path / "img" / "sub" / "a.png").write_bytes(noise_image(np.random.default_rng(1), 8, 8, ".png"))
    (tmp_path / "dets.json").write_text(json.dumps([{"image_id": "a.bmp", "bbox": [0, 0, 4, 4]}]))
    with pytest.raises(DatasetFormatError, match=r"image 'a.bmp' may be any of a.jpg, sub/a.png"):
        list(folder.read(tmp_path / "img", boxes=tmp_path / "dets.json"))


def test_boxes_past_the_border_are_clipped_to_the_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _tree(tmp_path / "img")  # a.jpg is 40 x 30
    dets = [{"image_id": "a.jpg", "bbox": [-10, -5, 30, 20]}, {"image_id": "a.jpg", "bbox": [25, 20, 30, 30]}]
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    rows = list(folder.read(tmp_path / "img", boxes=tmp_path / "dets.json"))
    assert [r.bbox.tolist() for r in rows] == [[0, 0, 20, 15], [25, 20, 15, 10]]
    out = tmp_path / "out"
    assert main(["convert", "folder", str(tmp_path / "img"), str(out), "--boxes", str(tmp_path / "dets.json")]) == 0
    assert main(["validate", str(out / "folder"), "--skip-images"]) == 0, capsys.readouterr().out


def test_empty_or_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetFormatError, match="no images"):
        list(folder.read(tmp_path))
    with pytest.raises(DatasetFormatError, match="missing folder"):
        list(folder.read(tmp_path / "nope"))


def test_writer_round_trip_with_and_without_boxes(tmp_path: Path) -> None:
    _tree(tmp_path / "img")
    plain = list(folder.read(tmp_path / "img"))
    folder.write(plain, tmp_path / "copy")
    assert not (tmp_path / "copy" / folder.BOXES_FILE).exists()
    again = list(folder.read(tmp_path / "copy"))
    assert [a.differences(b) for a, b in zip(plain, again)] == [[]] * len(plain)
    dets = [{"image_id": "a.jpg", "bbox": [1, 2, 10, 12], "score": 0.5, "hand_side": "left"},
            {"image_id": "a.jpg", "bbox": [5, 2, 10, 12]}, {"image_id": "c.webp", "bbox": [0, 0, 4, 4]}]
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    boxed = list(folder.read(tmp_path / "img", boxes=tmp_path / "dets.json"))
    folder.write(boxed, tmp_path / "boxed")
    back = list(folder.read(tmp_path / "boxed", boxes=tmp_path / "boxed" / folder.BOXES_FILE))
    assert [a.differences(b) for a, b in zip(boxed, back)] == [[]] * 3


def test_a_phone_photo_is_read_upright(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.data_io.test_rle_images import exif_block, with_exif

    # Phones store the sensor's pixels and an EXIF orientation; 6 shows them turned clockwise.
    stored = np.random.default_rng(1).integers(0, 255, (30, 50, 3), dtype=np.uint8)
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "phone.jpg").write_bytes(with_exif(images.encode(stored, ".jpg"), exif_block(6, b"MM")))
    assert main(["convert", "folder", str(tmp_path / "images"), str(tmp_path / "out")]) == 0
    row = HandDataset(tmp_path / "out" / "folder")[0]
    assert (row.width, row.height) == (30, 50) and row.bbox.tolist() == [0, 0, 30, 50]
    assert images.decode(row.image_bytes).shape == (50, 30, 3)
    assert main(["validate", str(tmp_path / "out" / "folder")]) == 0, capsys.readouterr().out


def test_every_command_takes_the_same_image_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """convert folder / pseudo-label (the folder reader) and predict take the same file types;
    a BMP is kept as it is stored, and a TIFF (which a browser cannot show in review) is not taken."""
    from hiu_model.overlay import find_images

    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
    for name in ("a.jpg", "b.PNG", "c.webp", "d.bmp", "e.tif", "f.tiff", ".g.png"):
        ext = Path(name).suffix.lower()
        (tmp_path / name).write_bytes(images.encode(pixels, ".jpg" if ext == ".jpg" else ext))
    taken = ["a.jpg", "b.PNG", "c.webp", "d.bmp"]
    assert folder.image_paths(tmp_path) == taken
    assert [p.name for p in find_images([tmp_path])] == taken

    bmp = next(r for r in folder.read(tmp_path) if r.image_id == "folder/d.bmp")
    assert (bmp.width, bmp.height) == (16, 12)
    np.testing.assert_array_equal(images.decode(bmp.image_bytes), pixels)
    folder.write([bmp], tmp_path / "written")
    assert (tmp_path / "written" / "d.bmp").read_bytes() == (tmp_path / "d.bmp").read_bytes()

    with pytest.raises(HiuError, match=r"e\.tif: not an image file hiu reads \(.jpg, .jpeg, .png, .webp, .bmp\)"):
        find_images([tmp_path / "e.tif"])


def test_detector_results_on_coco_images_name_them_by_number(tmp_path: Path) -> None:
    # A COCO results list (mmdet, detectron2) names images by the numeric id, and COCO's own
    # file names are that number, zero-padded to 12 digits.
    rng = np.random.default_rng(0)
    (tmp_path / "val2017").mkdir()
    for name in ("000000000785.jpg", "000000001000.jpg"):
        (tmp_path / "val2017" / name).write_bytes(noise_image(rng, 40, 30))
    results = [{"image_id": 785, "category_id": 1, "bbox": [2.5, 3.0, 10.0, 12.0], "score": 0.98},
               {"image_id": 1000, "category_id": 1, "bbox": [1.0, 1.0, 5.0, 5.0], "score": 0.5}]
    (tmp_path / "dets.json").write_text(json.dumps(results))
    rows = list(folder.read(tmp_path / "val2017", boxes=tmp_path / "dets.json"))
    assert [r.image_id for r in rows] == ["folder/000000000785.jpg", "folder/000000001000.jpg"]
    assert rows[0].bbox.tolist() == [2.5, 3.0, 10.0, 12.0]
    (tmp_path / "dets.json").write_text(json.dumps([{"image_id": 7, "bbox": [0, 0, 1, 1]}]))
    with pytest.raises(DatasetFormatError, match="image_id 7 names no image"):
        list(folder.read(tmp_path / "val2017", boxes=tmp_path / "dets.json"))


def test_boxes_of_other_categories_are_not_hands(tmp_path: Path) -> None:
    # Hand-object detectors (e.g. 100DOH-style) list hands and the objects they hold.
    _tree(tmp_path / "img")
    dets = {"images": [{"id": 1, "file_name": "a.jpg"}],
            "categories": [{"id": 1, "name": "hand"}, {"id": 2, "name": "targetobject"}],
            "annotations": [{"image_id": 1, "bbox": [1, 2, 10, 12], "category_id": 1},
                            {"image_id": 1, "bbox": [5, 5, 20, 20], "category_id": 2}]}
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    (row,) = folder.read(tmp_path / "img", boxes=tmp_path / "dets.json")
    assert row.bbox.tolist() == [1, 2, 10, 12]
