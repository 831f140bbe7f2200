"""CMU Panoptic HandDB (Simon et al., CVPR 2017): 2D hand keypoints, left and right hands.

Layout read (any of the three downloads may be present under ``root``; ``root`` may also be
one of the three folders itself, or the folder holding a folder of them; a subset folder such
as ``manual_train`` is refused with the folder to give, ``--split`` chooses splits)::

    hand_labels/manual_train/<name>.jpg + <name>.json        1,912 hands  -> split train
    hand_labels/manual_test/<name>.jpg + <name>.json           846 hands  -> split test
    hand_labels_synth/synth1..synth4/<name>.jpg + <name>.json 14,261 hands -> split train
    hand143_panopticdb/imgs/%08d.jpg + hands_v143_14817.json  14,817 hands -> split train

(train = hand143_panopticdb + manual_train + synth, test = manual_test, the split of Simon
et al. and mmpose.) ``subset`` is the folder name (``manual_train``, ``synth2``,
``hand143_panopticdb``).

Per-hand JSON (hand_labels, synth): ``hand_pts`` 21 x (x, y, flag), flag 1 = labelled;
``is_left`` 1/0 -> ``hand_side``; ``head_size`` (the PCKh normaliser) is kept in ``extras``
when present. The ``_l`` / ``_r`` image files are byte-identical copies of one image, one per
annotated hand, so both rows share ``image_id`` (the file stem without the suffix).
hand143_panopticdb: one JSON ``{"root": [entry, ...]}`` with ``img_paths``, ``joint_self``
21 x (x, y, flag), ``img_width``, ``img_height``, ``objpos`` (kept in ``extras``).

Conventions and decisions:

- Joint order is already HAND21 (OpenPose hand format); 2D only (no K, no 3D).
- Coordinates are stored as the files give them (continuous pixels, no half-pixel shift).
- Visibility: CMU marks only "labelled"; labelled points inside the image get 2, labelled
  points outside the image 1, unlabelled 0 (coordinates NaN).
- hand143_panopticdb carries no side field: its rows get ``hand_side="right"`` as a
  placeholder and ``extras["hand_side_known"] = False``; do not use them to learn handedness.
- ``bbox``: tight box of the labelled keypoints (:func:`_common.bbox_from_keypoints`).

Licence: the CMU Panoptic dataset is for non-commercial research use (see the HandDB page).
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
from hiu_data.formats._common import (UnsupportedSampleError, as_array, bbox_from_keypoints, emit, encoded_image,
                                      guarded, image_file, load_json, load_record_json, parallel_map, require_labels,
                                      sample_id, select_splits, visibility_in_image)
from hiu_data.formats._layout import dataset_folder
from hiu_data.schema import HandSample
from hiu_data.skeleton import CMU_TO_HAND21, NUM_JOINTS, gather, scatter

log = logging.getLogger(__name__)

NAME = "cmu"
SPLITS: tuple[str, ...] = ("train", "test")
CAMERA = None
"""CMU has no camera model: images come from MPII, NZSL, synthetic renders and Panoptic frames."""
IMAGE_EXTENSION = ".jpg"

MANUAL_SUBSETS = {"manual_train": "train", "manual_test": "test"}
SYNTH_SUBSETS = ("synth1", "synth2", "synth3", "synth4")
PANOPTIC_SUBSET = "hand143_panopticdb"
PANOPTIC_JSON = "hands_v143_14817.json"
SUBSET_SPLIT: dict[str, str] = {**MANUAL_SUBSETS, **{s: "train" for s in SYNTH_SUBSETS}, PANOPTIC_SUBSET: "train"}
SUBSET_PARENT: dict[str, str] = {**{s: "hand_labels" for s in MANUAL_SUBSETS},
                                 **{s: "hand_labels_synth" for s in SYNTH_SUBSETS}, PANOPTIC_SUBSET: ""}
_SIDE_SUFFIX = re.compile(r"^(.*)_([lr])$")


def image_id_of(subset: str, stem: str) -> str:
    """The image shared by the ``_l`` / ``_r`` copies: the stem without its side suffix."""
    match = _SIDE_SUFFIX.match(stem)
    return f"{NAME}/{subset}/{match.group(1) if match else stem}"


# --- reading ----------------------------------------------------------------------------


def _subset_dirs(root: Path) -> dict[str, Path]:
    """Folder of every subset present under ``root`` (``root`` may be one download folder itself)."""
    found: dict[str, Path] = {}
    for subset, parent in SUBSET_PARENT.items():
        if subset == PANOPTIC_SUBSET:
            candidates = [folder for folder in (root / subset, root) if _panoptic_json(folder) is not None]
        else:
            candidates = [folder for folder in (root / parent / subset, root / subset) if folder.is_dir()]
        if candidates:
            found[subset] = candidates[0]
    return found


def _panoptic_json(folder: Path) -> Path | None:
    """The hand143_panopticdb annotation file in ``folder`` (``hands_v143_14817.json``), if any."""
    if (folder / PANOPTIC_JSON).is_file():
        return folder / PANOPTIC_JSON
    return next(iter(sorted(folder.glob("hands_v*.json"))), None) if folder.is_dir() else None


def _labelled_points(raw: Any, path: Path, what: str, sid: str, width: int, height: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(keypoints (21, 2) float32 NaN where unlabelled, visibility (21,) uint8) from 21 x (x, y, flag)."""
    pts = as_array(raw, (NUM_JOINTS, 3), path, what, sid)
    pts = gather(pts, CMU_TO_HAND21)
    labelled = pts[:, 2] > 0
    kp = np.where(labelled[:, None], pts[:, :2], np.nan).astype(np.float32)
    return kp, visibility_in_image(kp, width, height)


def _load_hand_json(job: tuple[str, str, str, str, str]) -> HandSample:
    """One hand of hand_labels / hand_labels_synth: ``<stem>.json`` + ``<stem>.jpg``."""
    root_s, rel_json, subset, split, images = job
    root = Path(root_s)
    path = root / rel_json
    stem = path.stem
    sid = sample_id(NAME, split, f"{subset}/{stem}")
    data = load_record_json(path, ("hand_pts", "is_left"), sid)
    image = image_file(root, str(Path(rel_json).with_suffix(IMAGE_EXTENSION)), images, sid)
    kp, vis = _labelled_points(data["hand_pts"], path, "hand_pts", sid, image.width, image.height)
    if data["is_left"] not in (0, 1, True, False):
        raise DatasetFormatError(path, f"is_left must be 0 or 1, not {data['is_left']!r}", sid)
    extras = None
    if data.get("head_size") is not None:
        head = as_array(data["head_size"], (), path, "head_size", sid)
        extras = {"head_size": float(head)}
    return HandSample(
        sample_id=sid, dataset=NAME, split=split, subset=subset, image_id=image_id_of(subset, stem),
        image_bytes=image.data, image_path=image.path, width=image.width, height=image.height,
        hand_side="left" if data["is_left"] else "right", keypoints_2d=kp, visibility=vis,
        bbox=bbox_from_keypoints(kp, vis, image.width, image.height), extras=extras,
    )


def _load_panoptic_entry(job: tuple[str, str, str, dict[str, Any], str, str]) -> HandSample:
    """One entry of ``hands_v143_14817.json`` (its image path relative to the JSON's folder)."""
    root_s, rel_folder, rel_json, entry, source_id, images = job
    root = Path(root_s)
    path = root / rel_json
    sid = sample_id(NAME, "train", f"{PANOPTIC_SUBSET}/{source_id}")
    if not isinstance(entry, dict) or "joint_self" not in entry or "img_paths" not in entry:
        raise DatasetFormatError(path, "root entry needs 'img_paths' and 'joint_self'", sid)
    if not isinstance(entry["img_paths"], str) or not entry["img_paths"]:
        raise DatasetFormatError(path, f"img_paths must be a relative image path, not {entry['img_paths']!r}", sid)
    image = image_file(root, str(Path(rel_folder) / entry["img_paths"]), images, sid)
    for key, actual in (("img_width", image.width), ("img_height", image.height)):
        if key in entry and not (isinstance(entry[key], (int, float)) and entry[key] == actual):
            raise DatasetFormatError(path, f"{key} {entry[key]!r} disagrees with the image ({actual} px)", sid)
    kp, vis = _labelled_points(entry["joint_self"], path, "joint_self", sid, image.width, image.height)
    extras: dict[str, Any] = {"hand_side_known": False}
    if entry.get("objpos") is not None:
        extras["objpos"] = [float(v) for v in as_array(entry["objpos"], (2,), path, "objpos", sid)]
    stem = Path(entry["img_paths"]).stem
    return HandSample(
        sample_id=sid, dataset=NAME, split="train", subset=PANOPTIC_SUBSET,
        image_id=f"{NAME}/{PANOPTIC_SUBSET}/{stem}",
        image_bytes=image.data, image_path=image.path, width=image.width, height=image.height,
        hand_side="right", keypoints_2d=kp, visibility=vis,
        bbox=bbox_from_keypoints(kp, vis, image.width, image.height), extras=extras,
    )


def _panoptic_jobs(root: Path, folder: Path, images: str) -> list[tuple]:
    json_path = _panoptic_json(folder) or folder / PANOPTIC_JSON
    data = load_json(json_path, "the hand143_panopticdb annotation file")
    if not isinstance(data, dict) or not isinstance(data.get("root"), list):
        raise DatasetFormatError(json_path, "expected a JSON object {'root': [entries]}")
    rel_folder = str(folder.relative_to(root))
    rel_json = str(json_path.relative_to(root))
    seen: dict[str, int] = {}
    jobs = []
    for entry in data["root"]:
        stem = Path(str(entry.get("img_paths", "missing"))).stem if isinstance(entry, dict) else "invalid"
        count = seen[stem] = seen.get(stem, 0) + 1
        # an image listed twice holds two hands: the second one gets its own stable id
        source_id = stem if count == 1 else f"{stem}_{count}"
        jobs.append((str(root), rel_folder, rel_json, entry, source_id, images))
    return jobs


def read(root: Path, *, splits: Sequence[str] | None = None, images: str = "embed", on_error: str = "fail",
         workers: int = 1, **options: Any) -> Iterator[HandSample | Skipped]:
    """Read the CMU HandDB downloads found under ``root`` (see the module docstring).

    Yields:
        HandSample per hand (2D only; ``keypoints_2d`` (21, 2) float32 pixels, NaN where
        unlabelled), or Skipped markers with ``on_error="skip"``.
    Raises:
        DatasetFormatError: none of the downloads under ``root``, or a bad file (``on_error="fail"``).
    """
    wanted = select_splits(NAME, SPLITS, splits, images, on_error)
    root = Path(root)
    # image paths stay relative to ``root``; the downloads may sit in the one folder below it
    found = dataset_folder(root, lambda folder: bool(_subset_dirs(folder)), "CMU HandDB",
                           "no CMU HandDB folder found; expected hand_labels/manual_train, "
                           "hand_labels_synth/synth1 or hand143_panopticdb/ here")
    folders = _subset_dirs(found)
    for subset, folder in folders.items():
        split = SUBSET_SPLIT[subset]
        if split not in wanted:
            continue
        if subset == PANOPTIC_SUBSET:
            jobs = _panoptic_jobs(root, folder, images)
            yield from emit(parallel_map(guarded(_load_panoptic_entry), jobs, workers), on_error)
            continue
        jsons = sorted(folder.glob("*.json"))
        log.info("cmu %s: %d hands", subset, len(jsons))
        jobs = [(str(root), str(p.relative_to(root)), subset, split, images) for p in jsons]
        yield from emit(parallel_map(guarded(_load_hand_json), jobs, workers), on_error)


# --- writing ----------------------------------------------------------------------------


def _subset_for(sample: HandSample) -> str:
    if sample.subset in SUBSET_SPLIT:
        return sample.subset
    if sample.split == "train":
        return "manual_train"
    if sample.split in ("test", "val"):
        return "manual_test"
    raise UnsupportedSampleError(f"{sample.sample_id}: CMU has no split {sample.split!r}")


def _stem_for(sample: HandSample, subset: str, used: set[str]) -> str:
    """The file stem: the source stem of a CMU record, else one made from the image id (+ side)."""
    if subset == PANOPTIC_SUBSET:
        # hand143 names files after the image; two hands of one image share the file
        prefix = f"{NAME}/{PANOPTIC_SUBSET}/"
        if sample.image_id.startswith(prefix):
            return sample.image_id[len(prefix):]
        return re.sub(r"[^A-Za-z0-9.-]+", "_", sample.image_id).strip("_") or "image"
    prefix = f"{NAME}/{sample.split}/{subset}/"
    if sample.sample_id.startswith(prefix) and "/" not in sample.sample_id[len(prefix):]:
        stem = sample.sample_id[len(prefix):]
    else:
        base = re.sub(r"[^A-Za-z0-9.-]+", "_", sample.image_id).strip("_") or "image"
        stem = f"{base}_{sample.hand_side[0]}"
    if stem in used:
        raise UnsupportedSampleError(f"{sample.sample_id}: a second hand named {stem!r} in {subset}")
    used.add(stem)
    return stem


def _raw_points(sample: HandSample) -> list[list[float]]:
    """21 x (x, y, flag): labelled points with flag 1, the rest (0, 0, 0) as CMU writes them."""
    kp = np.asarray(sample.keypoints_2d, dtype=np.float64)
    labelled = (sample.visibility > 0) & np.isfinite(kp).all(axis=1)
    pts = np.zeros((NUM_JOINTS, 3))
    pts[labelled, :2] = kp[labelled]
    pts[labelled, 2] = 1.0
    raw = scatter(pts, CMU_TO_HAND21, NUM_JOINTS, axis=0)
    return raw.tolist()


def write(samples: Iterable[HandSample], root: Path, *, source_root: Path | None = None, **options: Any) -> None:
    """Write records as the CMU layout under ``root`` (the inverse of :func:`read`).

    Records of subset ``hand143_panopticdb`` go into its single JSON; all others become a
    ``<stem>.json`` + ``<stem>.jpg`` pair in ``hand_labels/manual_{train,test}`` or
    ``hand_labels_synth/synthN`` (records of other datasets: by split, stem = image id +
    ``_l``/``_r``). Non-JPEG images are re-encoded as JPEG (quality 95).

    Args:
        source_root: root of reference-mode image paths.
    Raises:
        UnsupportedSampleError: a record without 2D keypoints, or one CMU cannot place.
    """
    root = Path(root)
    used: dict[str, set[str]] = {}
    panoptic: list[dict[str, Any]] = []
    for sample in samples:
        require_labels(sample, ["keypoints_2d"], "CMU")
        subset = _subset_for(sample)
        stem = _stem_for(sample, subset, used.setdefault(subset, set()))
        image = encoded_image(sample, "jpeg", source_root)
        extras = sample.extras or {}
        if subset == PANOPTIC_SUBSET:
            folder = root / PANOPTIC_SUBSET
            (folder / "imgs").mkdir(parents=True, exist_ok=True)
            (folder / "imgs" / f"{stem}{IMAGE_EXTENSION}").write_bytes(image)
            x, y, w, h = (float(v) for v in sample.bbox)
            panoptic.append({
                "img_paths": f"imgs/{stem}{IMAGE_EXTENSION}", "img_width": sample.width, "img_height": sample.height,
                "objpos": list(extras.get("objpos", [x + w / 2, y + h / 2])), "joint_self": _raw_points(sample),
            })
            continue
        folder = root / SUBSET_PARENT[subset] / subset
        folder.mkdir(parents=True, exist_ok=True)
        record: dict[str, Any] = {"hand_pts": _raw_points(sample), "is_left": int(sample.hand_side == "left")}
        if "head_size" in extras:
            record["head_size"] = float(extras["head_size"])
        (folder / f"{stem}.json").write_text(json.dumps(record))
        (folder / f"{stem}{IMAGE_EXTENSION}").write_bytes(image)
    if panoptic:
        (root / PANOPTIC_SUBSET / PANOPTIC_JSON).write_text(json.dumps({"root": panoptic}))
