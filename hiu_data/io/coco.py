"""COCO keypoint JSON for hands: export converted datasets so pycocotools and mmpose can use them.

The file written by :func:`write_coco` / :func:`export_coco`:

- one category ``{"id": 1, "name": "hand", "keypoints": [21 HAND21 names], "skeleton":
  [[parent, child], ...] 1-based, "sigmas": [21 OKS constants]}`` (``sigmas`` is an extra key:
  pycocotools' ``COCOeval`` assumes the 17 body keypoints unless ``params.kpt_oks_sigmas`` is
  set to it, see :data:`HAND_OKS_SIGMAS`);
- ``images``: ``id`` (1-based), ``file_name`` (relative to the image folder written beside the
  JSON, by default ``<OUT.json folder>/images/``), ``width``, ``height``, ``hiu_image_id``;
- ``annotations``, one per hand row: ``keypoints`` [x, y, v] x 21, ``num_keypoints``, ``bbox``
  [x, y, w, h], ``area`` (mask area, else box area), ``iscrowd`` 0, ``segmentation`` (RLE with
  string counts, only when the row has a mask), and the extra keys ``hand_side``,
  ``keypoints_3d`` (21 x 3 metres, camera frame, null where missing), ``camera_K`` (3 x 3),
  ``mano_pose`` / ``mano_betas`` when present, and ``hiu`` (sample_id, dataset, split,
  subset, label_source, keypoint_confidence, confidence, review_status, extras) so that
  ``convert coco`` restores the rows.

Coordinate convention: COCO keypoints are pixel indices (the centre of the top-left pixel is
(0, 0); detectron2 adds 0.5 to them when loading and mmpose's codecs place pixel j at j),
while hiu puts pixel centres at +0.5. Export therefore writes ``x - 0.5, y - 0.5``
(:data:`PIXEL_OFFSET`) and the COCO reader adds it back; boxes and masks are continuous /
pixel grids in both and are not shifted. Missing keypoints are written as (0, 0, 0).

Images are copied as stored (never re-encoded), once per ``image_id``, named after it. The
JSON appears only when everything is written (images are staged in a temporary folder and
moved into place first), so a failed export leaves no JSON and no stray image.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from hiu_data.errors import HiuError, OutputExistsError
from hiu_data.io import rle
from hiu_data.io.images import image_suffix, sample_image_bytes
from hiu_data.io.manifest import first_missing_folder, remove_empty_folders, staging_path
from hiu_data.schema import HandSample
from hiu_data.skeleton import BONES, JOINT_NAMES, NUM_JOINTS

log = logging.getLogger(__name__)

PIXEL_OFFSET = 0.5
"""Subtracted from hiu's continuous keypoint coordinates on export, added back on import."""
CATEGORY_ID = 1

# COCO-WholeBody's per-keypoint OKS constants of the hand (Jin et al., ECCV 2020; the values
# mmpose's coco_wholebody_hand metainfo carries), by joint: that dataset's hand order is HAND21's.
_HAND_SIGMAS_BY_JOINT: dict[str, float] = {
    "wrist": 0.029,
    "thumb_cmc": 0.022, "thumb_mcp": 0.035, "thumb_ip": 0.037, "thumb_tip": 0.047,
    "index_mcp": 0.026, "index_pip": 0.025, "index_dip": 0.024, "index_tip": 0.035,
    "middle_mcp": 0.018, "middle_pip": 0.024, "middle_dip": 0.022, "middle_tip": 0.026,
    "ring_mcp": 0.017, "ring_pip": 0.021, "ring_dip": 0.021, "ring_tip": 0.032,
    "little_mcp": 0.02, "little_pip": 0.019, "little_dip": 0.022, "little_tip": 0.031,
}
HAND_OKS_SIGMAS: tuple[float, ...] = tuple(_HAND_SIGMAS_BY_JOINT[name] for name in JOINT_NAMES)
"""Per-keypoint OKS sigmas in HAND21 order, also written as the category's ``sigmas``.

``COCOeval(gt, dt, "keypoints")`` needs them as ``params.kpt_oks_sigmas`` (its default has 17
values and fails on 21 keypoints). They were set on COCO-WholeBody, whose hands belong to
person annotations and are scaled by the person's area; here ``area`` is the hand's, so the
same pixel error scores lower: AP on these files compares models, not with COCO-WholeBody's.
"""
HIU_KEYS: tuple[str, ...] = ("sample_id", "dataset", "split", "subset", "label_source", "keypoint_confidence",
                             "confidence", "review_status", "extras")


def hand_category() -> dict[str, Any]:
    """The single ``hand`` category: HAND21 keypoint names, a 1-based skeleton, the OKS sigmas."""
    return {"id": CATEGORY_ID, "name": "hand", "supercategory": "hand", "keypoints": list(JOINT_NAMES),
            "skeleton": [[a + 1, b + 1] for a, b in BONES], "sigmas": list(HAND_OKS_SIGMAS)}


def _nullable(values: np.ndarray | None) -> Any:
    """Array as nested lists with NaN -> null (JSON has no NaN)."""
    if values is None:
        return None
    arr = np.asarray(values, dtype=np.float64)
    return np.where(np.isfinite(arr), arr, None).tolist()


def file_name_for(image_id: str, data: bytes) -> str:
    """A relative file name made from an image id: safe characters, no ``..``, the image's suffix."""
    parts = [re.sub(r"[^A-Za-z0-9._-]+", "_", p) for p in image_id.split("/")]
    parts = [p for p in parts if p not in ("", ".", "..")] or ["image"]
    # ids made from file names (folder rows) already end in a suffix: do not double it
    parts[-1] = re.sub(r"\.(jpe?g|png|webp|bmp)$", "", parts[-1], flags=re.IGNORECASE) or "image"
    return "/".join(parts) + image_suffix(data)


def annotation_of(sample: HandSample, ann_id: int, image_number: int, pixel_offset: float = PIXEL_OFFSET) -> dict[str, Any]:
    """The COCO annotation dict of one hand row (see the module docstring for the keys)."""
    keypoints = np.zeros((NUM_JOINTS, 3))
    if sample.keypoints_2d is not None:
        kp = np.asarray(sample.keypoints_2d, dtype=np.float64)
        ok = (sample.visibility > 0) & np.isfinite(kp).all(axis=1)
        keypoints[ok, :2] = kp[ok] - pixel_offset
        keypoints[ok, 2] = sample.visibility[ok]
    bbox = [float(v) for v in sample.bbox]
    ann: dict[str, Any] = {
        "id": ann_id, "image_id": image_number, "category_id": CATEGORY_ID, "iscrowd": 0,
        "keypoints": keypoints.reshape(-1).tolist(), "num_keypoints": int((keypoints[:, 2] > 0).sum()),
        "bbox": bbox, "area": bbox[2] * bbox[3], "hand_side": sample.hand_side,
    }
    if sample.mask is not None:
        ann["segmentation"] = rle.to_json(sample.mask)
        ann["area"] = float(rle.area(sample.mask))
    for key in ("keypoints_3d", "camera_K", "mano_pose", "mano_betas"):
        if getattr(sample, key) is not None:
            ann[key] = _nullable(getattr(sample, key))
    ann["hiu"] = {key: (_nullable(getattr(sample, key)) if isinstance(getattr(sample, key), np.ndarray)
                        else getattr(sample, key)) for key in HIU_KEYS}
    return ann


@dataclass
class CocoExportResult:
    """What an export wrote: the JSON, the image folder and the counts."""

    path: Path
    image_dir: Path
    images: int
    annotations: int


class _CocoWriter:
    """Collects annotations and stages image files; :meth:`commit` moves everything into place."""

    def __init__(self, out_json: Path, image_dir: Path, pixel_offset: float, made: Path | None = None) -> None:
        self.out_json, self.image_dir, self.pixel_offset, self.made = out_json, image_dir, pixel_offset, made
        self.staging = staging_path(image_dir)
        self.staging.mkdir(parents=True)
        self.images: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []
        self._numbers: dict[str, int] = {}
        self._names: set[str] = set()

    def add(self, sample: HandSample, source_root: str | Path | None) -> None:
        number = self._numbers.get(sample.image_id)
        if number is None:
            data = sample_image_bytes(sample.image_bytes, sample.image_path, source_root, sample.sample_id)
            name = file_name_for(sample.image_id, data)
            stem, suffix = name.rsplit(".", 1)
            k = 1
            while name in self._names:  # two ids that sanitise to one name
                k += 1
                name = f"{stem}_{k}.{suffix}"
            self._names.add(name)
            (self.staging / name).parent.mkdir(parents=True, exist_ok=True)
            (self.staging / name).write_bytes(data)
            number = self._numbers[sample.image_id] = len(self.images) + 1
            self.images.append({"id": number, "file_name": name, "width": int(sample.width),
                                "height": int(sample.height), "hiu_image_id": sample.image_id})
        self.annotations.append(annotation_of(sample, len(self.annotations) + 1, number, self.pixel_offset))

    def commit(self, description: str) -> CocoExportResult:
        for path in sorted(p for p in self.staging.rglob("*") if p.is_file()):
            target = self.image_dir / path.relative_to(self.staging)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
        shutil.rmtree(self.staging, ignore_errors=True)
        content = {
            "info": {"description": description, "date_created": _dt.date.today().isoformat(),
                     "hiu_pixel_offset": self.pixel_offset},
            "images": self.images, "annotations": self.annotations, "categories": [hand_category()],
        }
        tmp = staging_path(self.out_json)
        tmp.write_text(json.dumps(content))
        os.replace(tmp, self.out_json)
        return CocoExportResult(self.out_json, self.image_dir, len(self.images), len(self.annotations))

    def abort(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
        remove_empty_folders(self.out_json.parent, self.made)


def _prepare(out_json: Path, image_dir: Path | None, overwrite: bool) -> tuple[Path, Path, Path | None]:
    """Check the output paths and make the JSON's folder; returns the paths and the first
    folder made here (None when all were there), which an aborted export removes again."""
    out_json = Path(out_json)
    if out_json.exists() and not overwrite:
        raise OutputExistsError(f"{out_json}: output exists; pass --overwrite to replace it")
    if out_json.suffix.lower() != ".json":
        raise HiuError(f"{out_json}: the COCO output must be a .json file")
    image_dir = Path(image_dir) if image_dir is not None else out_json.parent / "images"
    for folder in (out_json.parent, image_dir):
        if folder.exists() and not folder.is_dir():
            raise HiuError(f"{folder}: exists and is not a folder")
    made = first_missing_folder(out_json.parent)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    return out_json, image_dir, made


def write_coco(samples: Iterable[HandSample], out_json: str | Path, image_dir: str | Path | None = None, *,
               source_root: str | Path | None = None, overwrite: bool = False, pixel_offset: float = PIXEL_OFFSET,
               description: str = "hiu export") -> CocoExportResult:
    """Write records as a COCO keypoint JSON plus their images (see the module docstring).

    Args:
        image_dir: where the images go (default ``<out_json folder>/images``); ``file_name``
            is relative to it.
        source_root: root of reference-mode image paths.
    Raises:
        OutputExistsError: ``out_json`` exists and ``overwrite`` is False.
    """
    out_json, image_dir, made = _prepare(Path(out_json), None if image_dir is None else Path(image_dir), overwrite)
    writer = _CocoWriter(out_json, image_dir, pixel_offset, made)
    try:
        for sample in samples:
            writer.add(sample, source_root)
    except BaseException:
        writer.abort()
        raise
    return writer.commit(description)


def export_coco(dataset_dir: str | Path, out_json: str | Path, *, splits: Sequence[str] | None = None,
                image_dir: str | Path | None = None, overwrite: bool = False,
                progress: Callable[[int], None] | None = None) -> CocoExportResult:
    """Export converted dataset folder(s) (optionally some splits) as COCO keypoints + images.

    Reference-mode images are read from the raw root recorded in each dataset's manifest.
    """
    from hiu_data.io.parquet import HandDataset, find_dataset_dirs

    # The input is checked before anything is written: with the two paths swapped the user
    # hears that the dataset is not one, and an export with no rows leaves no folder behind.
    datasets = [(folder, HandDataset(folder, split=list(splits) if splits else None))
                for folder in find_dataset_dirs(dataset_dir)]
    if not sum(len(dataset) for _, dataset in datasets):
        raise HiuError(f"{dataset_dir}: no rows to export" + (f" in split(s) {', '.join(splits)}" if splits else ""))
    out_json, image_dir_path, made = _prepare(Path(out_json), None if image_dir is None else Path(image_dir), overwrite)
    writer = _CocoWriter(out_json, image_dir_path, PIXEL_OFFSET, made)
    names = []
    try:
        for folder, dataset in datasets:
            root = dataset.manifests[folder].get("source_root")
            names.append(dataset.manifests[folder].get("dataset", folder.name))
            for batch in dataset.iter_batches(256):
                for sample in batch:
                    writer.add(sample, root)
                if progress is not None:
                    progress(len(batch))
    except BaseException:
        writer.abort()
        raise
    split_text = f" ({', '.join(splits)})" if splits else ""
    result = writer.commit(f"hiu export of {', '.join(names)}{split_text}")
    log.info("wrote %s: %d images, %d hands", result.path, result.images, result.annotations)
    return result
