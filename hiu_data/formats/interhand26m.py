"""InterHand2.6M v1.0 (Moon et al., ECCV 2020): two hands, 3D from a multi-camera studio, MANO fits.

Layout read (v1.0; the 5 fps subset and the 30 fps release differ only in which frames exist)::

    <root>/images/<split>/Capture<c>/<seq_name>/cam<camera>/image<frame_idx>.jpg
    <root>/annotations/<split>/InterHand2.6M_<split>_data.json        COCO-like images + annotations
    <root>/annotations/<split>/InterHand2.6M_<split>_camera.json      per capture: campos, camrot, focal, princpt
    <root>/annotations/<split>/InterHand2.6M_<split>_joint_3d.json    per capture, frame: world_coord 42x3 mm
    <root>/annotations/<split>/InterHand2.6M_<split>_MANO_NeuralAnnot.json   optional MANO fits
    split in train, val, test

``RAW_ROOT`` is the folder holding ``annotations/`` (or the folder above it). The image tars
unpack to a batch folder, ``InterHand2.6M_5fps_batch1/images/<split>/...``: ``images/`` is
read from ``RAW_ROOT`` or from the one folder directly below it that has it.

Conversion:

- 3D: ``X_cam = camrot @ (X_world - campos)`` in mm, divided by 1000 -> metres in the frame
  of the stored image; ``camera_K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`` from ``focal`` and
  ``princpt``; ``keypoints_2d`` is the projection of the 3D joints.
- 42 joints: 0-20 right hand, 21-41 left hand, each per finger tip -> base (thumb, index,
  middle, ring, little) with the wrist last; gathered into HAND21
  (:data:`~hiu_data.skeleton.INTERHAND_RIGHT_TO_HAND21` / ``_LEFT_``). One row per hand with
  at least one valid joint (so up to two rows per image, sharing ``image_id``); a row's
  joints are valid where the annotation's ``joint_valid`` is 1 (the raw labels are kept: the
  evaluation rule "a hand is invalid when its wrist is" is left to evaluation code).
  Visibility: valid joints inside the image 2, outside 1, invalid 0 (NaN).
- MANO (when the NeuralAnnot file is present): ``pose`` (48, axis-angle, relative to the mean
  pose as smplx ``flat_hand_mean=False``) and ``shape`` (10). The fits are in world
  coordinates; the global rotation is turned into the camera frame
  (``R_cam = camrot @ R_world``), the world translation (metres) is kept in
  ``extras["mano_trans"]``. Left hands keep their left-MANO parameters (nothing is mirrored).
- ``extras``: capture, camera, frame_idx, subject, hand_type, hand_type_valid and the
  extrinsics ``camrot`` / ``campos`` (mm) of the view, so that multi-view rows can be related
  and the writer can rebuild the world frame. ``subset`` is ``seq_name``.
- Annotated frames whose image file does not exist are left out (that is how the 5 fps
  subset is read with the full annotation files) and counted in the log; a split where no
  image exists at all is an error.

The v0.0 layout (``annotations/all``, ``human_annot``, ``machine_annot``) is not read.
Licence: InterHand2.6M is CC BY-NC 4.0.
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
                                      guarded, id_key, image_file, load_json, parallel_map, project, require_dir,
                                      require_labels, sample_id, select_splits, visibility_in_image)
from hiu_data.formats._layout import dataset_folder, one_folder, relative_prefix
from hiu_data.schema import HandSample
from hiu_data.skeleton import INTERHAND_LEFT_TO_HAND21, INTERHAND_RIGHT_TO_HAND21, NUM_JOINTS, scatter

log = logging.getLogger(__name__)

NAME = "interhand26m"
SPLITS: tuple[str, ...] = ("train", "val", "test")
CAMERA = None
"""No fixed camera: every view has its own intrinsics and extrinsics in ``*_camera.json``."""
IMAGE_SIZES: tuple[tuple[int, int], ...] = ((334, 512), (512, 334))
"""(width, height) of the released crops."""
NUM_RAW_JOINTS = 2 * NUM_JOINTS
SIDE_TABLES: dict[str, np.ndarray] = {"right": INTERHAND_RIGHT_TO_HAND21, "left": INTERHAND_LEFT_TO_HAND21}
_WORLD_TOLERANCE_MM = 1.0


def annotation_path(root: Path, split: str, kind: str) -> Path:
    """``annotations/<split>/InterHand2.6M_<split>_<kind>.json`` (kind: data, camera, joint_3d, MANO_NeuralAnnot)."""
    return Path(root) / "annotations" / split / f"InterHand2.6M_{split}_{kind}.json"


def _rotation_matrix(axis_angle: np.ndarray) -> np.ndarray:
    return cv2.Rodrigues(np.asarray(axis_angle, dtype=np.float64).reshape(3, 1))[0]


def _axis_angle(matrix: np.ndarray) -> np.ndarray:
    return cv2.Rodrigues(np.asarray(matrix, dtype=np.float64))[0].reshape(3)


# --- reading ----------------------------------------------------------------------------


def _load_image(job: tuple[str, str, str, dict[str, Any]]) -> list[HandSample]:
    """The hand rows of one image; ``meta`` carries its labels (or the problem found while looking them up)."""
    root_s, rel_image, images, meta = job
    sid = meta["sample_id"]
    if meta.get("problem"):
        raise DatasetFormatError(meta["problem"][0], meta["problem"][1], sid)
    image = image_file(Path(root_s), rel_image, images, sid)
    if (image.width, image.height) != (meta["width"], meta["height"]):
        raise DatasetFormatError(meta["data_path"], f"image is {image.width}x{image.height} but the annotation says "
                                                    f"{meta['width']}x{meta['height']}", sid)
    cam_path, joint_path = meta["camera_path"], meta["joint_path"]
    camrot = as_array(meta["camrot"], (3, 3), cam_path, "camrot", sid)
    campos = as_array(meta["campos"], (3,), cam_path, "campos", sid)
    fx, fy = as_array(meta["focal"], (2,), cam_path, "focal", sid)
    cx, cy = as_array(meta["princpt"], (2,), cam_path, "princpt", sid)
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    world = as_array(meta["world"], (NUM_RAW_JOINTS, 3), joint_path, "world_coord", sid)
    valid = as_array(np.asarray(meta["joint_valid"], dtype=object).reshape(-1).tolist(), (NUM_RAW_JOINTS,),
                     meta["data_path"], "joint_valid", sid) > 0
    camera_mm = (world - campos) @ camrot.T
    base_extras = {k: meta[k] for k in ("capture", "camera", "frame_idx", "subject", "hand_type", "hand_type_valid")
                   if meta.get(k) is not None}
    base_extras.update(camrot=camrot.tolist(), campos=campos.tolist())
    rows = []
    for side, table in SIDE_TABLES.items():
        ok = valid[table]
        if not ok.any():
            continue
        kp3 = np.where(ok[:, None], camera_mm[table] / 1000.0, np.nan)
        kp2 = project(kp3, K)
        vis = visibility_in_image(kp2, image.width, image.height)
        extras = dict(base_extras)
        pose = betas = None
        fits, mano_path = meta.get("mano") or {}, meta["mano_path"]
        if not isinstance(fits, dict):
            raise DatasetFormatError(mano_path, f"a frame's entry must be an object of 'left' / 'right' fits, not "
                                                f"{str(fits)[:40]}", sid)
        fit = fits.get(side)
        if fit and not isinstance(fit, dict):
            raise DatasetFormatError(mano_path, f"the {side} fit must be an object with 'pose' and 'shape'", sid)
        if fit:
            pose = as_array(fit.get("pose"), (48,), mano_path, f"{side} pose", sid).copy()
            betas = as_array(fit.get("shape"), (10,), mano_path, f"{side} shape", sid)
            pose[:3] = _axis_angle(camrot @ _rotation_matrix(pose[:3]))
            if fit.get("trans") is not None:
                extras["mano_trans"] = as_array(fit["trans"], (3,), mano_path, f"{side} trans", sid).tolist()
        rows.append(HandSample(
            sample_id=f"{sid}/{side}", dataset=NAME, split=meta["split"], subset=meta.get("seq_name"),
            image_id=meta["image_id"], image_bytes=image.data, image_path=image.path,
            width=image.width, height=image.height, hand_side=side,
            keypoints_2d=kp2.astype(np.float32), keypoints_3d=kp3.astype(np.float32), camera_K=K.astype(np.float32),
            visibility=vis, bbox=bbox_from_keypoints(kp2, vis, image.width, image.height),
            mano_pose=pose, mano_betas=betas, extras=extras,
        ))
    return rows


def _image_jobs(root: Path, split: str, images: str, user_root: Path, image_prefix: str) -> tuple[list[tuple], int]:
    """One job per annotated image whose file exists, and the number of annotated frames without one;
    image paths are ``image_prefix + images/<split>/<file_name>`` under ``user_root``."""
    paths = {kind: annotation_path(root, split, kind) for kind in ("data", "camera", "joint_3d", "MANO_NeuralAnnot")}
    data = load_json(paths["data"], f"the InterHand2.6M {split} image list")
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(data.get("annotations"), list):
        raise DatasetFormatError(paths["data"], "expected a JSON object with 'images' and 'annotations' lists")
    cameras = load_json(paths["camera"], f"the InterHand2.6M {split} cameras")
    joints = load_json(paths["joint_3d"], f"the InterHand2.6M {split} 3D joints")
    mano = load_json(paths["MANO_NeuralAnnot"]) if paths["MANO_NeuralAnnot"].is_file() else None
    annotations = {id_key(ann.get("image_id"), paths["data"], "annotations[].image_id"): ann
                   for ann in data["annotations"] if isinstance(ann, dict)}
    jobs, absent = [], 0
    for entry in data["images"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("file_name"), str):
            raise DatasetFormatError(paths["data"], f"image entry without a file_name: {str(entry)[:80]}")
        stem = entry["file_name"].rsplit(".", 1)[0]
        rel_image = f"{image_prefix}images/{split}/{entry['file_name']}"
        if not (user_root / rel_image).is_file():
            absent += 1
            continue
        meta: dict[str, Any] = {
            "sample_id": sample_id(NAME, split, stem), "image_id": f"{NAME}/{split}/{stem}", "split": split,
            "data_path": str(paths["data"]), "camera_path": str(paths["camera"]), "joint_path": str(paths["joint_3d"]),
            "mano_path": str(paths["MANO_NeuralAnnot"]),
            "width": entry.get("width"), "height": entry.get("height"), "seq_name": entry.get("seq_name"),
            "subject": entry.get("subject"),
        }
        try:
            capture, camera, frame = str(entry["capture"]), str(entry["camera"]), str(entry["frame_idx"])
            meta.update(capture=int(capture), camera=camera, frame_idx=int(frame))
            ann = annotations.get(entry.get("id"))
            if ann is None:
                raise DatasetFormatError(paths["data"], f"image id {entry.get('id')} has no annotation")
            meta.update(joint_valid=ann["joint_valid"], hand_type=ann.get("hand_type"),
                        hand_type_valid=None if ann.get("hand_type_valid") is None else int(ann["hand_type_valid"]))
            params = cameras.get(capture)
            if not isinstance(params, dict):
                raise DatasetFormatError(paths["camera"], f"no camera parameters for capture {capture}")
            for key in ("campos", "camrot", "focal", "princpt"):
                if camera not in params.get(key, {}):
                    raise DatasetFormatError(paths["camera"], f"no {key} for capture {capture} camera {camera}")
                meta[key] = params[key][camera]
            frame_joints = joints.get(capture, {}).get(frame)
            if not isinstance(frame_joints, dict) or "world_coord" not in frame_joints:
                raise DatasetFormatError(paths["joint_3d"], f"no world_coord for capture {capture} frame {frame}")
            meta["world"] = frame_joints["world_coord"]
            meta["mano"] = (mano or {}).get(capture, {}).get(frame)
        except KeyError as e:
            meta["problem"] = (str(paths["data"]), f"missing key {e.args[0]!r}")
        except (TypeError, ValueError, AttributeError) as e:
            meta["problem"] = (str(paths["data"]), f"malformed entry ({e})")
        except DatasetFormatError as e:
            meta["problem"] = (e.path, e.problem)
        jobs.append((str(user_root), rel_image, images, meta))
    return jobs, absent


def read(root: Path, *, splits: Sequence[str] | None = None, images: str = "embed", on_error: str = "fail",
         workers: int = 1, **options: Any) -> Iterator[HandSample | Skipped]:
    """Read InterHand2.6M v1.0 under ``root`` (see the module docstring).

    Yields:
        HandSample per hand: ``keypoints_3d`` (21, 3) float32 metres, camera frame of the
        image; ``keypoints_2d`` (21, 2) float32 pixels; ``camera_K`` (3, 3); MANO when fitted;
        or Skipped markers with ``on_error="skip"``.
    Raises:
        DatasetFormatError: missing annotation files, the v0.0 layout, malformed entries.
    """
    wanted = select_splits(NAME, SPLITS, splits, images, on_error)
    user_root = Path(root)
    root = dataset_folder(user_root, lambda folder: (folder / "annotations").is_dir(), "InterHand2.6M",
                          "no annotations/ folder; expected the InterHand2.6M annotations/<split>/ folders (v1.0) here")
    annotations = root / "annotations"
    present = [s for s in wanted if (annotations / s).is_dir()]
    if not present:
        if any((annotations / old).is_dir() for old in ("all", "human_annot", "machine_annot")):
            raise DatasetFormatError(annotations, "InterHand2.6M v0.0 layout (all/human_annot/machine_annot); "
                                                  "download the v1.0 annotations (train/val/test)")
        raise DatasetFormatError(annotations, f"missing folder; expected {'/'.join(wanted)}/ annotation folders here")
    if splits:
        for split in wanted:
            require_dir(annotations / split, f"the InterHand2.6M {split} annotations")
    for split in present:
        # the image tars unpack to a batch folder (InterHand2.6M_5fps_batch1/images/...) beside annotations/
        batch = one_folder(root, lambda folder: (folder / "images" / split).is_dir(), f"InterHand2.6M {split} images")
        if batch is None:
            require_dir(root / "images" / split, f"the InterHand2.6M {split} images (or <image batch folder>/images/{split})")
        jobs, absent = _image_jobs(root, split, images, user_root, relative_prefix(user_root, batch or root))
        if not jobs:
            raise DatasetFormatError((batch or root) / "images" / split, f"none of the {absent} annotated {split} images exists")
        if absent:
            log.info("interhand26m %s: %d annotated frames have no image (a frame subset such as 5 fps)", split, absent)
        yield from emit(parallel_map(guarded(_load_image), jobs, workers, chunksize=16), on_error)


# --- writing ----------------------------------------------------------------------------


def _view_of(sample: HandSample, assigned: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Capture, camera, frame, sequence and extrinsics of a record's image (invented for other datasets)."""
    view = assigned.get(sample.image_id)
    if view is not None:
        return view
    extras = sample.extras or {}
    if sample.dataset == NAME and all(k in extras for k in ("capture", "camera", "frame_idx", "camrot", "campos")):
        view = {k: extras[k] for k in ("capture", "camera", "frame_idx", "camrot", "campos")}
        view["subject"] = extras.get("subject")
        view["seq_name"] = sample.subset or "seq"
        prefix = f"{NAME}/{sample.split}/"
        view["file_name"] = (sample.image_id[len(prefix):] + ".jpg" if sample.image_id.startswith(prefix) else
                             f"Capture{view['capture']}/{view['seq_name']}/cam{view['camera']}/image{view['frame_idx']}.jpg")
    else:
        # one camera and one frame per image: other datasets have no shared world frame
        index = len(assigned)
        seq = re.sub(r"[^A-Za-z0-9_-]+", "_", sample.subset or sample.dataset or "seq")
        view = {"capture": 0, "camera": str(400000 + index), "frame_idx": index, "subject": None, "seq_name": seq,
                "camrot": np.eye(3).tolist(), "campos": [0.0, 0.0, 0.0]}
        view["file_name"] = f"Capture0/{seq}/cam{view['camera']}/image{index}.jpg"
    assigned[sample.image_id] = view
    return view


def _check_writable(sample: HandSample) -> np.ndarray:
    require_labels(sample, ["keypoints_3d", "camera_K"], "InterHand2.6M")
    K = np.asarray(sample.camera_K, dtype=np.float64)
    if sample.split not in SPLITS:
        problem = f"InterHand2.6M has no split {sample.split!r}"
    elif abs(K[0, 1]) > 1e-6 or abs(K[1, 0]) > 1e-6 or np.abs(K[2] - [0, 0, 1]).max() > 1e-6:
        problem = "camera_K has skew or is not a pinhole matrix; InterHand2.6M stores focal and princpt only"
    else:
        return K
    raise UnsupportedSampleError(f"{sample.sample_id}: {problem}")


def _skeleton_lines() -> str:
    names = [f"{finger}{k}" for finger in ("thumb", "index", "middle", "ring", "pinky") for k in (4, 3, 2, 1)]
    lines = []
    for offset, prefix in ((0, "r_"), (NUM_JOINTS, "l_")):
        for i, name in enumerate(names):
            parent = NUM_JOINTS - 1 if i % 4 == 3 else i + 1
            lines.append(f"{prefix}{name} {i + offset} {parent + offset}")
        lines.append(f"{prefix}wrist {NUM_JOINTS - 1 + offset} -1")
    return "\n".join(lines) + "\n"


def write(samples: Iterable[HandSample], root: Path, *, source_root: Path | None = None, **options: Any) -> None:
    """Write records as the InterHand2.6M v1.0 layout under ``root`` (the inverse of :func:`read`).

    InterHand2.6M records rebuild their world frame from ``extras`` (camrot, campos, capture,
    frame); records of other datasets each get their own camera with identity extrinsics.
    Non-JPEG images are re-encoded as JPEG (quality 95).

    Raises:
        UnsupportedSampleError: no 3D or K, a skewed K, an unknown split, or views of one
            frame whose world joints disagree by more than 1 mm.
    """
    root = Path(root)
    assigned: dict[str, dict[str, Any]] = {}
    per_split: dict[str, dict[str, Any]] = {}
    for sample in samples:
        K = _check_writable(sample)
        view = _view_of(sample, assigned)
        out = per_split.setdefault(sample.split, {"images": {}, "cameras": {}, "frames": {}, "mano": {}})
        capture, camera, frame = str(view["capture"]), str(view["camera"]), str(view["frame_idx"])
        camrot, campos = np.asarray(view["camrot"], np.float64), np.asarray(view["campos"], np.float64)
        params = {"campos": campos.tolist(), "camrot": camrot.tolist(), "focal": [K[0, 0], K[1, 1]],
                  "princpt": [K[0, 2], K[1, 2]]}
        known = out["cameras"].setdefault((capture, camera), params)
        if not np.allclose(np.concatenate([np.ravel(v) for v in known.values()]),
                           np.concatenate([np.ravel(v) for v in params.values()]), atol=1e-4):
            raise UnsupportedSampleError(f"{sample.sample_id}: camera {camera} of capture {capture} has other parameters")
        table = SIDE_TABLES[sample.hand_side]
        kp3 = np.asarray(sample.keypoints_3d, dtype=np.float64)
        valid = np.isfinite(kp3).all(axis=1) & (sample.visibility > 0)
        world = kp3 * 1000.0 @ camrot + campos
        fr = out["frames"].setdefault((capture, frame), {"world": np.zeros((NUM_RAW_JOINTS, 3)),
                                                         "valid": np.zeros(NUM_RAW_JOINTS, bool), "sides": set()})
        raw_world = scatter(np.where(valid[:, None], world, 0.0), table, NUM_RAW_JOINTS, axis=0)
        raw_valid = scatter(valid.astype(np.uint8), table, NUM_RAW_JOINTS, axis=0) > 0
        both = raw_valid & fr["valid"]
        if both.any() and np.abs(fr["world"][both] - raw_world[both]).max() > _WORLD_TOLERANCE_MM:
            raise UnsupportedSampleError(f"{sample.sample_id}: views of capture {capture} frame {frame} disagree in 3D")
        fr["world"][raw_valid] = raw_world[raw_valid]
        fr["valid"] |= raw_valid
        fr["sides"].add(sample.hand_side)
        image = out["images"].get(sample.image_id)
        if image is None:
            data = encoded_image(sample, "jpeg", source_root)
            path = root / "images" / sample.split / view["file_name"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            image = out["images"][sample.image_id] = {"view": view, "width": sample.width, "height": sample.height,
                                                      "valid": np.zeros(NUM_RAW_JOINTS, bool), "boxes": [],
                                                      "sides": set(), "extras": sample.extras or {}}
        image["valid"] |= raw_valid
        image["boxes"].append(sample.bbox)
        image["sides"].add(sample.hand_side)
        if sample.mano_pose is not None and sample.mano_betas is not None:
            pose = np.asarray(sample.mano_pose, np.float64).copy()
            pose[:3] = _axis_angle(camrot.T @ _rotation_matrix(pose[:3]))
            trans = (sample.extras or {}).get("mano_trans", [0.0, 0.0, 0.0])
            out["mano"].setdefault(capture, {}).setdefault(frame, {"right": None, "left": None})[sample.hand_side] = {
                "pose": pose.tolist(), "shape": np.asarray(sample.mano_betas, np.float64).tolist(),
                "trans": [float(v) for v in trans]}
    for split, out in per_split.items():
        _write_split(root, split, out)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "skeleton.txt").write_text(_skeleton_lines())


def _hand_type(sides: set[str]) -> str:
    return "interacting" if len(sides) == 2 else next(iter(sides))


def _write_split(root: Path, split: str, out: dict[str, Any]) -> None:
    images, annotations = [], []
    for number, image in enumerate(out["images"].values(), start=1):
        view, extras = image["view"], image["extras"]
        boxes = np.asarray(image["boxes"], np.float64)
        x0, y0 = boxes[:, 0].min(), boxes[:, 1].min()
        x1, y1 = (boxes[:, 0] + boxes[:, 2]).max(), (boxes[:, 1] + boxes[:, 3]).max()
        images.append({"id": number, "file_name": view["file_name"], "width": image["width"], "height": image["height"],
                       "capture": int(view["capture"]), "subject": view["subject"], "seq_name": view["seq_name"],
                       "camera": str(view["camera"]), "frame_idx": int(view["frame_idx"])})
        annotations.append({"id": number, "image_id": number, "bbox": [x0, y0, x1 - x0, y1 - y0],
                            "joint_valid": [[int(v)] for v in image["valid"]],
                            "hand_type": extras.get("hand_type", _hand_type(image["sides"])),
                            "hand_type_valid": int(extras.get("hand_type_valid", 1))})
    cameras: dict[str, dict[str, dict[str, Any]]] = {}
    for (capture, camera), params in out["cameras"].items():
        for key, value in params.items():
            cameras.setdefault(capture, {"campos": {}, "camrot": {}, "focal": {}, "princpt": {}})[key][camera] = value
    joints: dict[str, dict[str, Any]] = {}
    for (capture, frame), fr in out["frames"].items():
        joints.setdefault(capture, {})[frame] = {
            "world_coord": fr["world"].tolist(), "joint_valid": [[int(v)] for v in fr["valid"]],
            "hand_type": _hand_type(fr["sides"]), "hand_type_valid": 1}
    folder = root / "annotations" / split
    folder.mkdir(parents=True, exist_ok=True)
    files = {"data": {"images": images, "annotations": annotations}, "camera": cameras, "joint_3d": joints}
    if out["mano"]:
        files["MANO_NeuralAnnot"] = out["mano"]
    for kind, content in files.items():
        annotation_path(root, split, kind).write_text(json.dumps(content))
