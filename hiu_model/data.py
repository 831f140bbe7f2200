"""Training data: hand crops with every target, from one or more converted dataset folders.

One item of :class:`HandCropDataset` is a dict of tensors (J joints, NB = J - 1 bones,
S = ``input_size``, h = ``heatmap_size``, m = ``mask_size``):

==================  =================  ======================================================
key                 shape, dtype       meaning
==================  =================  ======================================================
image               (3, S, S) f32      RGB crop, ``(x / 255 - mean) / std``
keypoints_2d        (J, 2) f32         crop pixels (continuous, centres at +0.5); 0 if missing
visibility          (J,) f32           0 / 1 / 2 (COCO), 0 if missing
heatmaps            (J, h, h) f32      :func:`hiu_data.targets.encode_heatmaps`
heatmap_weights     (J,) f32           1 labelled and near the map, else 0
pof                 (3 NB, h, h) f32   :func:`hiu_data.targets.encode_pof`
pof_weights         (3 NB,) f32        per channel; z channels 0 without 3D
mask                (m, m) f32         0 / 1 hand mask of the crop
keypoints_3d        (J, 3) f32         metres, root-relative (root = wrist), crop camera frame
root_3d             (3,) f32           metres, the wrist in the crop camera frame
camera_K            (3, 3) f32         intrinsics of the crop (K updated by crop, rotation,
                                       resize and flip); nominal when ``has_camera`` is 0
mano_pose           (48,) f32          axis-angle relative to the mean pose, right-hand frame
mano_betas          (10,) f32
has_2d, has_3d,     () f32             1 when the label kind exists for this sample
has_mask, has_mano,
has_camera
mirrored            () bool            a left hand flipped into the right-hand frame
crop_affine         (2, 3) f32         image pixels -> crop pixels (to map predictions back)
rotation_3d         (3, 3) f32         camera frame -> crop camera frame
index               () int64           item index in this dataset (rejected rows left out)
==================  =================  ======================================================

Missing labels are zeros with their ``has_*`` flag 0; no tensor holds NaN. ``has_3d`` needs all
21 joints in 3D (root-relative coordinates need the wrist). Rows without usable 2D (e.g. the
``unlabeled`` split) are cropped around their ``bbox`` and have every ``has_*`` flag 0. Rows a
reviewer rejected (``review_status == "rejected"``) are not items at all (:func:`usable_rows`).

Augmentation (``train=True``) draws scale, rotation, translation, colour jitter and blur per
item from a generator keyed by ``(seed, epoch, index)`` or by an explicit key from
:class:`hiu_model.sampling.MixedSampler`, so results do not depend on the worker that loads
the item. Mixing several datasets and the loader live in :mod:`hiu_model.sampling`; they are
re-exported here.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from hiu_data.io.parquet import HandDataset, image_bytes_of
from hiu_data.schema import HandSample
from hiu_data.skeleton import NUM_JOINTS, ROOT
from hiu_data.targets import encode_heatmaps, encode_pof, mask_target
from hiu_model.crop import (CropTransform, EraseParams, PhotometricParams, apply_photometric, box_pixels,
                            decode_for_crop, erase, make_crop_transform, normalise, sample_erase, warp_image)
from hiu_model.upright import upright_rotation

log = logging.getLogger(__name__)

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass
class DataOptions:
    """Crop, target and augmentation settings (defaults: the paper's 256 px input, 64 px maps).

    Attributes:
        input_size: side S of the square input crop, pixels.
        heatmap_size: side of the heat-map and POF targets, pixels.
        mask_size: side of the mask target, pixels.
        sigma: heat-map Gaussian sigma, heat-map pixels.
        pof_band: POF half-width, heat-map pixels.
        margin: crop side = longer box side * (1 + 2 * margin) (0.25: the box fills 2/3).
        scale_range: (lo, hi) multiplier of the crop side (log-uniform); > 1 zooms out.
        rotation_deg: in-plane rotation drawn uniformly in [-r, r] degrees.
        translation: crop centre shift drawn uniformly in [-t, t] times the crop side, per axis.
        brightness, contrast, saturation: factors drawn uniformly in [1 - v, 1 + v].
        hue_deg: hue rotation drawn uniformly in [-h, h] degrees.
        blur_prob: probability of a Gaussian blur; blur_sigma: its sigma range in crop pixels.
        erase_prob: probability of random erasing (Zhong et al. 2020): a rectangle of the crop
            painted in one random colour, as an occluder would, and cut from the mask target
            (whose hands are the visible pixels); the joints under it stay labelled, marked
            occluded. erase_area: its area range in fractions of the crop (aspect ratio
            log-uniform in 1/3-3). CHOICE (not in the paper): off by default and in ``tiny``, where
            it cost more fit than it saved in 15 minutes (bench/RESULTS.md).
        mean, std: RGB normalisation of the [0, 1] image.
        mirror_left: flip left hands into the right-hand frame.
        upright: turn each training crop so that the hand points up (wrist below the middle
            finger's knuckle, from the row's 2D labels) before the random rotation; inference
            searches for that angle (:mod:`hiu_model.upright`). CHOICE (not in the paper; as
            MediaPipe Hands turns its region of interest): off by default, on in ``tiny``.
    """

    input_size: int = 256
    heatmap_size: int = 64
    mask_size: int = 64
    sigma: float = 2.0
    pof_band: float = 1.5
    margin: float = 0.25
    scale_range: tuple[float, float] = (0.8, 1.25)
    rotation_deg: float = 30.0
    translation: float = 0.08
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.3
    hue_deg: float = 8.0
    blur_prob: float = 0.2
    blur_sigma: tuple[float, float] = (0.3, 1.5)
    erase_prob: float = 0.0
    erase_area: tuple[float, float] = (0.02, 0.15)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    mirror_left: bool = True
    upright: bool = False


@dataclass(frozen=True)
class AugmentParams:
    """One geometric + photometric draw (the identity by default: evaluation)."""

    scale: float = 1.0
    rotation_deg: float = 0.0
    shift: tuple[float, float] = (0.0, 0.0)
    photometric: PhotometricParams = field(default_factory=PhotometricParams)
    erase: EraseParams | None = None


def sample_augment(rng: np.random.Generator, options: DataOptions) -> AugmentParams:
    """Draw :class:`AugmentParams` within the ranges of ``options``."""
    u = (rng.random(10) * 2.0 - 1.0).tolist()  # one call: ten uniforms in [-1, 1)
    lo, hi = (math.log(v) for v in options.scale_range)
    scale = math.exp(lo + (hi - lo) * (u[0] + 1.0) / 2.0)
    rotation = options.rotation_deg * u[1]
    shift = (options.translation * u[2], options.translation * u[3])
    blur_lo, blur_hi = options.blur_sigma
    blur = blur_lo + (blur_hi - blur_lo) * (u[9] + 1.0) / 2.0 if (u[8] + 1.0) / 2.0 < options.blur_prob else 0.0
    photometric = PhotometricParams(
        brightness=1.0 + options.brightness * u[4], contrast=1.0 + options.contrast * u[5],
        saturation=1.0 + options.saturation * u[6], hue_deg=options.hue_deg * u[7], blur_sigma=blur)
    # Drawn only when asked for, after the others: without erasing, every earlier draw (and so
    # every run trained before it existed) stays as it was.
    erased = sample_erase(rng, options.erase_prob, options.erase_area) if options.erase_prob > 0 else None
    return AugmentParams(scale, rotation, shift, photometric, erased)


def hand_box(sample: HandSample) -> np.ndarray:
    """(4,) float64 x, y, w, h the crop is built around.

    The row's ``bbox``; when it is degenerate, the box of the labelled 2D keypoints; else the
    whole image.
    """
    box = np.asarray(sample.bbox, dtype=np.float64)
    if np.isfinite(box).all() and box[2] >= 1 and box[3] >= 1:
        return box
    if sample.keypoints_2d is not None:
        kp = sample.keypoints_2d[np.isfinite(sample.keypoints_2d).all(axis=1)]
        if len(kp):
            lo, hi = kp.min(axis=0), kp.max(axis=0)
            return np.array([lo[0], lo[1], max(hi[0] - lo[0], 1.0), max(hi[1] - lo[1], 1.0)])
    return np.array([0.0, 0.0, float(sample.width), float(sample.height)])


def is_mirrored(hand_side: str, options: DataOptions) -> bool:
    """Whether a crop of a hand of ``hand_side`` is flipped into the right-hand frame."""
    return options.mirror_left and hand_side == "left"


def crop_for(sample: HandSample, options: DataOptions, params: AugmentParams = AugmentParams()) -> CropTransform:
    """The crop transform of ``sample`` under ``params`` (left hands flipped if configured)."""
    box = hand_box(sample)
    side = max(box[2], box[3]) * (1.0 + 2.0 * options.margin) * params.scale
    center = box[:2] + box[2:] / 2.0 + np.asarray(params.shift) * side
    return make_crop_transform(center, side, options.input_size, params.rotation_deg,
                               is_mirrored(sample.hand_side, options))


def _nominal_K(size: int) -> np.ndarray:
    # A 53-degree field of view over the crop: a stand-in where the dataset has no camera.
    return np.array([[size, 0.0, size / 2.0], [0.0, size, size / 2.0], [0.0, 0.0, 1.0]], dtype=np.float32)


def crop_image(sample: HandSample, image_bytes: bytes, options: DataOptions,
               params: AugmentParams = AugmentParams()) -> tuple[np.ndarray, CropTransform]:
    """The (S, S, 3) uint8 RGB crop of one row (augmented by ``params``) and its transform."""
    S = options.input_size
    t = crop_for(sample, options, params)
    side = S / float(np.hypot(*t.affine[:, 0]))
    decoded, scale = decode_for_crop(image_bytes, side, S, sample.image_path or "embedded image", sample.sample_id)
    # The decoded image may be a reduced copy: compose its scale into the warp.
    warp = t.affine @ np.diag([1.0 / scale[0], 1.0 / scale[1], 1.0])
    border = tuple(round(255 * v) for v in options.mean)
    return apply_photometric(warp_image(decoded, warp, S, border), params.photometric), t


def make_example(sample: HandSample, image_bytes: bytes, options: DataOptions,
                 params: AugmentParams = AugmentParams()) -> dict[str, Any]:
    """Crop, augment, mirror and build every target of one row (numpy; see the module table)."""
    S, h, m = options.input_size, options.heatmap_size, options.mask_size
    crop, t = crop_image(sample, image_bytes, options, params)
    if params.erase is not None:
        crop = erase(crop, params.erase)

    visibility = sample.visibility.astype(np.float32)
    kp2 = np.zeros((NUM_JOINTS, 2), np.float32)
    labelled = np.zeros(NUM_JOINTS, bool)
    if sample.keypoints_2d is not None:
        labelled = (sample.visibility > 0) & np.isfinite(sample.keypoints_2d).all(axis=1)
        kp2 = np.where(labelled[:, None], t.points_to_crop(sample.keypoints_2d), np.float32(0.0))
    visibility[~labelled] = 0.0
    if params.erase is not None:
        # The pixels erase() painted: a joint is under the box when the pixel it lies in is.
        x0, y0, x1, y1 = box_pixels(params.erase.box, S)
        under = labelled & (kp2[:, 0] >= x0) & (kp2[:, 0] < x1) & (kp2[:, 1] >= y0) & (kp2[:, 1] < y1)
        visibility[under] = np.minimum(visibility[under], 1.0)  # COCO 1: labelled, not visible
    has_2d = bool(labelled.any())

    has_3d = sample.keypoints_3d is not None and bool(np.isfinite(sample.keypoints_3d).all())
    kp3_crop = t.rotate_3d(sample.keypoints_3d) if sample.keypoints_3d is not None else None
    kp3 = np.zeros((NUM_JOINTS, 3), np.float32)
    root = np.zeros(3, np.float32)
    if has_3d:
        root = kp3_crop[ROOT].copy()
        kp3 = kp3_crop - root

    to_map = np.float32(h / S)
    heatmaps, heatmap_weights = encode_heatmaps(kp2 * to_map, labelled, (h, h), options.sigma)
    pof, pof_weights = encode_pof(kp2 * to_map, kp3_crop, labelled, (h, h), options.pof_band)

    has_mask = sample.mask is not None
    mask = mask_target(sample.mask, (m, m), t.scaled(m)) if has_mask else np.zeros((m, m), np.float32)
    if has_mask and params.erase is not None:
        x0, y0, x1, y1 = box_pixels(params.erase.box, m)
        mask[y0:y1, x0:x1] = 0.0
    has_camera = sample.camera_K is not None
    camera_K = t.intrinsics_to_crop(sample.camera_K) if has_camera else _nominal_K(S)
    has_mano = sample.mano_pose is not None and sample.mano_betas is not None
    return {
        "image": normalise(crop, options.mean, options.std),
        "keypoints_2d": kp2, "visibility": visibility,
        "heatmaps": heatmaps, "heatmap_weights": heatmap_weights,
        "pof": pof, "pof_weights": pof_weights, "mask": mask,
        "keypoints_3d": kp3, "root_3d": root, "camera_K": camera_K,
        "mano_pose": t.pose_to_crop(sample.mano_pose) if has_mano else np.zeros(48, np.float32),
        "mano_betas": sample.mano_betas.copy() if has_mano else np.zeros(10, np.float32),
        "has_2d": np.float32(has_2d), "has_3d": np.float32(has_3d), "has_mask": np.float32(has_mask),
        "has_mano": np.float32(has_mano), "has_camera": np.float32(has_camera),
        "mirrored": t.mirrored,
        "crop_affine": t.affine.astype(np.float32), "rotation_3d": t.rotation.astype(np.float32),
    }


def augment_rng(seed: int, key: int, epoch: int = 0) -> np.random.Generator:
    """The generator of one item's augmentation, independent of worker and process."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch), int(key) & 0xFFFFFFFFFFFFFFFF])


def usable_rows(records: HandDataset) -> np.ndarray:
    """(N,) int64 row indices of ``records`` whose labels a model may use, in stored order.

    A hand a reviewer rejected (``review_status == "rejected"``) keeps its pseudo-labels in the
    dataset for the record, but they are not labels: neither training nor evaluation nor the
    self-supervised terms read it. That matters where rejected rows share a split with usable
    ones (a reviewed converted dataset, a hand accepted in one review round and rejected in
    the next).
    """
    status = np.concatenate([table.column("review_status").to_numpy(zero_copy_only=False)
                             for table in records.iter_tables(columns=["review_status"])] or [np.empty(0, object)])
    rejected = status == "rejected"
    if rejected.any():
        log.info("left out %d hand(s) a reviewer rejected, of %d rows", int(rejected.sum()), len(status))
    return np.flatnonzero(~rejected)


class HandCropDataset(torch.utils.data.Dataset):
    """Crops and targets over converted dataset folders (see the module docstring).

    Args:
        paths: one or more converted dataset folders (or folders of them).
        split: only rows of this split (or these splits); None for all.
        options: crop, target and augmentation settings.
        train: augment (random scale, rotation, shift, colour, blur); False gives the plain
            centred crop, deterministic and identical across calls.
        seed: seed of the augmentation draws.

    ``dataset[i]`` augments with the draw keyed by ``(seed, epoch, i)``; ``dataset[(i, key)]``
    with ``key``; ``dataset[(i, key, augment)]`` (what :class:`hiu_model.sampling.MixedSampler`
    yields for training) also says whether to augment at all.
    """

    def __init__(self, paths: str | Path | Sequence[str | Path], split: str | Sequence[str] | None = None,
                 options: DataOptions | None = None, train: bool = True, seed: int = 0) -> None:
        self.records = HandDataset(paths, split=split)
        self.rows = usable_rows(self.records)
        self.rejected = len(self.records) - len(self.rows)
        """Rows left out because a reviewer rejected them."""
        self.options = options if options is not None else DataOptions()
        self.train = train
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.rows)

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation draws of plain integer indices (``dataset[i]``)."""
        self.epoch = int(epoch)

    def params_for(self, index: int, key: int | None = None, augment: bool | None = None) -> AugmentParams:
        """The augmentation draw of an item (identity when not augmenting)."""
        if not (self.train if augment is None else augment):
            return AugmentParams()
        rng = augment_rng(self.seed, index if key is None else key, self.epoch if key is None else 0)
        return sample_augment(rng, self.options)

    def example(self, index: int, key: int | None = None, augment: bool | None = None,
                rotation_deg: float | None = None) -> dict[str, Any]:
        """The numpy form of an item (what the preview draws); ``index`` is added.

        ``rotation_deg`` turns the crop by that many degrees (before any augmentation draw):
        the angles of the inference's upright search. Without it, a training dataset with
        ``options.upright`` turns the crop by the row's own :func:`upright_rotation`.
        """
        row = int(self.rows[index])
        sample = self.records[row]
        params = self.params_for(index, key, augment)
        if rotation_deg is None and self.train and self.options.upright:
            rotation_deg = upright_rotation(sample.keypoints_2d, sample.visibility)
        if rotation_deg:
            params = dataclasses.replace(params, rotation_deg=params.rotation_deg + float(rotation_deg))
        out = make_example(sample, image_bytes_of(self.records, row, sample), self.options, params)
        out["index"] = index
        return out

    def images_at(self, indices: Sequence[int], rotations_deg: Sequence[float]) -> torch.Tensor:
        """(B, 3, S, S) float32 normalised un-augmented crops of items ``indices``, each turned by
        its angle, without their targets (what the upright search's passes need)."""
        crops = []
        for index, angle in zip(indices, rotations_deg):
            row = int(self.rows[int(index)])
            sample = self.records[row]
            crop, _ = crop_image(sample, image_bytes_of(self.records, row, sample), self.options,
                                 AugmentParams(rotation_deg=float(angle)))
            crops.append(normalise(crop, self.options.mean, self.options.std))
        return torch.from_numpy(np.stack(crops))

    def batch_at(self, indices: Sequence[int], rotations_deg: Sequence[float]) -> dict[str, torch.Tensor]:
        """Un-augmented items ``indices``, each crop turned by its angle, collated into a batch."""
        items = [to_tensors(self.example(int(i), augment=False, rotation_deg=float(a)))
                 for i, a in zip(indices, rotations_deg)]
        return torch.utils.data.default_collate(items)

    def sample(self, index: int) -> HandSample:
        """The stored record of item ``index``."""
        return self.records[int(self.rows[index])]

    def __getitem__(self, item: int | tuple[int, ...]) -> dict[str, torch.Tensor]:
        if isinstance(item, (tuple, list)):
            index, key = int(item[0]), int(item[1])
            augment = bool(item[2]) and self.train if len(item) > 2 else None
        else:
            index, key, augment = int(item), None, None
        if index < 0:
            index += len(self)
        return to_tensors(self.example(index, key, augment))


def to_tensors(example: dict[str, Any]) -> dict[str, torch.Tensor]:
    """numpy item -> tensors (arrays shared, scalars as 0-d tensors)."""
    out: dict[str, torch.Tensor] = {}
    for name, value in example.items():
        if isinstance(value, np.ndarray):
            out[name] = torch.from_numpy(value)
        elif isinstance(value, (bool, np.bool_)):
            out[name] = torch.tensor(bool(value))
        elif isinstance(value, (int, np.integer)):
            out[name] = torch.tensor(int(value), dtype=torch.int64)
        else:
            out[name] = torch.tensor(value, dtype=torch.float32)
    return out


from hiu_model.sampling import MixedDataset, MixedSampler, build_loader  # noqa: E402  (re-export)

__all__ = ["AugmentParams", "DataOptions", "HandCropDataset", "MixedDataset", "MixedSampler", "build_loader",
           "crop_for", "crop_image", "hand_box", "is_mirrored", "make_example", "sample_augment", "to_tensors"]
