"""HIU-Data (Zhang et al., "Hand Image Understanding via Deep Multi-Task Learning", ICCV 2021).

HIU-Data is distributed as an encrypted archive and its layout is **not published**. This
module implements the layout described by the maintainer's issue replies and third-party
loaders; every point below is an assumption, not a verified fact:

- One labelled image per ``<id>.json`` anywhere under ``root`` (searched recursively; the
  known release has ``<root>/to_cv_community/<10-letter id>.jpg + .json``). The image is
  ``<id>.jpg``, ``.jpeg`` or ``.png`` beside it; an optional mask ``<id>_mask.png`` (or
  ``.jpg``) is a grey image of all hands of the image (> 127 = hand).
- ``split``: the first folder under ``root`` when it is ``train``, ``val`` or ``test``, else
  ``train`` (no official split is known). ``subset``: the folder below that (e.g.
  ``to_cv_community``), or None.
- JSON keys read: ``pts2d_2hand`` (42 x 2 pixels: rows 0-20 the **right** hand, 21-41 the
  **left** hand, each in HAND21 / OpenPose order), ``hand_type`` (``[right present, left
  present]``, 0/1), optional ``hand_type_valid`` (0 = the flags are unreliable), optional
  ``pts3d_2hand`` (42 x 3, taken as the camera frame; millimetres or metres, told apart by
  the median bone length: above 1 means millimetres). ``pts3d_w_2hand`` (a world frame
  without published extrinsics) is not read. A 2D point is unlabelled when it is non-finite,
  (0, 0), (-1, -1) or has x == 2.0 (the filler of issue #4, see below).
- **Absent hands**: the maintainer defines ``hand_type`` as "whether the corresponding hand
  exists in the image" (MandyMo/HIU-DMTL issue #3), so the block of a hand flagged absent is
  filler, not labels: issue #4 reports values such as ``[2.0, -0.67]`` there, and third-party
  loaders take the block ``hand_type`` names and drop points with x == 2.0. Such a block is
  ignored whatever it holds (the exact filler is unverified).
- One row per present hand (``hand_side`` right / left, sharing ``image_id``). Visibility is
  2 inside the image, 1 outside, 0 unlabelled; there is no occlusion label and no ``K``.
- The shared mask is split between two hands by assigning each mask pixel to the hand whose
  labelled skeleton (joints and bones) is nearest.

Users report inconsistent side ordering in the release (MandyMo/HIU-DMTL issue #4). A sample
whose ``hand_type`` disagrees with its keypoints (a hand flagged present with no labelled
point), or whose 2D values cannot be pixels (far outside the image), is **reported** as a
bad sample (error, or skipped and counted with ``on_error="skip"``), never silently
re-assigned. Only when ``hand_type_valid`` is 0 are the sides taken from which blocks hold
labels (``extras["hand_type_valid"] = 0`` records it).

Licence: HIU-Data is released for research use by its authors on request.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import cv2
import numpy as np

from hiu_data.errors import DatasetFormatError
from hiu_data.formats import Skipped
from hiu_data.formats._common import (UnsupportedSampleError, as_array, bbox_from_keypoints, emit, encoded_image,
                                      guarded, image_file, image_format, load_record_json, parallel_map,
                                      read_image_bytes, sample_id, select_splits, visibility_in_image)
from hiu_data.io import rle
from hiu_data.io.images import decode, encode, sample_image_bytes
from hiu_data.schema import HandSample
from hiu_data.skeleton import BONES, NUM_JOINTS

log = logging.getLogger(__name__)

NAME = "hiu"
SPLITS: tuple[str, ...] = ("train", "val", "test")
CAMERA = None
"""HIU-Data publishes no intrinsics."""
DEFAULT_SUBSET = "to_cv_community"
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png")
MASK_SUFFIXES: tuple[str, ...] = ("_mask.png", "_mask.jpg")
SIDE_BLOCKS: dict[str, slice] = {"right": slice(0, NUM_JOINTS), "left": slice(NUM_JOINTS, 2 * NUM_JOINTS)}


def split_mask(mask: np.ndarray, hands: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Split a mask of several hands by the nearest labelled skeleton.

    Args:
        mask: (H, W) bool, all hands of the image.
        hands: per hand, (21, 2) keypoints in pixels (continuous, NaN where unlabelled).
    Returns:
        One (H, W) bool mask per hand; every mask pixel goes to exactly one hand.
    """
    if len(hands) == 1:
        return [mask.copy()]
    h, w = mask.shape
    distances = []
    for kp in hands:
        canvas = np.full((h, w), 255, np.uint8)
        ok = np.isfinite(kp).all(axis=1)
        # cv2 puts pixel i's centre at i; hiu at i + 0.5. Four fractional bits keep sub-pixel ends.
        fixed = np.round((np.nan_to_num(kp) - 0.5) * 16).astype(np.int64)
        for a, b in BONES:
            if ok[a] and ok[b]:
                cv2.line(canvas, tuple(map(int, fixed[a])), tuple(map(int, fixed[b])), 0, 1, cv2.LINE_8, 4)
        for j in np.flatnonzero(ok):
            cv2.circle(canvas, tuple(map(int, fixed[j])), 0, 0, -1, cv2.LINE_8, 4)
        distances.append(cv2.distanceTransform(canvas, cv2.DIST_L2, 5) if (canvas == 0).any()
                         else np.full((h, w), np.inf, np.float32))
    owner = np.argmin(np.stack(distances), axis=0)
    return [mask & (owner == k) for k in range(len(hands))]


# --- reading ----------------------------------------------------------------------------


ABSENT_FILLER: tuple[float, float] = (2.0, -0.67)
"""What the writer puts in the block of an absent hand: the value issue #4 reports there."""


def _labelled(points: np.ndarray) -> np.ndarray:
    """(N,) bool: finite and not one of the "no label" markers: (0, 0), (-1, -1), and x == 2.0,
    the filler of absent-hand blocks (MandyMo/HIU-DMTL issue #4 reports ``[2.0, -0.67]``; a
    third-party HIU visualiser drops exactly the points with x == 2.0 to keep the one hand)."""
    finite = np.isfinite(points).all(axis=-1)
    zero = np.all(np.nan_to_num(points) == 0, axis=-1)
    minus_one = np.all(np.nan_to_num(points) == -1, axis=-1)
    filler = np.nan_to_num(points[..., 0]) == ABSENT_FILLER[0]
    return finite & ~zero & ~minus_one & ~filler


def _flags(value: Any, path: Path, what: str, sid: str) -> list[int]:
    values = value if isinstance(value, list) else [value]
    if not values or not all(v in (0, 1, True, False) for v in values):
        raise DatasetFormatError(path, f"{what} must be 0/1 flags, not {value!r}", sid)
    return [int(v) for v in values]


def _metres(points: np.ndarray, labelled: np.ndarray) -> np.ndarray:
    """3D points in metres: millimetre files are recognised by their bone lengths."""
    lengths = [np.linalg.norm(points[a + block] - points[b + block]) for block in (0, NUM_JOINTS) for a, b in BONES
               if labelled[a + block] and labelled[b + block]]
    typical = np.median(lengths) if lengths else np.median(np.linalg.norm(points[labelled], axis=1)) / 10
    return points / 1000.0 if typical > 1.0 else points


def _load_pair(job: tuple[str, str, str, str | None, str, str | None, str]) -> list[HandSample]:
    root_s, rel_json, rel_image, rel_mask, split, subset, images = job
    root = Path(root_s)
    path = root / rel_json
    stem = rel_json.rsplit(".", 1)[0]
    sid = sample_id(NAME, split, stem)
    data = load_record_json(path, ("pts2d_2hand", "hand_type"), sid)
    image = image_file(root, rel_image, images, sid)
    pts2d = as_array(data["pts2d_2hand"], (2 * NUM_JOINTS, 2), path, "pts2d_2hand", sid, allow_nan=True)
    labelled = _labelled(pts2d)
    hand_type = _flags(data["hand_type"], path, "hand_type", sid)
    if len(hand_type) != 2:
        raise DatasetFormatError(path, f"hand_type must be [right, left] flags, not {data['hand_type']!r}", sid)
    flags_valid = min(_flags(data.get("hand_type_valid", 1), path, "hand_type_valid", sid))
    if flags_valid:
        # hand_type says which hands exist (issue #3): an absent hand's block is filler, whatever
        # values it holds (issue #4), so it is not read.
        for block, present in zip(SIDE_BLOCKS.values(), hand_type):
            if not present:
                labelled[block] = False
    counts = {side: int(labelled[block].sum()) for side, block in SIDE_BLOCKS.items()}
    if flags_valid:
        for side, present in zip(SIDE_BLOCKS, hand_type):
            if present and not counts[side]:
                raise DatasetFormatError(path, f"inconsistent hand_type {hand_type}: the {side} hand is flagged "
                                               "present but has no labelled point", sid)
    sides = [side for side in SIDE_BLOCKS if counts[side]]
    w, h = image.width, image.height
    far = labelled & ((pts2d[:, 0] < -w) | (pts2d[:, 0] > 2 * w) | (pts2d[:, 1] < -h) | (pts2d[:, 1] > 2 * h))
    if far.any():
        raise DatasetFormatError(path, f"pts2d_2hand holds values that are not pixel coordinates of a {w}x{h} image "
                                       f"(e.g. {pts2d[far][0].tolist()})", sid)
    kp3_all = None
    if data.get("pts3d_2hand") is not None:
        pts3d = as_array(data["pts3d_2hand"], (2 * NUM_JOINTS, 3), path, "pts3d_2hand", sid, allow_nan=True)
        labelled3 = np.isfinite(pts3d).all(axis=1) & ~np.all(np.nan_to_num(pts3d) == 0, axis=1)
        if labelled3.any():
            kp3_all = np.where(labelled3[:, None], _metres(pts3d, labelled3), np.nan)
    masks: list[dict[str, Any] | None] = [None] * len(sides)
    if rel_mask is not None and sides:
        grey = decode(read_image_bytes(root / rel_mask, sid, "mask"), str(root / rel_mask), sid, grayscale=True)
        if grey.shape != (h, w):
            raise DatasetFormatError(root / rel_mask, f"mask is {grey.shape[1]}x{grey.shape[0]}, image {w}x{h}", sid)
        hands = [np.where(labelled[SIDE_BLOCKS[s], None], pts2d[SIDE_BLOCKS[s]], np.nan) for s in sides]
        masks = [rle.encode(m) for m in split_mask(grey > 127, hands)]
    extras = None if flags_valid else {"hand_type_valid": 0}
    rows = []
    for side, mask in zip(sides, masks):
        block = SIDE_BLOCKS[side]
        kp2 = np.where(labelled[block, None], pts2d[block], np.nan).astype(np.float32)
        vis = visibility_in_image(kp2, w, h)
        kp3 = None
        if kp3_all is not None and np.isfinite(kp3_all[block]).any():
            kp3 = kp3_all[block].astype(np.float32)
        rows.append(HandSample(
            sample_id=f"{sid}/{side}", dataset=NAME, split=split, subset=subset, image_id=f"{NAME}/{stem}",
            image_bytes=image.data, image_path=image.path, width=w, height=h, hand_side=side,
            keypoints_2d=kp2, keypoints_3d=kp3, visibility=vis, bbox=bbox_from_keypoints(kp2, vis, w, h),
            mask=mask, extras=extras,
        ))
    return rows


def _pair_job(root: Path, json_path: Path, images: str) -> tuple[tuple, str]:
    rel = json_path.relative_to(root)
    parts = rel.parts
    split = parts[0] if len(parts) > 1 and parts[0] in SPLITS else "train"
    folders = parts[1:-1] if split == parts[0] and len(parts) > 1 else parts[:-1]
    subset = "/".join(folders) or None
    base = json_path.with_suffix("")
    image = next((base.with_name(base.name + s) for s in IMAGE_SUFFIXES if base.with_name(base.name + s).is_file()),
                 base.with_name(base.name + IMAGE_SUFFIXES[0]))
    # exists(), not is_file(): a folder where the mask belongs is an error to name, not "no mask".
    mask = next((base.with_name(base.name + s) for s in MASK_SUFFIXES if base.with_name(base.name + s).exists()), None)
    job = (str(root), rel.as_posix(), image.relative_to(root).as_posix(),
           None if mask is None else mask.relative_to(root).as_posix(), split, subset, images)
    return job, split


def read(root: Path, *, splits: Sequence[str] | None = None, images: str = "embed", on_error: str = "fail",
         workers: int = 1, **options: Any) -> Iterator[HandSample | Skipped]:
    """Read HIU-Data in the assumed layout of the module docstring.

    Yields:
        HandSample per present hand: ``keypoints_2d`` (21, 2) float32 pixels,
        ``keypoints_3d`` (21, 3) float32 metres (camera frame, assumed) or None, ``mask`` RLE
        or None; or Skipped markers with ``on_error="skip"``.
    Raises:
        DatasetFormatError: no labelled image under ``root``; a bad or inconsistent sample.
    """
    wanted = select_splits(NAME, SPLITS, splits, images, on_error)
    root = Path(root)
    if not root.is_dir():
        raise DatasetFormatError(root, "missing folder; expected the HIU-Data images and JSON files here")
    jsons = sorted(root.rglob("*.json"))
    if not jsons:
        raise DatasetFormatError(root, "no HIU-Data <id>.json found (searched recursively)")
    jobs = [job for job, split in (_pair_job(root, p, images) for p in jsons) if split in wanted]
    yield from emit(parallel_map(guarded(_load_pair), jobs, workers), on_error)


# --- writing ----------------------------------------------------------------------------


def _relative_stem(sample: HandSample) -> str:
    prefix = f"{NAME}/"
    if sample.image_id.startswith(prefix):
        stem = sample.image_id[len(prefix):]
        first = stem.split("/", 1)[0]
        if (first if first in SPLITS and "/" in stem else "train") == sample.split:
            return stem
    subset = re.sub(r"[^A-Za-z0-9_/-]+", "_", sample.subset or DEFAULT_SUBSET).strip("/") or DEFAULT_SUBSET
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", sample.image_id).strip("_") or "image"
    return f"{sample.split}/{subset}/{name}"


def _write_image(root: Path, stem: str, hands: list[HandSample], source_root: Path | None) -> None:
    first = hands[0]
    data = sample_image_bytes(first.image_bytes, first.image_path, source_root, first.sample_id)
    if image_format(data) is None:
        data = encoded_image(first, "jpeg", source_root)
    suffix = ".png" if image_format(data) == "png" else ".jpg"
    pts2d = np.zeros((2 * NUM_JOINTS, 2))
    pts3d = np.zeros((2 * NUM_JOINTS, 3))
    hand_type = [0, 0]
    for side, block in SIDE_BLOCKS.items():  # absent hands keep the filler (issue #4); present ones are overwritten
        if not any(h.hand_side == side for h in hands):
            pts2d[block] = ABSENT_FILLER
    for hand in hands:
        block = SIDE_BLOCKS[hand.hand_side]
        if hand.keypoints_2d is not None:
            kp = np.asarray(hand.keypoints_2d, np.float64)
            ok = (hand.visibility > 0) & np.isfinite(kp).all(axis=1)
            pts2d[block][ok] = kp[ok]
            hand_type[list(SIDE_BLOCKS).index(hand.hand_side)] = int(ok.any())
        if hand.keypoints_3d is not None:
            kp3 = np.asarray(hand.keypoints_3d, np.float64) * 1000.0
            ok3 = np.isfinite(kp3).all(axis=1)
            pts3d[block][ok3] = kp3[ok3]
    record: dict[str, Any] = {"pts2d_2hand": pts2d.tolist(), "hand_type": hand_type,
                              "hand_type_valid": int(min((h.extras or {}).get("hand_type_valid", 1) for h in hands))}
    if any(h.keypoints_3d is not None for h in hands):
        record["pts3d_2hand"] = pts3d.tolist()
    path = root / stem
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_name(path.name + ".json").write_text(json.dumps(record))
    path.with_name(path.name + suffix).write_bytes(data)
    with_mask = [h.mask is not None for h in hands]
    if any(with_mask):
        if not all(with_mask):
            raise UnsupportedSampleError(f"{first.sample_id}: HIU-Data keeps one mask per image; "
                                         "some hands of this image have none")
        union = np.any([rle.decode(h.mask) > 0 for h in hands], axis=0)
        path.with_name(path.name + MASK_SUFFIXES[0]).write_bytes(encode(union.astype(np.uint8) * 255, ".png"))


def write(samples: Iterable[HandSample], root: Path, *, source_root: Path | None = None, **options: Any) -> None:
    """Write records in the assumed HIU-Data layout under ``root`` (the inverse of :func:`read`).

    Hands of one ``image_id`` (at most one per side) share ``<split>/<subset>/<id>.json``, the
    image and the union mask ``<id>_mask.png``; 3D is written in millimetres. Records of
    other datasets are named after their image id.

    Raises:
        UnsupportedSampleError: two hands of one side in an image, 2D-less records, or only
            some hands of an image with a mask.
    """
    root = Path(root)
    groups: dict[str, list[HandSample]] = {}
    for sample in samples:
        if sample.keypoints_2d is None or sample.split not in SPLITS:
            raise UnsupportedSampleError(f"{sample.sample_id}: HIU-Data stores labelled 2D hands of train/val/test")
        hands = groups.setdefault(sample.image_id, [])
        if any(h.hand_side == sample.hand_side for h in hands):
            raise UnsupportedSampleError(f"{sample.sample_id}: a second {sample.hand_side} hand in {sample.image_id}")
        hands.append(sample)
    for hands in groups.values():
        _write_image(root, _relative_stem(hands[0]), hands, source_root)
