"""RHD: writer -> reader round trips, 42 -> 2 x HAND21 order, masks by class id, the restricted
unpickler, bad input."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from hiu_data.convert import convert
from hiu_data.errors import CorruptImageError, DatasetFormatError, UnsafePickleError
from hiu_data.formats import Skipped, rhd
from hiu_data.formats._common import bbox_from_keypoints, project
from hiu_data.io import images, rle
from hiu_data.schema import HandSample
from hiu_data.skeleton import JOINT_INDEX
from tests.formats.hands import assert_records_equal, noise_image, random_hand

W, H = rhd.IMAGE_SIZE


def make_records(n_train: int = 3, n_test: int = 2, seed: int = 0, one_hand_every: int = 0) -> list[HandSample]:
    """Two hands per image (left in the left half of the mask, right in the right half)."""
    rng = np.random.default_rng(seed)
    out = []
    for split, count in (("train", n_train), ("test", n_test)):
        for number in range(count):
            image_id = f"rhd/{split}/{number:05d}"
            data = noise_image(rng, W, H, ".png")
            f = rng.uniform(250, 320)
            K = np.array([[f, 0, 160], [0, f, 160], [0, 0, 1]], np.float32)
            yy, xx = np.mgrid[:H, :W]
            blob = (xx - W / 2) ** 2 / 120**2 + (yy - H / 2) ** 2 / 90**2 < 1
            for side in ("left", "right"):
                if one_hand_every and number % one_hand_every == 0 and side == "right":
                    continue
                xyz, _ = random_hand(rng, (W, H), K.astype(np.float64), side=side)
                xyz = xyz.astype(np.float32)
                uv = (project(xyz, K) + rng.normal(0, 0.05, (21, 2))).astype(np.float32)
                vis = rng.choice([1, 2], size=21).astype(np.uint8)
                half = (xx < W / 2) if side == "left" else (xx >= W / 2)
                out.append(HandSample(
                    sample_id=f"{image_id}/{side}", dataset="rhd", split=split, image_id=image_id, image_bytes=data,
                    width=W, height=H, hand_side=side, bbox=bbox_from_keypoints(uv, vis, W, H), keypoints_2d=uv,
                    visibility=vis, keypoints_3d=xyz, camera_K=K, mask=rle.encode(blob & half)))
    return out


def read_all(root: Path, **kwargs) -> list[HandSample]:
    items = list(rhd.read(root, **kwargs))
    assert not any(isinstance(i, Skipped) for i in items)
    return items


def test_round_trip(tmp_path: Path) -> None:
    records = make_records()
    rhd.write(records, tmp_path)
    assert (tmp_path / "training" / "anno_training.pickle").is_file()
    assert_records_equal(records, read_all(tmp_path))
    assert_records_equal(records, read_all(tmp_path, workers=2))
    got = read_all(tmp_path, splits=["test"], images="reference")
    assert got[0].image_path == "evaluation/color/00000.png" and got[0].image_bytes is None


def test_one_hand_images_and_kept_numbers(tmp_path: Path) -> None:
    records = make_records(n_train=4, n_test=0, one_hand_every=2)
    records = [r for r in records if r.image_id != "rhd/train/00001"]  # a gap in the numbering stays a gap
    rhd.write(records, tmp_path)
    got = read_all(tmp_path)
    assert_records_equal(records, got)
    assert [s.sample_id for s in got][:2] == ["rhd/train/00000/left", "rhd/train/00002/left"]


def _raw_tree(tmp_path: Path, entry: dict, mask: np.ndarray | None = None) -> Path:
    folder = tmp_path / "training"
    (folder / "color").mkdir(parents=True)
    (folder / "color" / "00000.png").write_bytes(noise_image(np.random.default_rng(0), W, H, ".png"))
    if mask is not None:
        (folder / "mask").mkdir()
        (folder / "mask" / "00000.png").write_bytes(images.encode(mask))
    with open(folder / "anno_training.pickle", "wb") as f:
        pickle.dump({0: entry}, f, protocol=2)
    return tmp_path


def _entry() -> dict:
    xyz = np.zeros((42, 3), np.float32)
    xyz[:, 0] = np.arange(42) * 0.001  # x (m) encodes the raw joint index
    xyz[:, 2] = 0.5
    uv_vis = np.zeros((42, 3), np.float32)
    uv_vis[:, 0] = np.arange(42)
    uv_vis[:, 2] = np.arange(42) % 2
    return {"xyz": xyz, "uv_vis": uv_vis, "K": np.array([[300, 0, 160], [0, 300, 160], [0, 0, 1]], np.float32)}


def test_named_joints_sides_and_visibility(tmp_path: Path) -> None:
    left, right = read_all(_raw_tree(tmp_path, _entry()))
    assert (left.hand_side, right.hand_side) == ("left", "right")
    assert left.keypoints_2d[JOINT_INDEX["wrist"], 0] == 0 and right.keypoints_2d[JOINT_INDEX["wrist"], 0] == 21
    # raw per finger tip -> MCP: left index tip is raw 5, its MCP raw 8
    assert left.keypoints_2d[JOINT_INDEX["index_tip"], 0] == 5 and left.keypoints_2d[JOINT_INDEX["index_mcp"], 0] == 8
    assert left.keypoints_2d[JOINT_INDEX["thumb_cmc"], 0] == 4 and right.keypoints_2d[JOINT_INDEX["little_tip"], 0] == 38
    assert right.keypoints_3d[JOINT_INDEX["little_tip"], 0] == pytest.approx(0.038)  # metres kept
    assert left.visibility[JOINT_INDEX["index_tip"]] == 2 and left.visibility[JOINT_INDEX["index_mcp"]] == 1


def test_masks_by_class_id(tmp_path: Path) -> None:
    classes = np.zeros((H, W), np.uint8)
    classes[10:20, 10:20] = 1  # person: in neither hand
    classes[30:40, 30:40] = 5  # left index
    classes[50:60, 50:60] = 17  # left palm
    classes[70:80, 70:80] = 18  # right thumb
    classes[90:95, 90:95] = 33  # right palm
    left, right = read_all(_raw_tree(tmp_path, _entry(), classes))
    assert rle.area(left.mask) == 200 and rle.area(right.mask) == 125
    assert rle.decode(left.mask)[35, 35] == 1 and rle.decode(right.mask)[75, 75] == 1


def test_pickle_outside_the_allow_list_is_refused_before_it_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    root = _raw_tree(tmp_path, _entry())
    (root / "training" / "anno_training.pickle").write_bytes(pickle.dumps({0: {"xyz": Exploit()}}))
    with pytest.raises(UnsafePickleError, match=r"anno_training.pickle: pickle asks for posix.mkdir"):
        list(rhd.read(root))
    assert not marker.exists()
    with pytest.raises(UnsafePickleError):  # --on-error skip does not skip a hostile file
        convert("rhd", root, tmp_path / "out", on_error="skip")
    assert not (tmp_path / "out" / "rhd").exists()


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[: len(b) // 2], "truncated pickle"),
    (lambda b: b"not a pickle at all", "malformed pickle"),
    (lambda b: pickle.dumps([1, 2, 3]), "expected a dict of samples"),
])
def test_truncated_or_malformed_pickle(tmp_path: Path, damage, message: str) -> None:
    root = _raw_tree(tmp_path, _entry())
    path = root / "training" / "anno_training.pickle"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DatasetFormatError, match=rf"anno_training.pickle: {message}"):
        list(rhd.read(root))


@pytest.mark.parametrize("field, value, message", [
    ("xyz", np.zeros((21, 3), np.float32), r"'xyz' has shape \(21, 3\), expected \(42, 3\)"),
    ("K", np.full((3, 3), np.inf, np.float32), "'K' contains NaN or inf"),
    ("uv_vis", None, "has no 'uv_vis'"),
])
def test_bad_entry_fails_or_is_skipped(tmp_path: Path, field: str, value, message: str) -> None:
    records = make_records(n_train=3, n_test=0)
    rhd.write(records, tmp_path)
    path = tmp_path / "training" / "anno_training.pickle"
    anno = pickle.loads(path.read_bytes())
    if value is None:
        del anno[1][field]
    else:
        anno[1][field] = value
    path.write_bytes(pickle.dumps(anno, protocol=2))
    with pytest.raises(DatasetFormatError, match=rf"\(sample rhd/train/00001\): entry 1 {message}"):
        list(rhd.read(tmp_path))
    items = list(rhd.read(tmp_path, on_error="skip"))
    assert [i.sample_id for i in items if isinstance(i, Skipped)] == ["rhd/train/00001"]
    assert len([i for i in items if isinstance(i, HandSample)]) == 4


@pytest.mark.parametrize("what", ["color", "mask"])
def test_missing_image_or_mask(tmp_path: Path, what: str) -> None:
    rhd.write(make_records(n_train=2, n_test=0), tmp_path)
    (tmp_path / "training" / what / "00001.png").unlink()
    with pytest.raises(CorruptImageError, match=rf"{what}/00001.png \(sample rhd/train/00001\): missing"):
        list(rhd.read(tmp_path))


def test_corrupt_image(tmp_path: Path) -> None:
    rhd.write(make_records(n_train=2, n_test=0), tmp_path)
    path = tmp_path / "training" / "color" / "00000.png"
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(CorruptImageError, match=r"00000.png \(sample rhd/train/00000\): truncated PNG"):
        list(rhd.read(tmp_path, workers=2))


def test_missing_folders(tmp_path: Path) -> None:
    with pytest.raises(DatasetFormatError, match="expected training/anno_training.pickle"):
        list(rhd.read(tmp_path))
    rhd.write(make_records(n_train=1, n_test=0), tmp_path)
    with pytest.raises(DatasetFormatError, match=r"anno_evaluation.pickle: missing file; expected the RHD evaluation"):
        list(rhd.read(tmp_path, splits=["test"]))
    import shutil

    shutil.rmtree(tmp_path / "training" / "color")
    with pytest.raises(DatasetFormatError, match=r"training/color: missing folder"):
        list(rhd.read(tmp_path))


def test_writer_overlap_goes_to_the_nearer_hand(tmp_path: Path) -> None:
    left, right = make_records(n_train=1, n_test=0)
    full = rle.encode(np.ones((H, W), np.uint8))
    left.mask, right.mask = full, full
    right.keypoints_3d = right.keypoints_3d + np.float32([0, 0, 1.0])  # right hand far away
    rhd.write([left, right], tmp_path)
    got_left, got_right = read_all(tmp_path)
    assert rle.area(got_left.mask) == H * W and rle.area(got_right.mask) == 0


def test_cli_reports_bad_input_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hiu_cli.main import main

    rhd.write(make_records(n_train=2, n_test=0), tmp_path / "raw")
    (tmp_path / "raw" / "training" / "color" / "00001.png").write_bytes(b"not a png")
    assert main(["convert", "rhd", str(tmp_path / "raw"), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "00001.png (sample rhd/train/00001)" in err
    assert not (tmp_path / "out" / "rhd").exists()
    assert main(["convert", "rhd", str(tmp_path / "raw"), str(tmp_path / "out"), "--on-error", "skip"]) == 0
    assert "skipped rhd/train/00001" in capsys.readouterr().err


def _py2_array(a: np.ndarray) -> bytes:
    """Pickle opcodes of a float32 array as Python 2 + numpy 1.x wrote it: globals under
    ``numpy.core``, the dtype code and the raw buffer as Python 2 ``str`` (SHORT_BINSTRING /
    BINSTRING), which Python 3 only reads with a byte-preserving encoding."""
    def text(b: bytes) -> bytes:
        return b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + len(b).to_bytes(4, "little") + b
    a = np.ascontiguousarray(a, dtype="<f4")
    shape = b"(" + b"".join(b"K" + bytes([d]) for d in a.shape) + b"t"
    dtype = b"cnumpy\ndtype\n" + text(b"f4") + b"K\x00K\x01\x87R(K\x03" + text(b"<") + \
        b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    return (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + text(b"b") + b"\x87R(K\x01"
            + shape + dtype + b"\x89" + text(a.tobytes()) + b"tb")


def test_a_python2_pickle_as_released_loads(tmp_path: Path) -> None:
    # RHD's anno_*.pickle was written by Python 2 (its view_samples.py is py2/py3 code);
    # rhd.write produces a Python 3 protocol-2 pickle, so this builds the released form by hand.
    entry = _entry()
    entry["xyz"][:, 1] = 200.5  # float32 bytes >= 0x80: not ASCII, as real buffers are
    root = _raw_tree(tmp_path, entry)
    body = b"".join(b"U" + bytes([len(k)]) + k.encode() + _py2_array(v) for k, v in entry.items())
    (root / "training" / "anno_training.pickle").write_bytes(b"\x80\x02}(K\x00}(" + body + b"uu.")
    left, right = read_all(root)
    assert left.keypoints_3d[JOINT_INDEX["index_tip"]].tolist() == pytest.approx([0.005, 200.5, 0.5])
    assert right.camera_K[0, 0] == 300


def test_raw_root_above_or_inside_the_archive_folder(tmp_path: Path) -> None:
    # RHD_v1-1.zip unpacks to RHD_published_v2/: users give that folder or the one they unpacked into
    records = make_records(n_train=2, n_test=1)
    rhd.write(records, tmp_path / "RHD_published_v2")
    assert_records_equal(records, read_all(tmp_path))
    got = read_all(tmp_path, splits=["test"], images="reference")
    assert got[0].image_path == "RHD_published_v2/evaluation/color/00000.png"
    assert (tmp_path / got[0].image_path).read_bytes() == records[-1].image_bytes
    inside = tmp_path / "RHD_published_v2" / "training"
    with pytest.raises(DatasetFormatError, match=r"training: a folder inside the RHD dataset; give .*RHD_published_v2 as"):
        list(rhd.read(inside))


def test_a_hand_not_seen_in_the_image_is_not_a_row(tmp_path: Path) -> None:
    # RHD labels both hands of the character in every frame, also a hand outside the picture or
    # hidden behind the body: such a hand (no keypoint flagged visible, no mask pixel) would be
    # a crop of nothing. Image 0: the right hand is off-screen; image 1: the right hand has no
    # visible keypoint but mask pixels (seen), so it stays.
    records = make_records(n_train=2, n_test=0)
    off = records[1]
    off.keypoints_2d = off.keypoints_2d + np.float32([W, 0])
    off.visibility = np.ones(21, np.uint8)
    off.mask = rle.encode(np.zeros((H, W), np.uint8))
    off.bbox = bbox_from_keypoints(off.keypoints_2d, off.visibility, W, H)
    records[3].visibility = np.ones(21, np.uint8)
    records[3].bbox = bbox_from_keypoints(records[3].keypoints_2d, records[3].visibility, W, H)
    rhd.write(records, tmp_path)
    got = read_all(tmp_path)
    assert [s.sample_id for s in got] == ["rhd/train/00000/left", "rhd/train/00001/left", "rhd/train/00001/right"]
    assert_records_equal([records[0], records[2], records[3]], got)
    masks = tmp_path / "training" / "mask"
    for path in masks.iterdir():
        path.unlink()
    masks.rmdir()
    # without masks only the visibility flags tell: image 1's right hand has none visible
    assert [s.sample_id for s in read_all(tmp_path)] == ["rhd/train/00000/left", "rhd/train/00001/left"]


def test_cli_summary_counts_a_skipped_image_as_an_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An RHD image holds two hands: the summary must not put its one skipped image in the hands
    column, as if one hand had been dropped."""
    from hiu_cli.main import main

    rhd.write(make_records(n_train=3, n_test=0), tmp_path / "raw")
    (tmp_path / "raw" / "training" / "color" / "00001.png").write_bytes(b"not a png")
    assert main(["convert", "rhd", str(tmp_path / "raw"), str(tmp_path / "out"), "--on-error", "skip"]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert any("train" in line and " 4 " in line for line in lines)  # the hands of the two good images
    assert not any("skipped" in line and "│" in line for line in lines)  # no table row in the hands column
    assert "skipped 1 image (its hands are not counted above)" in lines
    assert main(["info", str(tmp_path / "out" / "rhd")]) == 0
    assert "4 hands on 2 images" in (out := capsys.readouterr().out) and "skipped 1 image)" in out
