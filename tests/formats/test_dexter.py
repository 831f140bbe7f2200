"""Dexter+Object: fingertip round trips (the projection lands on drawn fingertips), the sign
convention check, and bad input."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from hiu_data.errors import CorruptImageError, DatasetFormatError
from hiu_data.formats import Skipped, dexter
from hiu_data.formats._common import UnsupportedSampleError, bbox_from_keypoints, project, visibility_in_image
from hiu_data.io import images, rle
from hiu_data.schema import HandSample
from hiu_data.skeleton import NUM_JOINTS, TIPS
from tests.formats.hands import random_hand

TIP_COLORS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 0, 255]], np.uint8)


def dexter_records(n: int, seed: int = 0, missing_tip: bool = True) -> list[HandSample]:
    """Left hands seen by the Dexter colour camera, with each fingertip drawn as a coloured disc."""
    rng = np.random.default_rng(seed)
    w, h = dexter.IMAGE_SIZE
    out = []
    for i in range(n):
        kp3, K = random_hand(rng, (w, h), K=dexter.CAMERA, side="left", fill=0.5)
        kp3[[j for j in range(NUM_JOINTS) if j not in TIPS]] = np.nan
        if missing_tip and i % 2:
            kp3[TIPS[2]] = np.nan
        kp2 = project(kp3, K)
        pixels = np.full((h, w, 3), 40, np.uint8)
        for tip, color in zip(TIPS, TIP_COLORS):
            if np.isfinite(kp2[tip]).all():
                cv2.circle(pixels, (int(kp2[tip, 0]), int(kp2[tip, 1])), 5, color.tolist(), -1)
        vis = visibility_in_image(kp2, w, h)
        seq = dexter.SEQUENCES[i % 2]
        out.append(HandSample(
            sample_id=f"dexter/test/{seq}/{i:05d}", dataset="dexter", split="test", subset=seq,
            image_id=f"dexter/{seq}/{i:05d}", image_bytes=images.encode(pixels, ".png"), width=w, height=h,
            hand_side="left", keypoints_2d=kp2.astype(np.float32), keypoints_3d=kp3.astype(np.float32),
            camera_K=K.astype(np.float32), visibility=vis, bbox=bbox_from_keypoints(kp2, vis, w, h),
        ))
    return out


def test_round_trip_and_projection_lands_on_fingertips(tmp_path: Path) -> None:
    records = dexter_records(4)
    dexter.write(records, tmp_path)
    line = (tmp_path / "data" / "Grasp2" / "annotations" / "Grasp23D.txt").read_text().splitlines()[0]
    assert line.count(";") == 4 and "32001" in line.split(";")[2]  # record 1 misses its middle tip
    back = {r.sample_id: r for r in dexter.read(tmp_path)}
    assert set(back) == {r.sample_id for r in records}
    checked = 0
    for r in records:
        got = back[r.sample_id]
        assert r.differences(got, atol=1e-3) == [], r.sample_id  # 1e-3 px; 3D agrees to 1 mm/1000
        np.testing.assert_allclose(got.keypoints_3d, r.keypoints_3d, atol=2e-6)
        assert got.hand_side == "left" and got.split == "test"
        assert np.isnan(got.keypoints_3d[0]).all() and got.visibility[0] == 0
        pixels = images.decode(got.image_bytes)
        for tip, color in zip(TIPS, TIP_COLORS):
            if got.visibility[tip] == 2:
                x, y = np.floor(got.keypoints_2d[tip]).astype(int)
                np.testing.assert_array_equal(pixels[y, x], color)
                checked += 1
    assert checked >= 15


def test_raw_labels_use_the_sign_flipped_depth_frame() -> None:
    # A point on the depth camera's optical axis has raw x = y = 0; one to the right of the
    # colour image centre has negative raw x (the depth frame is x/y negated).
    right = dexter.color_mm_to_raw(np.array([100.0, 0.0, 500.0]))
    centre = dexter.color_mm_to_raw(np.array([0.0, 0.0, 500.0]))
    assert right[0] < centre[0]
    roundtrip = dexter.raw_to_color_mm(dexter.color_mm_to_raw(np.array([[12.0, -30.0, 420.0]])))
    np.testing.assert_allclose(roundtrip, [[12.0, -30.0, 420.0]], atol=1e-9)


def test_writer_2d_file_matches_depth_projection_and_mirrored_labels_warn(tmp_path: Path,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    dexter.write(dexter_records(2, missing_tip=False), tmp_path)
    with caplog.at_level(logging.WARNING):
        list(dexter.read(tmp_path))
    assert not caplog.records
    path = tmp_path / "data" / "Grasp1" / "annotations" / "Grasp13D.txt"
    raw = np.array([[float(v) for v in f.split(",")] for f in path.read_text().split(";")])
    raw[:, :2] *= -1  # labels written without the sign flip
    path.write_text("; ".join(", ".join(str(v) for v in p) for p in raw) + "\n")
    d2 = tmp_path / "data" / "Grasp1" / "annotations" / "Grasp12D.txt"
    d2.write_text("; ".join(", ".join(str(v) for v in p) for p in project(raw, dexter.DEPTH_CAMERA)) + "\n")
    with caplog.at_level(logging.WARNING):
        list(dexter.read(tmp_path))
    assert "sign flip" in caplog.text and "Grasp12D.txt" in caplog.text


def test_writer_refuses_what_dexter_cannot_hold(tmp_path: Path) -> None:
    record = dexter_records(1)[0]
    for change in ({"hand_side": "right"}, {"width": 320}, {"keypoints_3d": None},
                   {"camera_K": np.eye(3)}):
        bad = HandSample(**{**record.__dict__, **change})
        with pytest.raises(UnsupportedSampleError, match=record.sample_id):
            dexter.write([bad], tmp_path / "x")


@pytest.mark.parametrize("kind", ["fields", "text", "count", "nan"])
def test_bad_annotation_files(tmp_path: Path, kind: str) -> None:
    dexter.write(dexter_records(2), tmp_path)
    path = tmp_path / "data" / "Grasp1" / "annotations" / "Grasp13D.txt"
    line = path.read_text().splitlines()[0]
    path.write_text({
        "fields": line.rsplit(";", 1)[0] + "\n",
        "text": line.replace(",", " x", 1) + "\n",
        "count": line + "\n" + line + "\n",
        "nan": line.replace(line.split(",")[0], "nan", 1) + "\n",
    }[kind])
    with pytest.raises(DatasetFormatError, match="Grasp13D.txt"):
        list(dexter.read(tmp_path))


def test_missing_root_and_corrupt_frame(tmp_path: Path) -> None:
    with pytest.raises(DatasetFormatError, match="no Dexter"):
        list(dexter.read(tmp_path))
    dexter.write(dexter_records(2), tmp_path)
    frame = tmp_path / "data" / "Grasp1" / "color" / "00000.png"
    frame.write_bytes(frame.read_bytes()[:100])
    with pytest.raises(CorruptImageError, match="00000.png"):
        list(dexter.read(tmp_path / "data"))
    items = list(dexter.read(tmp_path, on_error="skip"))
    assert [type(i).__name__ for i in items].count("Skipped") == 1 and len(items) == 2
    assert isinstance(items[0], Skipped) and "dexter/test/Grasp1/00000" == items[0].sample_id


@pytest.mark.slow
def test_rendered_synthetic_hands_fingertips_land_on_the_hand(tmp_path: Path) -> None:
    """The same check on hands rendered by hiu_data.synth (about 6 s: the renderer's set-up)."""
    synth = pytest.importorskip("hiu_data.synth.generate")
    from hiu_data.synth.profiles import profile_for

    records = [r for _, _, rows in synth.generate_scenes(3, 0, profile_for("dexter")) for r in rows]
    dexter.write(records, tmp_path)
    back = list(dexter.read(tmp_path))
    assert len(back) == len(records)
    checked = 0
    for original, got in zip(records, back):
        np.testing.assert_allclose(got.keypoints_2d[list(TIPS)], original.keypoints_2d[list(TIPS)], atol=1e-3)
        hand = rle.decode(original.mask)
        for tip in TIPS:
            if original.visibility[tip] == 2:
                x, y = np.floor(got.keypoints_2d[tip]).astype(int)
                assert hand[max(y - 2, 0):y + 3, max(x - 2, 0):x + 3].any(), (original.sample_id, tip)
                checked += 1
    assert checked >= 5


def test_missing_colour_folder(tmp_path: Path) -> None:
    dexter.write(dexter_records(1), tmp_path)
    for frame in (tmp_path / "data" / "Grasp1" / "color").iterdir():
        frame.unlink()
    (tmp_path / "data" / "Grasp1" / "color").rmdir()
    with pytest.raises(DatasetFormatError, match="color"):
        list(dexter.read(tmp_path))


def test_raw_root_above_the_dataset_folder(tmp_path: Path) -> None:
    dexter.write(dexter_records(2), tmp_path / "dexter+object")
    got = list(dexter.read(tmp_path, images="reference"))
    assert len(got) == 2 and all(s.image_path.startswith("dexter+object/data/") for s in got)
    assert (tmp_path / got[0].image_path).is_file()


def test_frames_numbered_without_zero_padding_keep_their_labels(tmp_path: Path) -> None:
    # The file names are not documented; numbered frames (1.png ... 12.png) are taken in number
    # order, where a plain name sort would put 10.png before 2.png and shift every label.
    records = dexter_records(24)
    for i, r in enumerate(records):
        r.sample_id = f"dexter/test/{r.subset}/{i // 2 + 1}"
    dexter.write(records, tmp_path)
    for seq in dexter.SEQUENCES[:2]:  # label files as released: one line per frame, in number order
        frames = sorted((r for r in records if r.subset == seq), key=lambda r: int(r.sample_id.rsplit("/", 1)[1]))
        lines = [dexter._frame_line(r) for r in frames]
        for kind, column in (("3D", 0), ("2D", 1)):
            path = tmp_path / "data" / seq / "annotations" / f"{seq}{kind}.txt"
            path.write_text("".join(line[column] + "\n" for line in lines))
    back = {r.sample_id: r for r in dexter.read(tmp_path)}
    assert set(back) == {r.sample_id for r in records}
    for r in records:
        np.testing.assert_allclose(back[r.sample_id].keypoints_3d, r.keypoints_3d, atol=2e-6)
