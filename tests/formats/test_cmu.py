"""CMU HandDB: writer -> reader round trips, the _l/_r pairing, hand143, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hiu_data.convert import convert
from hiu_data.errors import CorruptImageError, DatasetFormatError
from hiu_data.formats import Skipped, cmu
from hiu_data.formats._common import bbox_from_keypoints, visibility_in_image
from hiu_data.io.parquet import HandDataset
from hiu_data.schema import HandSample
from hiu_data.skeleton import JOINT_INDEX, NUM_JOINTS
from tests.formats.hands import noise_image, random_hand


def cmu_records(n: int, seed: int = 0) -> list[HandSample]:
    """CMU-kind records: manual (two hands per image), synth and hand143 subsets."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        subset = ("manual_train", "manual_test", "synth2", cmu.PANOPTIC_SUBSET)[i % 4]
        split = cmu.SUBSET_SPLIT[subset]
        w, h = (96, 64) if i % 2 else (80, 80)
        image = noise_image(rng, w, h)
        sides = ("left", "right") if subset.startswith("manual") else ("right",)
        for side in sides:
            kp3, K = random_hand(rng, (w, h), side=side, fill=0.9)
            kp = (kp3 @ K.T)[:, :2] / (kp3 @ K.T)[:, 2:]
            kp[rng.uniform(size=NUM_JOINTS) < 0.2] = np.nan
            vis = visibility_in_image(kp, w, h)
            stem = f"{i:09d}_01"
            extras = None
            if subset == cmu.PANOPTIC_SUBSET:
                sid, image_id, stem = f"cmu/train/{subset}/{i:08d}", f"cmu/{subset}/{i:08d}", f"{i:08d}"
                extras = {"hand_side_known": False, "objpos": [float(w / 2), float(h / 2)]}
            else:
                sid, image_id = f"cmu/{split}/{subset}/{stem}_{side[0]}", f"cmu/{subset}/{stem}"
                if i % 3 == 0:
                    extras = {"head_size": float(rng.uniform(50, 150))}
            out.append(HandSample(
                sample_id=sid, dataset="cmu", split=split, subset=subset, image_id=image_id,
                image_bytes=image, width=w, height=h, hand_side=side, keypoints_2d=kp.astype(np.float32),
                visibility=vis, bbox=bbox_from_keypoints(kp, vis, w, h), extras=extras,
            ))
    return out


def _read_all(root: Path, **kwargs) -> list:
    return list(cmu.read(root, **kwargs))


def _by_id(records: list[HandSample]) -> dict[str, HandSample]:
    return {r.sample_id: r for r in records}


def test_round_trip_all_subsets(tmp_path: Path) -> None:
    records = cmu_records(8)
    cmu.write(records, tmp_path)
    assert (tmp_path / "hand_labels" / "manual_train").is_dir()
    assert (tmp_path / "hand143_panopticdb" / cmu.PANOPTIC_JSON).is_file()
    back = _by_id(_read_all(tmp_path))
    assert set(back) == {r.sample_id for r in records}
    for r in records:
        assert r.differences(back[r.sample_id], atol=1e-4) == [], r.sample_id


def test_pairs_share_image_id_and_sides_follow_is_left(tmp_path: Path) -> None:
    records = cmu_records(1)
    cmu.write(records, tmp_path)
    folder = tmp_path / "hand_labels" / "manual_train"
    left = json.loads((folder / "000000000_01_l.json").read_text())
    assert left["is_left"] == 1
    back = _read_all(tmp_path)
    assert {r.hand_side for r in back} == {"left", "right"}
    assert len({r.image_id for r in back}) == 1
    # joint order: raw row 8 is the index tip (OpenPose order == HAND21)
    tip = np.asarray(left["hand_pts"][JOINT_INDEX["index_tip"]][:2])
    rec = next(r for r in back if r.hand_side == "left")
    if np.isfinite(rec.keypoints_2d[JOINT_INDEX["index_tip"]]).all():
        np.testing.assert_allclose(rec.keypoints_2d[JOINT_INDEX["index_tip"]], tip, atol=1e-4)


def test_splits_and_reference_mode(tmp_path: Path) -> None:
    cmu.write(cmu_records(8), tmp_path)
    test_only = _read_all(tmp_path, splits=["test"])
    assert test_only and {r.split for r in test_only} == {"test"}
    ref = _read_all(tmp_path / "hand_labels", images="reference")
    assert all(r.image_bytes is None and (tmp_path / "hand_labels" / r.image_path).is_file() for r in ref)


def test_unlabelled_points_are_nan_with_visibility_zero(tmp_path: Path) -> None:
    folder = tmp_path / "hand_labels" / "manual_test"
    folder.mkdir(parents=True)
    (folder / "a_r.jpg").write_bytes(noise_image(np.random.default_rng(0), 40, 30))
    pts = [[10.0, 12.0, 1.0]] * NUM_JOINTS
    pts[3] = [0.0, 0.0, 0.0]
    pts[4] = [100.0, 12.0, 1.0]  # labelled, outside the 40 px wide image
    (folder / "a_r.json").write_text(json.dumps({"hand_pts": pts, "is_left": 0, "head_size": 70.5}))
    (sample,) = _read_all(tmp_path)
    assert np.isnan(sample.keypoints_2d[3]).all() and sample.visibility[3] == 0
    assert sample.visibility[4] == 1 and sample.visibility[0] == 2
    assert sample.extras == {"head_size": 70.5} and sample.hand_side == "right"
    assert sample.image_id == "cmu/manual_test/a"


def _one_hand_tree(tmp_path: Path) -> Path:
    cmu.write(cmu_records(1), tmp_path)
    return tmp_path / "hand_labels" / "manual_train"


@pytest.mark.parametrize("kind", ["malformed", "truncated", "shape", "nan", "no_is_left"])
def test_bad_json_names_file_and_sample(tmp_path: Path, kind: str) -> None:
    folder = _one_hand_tree(tmp_path)
    path = folder / "000000000_01_l.json"
    data = json.loads(path.read_text())
    text = {
        "malformed": "{hand_pts: oops}",
        "truncated": path.read_text()[:40],
        "shape": json.dumps({**data, "hand_pts": data["hand_pts"][:20]}),
        "nan": json.dumps({**data, "hand_pts": [[float("nan"), 1.0, 1.0]] * NUM_JOINTS}),
        "no_is_left": json.dumps({"hand_pts": data["hand_pts"]}),
    }[kind]
    path.write_text(text)
    with pytest.raises(DatasetFormatError) as err:
        _read_all(tmp_path)
    assert str(path) in str(err.value) and "000000000_01_l" in str(err.value)
    items = _read_all(tmp_path, on_error="skip")
    assert sum(isinstance(i, Skipped) for i in items) == 1 and len(items) == 2


def test_missing_and_corrupt_images(tmp_path: Path) -> None:
    folder = _one_hand_tree(tmp_path)
    (folder / "000000000_01_l.jpg").unlink()
    with pytest.raises(CorruptImageError, match="000000000_01_l.jpg"):
        _read_all(tmp_path)
    jpg = folder / "000000000_01_r.jpg"
    jpg.write_bytes(jpg.read_bytes()[:200])
    items = _read_all(tmp_path, on_error="skip")
    assert [type(i) for i in items] == [Skipped, Skipped]


def test_missing_root_and_no_partial_output(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetFormatError, match="no CMU HandDB folder"):
        _read_all(tmp_path / "empty")
    folder = _one_hand_tree(tmp_path / "raw")
    (folder / "000000000_01_r.json").write_text("{")
    with pytest.raises(DatasetFormatError):
        convert("cmu", tmp_path / "raw", tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing partial, not even the folder it made
    result = convert("cmu", tmp_path / "raw", tmp_path / "out", on_error="skip")
    assert result.skipped == 1 and result.counts == {"train": 1}
    assert len(HandDataset(result.path)) == 1


def test_hand143_placeholder_side_and_bad_size(tmp_path: Path) -> None:
    records = [r for r in cmu_records(4) if r.subset == cmu.PANOPTIC_SUBSET]
    cmu.write(records, tmp_path)
    (sample,) = _read_all(tmp_path / cmu.PANOPTIC_SUBSET)
    assert sample.hand_side == "right" and sample.extras["hand_side_known"] is False
    path = tmp_path / cmu.PANOPTIC_SUBSET / cmu.PANOPTIC_JSON
    data = json.loads(path.read_text())
    data["root"][0]["img_width"] = 1920
    path.write_text(json.dumps(data))
    with pytest.raises(DatasetFormatError, match="img_width"):
        _read_all(tmp_path)
    data["root"][0]["img_width"] = "wide"
    path.write_text(json.dumps(data))
    with pytest.raises(DatasetFormatError, match="img_width 'wide' disagrees with the image"):
        _read_all(tmp_path)
    data["root"][0]["img_paths"] = None
    path.write_text(json.dumps(data))
    with pytest.raises(DatasetFormatError, match="img_paths must be a relative image path, not None"):
        _read_all(tmp_path)


def test_writer_accepts_foreign_records(tmp_path: Path) -> None:
    foreign = [HandSample(**{**r.__dict__, "sample_id": f"synth/train/{k}", "image_id": f"synth/{k}", "subset": None,
                             "dataset": "synth", "extras": None})
               for k, r in enumerate(cmu_records(2)[:2])]
    foreign[1].image_bytes = noise_image(np.random.default_rng(1), foreign[1].width, foreign[1].height, ".png")
    cmu.write(foreign, tmp_path)
    back = _read_all(tmp_path)
    assert len(back) == 2 and all(b.image_bytes[:2] == b"\xff\xd8" for b in back)
    for f in foreign:
        match = next(b for b in back if b.image_id.endswith(f.image_id.replace("/", "_")) and b.hand_side == f.hand_side)
        np.testing.assert_allclose(match.keypoints_2d, f.keypoints_2d, atol=1e-4)


def test_workers_give_the_same_rows_in_order(tmp_path: Path) -> None:
    cmu.write(cmu_records(8), tmp_path)
    one, two = _read_all(tmp_path), _read_all(tmp_path, workers=2)
    assert [a.sample_id for a in one] == [b.sample_id for b in two]
    assert all(a.equals(b) for a, b in zip(one, two))


def test_raw_root_above_or_inside_the_downloads(tmp_path: Path) -> None:
    records = cmu_records(8)
    cmu.write(records, tmp_path / "CMU")
    got = _read_all(tmp_path, images="reference")
    assert len(got) == len(records) and all(s.image_path.startswith("CMU/") for s in got)
    assert (tmp_path / got[0].image_path).is_file()
    with pytest.raises(DatasetFormatError, match=r"manual_train: a folder inside the CMU HandDB dataset; give .*hand_labels as"):
        _read_all(tmp_path / "CMU" / "hand_labels" / "manual_train")
