"""``hiu-data predict`` on the image files users have: odd sizes and pixel formats, EXIF
rotation, names with spaces, broken files, folders with sub-folders; and where overlays draw."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from hiu_cli.main import main
from hiu_data.skeleton import joint_colors
from hiu_model.checkpoint import save_checkpoint
from hiu_model.config import load_config
from hiu_model.model import HIUDMTL
from hiu_model.overlay import draw_prediction
from hiu_model.predict import Prediction
from tests.data_io.test_rle_images import _png_header_only, exif_block, with_exif
from tests.targets.handmade import make_hand

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = load_config(None, "tiny", ["model.input_size=64", "model.num_stacks=1"])
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("predict") / "run"
    save_checkpoint(folder, 1, HIUDMTL(cfg.model).eval(), cfg.to_dict())
    return folder


@pytest.fixture(scope="module")
def hand() -> np.ndarray:
    """(240, 320, 3) uint8 RGB: a drawn hand."""
    return cv2.imdecode(np.frombuffer(make_hand(3).image_bytes, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1].copy()


def _write(path: Path, pixels: np.ndarray) -> Path:
    """Write RGB(A) or grey pixels (8 or 16 bit) with OpenCV's channel order."""
    if pixels.ndim == 3:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_RGBA2BGRA if pixels.shape[2] == 4 else cv2.COLOR_RGB2BGR)
    assert cv2.imwrite(str(path), pixels)
    return path


def _predict(run: Path, *inputs: Path, out: Path, extra: list[str] | None = None) -> int:
    return main(["predict", str(run), *map(str, inputs), "--out", str(out), "--device", "cpu", "--side", "right",
                 *(extra or [])])


def test_odd_sizes_and_pixel_formats_each_get_an_overlay(run: Path, hand: np.ndarray, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    images = tmp_path / "images"
    images.mkdir()
    grey = cv2.cvtColor(hand, cv2.COLOR_RGB2GRAY)
    rgba = np.dstack([hand, np.where(np.arange(320) < 160, 0, 255).astype(np.uint8)[None].repeat(240, 0)])
    files = {
        "tall.png": (hand[:, :1], (240, 1)), "wide.png": (hand[:1], (1, 320)), "dot.png": (hand[:1, :1], (1, 1)),
        "grey.png": (grey, (240, 320)), "grey16.png": (grey.astype(np.uint16) * 257, (240, 320)),
        "rgb16.png": (hand.astype(np.uint16) * 257, (240, 320)), "rgba.png": (rgba, (240, 320)),
        "my hand ü 手.png": (hand, (240, 320)),
    }
    for name, (pixels, _) in files.items():
        _write(images / name, pixels)
    # stored turned, with the EXIF orientation (6: turn clockwise to show) that makes it upright
    stored = np.ascontiguousarray(np.rot90(hand))
    exif = with_exif(cv2.imencode(".png", stored[:, :, ::-1])[1].tobytes(), exif_block(6, b"II"))
    (images / "turned.png").write_bytes(exif)
    (images / "turned photo.jpg").write_bytes(with_exif(cv2.imencode(".jpg", stored[:, :, ::-1])[1].tobytes(),
                                                  exif_block(6, b"MM")))
    _write(images / "upright.png", hand)
    files.update({name: (None, (240, 320)) for name in ("turned.png", "turned photo.jpg", "upright.png")})

    out = tmp_path / "out"
    assert _predict(run, images, out=out) == 0
    capsys.readouterr()
    predictions = json.loads((out / "predictions.json").read_text())["images"]
    assert sorted(predictions) == sorted(files)
    for name, (_, shape) in files.items():
        overlay = cv2.imread(str(out / f"{Path(name).stem}.png"), cv2.IMREAD_UNCHANGED)
        assert overlay is not None and overlay.shape == (*shape, 3) and overlay.dtype == np.uint8, name
        assert len(predictions[name]) == 1 and len(predictions[name][0]["keypoints_2d"]) == 21, name
    # EXIF rotation is applied before predicting: the upright frame, the same numbers as upright
    assert predictions["turned.png"] == predictions["upright.png"]
    # the same pixels at 16 bits
    assert predictions["grey16.png"] == predictions["grey.png"]


@pytest.mark.parametrize("broken", ["truncated.png", "truncated.jpg", "text.png", "empty.jpg", "huge.png"])
def test_a_broken_image_is_one_line_naming_it_and_nothing_is_written(broken: str, run: Path, hand: np.ndarray,
                                                                     tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    images = tmp_path / "images"
    images.mkdir()
    _write(images / "a good one.png", hand)
    encoded = cv2.imencode(Path(broken).suffix, hand[:, :, ::-1])[1].tobytes()
    (images / broken).write_bytes({"truncated.png": encoded[:len(encoded) // 2],
                                   "truncated.jpg": encoded[:len(encoded) // 2],
                                   "text.png": b"not an image\n", "empty.jpg": b"",
                                   "huge.png": _png_header_only(40000, 30000)}[broken])
    out = tmp_path / "out"
    assert _predict(run, images, out=out) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {images / broken}: "), err
    assert ("40000 x 30000 pixels" if broken == "huge.png" else "cannot be decoded") in err[0]
    assert not out.exists()


@pytest.mark.parametrize("broken", ["truncated.png", "text.png", "empty.jpg", "huge.png"])
def test_on_error_skip_names_and_counts_a_broken_image_and_draws_the_others(broken: str, run: Path,
                                                                           hand: np.ndarray, tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    images = tmp_path / "images"
    images.mkdir()
    _write(images / "a good one.png", hand)
    _write(images / "z good.png", hand[:200])
    encoded = cv2.imencode(Path(broken).suffix, hand[:, :, ::-1])[1].tobytes()
    (images / broken).write_bytes({"truncated.png": encoded[:len(encoded) // 2], "text.png": b"not an image\n",
                                   "empty.jpg": b"", "huge.png": _png_header_only(40000, 30000)}[broken])
    out = tmp_path / "out"
    assert _predict(run, images, out=out, extra=["--on-error", "skip", "--batch-size", "2"]) == 0
    err = [" ".join(line.split()) for line in capsys.readouterr().err.strip().splitlines()]
    warnings = [line for line in err if line.startswith("warning:")]
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: {images / broken}: "), err
    assert "skipped" in warnings[0]
    assert any("wrote 2 overlays" in line and "skipped 1 image" in line for line in err), err
    assert sorted(p.name for p in out.iterdir()) == ["a good one.png", "predictions.json", "z good.png"]
    predictions = json.loads((out / "predictions.json").read_text())["images"]
    assert sorted(predictions) == ["a good one.png", "z good.png"]
    # The good images get what a run without the broken one gives them (one crop a forward pass
    # in both runs: the broken file left the good one beside it alone in its batch).
    (images / broken).unlink()
    assert _predict(run, images, out=tmp_path / "alone", extra=["--batch-size", "1"]) == 0
    assert json.loads((tmp_path / "alone" / "predictions.json").read_text())["images"] == predictions
    capsys.readouterr()

    # fail, the default, named outright: the one-line error, nothing written
    (images / broken).write_bytes(b"not an image\n")
    assert _predict(run, images, out=tmp_path / "failed", extra=["--on-error", "fail"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {images / broken}: ") and not (tmp_path / "failed").exists()


def test_on_error_takes_fail_or_skip(run: Path, hand: np.ndarray, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    _write(tmp_path / "hand.png", hand)
    assert _predict(run, tmp_path / "hand.png", out=tmp_path / "out", extra=["--on-error", "ignore"]) == 2  # usage error
    assert "Invalid value for '--on-error'" in (err := capsys.readouterr().err) and "'ignore' is not one of" in err
    assert not (tmp_path / "out").exists()


def test_images_in_sub_folders_are_named_as_not_read(run: Path, hand: np.ndarray, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    images = tmp_path / "images"
    (images / "seq1" / "deeper").mkdir(parents=True)
    _write(images / "top.png", hand)
    _write(images / "seq1" / "a.png", hand)
    _write(images / "seq1" / "deeper" / "b.jpg", hand)
    assert _predict(run, images, out=tmp_path / "out") == 0
    err = capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["predictions.json", "top.png"]
    assert f"note: {images}: 2 images in its sub-folders were not read" in " ".join(err.split())


def test_overlays_draw_at_the_predicted_pixels() -> None:
    image = np.zeros((60, 80, 3), np.uint8)
    keypoints = np.stack([np.linspace(10.5, 70.5, 21), np.full(21, 30.5)], 1).astype(np.float32)
    keypoints[5] = [40.5, 10.5]  # hiu pixel centres are at +0.5: this is pixel (row 10, column 40)
    mask = np.zeros((60, 80), bool)
    mask[45:55, 5:15] = True
    pred = Prediction(image_index=0, bbox=np.array([0, 0, 80, 60], np.float32), hand_side="right",
                      keypoints_2d=keypoints, keypoint_confidence=np.ones(21, np.float32),
                      crop_affine=np.eye(2, 3, dtype=np.float32), mask=mask)
    overlay = draw_prediction(image, [pred])
    assert tuple(overlay[10, 40]) == joint_colors()[5]
    assert (overlay[50, 10] > 0).any() and not overlay[50, 30].any()  # the mask tint, and not beside it


def test_one_image_is_counted_in_the_singular(run: Path, hand: np.ndarray, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "images" / "later").mkdir(parents=True)
    _write(tmp_path / "images" / "one.png", hand)
    _write(tmp_path / "images" / "later" / "two.png", hand)
    assert _predict(run, tmp_path / "images", out=tmp_path / "out") == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "1 image in its sub-folders was not read" in err and "wrote 1 overlay and" in err
