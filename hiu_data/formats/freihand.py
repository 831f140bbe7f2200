"""FreiHAND v2 (Zimmermann et al., ICCV 2019): reader and writer of the released layout.

Layout read (``RAW_ROOT`` = the unpacked ``FreiHAND_pub_v2`` folder, or the folder holding it;
the evaluation labels of ``FreiHAND_pub_v2_eval.zip`` are read from the base folder or from
their own folder beside it, e.g. ``RAW_ROOT/FreiHAND_pub_v2_eval/``, see :func:`split_folders`)::

    training/rgb/%08d.jpg      4 x N images, file id = annotation index + N * version
    training/mask/%08d.jpg     N masks, one per annotation, shared by its 4 versions (optional)
    evaluation/rgb/%08d.jpg    M images (green-screen version only)
    training_K.json  training_xyz.json  training_mano.json   (lists of N entries)
    evaluation_K.json  [evaluation_xyz.json  evaluation_mano.json]   (lists of M entries)

N = 32,560 and M = 3,960 in the release; the reader takes N and M from the ``*_K.json`` lists.

- **Versions** (``subset``): ``gs`` (green screen), ``hom``, ``sample``, ``auto``; file id
  ``idx + N * v``. The versions present are those with at least one file in ``training/rgb``;
  in a present version every one of the N files is expected. ``extras["annotation_index"]``
  = idx, so the 4 versions of one annotation can be kept in the same split downstream.
- **Joint order**: HAND21 already (identity gather table).
- **3D**: ``*_xyz.json`` 21 x 3, metres, camera frame. **K**: per sample, principal point at
  (112, 112) of the 224 x 224 crop. **2D**: the pinhole projection of the 3D with K (FreiHAND
  has no separate 2D labels). **Visibility**: no occlusion labels, so 2 inside the image and
  1 outside.
- **MANO** (``*_mano.json``, one ``[[61 values]]`` per entry): ``[0:48]`` pose axis-angle
  relative to the mean pose (``flat_hand_mean=False``), ``[48:58]`` betas, ``[58:60]`` uv_root
  (pixel of keypoint 9, middle MCP), ``[60]`` scale (focal / Z of keypoint 9). Pose and betas
  go to their columns; ``extras["mano_uv_root"]`` and ``extras["mano_scale"]`` keep the rest.
- **Masks**: JPEG grey images, thresholded at ``mask_threshold`` (default 128, the midpoint;
  HandMesh-style loaders use > 240, which shrinks the hand along its JPEG-blurred edge) into
  one RLE per annotation, attached to all 4 versions. Evaluation segmentation maps are not
  read (their encoding is not documented).
- **Splits**: ``training`` -> ``train``; ``evaluation`` -> ``test``; without
  ``evaluation_xyz.json`` the test rows have no keypoints (visibility 0, box = whole image,
  where the centred hand is). ``*_verts.json`` (778 mesh vertices) and ``*_scale.json`` are
  not read: the schema has no vertex column (meshes are recomputed from the MANO parameters)
  and the scale is ``|xyz[9] - xyz[10]|``.
- **Hands**: all right hands (MANO_RIGHT). **Box**: tight box of the projected keypoints,
  clipped to the image (``_common``). **Licence**: research only; nothing of it is bundled.

Sample ids ``freihand/<split>/<file id %08d>``; the image id is the same (one hand per image).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa
from pycocotools import mask as mask_utils

from hiu_data.errors import DatasetFormatError
from hiu_data.formats import Skipped
from hiu_data.formats._common import (Failure, ImageFile, UnsupportedSampleError, bboxes_from_keypoints,
                                      beyond_float32, encoded_image, guarded, image_file, json_floats,
                                      parallel_map, project, read_image_bytes, require_dir, require_file,
                                      require_labels, sample_id, select_splits, visibility_in_image)
from hiu_data.io import images as image_io, rle
from hiu_data.io.json_numbers import read_number_list
from hiu_data.formats._columns import hand_table
from hiu_data.formats._layout import dataset_folder, one_folder, relative_prefix
from hiu_data.schema import HandSample, table_to_samples
from hiu_data.skeleton import NUM_JOINTS

log = logging.getLogger(__name__)

NAME = "freihand"
SPLITS: tuple[str, ...] = ("train", "test")
RAW_SPLIT = {"train": "training", "test": "evaluation"}
VERSIONS: tuple[str, ...] = ("gs", "hom", "sample", "auto")
IMAGE_SIZE: tuple[int, int] = (224, 224)
"""(width, height) of every FreiHAND image."""
PRINCIPAL_POINT: tuple[float, float] = (112.0, 112.0)
CAMERA = None
"""FreiHAND has no fixed camera: K is per sample (see PRINCIPAL_POINT)."""
NUM_TRAINING, NUM_EVALUATION = 32560, 3960
MASK_THRESHOLD = 128
MANO_SIZE = 61
BATCH_ROWS = 256
_RGB_NAME = re.compile(r"^(\d{8})\.jpg$")


class _Labels:
    """The annotation lists of one split as arrays, plus per-entry problems (index -> (file, message))."""

    def __init__(self, root: Path, raw: str, split: str) -> None:
        self.raw = raw
        self.problems: dict[int, tuple[Path, str]] = {}
        self._extras: dict[int, str] = {}
        k_path = root / f"{raw}_K.json"
        require_file(k_path, f"the FreiHAND {raw} intrinsics ({raw}_K.json, a list of 3x3 matrices)")
        self.n = -1
        self.K = self._load(k_path, (3, 3), "K")
        self.xyz = self._load(root / f"{raw}_xyz.json", (NUM_JOINTS, 3), "xyz (21x3 metres)", optional=True)
        self.mano = self._load(root / f"{raw}_mano.json", (MANO_SIZE,), "MANO parameters (61 values)", optional=True)
        # Entries out of the float32 range are already in ``problems`` (their samples fail or
        # are skipped); the casts of the whole lists must not warn about them.
        with np.errstate(over="ignore", invalid="ignore"):
            if self.xyz is not None:
                self.kp2d = project(self.xyz, self.K).astype(np.float32)
                self.xyz32 = self.xyz.astype(np.float32)
            self.K32 = self.K.astype(np.float32)
            if self.mano is not None:
                self.mano32 = self.mano.astype(np.float32)

    def extras(self, idx: int) -> str:
        """The ``extras`` JSON text of annotation ``idx`` (shared by its versions; built once)."""
        cached = self._extras.get(idx)
        if cached is None:
            extras: dict[str, Any] = {"annotation_index": idx}
            if self.mano is not None:
                extras.update(mano_uv_root=self.mano[idx, 58:60].tolist(), mano_scale=float(self.mano[idx, 60]))
            cached = self._extras[idx] = json.dumps(extras, sort_keys=True)
        return cached

    def _load(self, path: Path, shape: tuple[int, ...], what: str, optional: bool = False) -> np.ndarray | None:
        """(n, *shape) float64 of one label file (n from the first file, ``_K.json``); None if
        optional and absent. Entries with a wrong shape or NaN/inf are NaN and noted in problems."""
        if optional and not path.is_file():
            return None
        arr, problems = read_number_list(path, shape, what, self.n if self.n >= 0 else None,
                                         f"the {self.raw}_K.json beside it")
        for i, problem in problems.items():
            self.problems.setdefault(i, (path, problem))
        if self.n < 0:
            if len(arr) == 0:
                raise DatasetFormatError(path, f"an empty list: no {what} entries, so no samples")
            self.n = len(arr)
        entries = arr.reshape(self.n, -1)
        bad = ~np.isfinite(entries).all(axis=1) | beyond_float32(entries).any(axis=1)  # float32 columns would hold inf
        for i in np.flatnonzero(bad):
            self.problems.setdefault(int(i), (path, f"entry {i}: {what} contains NaN or inf (or a value beyond float32)"))
        return arr


def _image_job(job: tuple[str, str, str, str, str | None, int]) -> tuple[ImageFile | Failure, Any]:
    """(image or Failure, mask RLE or Failure or None): the mask of an annotation is decoded
    with its first version's image, so mask work spreads over the batches and overlaps writing."""
    root, relative, images, sid, mask_path, threshold = job
    mask = guarded(_mask_job)((mask_path, sid, threshold)) if mask_path is not None else None
    return guarded(_image)((root, relative, images, sid)), mask


def _image(job: tuple[str, str, str, str]) -> ImageFile:
    return image_file(*job)


def _mask_job(job: tuple[str, str, int]) -> dict[str, Any]:
    path, sid, threshold = job
    data = read_image_bytes(path, sid, "mask (one per training annotation)")
    grey = image_io.decode(data, path, sid, grayscale=True)
    # Threshold straight into the column-major uint8 layout pycocotools encodes (rle.encode
    # would copy twice more); bool and uint8 share their 1-byte layout, so view, not convert.
    binary = np.greater_equal(grey, threshold, order="F").view(np.uint8)
    encoded = mask_utils.encode(binary)
    return {"size": [int(encoded["size"][0]), int(encoded["size"][1])], "counts": bytes(encoded["counts"])}


def read_tables(root: Path, *, splits: Sequence[str] | None = None, images: str = "embed", on_error: str = "fail",
                workers: int = 1, mask_threshold: int = MASK_THRESHOLD,
                batch_rows: int = BATCH_ROWS) -> Iterator[pa.Table | Skipped]:
    """Read FreiHAND v2 as ``hand_sample`` Arrow tables of up to ``batch_rows`` rows (``convert``'s path).

    Without ``splits`` every split found (:func:`split_folders`) is read; a requested one must
    exist. Image files are read and training masks decoded in ``workers`` threads."""
    root = Path(root)
    chosen = select_splits(NAME, SPLITS, splits, images, on_error)
    folders = split_folders(root)
    if not splits:
        chosen = tuple(s for s in chosen if s in folders)
    for split in chosen:
        folder = folders.get(split, next(iter(folders.values())))
        for item in _read_split(root, folder, split, images, workers, mask_threshold, batch_rows):
            if isinstance(item, Failure) and on_error != "skip":
                raise item.exception()
            yield item.skipped() if isinstance(item, Failure) else item


def read(root: Path, *, splits: Sequence[str] | None = None, images: str = "embed", on_error: str = "fail",
         workers: int = 1, mask_threshold: int = MASK_THRESHOLD) -> Iterator[HandSample | Skipped]:
    """Read FreiHAND v2 into HandSample records (see the module docstring; rows of :func:`read_tables`)."""
    for item in read_tables(root, splits=splits, images=images, on_error=on_error, workers=workers,
                            mask_threshold=mask_threshold):
        yield from [item] if isinstance(item, Skipped) else table_to_samples(item)


def split_folders(root: Path) -> dict[str, Path]:
    """The folder of each split present: ``RAW_ROOT`` or one folder directly below it. The
    evaluation labels come from the folder with ``evaluation_xyz.json`` (the evaluation release,
    in the base folder or beside it), else from the training folder, else from the one folder
    with ``evaluation_K.json``. No FreiHAND folder, or two candidates, is a DatasetFormatError."""
    def has(*names: str) -> Callable[[Path], bool]:
        return lambda folder: all((folder / name).is_file() for name in names)

    train = one_folder(root, has("training_K.json"), "FreiHAND training labels")
    test = (one_folder(root, has("evaluation_xyz.json", "evaluation_K.json"), "FreiHAND evaluation labels")
            or (train if train is not None and has("evaluation_K.json")(train) else None)
            or one_folder(root, has("evaluation_K.json"), "FreiHAND evaluation intrinsics"))
    found = {split: folder for split, folder in (("train", train), ("test", test)) if folder is not None}
    if not found:  # raises, naming the folder to give when ``root`` lies inside the dataset
        dataset_folder(root, lambda f: has("training_K.json")(f) or has("evaluation_K.json")(f), "FreiHAND",
                       "not a FreiHAND v2 folder; expected training_K.json and/or evaluation_K.json here")
    return found


def _read_split(user_root: Path, root: Path, split: str, images: str, workers: int, threshold: int,
                batch_rows: int) -> Iterator[pa.Table | Failure]:
    raw = RAW_SPLIT[split]
    labels = _Labels(root, raw, split)
    if split == "train" and labels.xyz is None:
        raise DatasetFormatError(root / "training_xyz.json", "missing file; expected the FreiHAND training keypoints here")
    if split == "test" and labels.xyz is None:
        log.warning("%s: no evaluation_xyz.json, so no evaluation keypoints; they are in FreiHAND_pub_v2_eval.zip: "
                    "unpack it beside %s and give the folder holding both as RAW_ROOT", root, root.name)
    rgb = require_dir(root / raw / "rgb", f"the FreiHAND {raw} images {raw}/rgb/%08d.jpg")
    n = labels.n
    versions = _versions_present(rgb, n) if split == "train" else [0]
    masks: list[Any] = [None] * n
    mask_dir = root / raw / "mask"
    with_masks = split == "train" and mask_dir.is_dir()
    file_ids = [idx + n * v for v in versions for idx in range(n)]
    prefix = relative_prefix(user_root, root)
    jobs = [(str(user_root), f"{prefix}{raw}/rgb/{fid:08d}.jpg", images, sample_id(NAME, split, f"{fid:08d}"),
             str(mask_dir / f"{fid % n:08d}.jpg") if with_masks and fid // n == versions[0] else None, threshold)
            for fid in file_ids]
    results = parallel_map(_image_job, jobs, workers, chunksize=16, threads=True)
    good: list[tuple[int, ImageFile]] = []
    for fid, job, (result, new_mask) in zip(file_ids, jobs, results):
        idx, sid = fid % n, job[3]
        if new_mask is not None:
            masks[idx] = new_mask
        mask = masks[idx]
        if idx in labels.problems:
            path, problem = labels.problems[idx]
            yield Failure(str(path), problem, sid)
        elif isinstance(result, Failure):
            yield result
        elif isinstance(mask, Failure):
            yield Failure(mask.path, mask.problem, sid, mask.kind)
        elif mask is not None and list(mask["size"]) != [result.height, result.width]:
            yield Failure(str(mask_dir / f"{idx:08d}.jpg"), f"mask is {mask['size'][1]}x{mask['size'][0]} but the "
                          f"image is {result.width}x{result.height}", sid, "image")
        else:
            good.append((fid, result))
        if len(good) >= batch_rows:
            yield _table(split, good, labels, masks)
            good = []
    if good:
        yield _table(split, good, labels, masks)


def _versions_present(rgb: Path, n: int) -> list[int]:
    with os.scandir(rgb) as entries:
        ids = {int(m.group(1)) for e in entries if (m := _RGB_NAME.match(e.name))}
    versions = sorted({i // n for i in ids if n and i < n * len(VERSIONS)})
    if not versions:
        last = max(n * len(VERSIONS) - 1, 0)
        raise DatasetFormatError(rgb, f"no training images 00000000.jpg..{last:08d}.jpg for the {n} annotations")
    return versions


def _table(split: str, good: list[tuple[int, ImageFile]], labels: _Labels, masks: list[Any]) -> pa.Table:
    """The rows of ``good`` (file id, image) as one table, labels gathered by annotation index."""
    fids = np.array([fid for fid, _ in good])
    idx = fids % labels.n
    width = np.array([image.width for _, image in good])
    height = np.array([image.height for _, image in good])
    ids = [sample_id(NAME, split, f"{fid:08d}") for fid in fids.tolist()]
    extras = [labels.extras(i) for i in idx.tolist()]
    columns: dict[str, Any] = {}
    if labels.xyz is not None:
        kp2d = labels.kp2d[idx]
        vis = visibility_in_image(kp2d, width[:, None], height[:, None])
        columns.update(keypoints_2d=kp2d, keypoints_3d=labels.xyz32[idx], visibility=vis,
                       bbox=bboxes_from_keypoints(kp2d, vis, width, height))
    else:  # unlabelled evaluation images: the centred hand fills the crop
        zeros = np.zeros(len(good))
        columns.update(visibility=np.zeros((len(good), NUM_JOINTS), np.uint8),
                       bbox=np.stack([zeros, zeros, width, height], axis=1))
    if labels.mano is not None:
        columns.update(mano_pose=labels.mano32[idx, :48], mano_betas=labels.mano32[idx, 48:58])
    return hand_table(
        len(good), sample_id=ids, image_id=ids, dataset=NAME, split=split, hand_side="right",
        subset=[VERSIONS[fid // labels.n] for fid in fids.tolist()], width=width, height=height,
        image_bytes=[image.data for _, image in good], image_path=[image.path for _, image in good],
        camera_K=labels.K32[idx], mask=[masks[i] for i in idx.tolist()], extras=extras, **columns)


# --- writer -----------------------------------------------------------------------------


def write(samples: Iterable[HandSample], root: Path, *, source_root: str | Path | None = None,
          jpeg_quality: int = 95) -> None:
    """Write records as a FreiHAND v2 tree under ``root`` (the inverse of :func:`read`).

    - ``train`` records are grouped into annotations by ``extras["annotation_index"]`` (each
      record without one is its own annotation); every annotation must come in the same set of
      versions (``subset``; None = ``gs``), and the versions of one annotation must share
      their labels. Annotations are renumbered 0..N-1 in order of first appearance.
    - Needs ``keypoints_3d`` and ``camera_K`` (train) / ``camera_K`` (test); 2D is not written
      (FreiHAND derives it by projection). MANO parameters and masks are written when every
      record of the split has them; uv_root / scale come from ``extras`` or are computed from
      the 3D and K as FreiHAND defines them. Test masks are dropped (the evaluation release's
      segmentation encoding is not documented).
    - Images are written as JPEG: the original bytes when they are JPEG, else re-encoded.
    """
    root = Path(root)
    by_split: dict[str, list[HandSample]] = {"train": [], "test": []}
    for s in samples:
        if s.split not in by_split:
            raise UnsupportedSampleError(f"sample {s.sample_id}: FreiHAND has splits train and test, not {s.split!r}")
        if s.hand_side != "right":
            raise UnsupportedSampleError(f"sample {s.sample_id}: FreiHAND holds right hands only")
        by_split[s.split].append(s)
    if by_split["train"]:
        _write_training(by_split["train"], root, source_root, jpeg_quality)
    if by_split["test"]:
        _write_split("evaluation", [[s] for s in by_split["test"]], [0], root, source_root, jpeg_quality)


def _write_training(samples: list[HandSample], root: Path, source_root: Any, quality: int) -> None:
    groups: OrderedDict[Any, dict[int, HandSample]] = OrderedDict()
    for s in samples:
        key = s.extras["annotation_index"] if s.extras and "annotation_index" in s.extras else ("record", s.sample_id)
        version = s.subset or "gs"
        if version not in VERSIONS:
            raise UnsupportedSampleError(f"sample {s.sample_id}: FreiHAND version (subset) {version!r} is not one of {', '.join(VERSIONS)}")
        group = groups.setdefault(key, {})
        if VERSIONS.index(version) in group:
            raise UnsupportedSampleError(f"sample {s.sample_id}: annotation {key} has two {version!r} records")
        group[VERSIONS.index(version)] = s
    version_sets = {tuple(sorted(g)) for g in groups.values()}
    if len(version_sets) > 1:
        raise UnsupportedSampleError("FreiHAND needs every annotation in the same versions; got version sets "
                                     + ", ".join(str([VERSIONS[v] for v in vs]) for vs in sorted(version_sets)))
    versions = sorted(version_sets.pop())
    for group in groups.values():
        first = group[versions[0]]
        for other in group.values():
            diff = [f for f in ("keypoints_3d", "camera_K", "mano_pose", "mano_betas", "mask") if f in first.differences(other)]
            if diff:
                raise UnsupportedSampleError(f"sample {other.sample_id}: versions of one annotation differ in {diff}")
    _write_split("training", [[g[v] for v in versions] for g in groups.values()], versions, root, source_root, quality)


def _write_split(raw: str, groups: list[list[HandSample]], versions: list[int], root: Path, source_root: Any,
                 quality: int) -> None:
    reps = [g[0] for g in groups]
    n = len(reps)
    require = ["camera_K", "keypoints_3d"] if raw == "training" else ["camera_K"]
    for s in reps:
        require_labels(s, require, "FreiHAND " + raw)
    dumps = {"K": [json_floats(s.camera_K) for s in reps]}
    for name, field in (("xyz", "keypoints_3d"), ("mano", "mano_pose")):
        have = [getattr(s, field) is not None for s in reps]
        if any(have) and not all(have):
            raise UnsupportedSampleError(f"FreiHAND {raw}: {field} on some records but not all (one JSON list per split)")
        if all(have):
            dumps[name] = [json_floats(s.keypoints_3d) if name == "xyz" else [_mano_entry(s)] for s in reps]
    if "xyz" in dumps:
        dumps["scale"] = [float(np.linalg.norm(s.keypoints_3d[9].astype(np.float64) - s.keypoints_3d[10])) for s in reps]
    (root / raw / "rgb").mkdir(parents=True, exist_ok=True)
    for stem, entries in dumps.items():
        (root / f"{raw}_{stem}.json").write_text(json.dumps(entries))
    for idx, group in enumerate(groups):
        for v, s in zip(versions, group):
            data = encoded_image(s, "jpeg", source_root, quality)
            (root / raw / "rgb" / f"{idx + n * v:08d}.jpg").write_bytes(data)
    if raw == "training" and all(s.mask is not None for s in reps):
        (root / raw / "mask").mkdir(parents=True, exist_ok=True)
        for idx, s in enumerate(reps):
            grey = (rle.decode(s.mask) * 255).astype(np.uint8)
            data = image_io.encode(np.repeat(grey[:, :, None], 3, axis=2), ".jpg", quality=quality)
            (root / raw / "mask" / f"{idx:08d}.jpg").write_bytes(data)
    elif raw == "evaluation" and any(s.mask is not None for s in reps):
        # the layout has no evaluation masks (their release format is not documented): no loss to warn about
        log.info("FreiHAND evaluation: masks not written (no documented format)")
    elif any(s.mask is not None for s in reps):
        log.warning("FreiHAND %s: masks not written (only some records have one)", raw)


def _mano_entry(s: HandSample) -> list[float]:
    """The 61 values: pose, betas, uv_root, scale (from extras, else computed from 3D and K)."""
    extras = s.extras or {}
    require_labels(s, ["mano_betas"], "FreiHAND MANO")
    if "mano_uv_root" in extras and "mano_scale" in extras:
        uv_root, scale = [float(x) for x in extras["mano_uv_root"]], float(extras["mano_scale"])
    else:
        require_labels(s, ["keypoints_3d"], "FreiHAND MANO uv_root / scale (not in extras)")
        root3d = s.keypoints_3d[9].astype(np.float64)
        K = s.camera_K.astype(np.float64)
        uv_root = project(root3d[None], K)[0].tolist()
        scale = float((K[0, 0] + K[1, 1]) / 2 / root3d[2])
    return json_floats(s.mano_pose) + json_floats(s.mano_betas) + uv_root + [scale]
