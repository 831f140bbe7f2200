"""Unlabeled image folders: the input of pseudo-labelling.

Layout read: every image file (:data:`hiu_data.io.images.IMAGE_SUFFIXES`: ``.jpg``, ``.jpeg``,
``.png``, ``.webp``, ``.bmp``, any case) under ``root``, searched recursively (hidden files and
folders are ignored), in sorted path order. Rows have
``split="unlabeled"``, ``label_source="dataset"`` and no labels (keypoints, 3D, K, MANO and mask
are None, visibility 0).

- Without boxes: one row per image with ``bbox`` = the whole image.
- With ``boxes=DETECTIONS.json`` (``--boxes``): one row per hand box. Accepted files: a COCO
  dict (``images`` with ``id`` / ``file_name``, ``annotations`` with ``image_id`` / ``bbox``
  [x, y, w, h] pixels / optional ``score`` / ``category_id``), or a COCO results list whose
  ``image_id`` (or ``file_name``) is the image's path relative to ``root`` (or its unique file
  stem), or a number naming the one image whose stem is that number, zero-padded or not (a
  detector's results on COCO images: ``785`` is ``000000000785.jpg``). Images without a box get
  no row. Boxes naming images that are not under ``root`` (deleted since the detector ran) are
  left out, with a warning naming how many; a file none of whose boxes names an image under
  ``root`` is the wrong file (or folder), an error. A box reaching past the image's border is clipped to the image (a row's
  ``bbox`` lies inside its image, as in every converted dataset and in training); a box
  entirely outside its image is an error. ``min_score`` drops weaker boxes; the score is kept
  in ``extras["detection_score"]``. When some of a COCO dict's ``categories`` have "hand" in
  their name, boxes of the other categories (a hand-object detector's objects, people) are
  left out.
- ``hand_side``: from a box's ``hand_side`` ("left"/"right") or ``is_left`` key, or a category
  name containing "left"/"right"; otherwise unknown, stored as the placeholder ``"right"``
  with ``extras["hand_side_known"] = False`` (the schema needs a side).

``sample_id`` is ``folder/unlabeled/<relative path>`` (+ ``/box<k>``), ``image_id``
``folder/<relative path>``. A corrupt or truncated image is reported (or skipped and counted
with ``on_error="skip"``); image sizes come from the file headers, images are not decoded
(webp and bmp excepted).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from hiu_data.errors import DatasetFormatError
from hiu_data.formats import Skipped
from hiu_data.formats._common import (UnsupportedSampleError, clip_box, emit, guarded, id_key, image_file, load_json,
                                      parallel_map, select_splits)
from hiu_data.io.images import IMAGE_SUFFIXES, decode, encode, image_suffix, sample_image_bytes
from hiu_data.schema import HandSample
from hiu_data.skeleton import NUM_JOINTS

log = logging.getLogger(__name__)

NAME = "folder"
SPLITS: tuple[str, ...] = ("unlabeled",)
CAMERA = None
BOXES_FILE = "detections.json"
"""Name of the COCO detections file :func:`write` puts beside the images when records have boxes."""

Box = tuple[list[float], str | None, float | None]


def image_paths(root: Path) -> list[str]:
    """Root-relative POSIX paths of the images under ``root``, sorted, hidden entries skipped."""
    found = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if path.suffix.lower() in IMAGE_SUFFIXES and not any(p.startswith(".") for p in rel.parts) and path.is_file():
            found.append(rel.as_posix())
    return sorted(found)


def _side_of(det: dict[str, Any], category: str) -> str | None:
    side = det.get("hand_side")
    if side in ("left", "right"):
        return side
    if det.get("is_left") in (0, 1, True, False):
        return "left" if det["is_left"] else "right"
    for name in ("left", "right"):
        if name in category.lower():
            return name
    return None


def load_boxes(path: Path, known: Sequence[str], min_score: float = 0.0) -> dict[str, list[Box]]:
    """Parse a detections JSON into ``{relative image path: [(bbox, side, score), ...]}``.

    Boxes naming an image that is not in ``known`` are left out and counted in a warning.

    Raises:
        DatasetFormatError: malformed file, boxes that are not finite with positive size, or
            not one box naming an image of ``known``.
    """
    data = load_json(Path(path), "a COCO-format detections JSON")
    names: dict[Any, str] = {}
    categories: dict[Any, str] = {}
    if isinstance(data, dict):
        if not isinstance(data.get("annotations"), list):
            raise DatasetFormatError(path, "expected a COCO dict with 'annotations' (and 'images') or a list of detections")
        names = {id_key(im.get("id"), path, "images[].id"): im.get("file_name")
                 for im in data.get("images", []) if isinstance(im, dict)}
        categories = {id_key(c.get("id"), path, "categories[].id"): str(c.get("name", ""))
                      for c in data.get("categories", []) if isinstance(c, dict)}
        detections = data["annotations"]
    elif isinstance(data, list):
        detections = data
    else:
        raise DatasetFormatError(path, "expected a COCO dict or a list of detections")
    known_set = set(known)
    by_stem: dict[str, list[str]] = {}
    by_number: dict[int, list[str]] = {}
    for rel in known:
        by_stem.setdefault(Path(rel).stem, []).append(rel)
        if Path(rel).stem.isdigit():
            by_number.setdefault(int(Path(rel).stem), []).append(rel)
    # A detector of hands and other things (held objects, people) lists them all: when some
    # category names a hand, the boxes of the others are not hands.
    hand_ids = {cid for cid, name in categories.items() if "hand" in name.lower()}
    boxes: dict[str, list[Box]] = {}
    others = 0
    elsewhere: dict[str, int] = {}  # boxes per named image that is not in ``known``
    named_here = 0
    for number, det in enumerate(detections):
        if not isinstance(det, dict):
            raise DatasetFormatError(path, f"detection {number} is not an object")
        if hand_ids and id_key(det.get("category_id"), path, f"detection {number}: category_id") not in hand_ids:
            others += 1
            continue
        image_id = id_key(det.get("image_id"), path, f"detection {number}: image_id")
        name = det.get("file_name") or names.get(image_id, image_id)
        if isinstance(name, int) and not isinstance(name, bool) and len(by_number.get(name, [])) == 1:
            name = by_number[name][0]  # COCO's own file names: the image id, zero-padded
        if not isinstance(name, str):
            raise DatasetFormatError(path, f"detection {number}: image_id {det.get('image_id')!r} names no image "
                                           "(give an 'images' list or file names)")
        same_stem = by_stem.get(Path(name).stem, [])
        if name not in known_set and len(same_stem) > 1:
            raise DatasetFormatError(path, f"detection {number}: image {name!r} may be any of {', '.join(same_stem)}: "
                                           "name it by its path relative to the folder")
        rel = name if name in known_set else (same_stem[0] if same_stem else None)
        if rel is None:
            # A folder from which images were deleted after the detector ran (or after a first
            # pseudo-labelling round) keeps its detections file: the rest of it still holds.
            elsewhere[name] = elsewhere.get(name, 0) + 1
            continue
        named_here += 1
        try:
            bbox = [float(v) for v in det["bbox"]]
        except (KeyError, TypeError, ValueError):
            raise DatasetFormatError(path, f"detection {number}: needs 'bbox' [x, y, w, h]") from None
        if len(bbox) != 4 or not np.isfinite(bbox).all() or bbox[2] <= 0 or bbox[3] <= 0:
            raise DatasetFormatError(path, f"detection {number}: bbox {bbox} is not a finite box of positive size")
        score = det.get("score")
        if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float))
                                  or not np.isfinite(score)):
            raise DatasetFormatError(path, f"detection {number}: score must be a finite number, not {score!r}")
        if score is not None and score < min_score:
            continue
        side = _side_of(det, categories.get(id_key(det.get("category_id"), path, f"detection {number}: category_id"), ""))
        boxes.setdefault(rel, []).append((bbox, side, None if score is None else float(score)))
    if others:
        log.info("%s: %d boxes of categories that are not hands left out", path.name, others)
    if elsewhere and not named_here:
        raise DatasetFormatError(path, f"none of its {sum(elsewhere.values())} boxes names an image of the folder "
                                       f"(the first names {next(iter(elsewhere))!r}): detections of another folder?")
    if elsewhere:
        names = sorted(elsewhere)
        listed = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        log.warning("%s: %d boxes name %s not in the folder (%s): left out", path, sum(elsewhere.values()),
                    "1 image that is" if len(names) == 1 else f"{len(names)} images that are", listed)
    return boxes


def _load_image(job: tuple[str, str, str, list[Box] | None, str | None]) -> list[HandSample]:
    root_s, rel, images, boxes, boxes_path = job
    base_id = f"{NAME}/unlabeled/{rel}"
    image = image_file(Path(root_s), rel, images, base_id)
    if boxes is None:
        boxes_ids = [([0.0, 0.0, float(image.width), float(image.height)], None, None, base_id)]
    else:
        boxes_ids = []
        for k, (b, s, sc) in enumerate(boxes):
            inside = clip_box(b, image.width, image.height)
            if inside is None:
                raise DatasetFormatError(Path(boxes_path or "--boxes"), f"box {k} of {rel}: bbox {b} lies outside "
                                                                        f"the {image.width}x{image.height} image")
            boxes_ids.append((inside, s, sc, f"{base_id}/box{k}"))
    rows = []
    for bbox, side, score, sid in boxes_ids:
        extras: dict[str, Any] = {}
        if side is None:
            extras["hand_side_known"] = False
        if score is not None:
            extras["detection_score"] = score
        rows.append(HandSample(
            sample_id=sid, dataset=NAME, split="unlabeled", image_id=f"{NAME}/{rel}", image_bytes=image.data,
            image_path=image.path, width=image.width, height=image.height, hand_side=side or "right",
            bbox=np.asarray(bbox, np.float32), visibility=np.zeros(NUM_JOINTS, np.uint8), extras=extras or None,
        ))
    return rows


def read(root: Path, *, splits: Sequence[str] | None = None, images: str = "embed", on_error: str = "fail",
         workers: int = 1, boxes: Path | str | None = None, min_score: float = 0.0,
         **options: Any) -> Iterator[HandSample | Skipped]:
    """Read an image folder as unlabeled rows (see the module docstring).

    Args:
        boxes: optional COCO-format detections JSON; one row per box instead of per image.
        min_score: boxes with a lower ``score`` are dropped.
    Yields:
        HandSample rows without labels, or Skipped markers for corrupt images with ``on_error="skip"``.
    Raises:
        DatasetFormatError: not a folder, no image in it, a bad detections file, a corrupt image.
    """
    select_splits(NAME, SPLITS, splits, images, on_error)
    root = Path(root)
    if not root.is_dir():
        raise DatasetFormatError(root, "missing folder; expected a folder of images here")
    rels = image_paths(root)
    if not rels:
        raise DatasetFormatError(root, f"no images ({', '.join(IMAGE_SUFFIXES)}) found (searched recursively)")
    per_image = None if boxes is None else load_boxes(Path(boxes), rels, float(min_score))
    if per_image is not None:
        log.info("folder: %d of %d images have hand boxes", len(per_image), len(rels))
        rels = [rel for rel in rels if rel in per_image]
    jobs = [(str(root), rel, images, None if per_image is None else per_image[rel], None if boxes is None else str(boxes))
            for rel in rels]
    yield from emit(parallel_map(guarded(_load_image), jobs, workers), on_error)


# --- writing ----------------------------------------------------------------------------


def _file_name(sample: HandSample, data: bytes) -> str:
    prefix = f"{NAME}/"
    if sample.image_id.startswith(prefix) and Path(sample.image_id).suffix.lower() in IMAGE_SUFFIXES:
        return sample.image_id[len(prefix):]
    suffix = image_suffix(data)
    parts = [re.sub(r"[^A-Za-z0-9._-]+", "_", p) for p in sample.image_id.split("/") if p not in ("", ".", "..")]
    return "/".join(parts or ["image"]) + suffix


def write(samples: Iterable[HandSample], root: Path, *, source_root: Path | None = None, **options: Any) -> None:
    """Write the images of records as a folder under ``root`` (labels are not written).

    Each image is written once, as stored (JPEG/PNG/webp/BMP; anything else as PNG). When some
    record's box is not the whole image, or an image has several records, the boxes go to
    ``root/detections.json`` (COCO dict) so that ``read(root, boxes=root / BOXES_FILE)``
    gives the same rows back.
    """
    root = Path(root)
    written: dict[str, str] = {}
    numbers: dict[str, int] = {}
    images, annotations = [], []
    need_boxes = False
    for sample in samples:
        rel = written.get(sample.image_id)
        if rel is None:
            data = sample_image_bytes(sample.image_bytes, sample.image_path, source_root, sample.sample_id)
            if image_suffix(data) not in IMAGE_SUFFIXES:
                data = encode(decode(data, sample.image_path or "<bytes>", sample.sample_id), ".png")
            rel = written[sample.image_id] = _file_name(sample, data)
            if rel in numbers:
                raise UnsupportedSampleError(f"{sample.sample_id}: a second image would be written as {rel}")
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
            numbers[rel] = len(images) + 1
            images.append({"id": numbers[rel], "file_name": rel, "width": sample.width, "height": sample.height})
        else:
            need_boxes = True
        image_number = numbers[rel]
        full = np.allclose(sample.bbox, [0, 0, sample.width, sample.height])
        need_boxes |= not full
        det: dict[str, Any] = {"id": len(annotations) + 1, "image_id": image_number, "category_id": 1,
                               "bbox": [float(v) for v in sample.bbox]}
        if (sample.extras or {}).get("hand_side_known", True):
            det["hand_side"] = sample.hand_side
        if (sample.extras or {}).get("detection_score") is not None:
            det["score"] = float(sample.extras["detection_score"])
        annotations.append(det)
    if need_boxes:
        content = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "hand"}]}
        (root / BOXES_FILE).write_text(json.dumps(content))
