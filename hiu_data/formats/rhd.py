"""RHD, the Rendered Hand Pose Dataset (Zimmermann & Brox, ICCV 2017): reader and writer.

Layout read (``RAW_ROOT`` = the ``RHD_published_v2`` folder ``RHD_v1-1.zip`` unpacks to, or the
folder holding it; a folder inside it is refused with the one to give instead)::

    training/color/%05d.png  training/mask/%05d.png  training/anno_training.pickle      41,258 images
    evaluation/color/%05d.png  evaluation/mask/%05d.png  evaluation/anno_evaluation.pickle  2,728 images

(``depth/%05d.png`` is part of the release but not read: the schema has no depth column.)

- **Annotations**: ``anno_<raw split>.pickle`` = ``{int id: {"xyz": 42x3, "uv_vis": 42x3,
  "K": 3x3}}``, loaded through :mod:`hiu_data.io.safe_pickle` with the numpy-array allow-list
  only (dicts, ints and numpy arrays; any other global is refused before it runs). Ids need
  not be contiguous: the files are ``%05d`` of each id.
- **Joint order**: 42 joints, left hand 0-20 then right hand 21-41; per hand the wrist, then
  per finger (thumb, index, middle, ring, little) **tip -> MCP**. Reordered to HAND21 with
  ``skeleton.RHD_LEFT_TO_HAND21`` / ``RHD_RIGHT_TO_HAND21``.
- **Rows**: one per hand seen in the image (``/left``, ``/right``, sharing ``image_id``). RHD
  labels both hands of the character in every frame, also a hand outside the picture or hidden
  behind the body; a hand with no keypoint flagged visible and no mask pixel is not a row
  (it would be a crop of nothing; hand3d and Minimal-Hand likewise keep only the hand seen).
  A hand whose 21 ``xyz`` are all exactly 0 is absent (the writer's one-hand images).
- **Units / frames**: ``xyz`` metres in the camera frame; ``uv`` pixels (stored as given,
  they equal the projection of ``xyz`` with ``K`` to < 0.1 px); ``K`` per sample (fx = fy, the
  principal point at (160, 160) of the 320 x 320 image; not constant across samples).
- **Visibility**: ``uv_vis[:, 2]`` 1 -> 2 (visible), 0 -> 1 (labelled, occluded or off-image).
- **Masks**: the class-id PNG (0 background, 1 person, 2-17 left hand parts, 18-33 right hand
  parts) becomes one RLE per hand: left = ids 2..17, right = ids 18..33.
- **Splits**: ``training`` -> ``train``, ``evaluation`` -> ``test``. **Box**: tight box of the
  21 labelled keypoints clipped to the image (``_common``).
- **Licence**: RHD is for research only (University of Freiburg); nothing of it is bundled.

Sample ids ``rhd/<split>/<id %05d>/<left|right>``; image ids ``rhd/<split>/<id %05d>``.
"""

from __future__ import annotations

import logging
import pickle
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from hiu_data.errors import CorruptImageError, DatasetFormatError
from hiu_data.formats import Skipped
from hiu_data.formats._layout import dataset_folder, relative_prefix
from hiu_data.formats._common import (UnsupportedSampleError, as_array, bbox_from_keypoints, emit, encoded_image,
                                      guarded, image_file, parallel_map, read_image_bytes, require_dir, require_file,
                                      require_labels, sample_id, select_splits)
from hiu_data.io import images as image_io
from hiu_data.io import rle, safe_pickle
from hiu_data.schema import HandSample
from hiu_data.skeleton import NUM_JOINTS, RHD_LEFT_TO_HAND21, RHD_RIGHT_TO_HAND21, RHD_TO_HAND21, scatter

log = logging.getLogger(__name__)

NAME = "rhd"
SPLITS: tuple[str, ...] = ("train", "test")
RAW_SPLIT = {"train": "training", "test": "evaluation"}
IMAGE_SIZE: tuple[int, int] = (320, 320)
"""(width, height) of every RHD image."""
PRINCIPAL_POINT: tuple[float, float] = (160.0, 160.0)
CAMERA = None
"""RHD has no fixed camera: K is per sample (fx = fy, principal point PRINCIPAL_POINT)."""
NUM_IMAGES = {"train": 41258, "test": 2728}
NUM_RAW_JOINTS = 2 * NUM_JOINTS
HANDS = (("left", RHD_LEFT_TO_HAND21, range(2, 18)), ("right", RHD_RIGHT_TO_HAND21, range(18, 34)))
"""(side, gather table into HAND21, mask class ids) per hand, in raw block order."""
MASK_CLASS = {"left": 17, "right": 33}
"""Class id the writer paints each hand with (the palm class of that side)."""


def _pickle_path(root: Path, raw: str) -> Path:
    return root / raw / f"anno_{raw}.pickle"


def read(root: Path, *, splits: Sequence[str] | None = None, images: str = "embed", on_error: str = "fail",
         workers: int = 1) -> Iterator[HandSample | Skipped]:
    """Read RHD into HandSample records, two rows per image (see the module docstring).

    Without ``splits`` every split whose annotation pickle exists is read; a requested split
    must exist. Colour images are read (not decoded); mask PNGs are decoded into per-hand RLEs.
    """
    user_root = Path(root)
    chosen = select_splits(NAME, SPLITS, splits, images, on_error)
    root = dataset_folder(user_root, _holds_rhd, "RHD", "not an RHD folder; expected training/anno_training.pickle "
                                                        "and/or evaluation/anno_evaluation.pickle here")
    prefix = relative_prefix(user_root, root)
    if not splits:
        chosen = tuple(s for s in chosen if _pickle_path(root, RAW_SPLIT[s]).is_file())
    for split in chosen:
        raw = RAW_SPLIT[split]
        path = require_file(_pickle_path(root, raw), f"the RHD {raw} annotations (a pickled dict)")
        anno = safe_pickle.load(path, safe_pickle.NUMPY_ARRAYS)
        if not isinstance(anno, dict):
            raise DatasetFormatError(path, f"expected a dict of samples, found {type(anno).__name__}")
        folder = root / raw
        require_dir(folder / "color", f"the RHD {raw} images {raw}/color/%05d.png")
        has_masks = (folder / "mask").is_dir()
        if not has_masks:
            log.warning("%s: no mask folder; RHD rows get no masks", folder / "mask")
        jobs = [(str(user_root), prefix + raw, split, key, value, str(path), images, has_masks)
                for key, value in _sorted(anno, path)]
        yield from emit(parallel_map(guarded(_read_image), jobs, workers, chunksize=32), on_error)


def _holds_rhd(folder: Path) -> bool:
    return any(_pickle_path(folder, raw).is_file() for raw in RAW_SPLIT.values())


def _sorted(anno: dict[Any, Any], path: Path) -> list[tuple[int, Any]]:
    bad = [k for k in anno if not isinstance(k, int) or isinstance(k, bool) or k < 0]
    if bad:
        raise DatasetFormatError(path, f"sample keys must be non-negative ints (the %05d file number), found {bad[0]!r}")
    return sorted(anno.items())


def _read_image(job: tuple[Any, ...]) -> list[HandSample]:
    root_str, folder, split, key, entry, pickle_path, images, has_masks = job  # folder: root-relative split folder
    root, number = Path(root_str), f"{key:05d}"
    image_id = sample_id(NAME, split, number)
    if not isinstance(entry, dict):
        raise DatasetFormatError(pickle_path, f"entry {key} is a {type(entry).__name__}, expected a dict", image_id)
    values = {}
    for name, shape in (("xyz", (NUM_RAW_JOINTS, 3)), ("uv_vis", (NUM_RAW_JOINTS, 3)), ("K", (3, 3))):
        if name not in entry:
            raise DatasetFormatError(pickle_path, f"entry {key} has no {name!r}", image_id)
        values[name] = as_array(entry[name], shape, pickle_path, f"entry {key} {name!r}", image_id, dtype=np.float32)
    image = image_file(root, f"{folder}/color/{number}.png", images, image_id)
    classes = _mask_classes(root / folder / "mask" / f"{number}.png", image_id) if has_masks else None
    if classes is not None and classes.shape != (image.height, image.width):
        raise CorruptImageError(root / folder / "mask" / f"{number}.png",
                                f"mask is {classes.shape[1]}x{classes.shape[0]}, the image {image.width}x{image.height}", image_id)
    rows = []
    for side, table, ids in HANDS:
        xyz = values["xyz"][table]
        if not xyz.any():
            continue
        uv = values["uv_vis"][table, :2]
        visible = values["uv_vis"][table, 2] > 0.5
        pixels = None if classes is None else (classes >= ids.start) & (classes < ids.stop)
        if not visible.any() and (pixels is None or not pixels.any()):
            continue  # labelled but not in the picture (off-screen or hidden): no instance of this image
        vis = np.where(visible, 2, 1).astype(np.uint8)
        mask = None if pixels is None else rle.encode(pixels)
        rows.append(HandSample(
            sample_id=sample_id(NAME, split, number, side), dataset=NAME, split=split, image_id=image_id,
            image_bytes=image.data, image_path=image.path, width=image.width, height=image.height, hand_side=side,
            bbox=bbox_from_keypoints(uv, vis, image.width, image.height), keypoints_2d=uv, visibility=vis,
            keypoints_3d=xyz, camera_K=values["K"], mask=mask))
    return rows


def _mask_classes(path: Path, sid: str) -> np.ndarray:
    data = read_image_bytes(path, sid, "mask (one per image)")
    classes = image_io.decode_unchanged(data, str(path), sid)
    return classes[:, :, 0] if classes.ndim == 3 else classes


# --- writer -----------------------------------------------------------------------------


def write(samples: Iterable[HandSample], root: Path, *, source_root: str | Path | None = None) -> None:
    """Write records as an RHD tree under ``root`` (the inverse of :func:`read`).

    Records are grouped into images by ``image_id`` (at most one left and one right hand);
    the file number comes from image ids ``rhd/<split>/<number>`` when every image of the split
    has one, else images are numbered 0.. in order. Every record needs ``keypoints_2d``,
    ``keypoints_3d`` and ``camera_K`` with all 21 joints labelled (RHD labels every joint), and
    the hands of one image share K; a missing hand is written as zeros (absent). Masks are
    written when every hand of the split has one: left pixels get class 17, right 33, and a
    pixel both masks claim goes to the hand whose wrist is nearer the camera. Images are
    written as PNG (original bytes when PNG, else re-encoded losslessly); no depth maps.
    """
    root = Path(root)
    by_split: dict[str, OrderedDict[str, dict[str, HandSample]]] = {"train": OrderedDict(), "test": OrderedDict()}
    for s in samples:
        if s.split not in by_split:
            raise UnsupportedSampleError(f"sample {s.sample_id}: RHD has splits train and test, not {s.split!r}")
        require_labels(s, ["keypoints_2d", "keypoints_3d", "camera_K"], "RHD")
        if (s.visibility == 0).any() or not np.isfinite(s.keypoints_3d).all():
            raise UnsupportedSampleError(f"sample {s.sample_id}: RHD labels all 21 joints; this record has missing ones")
        hands = by_split[s.split].setdefault(s.image_id, {})
        if s.hand_side in hands:
            raise UnsupportedSampleError(f"sample {s.sample_id}: image {s.image_id} already has a {s.hand_side} hand")
        hands[s.hand_side] = s
    for split, images in by_split.items():
        if images:
            _write_split(root / RAW_SPLIT[split], split, images, source_root)


def _numbers(split: str, image_ids: list[str]) -> list[int]:
    pattern = re.compile(rf"^{NAME}/{split}/(\d+)$")
    parsed = [m and int(m.group(1)) for m in map(pattern.match, image_ids)]
    if all(p is not None for p in parsed) and len(set(parsed)) == len(parsed):
        return parsed  # type: ignore[return-value]
    return list(range(len(image_ids)))


def _write_split(folder: Path, split: str, images: OrderedDict[str, dict[str, HandSample]], source_root: Any) -> None:
    all_hands = [h for hands in images.values() for h in hands.values()]
    write_masks = all(h.mask is not None for h in all_hands)
    if not write_masks and any(h.mask is not None for h in all_hands):
        raise UnsupportedSampleError(f"RHD {split}: masks on some hands but not all (one mask PNG per image)")
    for sub in ("color",) + (("mask",) if write_masks else ()):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    anno: dict[int, dict[str, np.ndarray]] = {}
    for number, (image_id, hands) in zip(_numbers(split, list(images)), images.items()):
        xyz = np.zeros((NUM_RAW_JOINTS, 3), np.float32)
        uv_vis = np.zeros((NUM_RAW_JOINTS, 3), np.float32)
        Ks = {side: h.camera_K for side, h in hands.items()}
        if len(Ks) == 2 and not np.array_equal(Ks["left"], Ks["right"]):
            raise UnsupportedSampleError(f"image {image_id}: its two hands have different camera_K")
        offsets = {"left": 0, "right": NUM_JOINTS}
        for side, h in hands.items():
            block = slice(offsets[side], offsets[side] + NUM_JOINTS)
            xyz[block] = scatter(h.keypoints_3d, RHD_TO_HAND21, NUM_JOINTS)
            uv_vis[block, :2] = scatter(h.keypoints_2d, RHD_TO_HAND21, NUM_JOINTS)
            uv_vis[block, 2] = scatter((h.visibility == 2).astype(np.float32), RHD_TO_HAND21, NUM_JOINTS, axis=0)
        anno[number] = {"xyz": xyz, "uv_vis": uv_vis, "K": next(iter(Ks.values())).astype(np.float32)}
        first = next(iter(hands.values()))
        (folder / "color" / f"{number:05d}.png").write_bytes(encoded_image(first, "png", source_root))
        if write_masks:
            (folder / "mask" / f"{number:05d}.png").write_bytes(image_io.encode(_class_map(hands)))
    with open(folder / f"anno_{folder.name}.pickle", "wb") as f:
        pickle.dump(anno, f, protocol=2)  # the release is a Python 2 pickle


def _class_map(hands: dict[str, HandSample]) -> np.ndarray:
    """(H, W) uint8 class ids; overlapping pixels go to the hand whose wrist is nearer the camera."""
    order = sorted(hands, key=lambda side: -float(hands[side].keypoints_3d[0, 2]))  # far first, near paints last
    first = hands[order[0]]
    classes = np.zeros((first.height, first.width), np.uint8)
    for side in order:
        classes[rle.decode(hands[side].mask) > 0] = MASK_CLASS[side]
    return classes
