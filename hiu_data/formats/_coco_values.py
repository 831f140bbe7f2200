"""Values of COCO-style hand annotations: keypoints and what their ``v`` means, boxes, masks,
and the order of the 21 points. The conventions are those of :mod:`hiu_data.formats.coco`'s
docstring; this module holds the parsing so that the reader stays about the file's layout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from hiu_data.errors import DatasetFormatError
from hiu_data.formats._common import as_array, bbox_from_keypoints, clip_box, visibility_in_image
from hiu_data.skeleton import FINGERS, NUM_JOINTS, ROOT


def array_or_none(value: Any, shape: tuple[int, ...], path: Path, what: str, sid: str) -> np.ndarray | None:
    """A nullable JSON array (null elements -> NaN) as float32 of ``shape``, or None."""
    if value is None:
        return None
    flat = np.asarray(value, dtype=object).reshape(-1)
    cleaned = [np.nan if v is None else v for v in flat]
    return as_array(cleaned, (int(np.prod(shape)),), path, what, sid, allow_nan=True).reshape(shape).astype(np.float32)


def is_box_outline(segm: Any) -> bool:
    """Whether ``segm`` is one polygon that fills its bounding box: an axis-aligned rectangle,
    as mmpose's hand conversions write the box's outline in place of a mask."""
    if not (isinstance(segm, list) and len(segm) == 1 and isinstance(segm[0], list) and len(segm[0]) >= 6):
        return False
    try:
        xy = np.asarray(segm[0], dtype=np.float64).reshape(-1, 2)
    except (TypeError, ValueError):
        return False  # reported by the mask reader
    x, y = xy[:, 0], xy[:, 1]
    area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
    box_area = float(np.ptp(x) * np.ptp(y))
    return box_area > 0 and area >= 0.99 * box_area


def mask_of(segm: Any, height: int, width: int, path: Path, sid: str) -> dict[str, Any] | None:
    if not segm or is_box_outline(segm):
        return None
    try:
        if isinstance(segm, dict) and isinstance(segm.get("counts"), str):
            rle = {"size": [int(segm["size"][0]), int(segm["size"][1])], "counts": segm["counts"].encode("ascii")}
        else:
            objs = mask_utils.frPyObjects(segm, height, width)
            rle = mask_utils.merge(objs) if isinstance(objs, list) else objs
    except Exception as e:  # pycocotools raises bare exceptions on inputs it does not support
        raise DatasetFormatError(path, f"segmentation is neither RLE nor polygons ({e})", sid) from None
    if [int(rle["size"][0]), int(rle["size"][1])] != [height, width]:
        raise DatasetFormatError(path, f"segmentation size {list(rle['size'])} is not the image's [{height}, {width}]", sid)
    return {"size": [height, width], "counts": bytes(rle["counts"])}


def v_values(raw: Any) -> np.ndarray:
    """The ``v`` column of a keypoint list, or an empty array when it is malformed (reported
    where the annotation is read)."""
    try:
        return np.asarray(raw, dtype=np.float64).reshape(-1, 3)[:, 2]
    except (TypeError, ValueError):
        return np.zeros(0)


def uses_occlusion_flags(v: np.ndarray) -> bool:
    """Whether ``v`` values are COCO's 0 / 1 / 2 flags with a 2 among them."""
    return bool(np.isin(v, (0, 1, 2)).all() and (v == 2).any())


def keypoints_of(raw: Any, order: np.ndarray, offset: float, flags: bool, size: tuple[int, int], path: Path,
               what: str, sid: str) -> tuple[np.ndarray | None, np.ndarray]:
    """(21, 2) float32 hiu pixels (NaN unlabelled) or None, and (21,) uint8 visibility.

    ``flags``: ``v`` is COCO's occlusion flag (1 occluded, 2 visible); otherwise ``v > 0`` only
    marks a labelled point, whose visibility is then 2 inside the ``size`` (width, height)
    image and 1 outside it. Fractional ``v`` (a reliability score) is always read that way.
    """
    if isinstance(raw, list) and raw and all(isinstance(p, list) for p in raw):  # mmpose's RHD file
        pts = as_array(raw, (NUM_JOINTS, 3), path, what, sid)
    else:
        pts = as_array(raw, (NUM_JOINTS * 3,), path, what, sid).reshape(NUM_JOINTS, 3)
    pts = pts[order]
    labelled = pts[:, 2] > 0
    kp2 = np.where(labelled[:, None], pts[:, :2] + offset, np.nan).astype(np.float32)
    from_image = visibility_in_image(kp2, *size)
    flag = np.clip(pts[:, 2], 1, 2)
    vis = np.where(flags & (flag == np.rint(flag)), flag, from_image)
    vis = np.where(labelled, vis, 0).astype(np.uint8)
    if not labelled.any():
        return None, vis
    return kp2, vis


def box_of(raw: Any, kp2: np.ndarray | None, vis: np.ndarray, size: tuple[int, int], path: Path, what: str,
         sid: str) -> np.ndarray | None:
    """(4,) float32 x, y, w, h: the annotation's box cut to the ``size`` (width, height) image;
    the labelled keypoints' box where it has none, or one of zero size or outside the image;
    None when neither exists."""
    box = None if raw is None else clip_box(as_array(raw, (4,), path, what, sid), *size)
    if box is not None:
        return np.asarray(box, dtype=np.float32)
    return None if kp2 is None else bbox_from_keypoints(kp2, vis, *size)


def is_placeholder(ann: dict[str, Any], hand_categories: dict[Any, str]) -> bool:
    """An annotation of a hand category with no labelled point and no box of positive size
    (malformed values are not judged here: they are reported where the annotation is read)."""
    if isinstance(ann.get("category_id"), (list, dict)) or ann.get("category_id") not in hand_categories:
        return False
    v = v_values(ann.get("keypoints"))
    try:
        box = np.asarray(ann.get("bbox", [0, 0, 0, 0]), dtype=np.float64).reshape(4)
    except (TypeError, ValueError):
        return False
    return v.size == NUM_JOINTS and not (v > 0).any() and not (box[2] > 0 and box[3] > 0)


TIP_FIRST_ORDER = np.array([ROOT] + [j for chain in FINGERS.values() for j in reversed(chain)])
"""Gather from a wrist-first order whose fingers run tip -> MCP (RHD's) to HAND21."""


def fingers_run_tip_first(annotations: list[Any], hand_categories: dict[Any, str]) -> bool:
    """Whether most hands of the file have each finger's first point farther from the wrist
    than its last: the points run tip -> MCP, whatever the category calls them (mmpose's RHD
    file names them thumb1..thumb4 in OpenPose's order and stores RHD's)."""
    votes = []
    for ann in annotations:
        if not isinstance(ann, dict) or isinstance(ann.get("category_id"), (list, dict)) \
                or ann.get("category_id") not in hand_categories:
            continue
        try:
            pts = np.asarray(ann.get("keypoints"), dtype=np.float64).reshape(NUM_JOINTS, 3)
        except (TypeError, ValueError):
            continue  # reported where the annotation is read
        if pts[ROOT, 2] <= 0:
            continue
        reach = {j: np.linalg.norm(pts[j, :2] - pts[ROOT, :2]) for j in range(NUM_JOINTS) if pts[j, 2] > 0}
        vote = sum(np.sign(reach[chain[0]] - reach[chain[-1]]) for chain in FINGERS.values()
                   if chain[0] in reach and chain[-1] in reach)
        if vote:
            votes.append(vote > 0)
    return sum(votes) > len(votes) / 2
