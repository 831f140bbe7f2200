"""Crops, augmentation and mirroring keep every label consistent; items are well formed."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from hiu_data.io import images, rle
from hiu_data.schema import HandSample
from hiu_data.skeleton import NUM_BONES, NUM_JOINTS
from hiu_model.crop import EraseParams, PhotometricParams, decode_for_crop, denormalise, sample_erase
from hiu_model.data import AugmentParams, DataOptions, HandCropDataset, crop_for, make_example, sample_augment
from tests.targets.handmade import make_hand, write_hands

SMALL = DataOptions(input_size=96, heatmap_size=24, mask_size=24)
GEOMETRIES = [
    AugmentParams(),
    AugmentParams(scale=0.8, rotation_deg=25.0, shift=(0.05, -0.03)),
    AugmentParams(scale=1.25, rotation_deg=-40.0, shift=(-0.07, 0.08)),
    AugmentParams(scale=1.1, rotation_deg=170.0),
]


def _example(sample: HandSample, params: AugmentParams = AugmentParams(), options: DataOptions = SMALL) -> dict:
    return make_example(sample, sample.image_bytes, options, params)


def _project(points: np.ndarray, K: np.ndarray) -> np.ndarray:
    uvw = points.astype(np.float64) @ K.astype(np.float64).T
    return uvw[:, :2] / uvw[:, 2:]


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("params", GEOMETRIES, ids=["plain", "zoom-in-rot", "zoom-out-rot", "rot170"])
def test_augmented_3d_projects_onto_augmented_2d(side: str, params: AugmentParams) -> None:
    sample = make_hand(11, side)
    ex = _example(sample, params)
    assert ex["mirrored"] == (side == "left")
    projected = _project(ex["keypoints_3d"] + ex["root_3d"], ex["camera_K"])
    assert np.abs(projected - ex["keypoints_2d"]).max() < 0.5 * 1e-2
    K = ex["camera_K"]
    assert K[0, 0] > 0 and K[1, 1] > 0 and np.allclose(K[2], [0, 0, 1])
    # Rotation about the optical axis and the flip keep bone lengths and depths.
    np.testing.assert_allclose(np.linalg.norm(ex["keypoints_3d"], axis=1),
                               np.linalg.norm(sample.keypoints_3d - sample.keypoints_3d[0], axis=1), atol=1e-6)
    assert ex["root_3d"][2] == pytest.approx(sample.keypoints_3d[0, 2], abs=1e-6)


@pytest.mark.parametrize("params", GEOMETRIES[:2], ids=["plain", "augmented"])
def test_mirrored_left_hand_maps_back_to_the_original(params: AugmentParams) -> None:
    sample = make_hand(12, "left")
    ex = _example(sample, params)
    t = crop_for(sample, SMALL, params)
    assert t.mirrored
    np.testing.assert_allclose(t.points_to_image(ex["keypoints_2d"]), sample.keypoints_2d, atol=1e-3)
    np.testing.assert_allclose(t.unrotate_3d(ex["keypoints_3d"] + ex["root_3d"]), sample.keypoints_3d, atol=1e-6)
    np.testing.assert_allclose(t.intrinsics_to_image(ex["camera_K"]), sample.camera_K, rtol=1e-5, atol=1e-3)
    back = t.pose_to_image(ex["mano_pose"])
    np.testing.assert_allclose(back[3:], sample.mano_pose[3:], atol=1e-6)
    np.testing.assert_allclose(cv2.Rodrigues(back[:3].astype(np.float64))[0],
                               cv2.Rodrigues(sample.mano_pose[:3].astype(np.float64))[0], atol=1e-5)
    # The hand pose (not the global orientation) of a mirrored hand is the y/z-negated one.
    np.testing.assert_allclose(ex["mano_pose"][3:].reshape(-1, 3)[:, 0], sample.mano_pose[3:].reshape(-1, 3)[:, 0])
    np.testing.assert_allclose(ex["mano_pose"][3:].reshape(-1, 3)[:, 1:], -sample.mano_pose[3:].reshape(-1, 3)[:, 1:])


def test_mirroring_flips_image_mask_and_targets() -> None:
    left = make_hand(13, "left", jpeg=False)
    right = HandSample(**{**left.__dict__, "hand_side": "right"})
    a, b = _example(left), _example(right)
    assert a["mirrored"] and not b["mirrored"]
    assert np.abs(a["image"] - b["image"][:, :, ::-1]).max() < 0.05
    assert (a["mask"] != b["mask"][:, ::-1]).mean() < 0.01
    np.testing.assert_allclose(a["heatmaps"], b["heatmaps"][:, :, ::-1], atol=1e-5)
    pa = a["pof"].reshape(NUM_BONES, 3, 24, 24)
    pb = b["pof"].reshape(NUM_BONES, 3, 24, 24)[..., ::-1]
    np.testing.assert_allclose(pa[:, 0], -pb[:, 0], atol=1e-5)
    np.testing.assert_allclose(pa[:, 1:], pb[:, 1:], atol=1e-5)


def _check_alignment(sample: HandSample, params: AugmentParams, options: DataOptions, min_iou: float) -> None:
    """The hand's pixels in the crop, the mask target and the 2D keypoints coincide."""
    S = options.input_size
    ex = _example(sample, params, options)
    crop = denormalise(ex["image"], options.mean, options.std).astype(np.int32)
    full = images.decode(sample.image_bytes).astype(np.int32)
    skin = np.median(full[rle.decode(sample.mask) > 0], axis=0)
    is_skin = (np.abs(crop - skin) < 25).all(axis=-1)
    mask = ex["mask"] > 0

    def iou(shift: tuple[int, int]) -> float:
        moved = np.roll(mask, shift, axis=(0, 1))
        return (is_skin & moved).sum() / (is_skin | moved).sum()

    assert iou((0, 0)) > min_iou
    # A one-pixel misalignment of mask and image would fit better than the real one.
    assert all(iou((dy, dx)) < iou((0, 0)) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx)
    inside = (ex["keypoints_2d"] >= 0).all(1) & (ex["keypoints_2d"] < S).all(1)
    cols, rows = np.floor(ex["keypoints_2d"][inside]).astype(int).T
    assert mask[rows, cols].mean() > 0.9


@pytest.mark.parametrize("params", GEOMETRIES[:3], ids=["plain", "zoom-in-rot", "zoom-out-rot"])
def test_image_mask_and_keypoints_stay_aligned(params: AugmentParams) -> None:
    options = DataOptions(input_size=128, heatmap_size=32, mask_size=128)
    _check_alignment(make_hand(14, "left", jpeg=False), params, options, 0.9)


@pytest.mark.parametrize("jpeg", [True, False], ids=["jpeg-reduced-decode", "png-area-resize"])
def test_large_images_are_decoded_reduced_and_stay_aligned(jpeg: bool) -> None:
    options = DataOptions(input_size=96, heatmap_size=24, mask_size=96)
    sample = make_hand(21, "right", size=(1280, 960), jpeg=jpeg)
    side = max(sample.bbox[2:]) * (1 + 2 * options.margin)
    _, scale = decode_for_crop(sample.image_bytes, side, options.input_size)
    assert scale[0] <= 0.25  # the hand spans hundreds of pixels: a 1/4 (or smaller) decode
    _check_alignment(sample, AugmentParams(rotation_deg=20.0), options, 0.85)


def test_photometric_augmentation_changes_only_the_image() -> None:
    sample = make_hand(15)
    plain = _example(sample)
    jitter = _example(sample, AugmentParams(photometric=PhotometricParams(1.2, 0.8, 0.7, 5.0, 1.0)))
    assert np.abs(plain["image"] - jitter["image"]).mean() > 0.05
    for key in ("keypoints_2d", "heatmaps", "pof", "mask", "camera_K", "keypoints_3d"):
        np.testing.assert_array_equal(plain[key], jitter[key])


def test_random_erasing_paints_the_box_cuts_the_mask_and_marks_its_joints_occluded() -> None:
    options = DataOptions(input_size=96, heatmap_size=24, mask_size=48, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    sample = make_hand(15)
    plain = _example(sample, options=options)
    # A box over the middle of the crop, where the hand is: joints and mask pixels lie under it.
    erased = _example(sample, AugmentParams(erase=EraseParams((0.25, 0.375, 0.75, 0.625), (10, 200, 30))), options)
    image = denormalise(erased["image"], options.mean, options.std)
    assert (image[36:60, 24:72] == (10, 200, 30)).all()  # rows 0.375-0.625, columns 0.25-0.75 of 96
    outside = np.ones((96, 96), bool)
    outside[36:60, 24:72] = False
    np.testing.assert_array_equal(image[outside], denormalise(plain["image"], options.mean, options.std)[outside])
    assert plain["mask"][18:30, 12:36].sum() > 0 and (erased["mask"][18:30, 12:36] == 0).all()
    kept = np.ones((48, 48), bool)
    kept[18:30, 12:36] = False
    np.testing.assert_array_equal(erased["mask"][kept], plain["mask"][kept])
    x, y = plain["keypoints_2d"].T
    under = (x >= 24) & (x < 72) & (y >= 36) & (y < 60)
    assert under.any() and (~under).any()
    np.testing.assert_array_equal(erased["visibility"][under], np.minimum(plain["visibility"][under], 1.0))
    np.testing.assert_array_equal(erased["visibility"][~under], plain["visibility"][~under])
    for key in ("keypoints_2d", "heatmaps", "heatmap_weights", "pof", "keypoints_3d"):  # still labelled
        np.testing.assert_array_equal(plain[key], erased[key])


def test_random_erasing_draws_boxes_in_range_and_leaves_the_other_draws_alone() -> None:
    rng = np.random.default_rng(3)
    boxes = [sample_erase(rng, 1.0, (0.02, 0.15)) for _ in range(500)]
    for params in boxes:
        x0, y0, x1, y1 = params.box
        assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
        assert 0.02 - 1e-9 <= (x1 - x0) * (y1 - y0) <= 0.15 + 1e-9
        assert 1 / 3 - 1e-9 <= (x1 - x0) / (y1 - y0) <= 3 + 1e-9
    assert len({p.colour for p in boxes}) > 400
    assert sum(sample_erase(rng, 0.3, (0.02, 0.15)) is not None for _ in range(2000)) == pytest.approx(600, abs=80)
    # Whether or not a box was drawn, the generator moves on alike.
    a, b = np.random.default_rng(4), np.random.default_rng(4)
    assert sample_erase(a, 0.0, (0.02, 0.15)) is None and sample_erase(b, 1.0, (0.02, 0.15)) is not None
    assert a.random() == b.random()
    # Without erasing, the geometric and colour draws are those of a run from before it existed.
    with_erase = sample_augment(np.random.default_rng(5), DataOptions(erase_prob=1.0))
    without = sample_augment(np.random.default_rng(5), DataOptions())
    assert without.erase is None and with_erase.erase is not None
    assert (with_erase.scale, with_erase.rotation_deg, with_erase.shift, with_erase.photometric) == (
        without.scale, without.rotation_deg, without.shift, without.photometric)


def test_label_availability_flags_and_no_nans() -> None:
    full = _example(make_hand(16, labels="full"))
    two_d = _example(make_hand(17, labels="2d"))
    unlabeled = _example(make_hand(18, labels="none", split="unlabeled"))
    assert [full[k] for k in ("has_2d", "has_3d", "has_mask", "has_mano", "has_camera")] == [1, 1, 1, 1, 1]
    assert [two_d[k] for k in ("has_2d", "has_3d", "has_mask", "has_mano", "has_camera")] == [1, 0, 1, 0, 0]
    assert [unlabeled[k] for k in ("has_2d", "has_3d", "has_mask", "has_mano", "has_camera")] == [0, 0, 0, 0, 0]
    assert not two_d["pof_weights"][2::3].any() and two_d["pof_weights"][0::3].all()
    assert not unlabeled["heatmap_weights"].any() and not unlabeled["heatmaps"].any()
    for ex in (full, two_d, unlabeled):
        for key, value in ex.items():
            if isinstance(value, np.ndarray):
                assert np.isfinite(value).all(), key
    missing = make_hand(19)
    missing.keypoints_2d[3] = np.nan
    missing.visibility[3] = 0
    ex = _example(missing)
    assert ex["heatmap_weights"][3] == 0 and ex["visibility"][3] == 0 and np.isfinite(ex["keypoints_2d"]).all()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_hands(tmp_path_factory.mktemp("hands"), 6, seed=3)


def test_dataset_items_are_tensors_with_the_contract_shapes(folder: Path) -> None:
    ds = HandCropDataset(folder, options=SMALL, train=True, seed=0)
    item = ds[1]
    S, h = SMALL.input_size, SMALL.heatmap_size
    shapes = {"image": (3, S, S), "keypoints_2d": (NUM_JOINTS, 2), "visibility": (NUM_JOINTS,),
              "heatmaps": (NUM_JOINTS, h, h), "heatmap_weights": (NUM_JOINTS,), "pof": (3 * NUM_BONES, h, h),
              "pof_weights": (3 * NUM_BONES,), "mask": (h, h), "keypoints_3d": (NUM_JOINTS, 3), "root_3d": (3,),
              "camera_K": (3, 3), "mano_pose": (48,), "mano_betas": (10,), "has_2d": (), "mirrored": (), "index": ()}
    for key, shape in shapes.items():
        assert tuple(item[key].shape) == shape, key
    assert item["image"].dtype == torch.float32 and item["mirrored"].dtype == torch.bool and item["index"] == 1
    assert item["mirrored"]  # odd rows are left hands
    # Keyed augmentation: the same index and epoch give the same draw, another epoch another.
    assert torch.equal(ds[1]["image"], item["image"])
    assert torch.equal(ds[(1, 99)]["image"], ds[(1, 99)]["image"])
    ds.set_epoch(1)
    assert not torch.equal(ds[1]["image"], item["image"])
    evaluation = HandCropDataset(folder, options=SMALL, train=False)
    np.testing.assert_array_equal(evaluation[1]["keypoints_2d"].numpy(), _example(evaluation.sample(1))["keypoints_2d"])
