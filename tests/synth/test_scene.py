"""Generated scenes: exact labels, depth-buffer visibility, masks, MANO consistency, determinism."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from hiu_data.io import images as image_io
from hiu_data.io import rle
from hiu_data.skeleton import NUM_JOINTS
from hiu_data.synth import camera
from hiu_data.synth.generate import generate_scenes, split_plan
from hiu_data.synth.profiles import profile_for
from hiu_data.synth.scene import VISIBILITY_TOLERANCE_M, _visibility


def _records(scenes: list) -> list:
    return [r for _, _, records in scenes for r in records]


def test_every_record_has_complete_consistent_labels(scenes: list) -> None:
    records = _records(scenes)
    assert len(records) >= 16
    for r in records:
        assert (r.width, r.height) == (128, 128)
        assert r.keypoints_2d.shape == (NUM_JOINTS, 2) and np.isfinite(r.keypoints_3d).all()
        assert set(np.unique(r.visibility)) <= {1, 2}
        assert (r.keypoints_3d[:, 2] > 0).all()
        uv = camera.project(r.keypoints_3d.astype(np.float64), r.camera_K.astype(np.float64))
        assert np.abs(uv - r.keypoints_2d).max() < 1e-3  # exact projection (float32 storage)
        assert r.mano_pose.shape == (48,) and r.mano_betas.shape == (10,)
        x, y, w, h = r.bbox
        assert x >= 0 and y >= 0 and x + w <= r.width + 1e-3 and y + h <= r.height + 1e-3 and w > 0 and h > 0
        mask = rle.decode(r.mask)
        assert mask.shape == (r.height, r.width)
        assert r.extras["hand_model"] and 0.0 <= r.extras["visible_fraction"] <= 1.0
    assert {r.hand_side for r in records} == {"left", "right"}
    assert {r.split for r in records} == {"train", "test"}


def test_images_decode_and_hands_of_one_image_share_it(scenes: list) -> None:
    for index, data, records in scenes:
        image = image_io.decode(data)
        assert image.shape == (128, 128, 3)
        assert len({r.image_id for r in records}) == 1 and all(r.image_bytes is data for r in records)
        assert len({r.sample_id for r in records}) == len(records)


def test_visible_joints_lie_on_their_own_mask(scenes: list) -> None:
    hits = total = 0
    for r in _records(scenes):
        mask = rle.decode(r.mask).astype(bool)
        for j in np.nonzero(r.visibility == 2)[0]:
            col, row = int(r.keypoints_2d[j, 0]), int(r.keypoints_2d[j, 1])
            total += 1
            hits += bool(mask[max(row - 2, 0):row + 3, max(col - 2, 0):col + 3].any())
    assert total > 100 and hits / total > 0.95


def test_mano_parameters_reproduce_the_3d_keypoints(scenes: list) -> None:
    import torch

    from hiu_model.mano import HandModel

    for side in ("right", "left"):
        records = [r for r in _records(scenes) if r.hand_side == side]
        model = HandModel(side=side)
        out = model(torch.as_tensor(np.stack([r.mano_pose for r in records])),
                    torch.as_tensor(np.stack([r.mano_betas for r in records])),
                    torch.as_tensor(np.stack([r.extras["mano_transl"] for r in records]), dtype=torch.float32))
        assert np.abs(out.joints.numpy() - np.stack([r.keypoints_3d for r in records])).max() < 1e-5
        assert all(r.extras["hand_model"] == model.name for r in records)


def test_visibility_rule_uses_depth_occluders_and_image_bounds() -> None:
    K = camera.intrinsics(100.0, 16.0, 16.0)
    joints = np.tile(np.array([[0.0, 0.0, 0.5]]), (NUM_JOINTS, 1))
    joints[1] = [0.5, 0.0, 0.5]  # projects far outside the 32 x 32 image
    depth = np.full((32, 32), np.inf)
    free = np.zeros((32, 32), bool)
    uv, vis = _visibility(joints, K, depth, free)
    assert np.allclose(uv[0], [16.0, 16.0]) and vis[0] == 2 and vis[1] == 1
    depth[10:23, 10:23] = 0.5 - VISIBILITY_TOLERANCE_M[0] - 0.01  # a surface well in front
    assert _visibility(joints, K, depth, free)[1][0] == 1
    depth[10:23, 10:23] = 0.5 - 0.5 * VISIBILITY_TOLERANCE_M[0]  # the hand's own skin over the joint
    assert _visibility(joints, K, depth, free)[1][0] == 2
    covered = free.copy()
    covered[12:21, 12:21] = True  # an occluder
    assert _visibility(joints, K, depth, covered)[1][0] == 1


def test_place_hand_hits_the_requested_box() -> None:
    rng = np.random.default_rng(0)
    K = camera.sample_intrinsics(rng, 200, 150)
    cloud = rng.normal(0, 0.04, (300, 3))
    t = camera.place_hand(cloud, K, (120.0, 60.0), 80.0)
    uv = camera.project(cloud + t, K)
    lo, hi = uv.min(0), uv.max(0)
    assert np.allclose(0.5 * (lo + hi), [120.0, 60.0], atol=0.5)
    assert abs(max(hi - lo) - 80.0) < 1.0
    assert ((cloud + t)[:, 2] >= camera.MIN_DEPTH_M - 1e-9).all()


def test_split_plan_spreads_the_held_out_share() -> None:
    plan = split_plan(100, profile_for("parquet"), 0.1)
    assert plan.count("test") == 10 and plan[9] == "test" and plan[0] == "train"
    assert split_plan(5, profile_for("dexter"), 0.1) == ["test"] * 5
    assert split_plan(4, profile_for("parquet", wild=True), 0.0) == ["unlabeled"] * 4


def _digest(scenes: list) -> list[str]:
    return [hashlib.sha1(data).hexdigest() for _, data, _ in scenes]


def test_same_seed_same_bytes_whatever_the_workers_or_the_start(scenes: list) -> None:
    again = list(generate_scenes(16, seed=3, profile="parquet", size=128, test_fraction=0.25))
    assert _digest(again) == _digest(scenes)
    tail = list(generate_scenes(4, seed=3, profile="parquet", size=128, test_fraction=0.25, start=12))
    assert _digest(tail) == _digest(scenes)[12:]
    other = list(generate_scenes(2, seed=4, profile="parquet", size=128))
    assert _digest(other)[0] != _digest(scenes)[0]


def test_two_workers_give_the_same_files() -> None:
    one = list(generate_scenes(20, seed=5, profile="parquet", size=64, workers=1))
    two = list(generate_scenes(20, seed=5, profile="parquet", size=64, workers=2))
    assert _digest(one) == _digest(two)
    assert [r.sample_id for _, _, rs in one for r in rs] == [r.sample_id for _, _, rs in two for r in rs]


@pytest.mark.parametrize("bad", [{"n": -1}, {"n": 2, "workers": 0}, {"n": 2, "test_fraction": 1.5}])
def test_bad_arguments_are_one_line_errors(bad: dict) -> None:
    from hiu_data.errors import HiuError

    with pytest.raises(HiuError):
        list(generate_scenes(seed=0, **bad))


def test_outputs_of_one_seed_get_different_scenes() -> None:
    stb = list(generate_scenes(1, seed=0, profile="stb"))[0][2][0]
    dexter = list(generate_scenes(1, seed=0, profile="dexter"))[0][2][0]
    assert not np.allclose(stb.keypoints_3d, dexter.keypoints_3d)
