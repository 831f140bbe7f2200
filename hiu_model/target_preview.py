"""Contact sheets of training targets, for a person to check crops, labels and targets.

One row per sample, five tiles: the input crop with its 2D skeleton; the heat-maps over the
darkened crop (each joint in its finger's colour); the POF's 2D directions colour-coded by
angle (hue wheel in the corner); the POF's z channel (red: the bone points away from the
camera, blue: towards it; grey text "no 3D" when the sample has none); the mask over the crop.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from hiu_data.errors import HiuError
from hiu_data.skeleton import BONES, NUM_BONES, bone_colors, joint_colors
from hiu_model.crop import denormalise
from hiu_model.data import DataOptions, HandCropDataset

log = logging.getLogger(__name__)

COLUMNS = ("input + 2D", "heat-maps", "POF direction", "POF z", "mask")
_HEADER = 26


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.45,
          colour: tuple[int, int, int] = (255, 255, 255)) -> None:
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)


def _skeleton_tile(crop: np.ndarray, ex: dict[str, Any], tile: int) -> np.ndarray:
    img = cv2.resize(crop, (tile, tile), interpolation=cv2.INTER_AREA).copy()
    f = tile / crop.shape[0]
    kp = ex["keypoints_2d"] * f
    vis = ex["visibility"] > 0
    for (a, b), colour in zip(BONES, bone_colors()):
        if vis[a] and vis[b]:
            cv2.line(img, _pt(kp[a]), _pt(kp[b]), colour, 2, cv2.LINE_AA, 4)
    for j, colour in enumerate(joint_colors()):
        if vis[j]:
            cv2.circle(img, _pt(kp[j]), 48, colour, -1 if ex["visibility"][j] >= 2 else 1, cv2.LINE_AA, 4)
    if ex["mirrored"]:
        _text(img, "left, mirrored", (4, tile - 8), colour=(255, 220, 120))
    return img


def _pt(p: np.ndarray) -> tuple[int, int]:
    # Sub-pixel drawing (shift 4): OpenCV puts pixel centres at integer coordinates.
    return int(round((p[0] - 0.5) * 16)), int(round((p[1] - 0.5) * 16))


def _heatmap_tile(crop: np.ndarray, ex: dict[str, Any], tile: int) -> np.ndarray:
    base = cv2.resize(crop, (tile, tile), interpolation=cv2.INTER_AREA).astype(np.float32) * 0.35
    hm = ex["heatmaps"] * ex["heatmap_weights"][:, None, None]
    colours = np.asarray(joint_colors(), np.float32)  # (J, 3)
    strongest = hm.argmax(axis=0)
    value = hm.max(axis=0)
    colour_map = colours[strongest] * value[..., None]
    colour_map = cv2.resize(colour_map, (tile, tile), interpolation=cv2.INTER_LINEAR)
    alpha = cv2.resize(value, (tile, tile), interpolation=cv2.INTER_LINEAR)[..., None]
    return np.clip(base * (1 - alpha) + colour_map, 0, 255).astype(np.uint8)


def _pof_fields(ex: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    h = ex["pof"].shape[-1]
    pof = ex["pof"].reshape(NUM_BONES, 3, h, h)
    strength = np.hypot(pof[:, 0], pof[:, 1])
    bone = strength.argmax(axis=0)
    on = strength.max(axis=0) > 0.5
    dx, dy, dz = (np.take_along_axis(pof[:, k], bone[None], axis=0)[0] for k in range(3))
    return np.where(on, np.arctan2(dy, dx), 0.0), np.where(on, dz, 0.0), on


def _pof_direction_tile(ex: dict[str, Any], tile: int) -> np.ndarray:
    angle, _, on = _pof_fields(ex)
    hsv = np.zeros(angle.shape + (3,), np.uint8)
    hsv[..., 0] = ((np.degrees(angle) % 360) / 2).astype(np.uint8)
    hsv[..., 1] = np.where(on, 255, 0)
    hsv[..., 2] = np.where(on, 255, 25)
    img = cv2.resize(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), (tile, tile), interpolation=cv2.INTER_NEAREST)
    _wheel(img, tile)
    return img


def _wheel(img: np.ndarray, tile: int) -> None:
    r = max(10, tile // 10)
    cx, cy = tile - r - 4, r + 4
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    inside = xx * xx + yy * yy <= r * r
    hsv = np.zeros(inside.shape + (3,), np.uint8)
    hsv[..., 0] = ((np.degrees(np.arctan2(yy, xx)) % 360) / 2).astype(np.uint8)
    hsv[..., 1:] = 255
    patch = img[cy - r:cy + r + 1, cx - r:cx + r + 1]
    patch[inside] = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[inside]


def _pof_z_tile(ex: dict[str, Any], tile: int) -> np.ndarray:
    _, z, on = _pof_fields(ex)
    img = np.full(z.shape + (3,), 25, np.float32)
    img[..., 0] = np.where(on, 60 + 195 * np.clip(z, 0, 1), 25)
    img[..., 2] = np.where(on, 60 + 195 * np.clip(-z, 0, 1), 25)
    img[..., 1] = np.where(on, 60, 25)
    img = cv2.resize(img.astype(np.uint8), (tile, tile), interpolation=cv2.INTER_NEAREST)
    if not ex["pof_weights"][2::3].any():
        _text(img, "no 3D", (6, 20), colour=(200, 200, 200))
    else:
        _text(img, "red: away  blue: towards", (4, tile - 8), scale=0.38)
    return img


def _mask_tile(crop: np.ndarray, ex: dict[str, Any], tile: int) -> np.ndarray:
    img = cv2.resize(crop, (tile, tile), interpolation=cv2.INTER_AREA).astype(np.float32)
    mask = cv2.resize(ex["mask"], (tile, tile), interpolation=cv2.INTER_NEAREST)
    img[mask > 0] = img[mask > 0] * 0.45 + np.array([40, 220, 90]) * 0.55
    img = img.astype(np.uint8)
    if not ex["has_mask"]:
        _text(img, "no mask", (6, 20), colour=(200, 200, 200))
    contours, _ = cv2.findContours((mask > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(img, contours, -1, (255, 255, 255), 1)
    return img


def sample_row(ex: dict[str, Any], options: DataOptions, tile: int, label: str) -> np.ndarray:
    """One contact-sheet row (tile, 5 * tile, 3) uint8 RGB for a numpy item of the pipeline."""
    crop = denormalise(ex["image"], options.mean, options.std)
    tiles = [_skeleton_tile(crop, ex, tile), _heatmap_tile(crop, ex, tile), _pof_direction_tile(ex, tile),
             _pof_z_tile(ex, tile), _mask_tile(crop, ex, tile)]
    row = np.concatenate(tiles, axis=1)
    _text(row, label[-40:], (4, 14), scale=0.4)
    for k in range(1, len(tiles)):
        row[:, k * tile] = 255
    return row


def preview_options(config: str | Path | None = None, preset: str | None = None,
                    **overrides: Any) -> DataOptions:
    """The crop and target settings a training run of ``config`` / ``preset`` uses, with
    ``overrides`` (``DataOptions`` field names; ``None`` values are ignored) on top.

    Without ``config`` and ``preset``: the ``paper`` preset's (``DataOptions()``). A
    ``heatmap_size`` override sets ``mask_size`` too.

    Raises:
        ConfigError: an unknown preset, an unreadable config, an unknown field.
    """
    import dataclasses

    from hiu_model.config import load_config
    from hiu_model.config_values import ConfigError

    options: DataOptions = load_config(config, preset).data
    given = {name: value for name, value in overrides.items() if value is not None}
    if "heatmap_size" in given:
        given.setdefault("mask_size", given["heatmap_size"])
    known = {f.name for f in dataclasses.fields(DataOptions)}
    unknown = sorted(set(given) - known)
    if unknown:
        raise ConfigError(f"unknown data option(s) {', '.join(unknown)}")
    return dataclasses.replace(options, **given)


def preview_example(dataset: HandCropDataset, index: int, augment: bool) -> dict[str, Any]:
    """Item ``index`` of a training ``dataset`` as training makes it (numpy form), augmented or
    plain: with ``dataset.options.upright`` turned so that the hand points up by its own labels
    (a training dataset turns every crop so, augmented or not)."""
    return dataset.example(index, augment=augment)


def preview_targets(dataset_dir: str | Path, out_dir: str | Path, n: int = 16, augment: bool = False,
                    seed: int = 0, split: str | None = None, options: DataOptions | None = None,
                    rows_per_sheet: int = 8, tile: int = 192, overwrite: bool = False,
                    progress: Callable[[int], None] | None = None) -> list[Path]:
    """Write PNG contact sheets of ``n`` samples' crops and targets.

    Samples are spread evenly over the dataset (the first, the last and equal steps between).
    ``out_dir`` is written whole: the sheets go to a folder beside it first, which replaces it
    at the end (a failure leaves ``out_dir`` as it was, and sheets of an earlier call are never
    left beside those of this one).

    Args:
        dataset_dir: a converted dataset folder (or a folder of them).
        out_dir: created if needed; sheets are named ``targets-000.png``, ``targets-001.png``...
        overwrite: replace an ``out_dir`` that holds files (else an error).
        augment: draw training augmentation (keyed by ``seed``) instead of the plain crop.
        options: crop and target settings (``DataOptions()`` when None); with ``upright`` the
            crops are turned as training turns them (:func:`preview_example`).
    Returns:
        The written sheet paths.
    Raises:
        HiuError: the folder is not a converted dataset or has no rows; ``out_dir`` is a file
            or holds the dataset.
        OutputExistsError: ``out_dir`` holds files and ``overwrite`` is False.
    """
    from hiu_data.io.manifest import check_output_folder, staged_folder

    out = Path(out_dir)
    # Before the dataset is opened: a slip in the output folder fails at once.
    check_output_folder(out, overwrite, [Path(dataset_dir)], what="dataset", option="OUT_DIR")
    options = options if options is not None else DataOptions()
    dataset = HandCropDataset(dataset_dir, split=split, options=options, train=True, seed=seed)
    if len(dataset) == 0:
        from hiu_model.sampling import no_rows_error

        raise no_rows_error(dataset_dir, split, how="choose one with --split")
    count = max(1, min(int(n), len(dataset)))
    indices = np.unique(np.linspace(0, len(dataset) - 1, count).round().astype(int))
    header = np.full((_HEADER, len(COLUMNS) * tile, 3), 40, np.uint8)
    for k, name in enumerate(COLUMNS):
        _text(header, name, (k * tile + 6, 18), scale=0.5)
    names = []
    with staged_folder(out) as staging:
        for sheet in range(math.ceil(len(indices) / rows_per_sheet)):
            rows = [header]
            for index in indices[sheet * rows_per_sheet:(sheet + 1) * rows_per_sheet]:
                ex = preview_example(dataset, int(index), augment)
                rows.append(sample_row(ex, options, tile, dataset.sample(int(index)).sample_id))
                if progress is not None:
                    progress(1)
            name = f"targets-{sheet:03d}.png"
            if not cv2.imwrite(str(staging / name), cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR)):
                raise HiuError(f"{out / name}: cannot write the sheet")
            names.append(name)
    paths = [out / name for name in names]
    for path in paths:
        log.info("wrote %s", path)
    return paths
