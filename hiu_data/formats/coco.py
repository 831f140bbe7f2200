"""COCO-style hand keypoint files: hiu's own export, COCO-WholeBody hands, OneHand10K-style files.

``hiu-data convert coco ANNOTATIONS.json IMAGE_ROOT OUT`` (``read(annotations, image_root=...)``)
reads either kind of annotation, or both in one file:

- **Hand category**: a category whose ``keypoints`` has 21 names (hiu's export, OneHand10K,
  mmpose's hand files); its annotations carry ``keypoints`` [x, y, v] x 21, flat or as 21
  [x, y, v] lists (mmpose's RHD file). The order is HAND21 / OpenPose unless the 21 names are
  exactly hiu's HAND21 names in another order (reordered by name), or the points themselves
  show that the fingers run tip -> MCP: mmpose's RHD file keeps RHD's order under OpenPose's
  names (thumb1..thumb4), so names cannot tell. When, in most hands of the file, a finger's
  first point lies farther from the wrist than its last, every finger is reversed (logged).
- **COCO-WholeBody**: person annotations with ``lefthand_kpts`` / ``righthand_kpts`` (21 x 3,
  OpenPose hand order), ``lefthand_box`` / ``righthand_box`` and ``*hand_valid``; each valid
  hand is a row (the person's left hand is ``hand_side="left"``: images are not mirrored).
  The person's ``segmentation`` is not a hand mask and is not read.

Values: keypoints are COCO pixel indices; :data:`hiu_data.io.coco.PIXEL_OFFSET` (0.5) is added
so that pixel centres sit at +0.5 (``pixel_offset=0`` keeps them as stored). ``v`` = 0 is an
unlabelled point (NaN). What a positive ``v`` means depends on the file:

- COCO's flags (1 labelled but occluded, 2 visible) in hiu's exports (annotations with a
  ``hiu`` key) and in files whose hand annotations use ``v`` = 2 anywhere;
- only "labelled" in files that never use 2: mmpose's hand conversions (OneHand10K,
  FreiHAND, RHD, CMU Panoptic) write 1 for every labelled point, and mmpose reads
  ``min(1, v)``. Visibility is then 2 inside the image and 1 outside, as for every dataset
  without occlusion labels;
- COCO-WholeBody hands: per hand, since the release mixes conventions (its data_format.md:
  "some keypoints may have float keypoint visibility ... v>0 means that the keypoint is
  reliable"): a hand whose ``v`` are 0 / 1 / 2 with a 2 among them keeps COCO's flags; a hand
  with fractional ``v`` (scores such as 0.13) or only 1s is read as labelled-only.

A fractional ``v`` is read as labelled-only in any file.

``bbox`` comes from the annotation, cut to the image (a row's box lies inside its image, as
in every converted dataset); where it is missing, of zero size or outside the image, from the
labelled keypoints. An annotation with neither a labelled point nor a box (a placeholder) is
no hand and gives no row (counted in the log). ``segmentation`` (RLE, compressed or not, or
polygons) of hand annotations becomes ``mask``, except a single polygon that fills its
bounding box: mmpose's hand conversions write the box's outline there, which is no hand
shape. ``hand_side`` comes from a ``hand_side`` / ``hand_type`` (mmpose's RHD file) /
``is_left`` key or a category name with left/right, else it is the placeholder ``"right"``
with ``extras["hand_side_known"] = False``. hiu's extra keys (``keypoints_3d``, ``camera_K``,
``mano_pose``, ``mano_betas``, ``hiu``) are restored; the original sample id is kept in
``extras["origin_sample_id"]`` (the first one: an export of a dataset converted from COCO
already carries it, and it is kept through any number of round trips).

Split: the ``hiu`` key's split (``unlabeled`` included, as pseudo-label exports have it), else
the ``split`` option, else the file name (``train``, ``val`` or ``test`` in it), else ``train``. Ids: ``coco/<split>/<annotation id>[/<side>]``,
``image_id`` ``coco/<image id>``, ``subset`` the file stem. In reference mode the image path
is stored absolute (the manifest's source root is the JSON file, not the image folder).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from hiu_data.errors import DatasetFormatError
from hiu_data.formats import Skipped
from hiu_data.formats._coco_values import (TIP_FIRST_ORDER, array_or_none, box_of, fingers_run_tip_first,
                                           is_placeholder, keypoints_of, mask_of, uses_occlusion_flags, v_values)
from hiu_data.formats._common import emit, guarded, id_key, image_file, load_json, parallel_map, select_splits
from hiu_data.io.coco import PIXEL_OFFSET, write_coco
from hiu_data.schema import HandSample
from hiu_data.skeleton import JOINT_NAMES, NUM_JOINTS

log = logging.getLogger(__name__)

NAME = "coco"
# "unlabeled": an hiu export of pseudo-labels or image folders keeps its rows out of training.
SPLITS: tuple[str, ...] = ("train", "val", "test", "unlabeled")
INPUTS: tuple[str, ...] = ("annotations", "image_root")
CAMERA = None
ANNOTATION_FILE = "annotations.json"
IMAGE_DIR = "images"


def _split_from_name(path: Path) -> str:
    stem = path.stem.lower()
    return next((s for s in ("train", "val", "test") if s in stem), "train")


def _side(ann: dict[str, Any], category: str) -> str | None:
    if ann.get("hand_side") in ("left", "right"):
        return ann["hand_side"]
    if ann.get("hand_type") in ("left", "right"):  # mmpose's RHD file
        return ann["hand_type"]
    if ann.get("is_left") in (0, 1, True, False):
        return "left" if ann["is_left"] else "right"
    return next((s for s in ("left", "right") if s in category.lower()), None)


def _hiu_block(ann: dict[str, Any], path: Path, sid: str) -> dict[str, Any]:
    """The ``hiu`` object of an annotation (what an hiu export adds), its fields type-checked."""
    hiu = ann.get("hiu") if isinstance(ann.get("hiu"), dict) else {}
    for key in ("subset", "label_source", "review_status", "sample_id"):
        if hiu.get(key) is not None and not isinstance(hiu[key], str):
            raise DatasetFormatError(path, f"hiu.{key} must be a string, not {hiu[key]!r}", sid)
    confidence = hiu.get("confidence")
    if confidence is not None and (isinstance(confidence, bool) or not isinstance(confidence, (int, float))):
        raise DatasetFormatError(path, f"hiu.confidence must be a number, not {confidence!r}", sid)
    if hiu.get("extras") is not None and not isinstance(hiu["extras"], dict):
        raise DatasetFormatError(path, f"hiu.extras must be an object, not {hiu['extras']!r}", sid)
    return hiu


def _category_row(ann: dict[str, Any], ctx: dict[str, Any], width: int, height: int, image_id: str,
                  base: dict[str, Any]) -> HandSample | None:
    """The row of an annotation of a hand category; None for a placeholder (no labelled point,
    no box in the image)."""
    path, offset = ctx["path"], ctx["pixel_offset"]
    split = ann["_split"]
    sid = f"{NAME}/{split}/{id_key(ann.get('id'), path, 'annotations[].id')}"
    hiu = _hiu_block(ann, path, sid)
    flags = ctx["occlusion_flags"] or "hiu" in ann
    kp2, vis = keypoints_of(ann["keypoints"], ctx["order"], offset, flags, (width, height), path, "keypoints", sid)
    side = _side(ann, ctx["hand_categories"][ann["category_id"]])
    extras = dict(hiu.get("extras") or {}) if "extras" in hiu else {}
    if side is None:
        extras["hand_side_known"] = False
    if hiu.get("sample_id"):
        # An export of a dataset converted from COCO carries the first id in its extras: keep
        # that one through any number of round trips, not the id of the last dataset.
        extras.setdefault("origin_sample_id", hiu["sample_id"])
    bbox = box_of(ann.get("bbox"), kp2, vis, (width, height), path, "bbox", sid)
    if bbox is None:  # nothing to crop, nothing to learn (read() counts these)
        return None
    return HandSample(
        sample_id=sid, split=split, subset=hiu["subset"] if "subset" in hiu else ctx["subset"],
        hand_side=side or "right", keypoints_2d=kp2, visibility=vis, bbox=bbox,
        mask=mask_of(ann.get("segmentation"), height, width, path, sid),
        keypoints_3d=array_or_none(ann.get("keypoints_3d"), (NUM_JOINTS, 3), path, "keypoints_3d", sid),
        camera_K=array_or_none(ann.get("camera_K"), (3, 3), path, "camera_K", sid),
        mano_pose=array_or_none(ann.get("mano_pose"), (48,), path, "mano_pose", sid),
        mano_betas=array_or_none(ann.get("mano_betas"), (10,), path, "mano_betas", sid),
        label_source=hiu.get("label_source") or "dataset",
        keypoint_confidence=array_or_none(hiu.get("keypoint_confidence"), (NUM_JOINTS,), path,
                                           "keypoint_confidence", sid),
        confidence=hiu.get("confidence"), review_status=hiu.get("review_status"), extras=extras or None,
        image_id=image_id, **base,
    )


def _hand_rows(ann: dict[str, Any], ctx: dict[str, Any], width: int, height: int, image_id: str,
               base: dict[str, Any]) -> list[HandSample]:
    path, offset = ctx["path"], ctx["pixel_offset"]
    rows = []
    if id_key(ann.get("category_id"), path, "category_id") in ctx["hand_categories"] and "keypoints" in ann:
        row = _category_row(ann, ctx, width, height, image_id, base)
        rows += [] if row is None else [row]
    for side in ("left", "right"):
        raw = ann.get(f"{side}hand_kpts")
        if raw is None or not ann.get(f"{side}hand_valid", True):
            continue
        sid = f"{NAME}/{ann['_split']}/{ann.get('id')}/{side}"
        flags = uses_occlusion_flags(v_values(raw))
        kp2, vis = keypoints_of(raw, np.arange(NUM_JOINTS), offset, flags, (width, height), path, f"{side}hand_kpts", sid)
        if kp2 is None:
            continue
        box = box_of(ann.get(f"{side}hand_box"), kp2, vis, (width, height), path, f"{side}hand_box", sid)
        rows.append(HandSample(sample_id=sid, split=ann["_split"], subset=ctx["subset"], hand_side=side,
                               keypoints_2d=kp2, visibility=vis, bbox=box, image_id=image_id, **base))
    return rows


def _load_image(job: tuple[str, dict[str, Any], list[dict[str, Any]], str, dict[str, Any]]) -> list[HandSample]:
    image_root_s, entry, anns, images, ctx = job
    image_root = Path(image_root_s)
    first = f"{NAME}/{anns[0]['_split']}/{anns[0].get('id')}"
    image = image_file(image_root, entry["file_name"], images, first)
    try:
        listed = {key: None if entry.get(key) is None else int(entry[key]) for key in ("width", "height")}
    except (TypeError, ValueError, OverflowError):
        raise DatasetFormatError(ctx["path"], f"image {entry['file_name']}: width and height must be whole numbers, "
                                              f"got {entry.get('width')!r} x {entry.get('height')!r}", first) from None
    wrong = [(key, value, actual) for (key, value), actual in zip(listed.items(), (image.width, image.height))
             if value is not None and value != actual]
    if wrong:
        # Images are read upright (EXIF orientation applied); a tool that ignored the tag lists
        # the stored size, turned.
        turned = (listed["width"], listed["height"]) == (image.height, image.width)
        hint = (" (width and height swapped: a file with an EXIF orientation is read upright, and its labels must be "
                "in that frame)") if turned else ""
        key, value, actual = wrong[0]
        raise DatasetFormatError(ctx["path"], f"image {entry['file_name']}: {key} {value} but the file has {actual}{hint}",
                                 first)
    path = None if image.path is None else str((image_root / entry["file_name"]).resolve())
    base = {"dataset": NAME, "image_bytes": image.data, "image_path": path, "width": image.width, "height": image.height}
    image_id = f"{NAME}/{entry.get('id')}"
    return [row for ann in anns for row in _hand_rows(ann, ctx, image.width, image.height, image_id, base)]


def _hand_categories(data: dict[str, Any], path: Path) -> tuple[dict[Any, str], np.ndarray]:
    categories = [c for c in data.get("categories") or [] if isinstance(c, dict)]
    hands = [c for c in categories if isinstance(c.get("keypoints"), list) and len(c["keypoints"]) == NUM_JOINTS]
    found = {id_key(c.get("id"), path, "categories[].id"): str(c.get("name", "")) for c in hands}
    if hands and sorted(hands[0]["keypoints"]) == sorted(JOINT_NAMES):
        return found, np.array([hands[0]["keypoints"].index(name) for name in JOINT_NAMES])
    if fingers_run_tip_first(data["annotations"], found):
        log.info("%s: the fingers' points run tip -> MCP (RHD's order); reordered to HAND21", path.name)
        return found, TIP_FIRST_ORDER
    return found, np.arange(NUM_JOINTS)


def read(root: Path, *, splits: Sequence[str] | None = None, images: str = "embed", on_error: str = "fail",
         workers: int = 1, image_root: Path | str | None = None, pixel_offset: float = PIXEL_OFFSET,
         split: str | None = None, **options: Any) -> Iterator[HandSample | Skipped]:
    """Read a COCO-style hand keypoint JSON (``root``) with images under ``image_root``.

    Args:
        image_root: folder that ``file_name`` is relative to (default: ``images/`` beside the
            JSON when it exists, else the JSON's folder).
        pixel_offset: added to keypoint x, y (COCO pixel indices -> hiu pixel centres at +0.5).
        split: the split of annotations without a ``hiu`` key (default: from the file name).
    Yields:
        HandSample per hand annotation (``keypoints_2d`` (21, 2) float32 pixels or None), or
        Skipped markers with ``on_error="skip"``.
    Raises:
        DatasetFormatError: not a COCO dict, no hand keypoints in it, bad values, bad images.
    """
    wanted = select_splits(NAME, SPLITS, splits, images, on_error)
    path = Path(root)
    if path.is_dir():
        if not (path / ANNOTATION_FILE).exists() and image_root is not None and Path(image_root).is_file():
            # The image folder and the JSON typed the other way round.
            raise DatasetFormatError(path, f"is a folder and {image_root} a file: the annotations JSON comes first "
                                           "(hiu-data convert coco ANNOTATIONS.json IMAGE_ROOT OUT)")
        path = path / ANNOTATION_FILE
    data = load_json(path, "a COCO-format hand keypoint JSON")
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(data.get("annotations"), list):
        raise DatasetFormatError(path, "expected a COCO dict with 'images' and 'annotations' lists")
    if image_root is None:
        image_root = path.parent / IMAGE_DIR if (path.parent / IMAGE_DIR).is_dir() else path.parent
    image_root = Path(image_root)
    if not image_root.is_dir():
        raise DatasetFormatError(image_root, "missing folder; expected the images of the COCO file here")
    if split is not None and split not in SPLITS:
        raise DatasetFormatError(path, f"split {split!r} is not one of {', '.join(SPLITS)}")
    hand_categories, order = _hand_categories(data, path)
    wholebody = any(isinstance(a, dict) and ("lefthand_kpts" in a or "righthand_kpts" in a) for a in data["annotations"])
    if not hand_categories and not wholebody:
        raise DatasetFormatError(path, "no hand keypoints: expected a category with 21 keypoints or COCO-WholeBody "
                                       "lefthand_kpts/righthand_kpts")
    default_split = split or _split_from_name(path)
    by_image: dict[Any, list[dict[str, Any]]] = {}
    placeholders = 0
    for ann in data["annotations"]:
        if not isinstance(ann, dict) or ann.get("iscrowd"):
            continue
        if is_placeholder(ann, hand_categories):
            placeholders += 1
            continue
        hiu = ann.get("hiu") if isinstance(ann.get("hiu"), dict) else {}
        ann_split = hiu.get("split") if hiu.get("split") in SPLITS else default_split
        if ann_split in wanted:
            by_image.setdefault(id_key(ann.get("image_id"), path, "annotations[].image_id"), []).append(
                {**ann, "_split": ann_split})
    entries = {id_key(im.get("id"), path, "images[].id"): im for im in data["images"] if isinstance(im, dict)}
    missing = [i for i in by_image if i not in entries or not isinstance(entries[i].get("file_name"), str)]
    if missing:
        raise DatasetFormatError(path, f"annotations refer to image id {missing[0]!r}, which has no images entry "
                                       "with a file_name")
    # One convention per file: mmpose's hand files write v = 1 for every labelled point, and a
    # file that never uses 2 has no "visible" flag for its 1 to be the opposite of.
    hand_v = [v_values(a.get("keypoints")) for a in data["annotations"] if isinstance(a, dict)
              and not isinstance(a.get("category_id"), (list, dict)) and a.get("category_id") in hand_categories
              and "hiu" not in a]
    ctx = {"path": path, "pixel_offset": float(pixel_offset), "hand_categories": hand_categories, "order": order,
           "subset": path.stem, "occlusion_flags": any((v == 2).any() for v in hand_v)}
    jobs = [(str(image_root), entries[i], anns, images, ctx) for i, anns in by_image.items()]
    if placeholders:
        log.info("coco %s: %d hand annotations without a labelled point or a box are not hands; left out",
                 path.name, placeholders)
    log.info("coco %s: %d images with hand annotations", path.name, len(jobs))
    yield from emit(parallel_map(guarded(_load_image), jobs, workers), on_error)


def write(samples: Iterable[HandSample], root: Path, *, source_root: Path | None = None, **options: Any) -> None:
    """Write records as ``root/annotations.json`` + ``root/images/`` (see :mod:`hiu_data.io.coco`)."""
    write_coco(samples, Path(root) / ANNOTATION_FILE, Path(root) / IMAGE_DIR, source_root=source_root, overwrite=True)
