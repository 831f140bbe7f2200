"""FreiHAND: writer -> reader round trips, joint order, units, versions, splits, bad input."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from hiu_data.convert import convert
from hiu_data.errors import CorruptImageError, DatasetFormatError, HiuError
from hiu_data.formats import Skipped, freihand
from hiu_data.formats._common import bbox_from_keypoints, project, visibility_in_image
from hiu_data.io.parquet import HandDataset
from hiu_data.schema import HandSample
from hiu_data.skeleton import JOINT_INDEX, NUM_JOINTS
from tests.formats.hands import assert_records_equal, blob_mask, noise_image, random_hand

W, H = freihand.IMAGE_SIZE


def make_records(n: int, versions=("gs", "hom", "sample", "auto"), n_eval: int = 2, seed: int = 0,
                 eval_labels: bool = True) -> list[HandSample]:
    """Records as the reader produces them: n annotations x versions, plus n_eval evaluation rows."""
    rng = np.random.default_rng(seed)
    out = []
    for split, count, vs in (("train", n, versions), ("test", n_eval, ("gs",))):
        labels = []
        for idx in range(count):
            xyz, K = random_hand(rng, (W, H))
            xyz, K = xyz.astype(np.float32), K.astype(np.float32)
            kp2d = project(xyz.astype(np.float64), K.astype(np.float64)).astype(np.float32)
            vis = visibility_in_image(kp2d, W, H)
            pose, betas = rng.normal(size=48).astype(np.float32), rng.normal(size=10).astype(np.float32)
            extras = {"annotation_index": idx, "mano_uv_root": [float(x) for x in rng.uniform(0, W, 2)],
                      "mano_scale": float(rng.uniform(2, 5))}
            labels.append((xyz, K, kp2d, vis, pose, betas, extras,
                           blob_mask(rng, kp2d, W, H) if split == "train" else None))
        for v in vs:
            for idx, (xyz, K, kp2d, vis, pose, betas, extras, mask) in enumerate(labels):
                fid = idx + count * freihand.VERSIONS.index(v)
                sid = f"freihand/{split}/{fid:08d}"
                with_labels = split == "train" or eval_labels
                out.append(HandSample(
                    sample_id=sid, dataset="freihand", split=split, subset=v, image_id=sid,
                    image_bytes=noise_image(rng, W, H, ".jpg"), width=W, height=H, hand_side="right",
                    bbox=bbox_from_keypoints(kp2d, vis, W, H) if with_labels else np.array([0, 0, W, H]),
                    keypoints_2d=kp2d if with_labels else None, visibility=vis if with_labels else np.zeros(NUM_JOINTS),
                    keypoints_3d=xyz if with_labels else None, camera_K=K,
                    mano_pose=pose if with_labels else None, mano_betas=betas if with_labels else None,
                    mask=mask, extras=dict(extras) if with_labels else {"annotation_index": idx}))
    return out


def read_all(root: Path, **kwargs) -> list[HandSample]:
    items = list(freihand.read(root, **kwargs))
    assert not any(isinstance(i, Skipped) for i in items)
    return items


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> tuple[Path, list[HandSample]]:
    records = make_records(3)
    root = tmp_path_factory.mktemp("freihand")
    freihand.write(records, root)
    return root, records


def test_round_trip_train_and_evaluation(tree) -> None:
    root, records = tree
    got = read_all(root)
    assert_records_equal(records, got)
    assert (root / "training" / "rgb" / "00000011.jpg").is_file()  # 3 annotations x 4 versions
    assert len(list((root / "training" / "mask").iterdir())) == 3


def test_images_are_the_original_bytes_and_reference_mode(tree) -> None:
    root, records = tree
    got = read_all(root, images="reference", splits=["train"])
    assert got[5].image_bytes is None and got[5].image_path == "training/rgb/00000005.jpg"
    assert (root / got[5].image_path).read_bytes() == records[5].image_bytes


def test_versions_share_annotation_and_mask(tree) -> None:
    root, _ = tree
    got = read_all(root, splits=["train"])
    assert [s.subset for s in got] == ["gs"] * 3 + ["hom"] * 3 + ["sample"] * 3 + ["auto"] * 3
    assert got[1].extras["annotation_index"] == got[4].extras["annotation_index"] == 1
    assert got[1].differences(got[7]) == ["sample_id", "image_id", "image_bytes", "subset"]  # same labels and mask
    assert {s.split for s in read_all(root)} == {"train", "test"}
    assert all(s.hand_side == "right" for s in got)


def test_named_joints_units_and_mano_layout(tmp_path: Path) -> None:
    records = make_records(1, versions=("gs",), n_eval=0)
    freihand.write(records, tmp_path)
    raw_xyz = np.array(json.loads((tmp_path / "training_xyz.json").read_text())[0])
    raw_xyz[:, 0] = np.arange(NUM_JOINTS) * 0.001  # x (m) encodes the raw joint index
    (tmp_path / "training_xyz.json").write_text(json.dumps([raw_xyz.tolist()]))
    mano = json.loads((tmp_path / "training_mano.json").read_text())
    mano[0][0] = list(range(61))
    (tmp_path / "training_mano.json").write_text(json.dumps(mano))
    s = read_all(tmp_path)[0]
    assert s.keypoints_3d[JOINT_INDEX["index_tip"], 0] == pytest.approx(0.008)  # FreiHAND is HAND21 already
    assert s.keypoints_3d[JOINT_INDEX["little_mcp"], 0] == pytest.approx(0.017)
    assert 0.2 < s.keypoints_3d[0, 2] < 3.0  # metres, not millimetres
    assert s.mano_pose[47] == 47 and s.mano_betas.tolist() == list(range(48, 58))
    assert s.extras["mano_uv_root"] == [58, 59] and s.extras["mano_scale"] == 60


def test_evaluation_without_keypoints(tmp_path: Path) -> None:
    records = [r for r in make_records(0, n_eval=2, eval_labels=False) if r.split == "test"]
    freihand.write(records, tmp_path)
    assert not (tmp_path / "evaluation_xyz.json").exists()
    got = read_all(tmp_path)
    assert_records_equal(records, got)
    assert got[0].keypoints_2d is None and got[0].bbox.tolist() == [0, 0, W, H]


def test_workers_give_the_same_records(tree) -> None:
    root, _ = tree
    assert_records_equal(read_all(root), read_all(root, workers=2))


def test_writer_computes_mano_extras_and_regroups(tmp_path: Path) -> None:
    records = make_records(2, versions=("gs",), n_eval=0)
    for r in records:
        r.extras = None
        r.mask = None
    freihand.write(records, tmp_path)
    got = read_all(tmp_path)
    s, r = got[1], records[1]
    assert s.extras["annotation_index"] == 1
    assert np.allclose(s.extras["mano_uv_root"], s.keypoints_2d[9], atol=1e-3)
    assert s.extras["mano_scale"] == pytest.approx((r.camera_K[0, 0] + r.camera_K[1, 1]) / 2 / r.keypoints_3d[9, 2], rel=1e-5)
    assert s.mask is None


def test_writer_refuses_what_freihand_cannot_hold(tmp_path: Path) -> None:
    records = make_records(2, versions=("gs", "hom"), n_eval=0)
    with pytest.raises(HiuError, match="same versions"):
        freihand.write(records[:3], tmp_path / "a")
    left = records[0]
    left.hand_side = "left"
    with pytest.raises(HiuError, match="right hands"):
        freihand.write([left], tmp_path / "b")


# --- bad input ---------------------------------------------------------------------------


def _fresh(tmp_path: Path, n: int = 2) -> Path:
    root = tmp_path / "raw"
    freihand.write(make_records(n, versions=("gs", "hom"), n_eval=1), root)
    return root


def test_missing_root_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetFormatError, match="expected training_K.json"):
        list(freihand.read(tmp_path))
    root = _fresh(tmp_path)
    (root / "training_xyz.json").unlink()
    with pytest.raises(DatasetFormatError, match="training_xyz.json.*expected the FreiHAND training keypoints"):
        list(freihand.read(root, splits=["train"]))
    import shutil

    shutil.rmtree(root / "evaluation")
    with pytest.raises(DatasetFormatError, match=r"evaluation/rgb.*missing folder"):
        list(freihand.read(root, splits=["test"]))


@pytest.mark.parametrize("content, kind", [('[[[1, 0, 112], [0, 1, 112], [0, 0', "truncated"), ("{not json]", "malformed")])
def test_truncated_and_malformed_json(tmp_path: Path, content: str, kind: str) -> None:
    root = _fresh(tmp_path)
    (root / "training_K.json").write_text(content)
    with pytest.raises(DatasetFormatError, match=f"training_K.json: {kind} JSON"):
        list(freihand.read(root, splits=["train"]))


def test_list_length_mismatch(tmp_path: Path) -> None:
    root = _fresh(tmp_path)
    xyz = json.loads((root / "training_xyz.json").read_text())
    (root / "training_xyz.json").write_text(json.dumps(xyz[:1]))
    with pytest.raises(DatasetFormatError, match="expected a list of 2 entries"):
        list(freihand.read(root, splits=["train"]))


@pytest.mark.parametrize("bad_value, problem", [(float("nan"), "NaN or inf"), ("shape", "has shape")])
def test_bad_entry_fails_or_is_skipped(tmp_path: Path, bad_value, problem: str) -> None:
    root = _fresh(tmp_path)
    xyz = json.loads((root / "training_xyz.json").read_text())
    if bad_value == "shape":
        xyz[1] = xyz[1][:20]
    else:
        xyz[1][3][2] = bad_value
    (root / "training_xyz.json").write_text(json.dumps(xyz).replace("NaN", "NaN"))
    with pytest.raises(DatasetFormatError, match=rf"training_xyz.json \(sample freihand/train/00000001\): entry 1: .*{problem}"):
        list(freihand.read(root, splits=["train"]))
    items = list(freihand.read(root, splits=["train"], on_error="skip"))
    skipped = [i.sample_id for i in items if isinstance(i, Skipped)]
    assert skipped == ["freihand/train/00000001", "freihand/train/00000003"]  # both versions of annotation 1


@pytest.mark.parametrize("damage", ["missing", "garbage", "truncated"])
def test_missing_or_corrupt_image(tmp_path: Path, damage: str) -> None:
    root = _fresh(tmp_path)
    path = root / "training" / "rgb" / "00000002.jpg"
    if damage == "missing":
        path.unlink()
    elif damage == "garbage":
        path.write_bytes(b"this is not a jpeg")
    else:
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(CorruptImageError, match=r"00000002.jpg \(sample freihand/train/00000002\)"):
        list(freihand.read(root, splits=["train"], workers=2))
    out = tmp_path / "out"
    with pytest.raises(CorruptImageError):
        convert("freihand", root, out)
    assert not out.exists()  # nothing partial, not even the folder it made
    result = convert("freihand", root, out, on_error="skip")
    assert result.skipped == 1 and result.counts == {"train": 3, "test": 1}
    manifest = HandDataset(out / "freihand").manifests[out / "freihand"]
    assert manifest["skipped"]["count"] == 1
    assert manifest["skipped"]["samples"][0]["sample_id"] == "freihand/train/00000002"


def test_corrupt_mask_is_named(tmp_path: Path) -> None:
    root = _fresh(tmp_path)
    (root / "training" / "mask" / "00000001.jpg").write_bytes(b"\xff\xd8broken")
    with pytest.raises(CorruptImageError, match=r"mask/00000001.jpg"):
        list(freihand.read(root, splits=["train"]))


def test_rerun_refuses_without_overwrite(tmp_path: Path) -> None:
    root = _fresh(tmp_path)
    convert("freihand", root, tmp_path / "out")
    with pytest.raises(HiuError, match="--overwrite"):
        convert("freihand", root, tmp_path / "out")
    result = convert("freihand", root, tmp_path / "out", overwrite=True, splits=["test"])
    assert result.counts == {"test": 1}


def test_writer_warns_only_about_masks_it_unexpectedly_drops(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    records = make_records(2, versions=("gs",), n_eval=1)
    masked_eval = [dataclasses.replace(r, mask=records[0].mask) if r.split == "test" else r for r in records]
    with caplog.at_level(logging.INFO, logger="hiu_data.formats.freihand"):
        freihand.write(masked_eval, tmp_path / "a")  # the layout has no evaluation masks: expected
    assert [r.levelno for r in caplog.records if "masks not written" in r.message] == [logging.INFO]
    caplog.clear()
    partial = [dataclasses.replace(r, mask=None) if r.sample_id.endswith("00000001") else r for r in records]
    with caplog.at_level(logging.INFO, logger="hiu_data.formats.freihand"):
        freihand.write(partial, tmp_path / "b")  # training masks lost for every record: a warning
    assert [r.levelno for r in caplog.records if "masks not written" in r.message] == [logging.WARNING]
    assert not (tmp_path / "b" / "training" / "mask").exists()


def test_evaluation_release_unpacked_beside_the_base_archive(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # FreiHAND_pub_v2.zip has evaluation/rgb and evaluation_K.json but no evaluation labels; those
    # come in FreiHAND_pub_v2_eval.zip, which unpacks to a folder of its own (rgb and K again).
    records = make_records(2, versions=("gs", "hom"), n_eval=2)
    base, release = tmp_path / "FreiHAND_pub_v2", tmp_path / "FreiHAND_pub_v2_eval"
    freihand.write(records, base)
    freihand.write([r for r in records if r.split == "test"], release)
    for name in ("evaluation_xyz.json", "evaluation_mano.json"):
        (base / name).unlink()
    assert_records_equal(records, read_all(tmp_path))
    got = read_all(tmp_path, images="reference")
    assert got[0].image_path == "FreiHAND_pub_v2/training/rgb/00000000.jpg"
    assert got[-1].image_path == "FreiHAND_pub_v2_eval/evaluation/rgb/00000001.jpg"
    with caplog.at_level("WARNING"):
        unlabelled = read_all(base, splits=["test"])
    assert unlabelled[0].keypoints_3d is None
    assert "evaluation_xyz.json" in caplog.text and "FreiHAND_pub_v2_eval" in caplog.text


def test_raw_root_inside_the_dataset_names_the_folder_to_give(tmp_path: Path) -> None:
    freihand.write(make_records(1, versions=("gs",), n_eval=0), tmp_path / "FreiHAND_pub_v2")
    with pytest.raises(DatasetFormatError, match=r"training: a folder inside the FreiHAND dataset; give .*FreiHAND_pub_v2 as"):
        list(freihand.read(tmp_path / "FreiHAND_pub_v2" / "training"))
