"""STB, the Stereo Hand Pose Tracking Benchmark (Zhang et al., ICIP 2017): reader and writer.

Layout read (``RAW_ROOT`` = the unpacked release, or the folder holding it; images may also sit
directly in ``<SEQ>/``)::

    images/<SEQ>/BB_left_%d.png  BB_right_%d.png  SK_color_%d.png  (SK_depth_%d.png, not read)
    labels/<SEQ>_BB.mat  labels/<SEQ>_SK.mat          handPara: float64 3 x 21 x N, millimetres
    SEQ in B1..B6 x {Counting, Random}; N = 1500 frames per sequence, %d = 0..N-1 unpadded

- **Rows**: one per image and stream: ``BB_left`` and ``BB_right`` (the rectified Bumblebee2
  stereo pair, both from ``<SEQ>_BB.mat``) and ``SK_color`` (RealSense colour, from
  ``<SEQ>_SK.mat``). ``read(..., cameras=[...])`` selects streams; a sequence whose label file
  is absent contributes no rows of that camera, but a present label file needs all its images.
- **Joint order**: 0 palm centre, then per finger MCP -> tip in the order little, ring,
  middle, index, thumb; reordered with ``skeleton.STB_TO_HAND21``. STB has no wrist: slot 0 is
  replaced by ``wrist = ring_mcp + 2 * (palm - ring_mcp)`` (the formula of hand3d,
  hand-graph-cnn and Minimal-Hand; bihand uses the middle MCP and 2.2 instead), and the palm is
  kept in ``extras["palm_3d"]`` (metres, camera frame of the row's image, float32 precision)
  with the formula in ``extras["wrist"]``.
- **Units / frames**: mm -> metres. ``*_BB.mat`` is in the left Bumblebee camera frame; the
  right image's frame is shifted by the 120.054 mm baseline (x - b). ``*_SK.mat`` is in the
  RealSense depth frame (as every public loader treats it) and is moved into the colour frame
  with the README's extrinsics: ``X_colour = R^T (X_depth - t)``, R from the Rodrigues vector.
- **Intrinsics** (README): BB fx = fy = 822.79041, (cx, cy) = (318.47345, 250.31296); SK
  colour fx 607.92271, fy 607.88192, (314.78337, 236.42484). All images 640 x 480 PNG.
- **2D** = projection of the 3D (STB has no 2D labels); **visibility** 2 inside the image, 1
  outside (no occlusion labels). **Box**: tight box of the projected joints (``_common``).
- **Hands**: one subject's **left** hand throughout.
- **Splits**: B1Counting and B1Random -> ``test``, B2-B6 -> ``train`` (Zimmermann & Brox).
- **Licence**: see the authors' repository (zhjwustc/icip17_stereo_hand_pose_dataset); the
  data are for research use and nothing of them is bundled here.

Sample ids ``stb/<split>/<SEQ>/<stream>_<frame>``; the image id is the same; ``subset`` = SEQ.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import cv2
import numpy as np

from hiu_data.errors import DatasetFormatError, HiuError
from hiu_data.formats import Skipped
from hiu_data.formats._common import (Failure, ImageFile, UnsupportedSampleError, bboxes_from_keypoints,
                                      beyond_float32, emit, encoded_image, guarded, image_file, parallel_map, project,
                                      require_labels, select_splits, visibility_in_image)
from hiu_data.formats._layout import dataset_folder
from hiu_data.schema import HandSample
from hiu_data.skeleton import JOINT_INDEX, NUM_JOINTS, STB_TO_HAND21, gather, scatter

NAME = "stb"
SPLITS: tuple[str, ...] = ("train", "test")
SEQUENCES: tuple[str, ...] = tuple(f"B{i}{kind}" for i in range(1, 7) for kind in ("Counting", "Random"))
STREAMS: tuple[str, ...] = ("BB_left", "BB_right", "SK_color")
LABEL_KIND = {"BB_left": "BB", "BB_right": "BB", "SK_color": "SK"}
IMAGE_SIZE: tuple[int, int] = (640, 480)
"""(width, height) of every STB image."""
FRAMES_PER_SEQUENCE = 1500
BB_K = np.array([[822.79041, 0, 318.47345], [0, 822.79041, 250.31296], [0, 0, 1]])
BB_BASELINE_M = 0.120054
SK_COLOR_K = np.array([[607.92271, 0, 314.78337], [0, 607.88192, 236.42484], [0, 0, 1]])
SK_DEPTH_K = np.array([[475.62768, 0, 336.41179], [0, 474.77709, 238.77962], [0, 0, 1]])
SK_ROTATION_VECTOR = np.array([0.00531, -0.01196, 0.00301])
SK_TRANSLATION_M = np.array([-24.0381, -0.4563, -1.2326]) / 1000.0
SK_R = cv2.Rodrigues(SK_ROTATION_VECTOR)[0]
"""Rotation of colour-camera coordinates into the depth camera: X_depth = R X_colour + t."""
CAMERA: dict[str, np.ndarray] = {"BB_left": BB_K, "BB_right": BB_K, "SK_color": SK_COLOR_K}
"""(3, 3) intrinsics of each stream's stored image."""
WRIST_FACTOR = 2.0
WRIST_FORMULA = "ring_mcp + 2.0 * (palm - ring_mcp)"
_RING_MCP = JOINT_INDEX["ring_mcp"]


def split_of(sequence: str) -> str:
    """``test`` for the B1 sequences, ``train`` for B2-B6."""
    return "test" if sequence.startswith("B1") else "train"


def to_stream_frame(label_m: np.ndarray, stream: str) -> np.ndarray:
    """Move label-frame points (..., 3) metres (left BB or SK depth camera) into a stream's camera frame."""
    if stream == "BB_right":
        return label_m - np.array([BB_BASELINE_M, 0.0, 0.0])
    if stream == "SK_color":
        return (label_m - SK_TRANSLATION_M) @ SK_R  # row-vector form of R^T (X - t)
    return label_m


def from_stream_frame(points_m: np.ndarray, stream: str) -> np.ndarray:
    """Inverse of :func:`to_stream_frame`: a stream's camera-frame points (..., 3) metres -> the
    label frame (left BB or SK depth camera)."""
    if stream == "BB_right":
        return points_m + np.array([BB_BASELINE_M, 0.0, 0.0])
    if stream == "SK_color":
        return points_m @ SK_R.T + SK_TRANSLATION_M
    return points_m


def palm_to_wrist(keypoints: np.ndarray) -> np.ndarray:
    """HAND21 points (..., 21, 3) with the palm centre in slot 0 -> the same with the wrist estimate there."""
    out = np.array(keypoints, dtype=np.float64)
    ring = out[..., _RING_MCP, :]
    out[..., 0, :] = ring + WRIST_FACTOR * (out[..., 0, :] - ring)
    return out


def wrist_to_palm(wrist: np.ndarray, ring_mcp: np.ndarray) -> np.ndarray:
    """Invert :func:`palm_to_wrist` for one point: ``wrist`` and ``ring_mcp`` (3,) -> the palm
    centre (3,) the wrist estimate came from, in their unit and frame."""
    return ring_mcp + (wrist - ring_mcp) / WRIST_FACTOR


def _image_folder(root: Path, sequence: str) -> Path:
    for folder in (root / "images" / sequence, root / sequence):
        if folder.is_dir():
            return folder
    raise DatasetFormatError(root / "images" / sequence, f"missing folder; expected the STB images of {sequence} "
                                                         f"(images/{sequence}/ or {sequence}/) here")


def _load_hand_para(path: Path) -> np.ndarray:
    """handPara as (N, 21, 3) float64 mm in raw STB order."""
    import scipy.io

    try:
        data = scipy.io.loadmat(str(path))
    except NotImplementedError:
        raise DatasetFormatError(path, "MATLAB v7.3 (HDF5) .mat files are not supported; save it as -v7") from None
    except Exception as e:  # scipy raises ValueError, TypeError, MatReadError... on damaged files
        raise DatasetFormatError(path, f"not a readable MATLAB .mat file ({type(e).__name__}: {e})") from None
    if "handPara" not in data:
        raise DatasetFormatError(path, f"no handPara variable (found {sorted(k for k in data if not k.startswith('__'))})")
    para = np.asarray(data["handPara"])
    if para.ndim != 3 or para.shape[:2] != (3, NUM_JOINTS) or not np.issubdtype(para.dtype, np.number):
        raise DatasetFormatError(path, f"handPara has shape {para.shape}, expected (3, 21, frames)")
    return para.astype(np.float64).transpose(2, 1, 0)


def _image_job(job: tuple[str, str, str, str]) -> ImageFile:
    root, relative, images, sid = job
    return image_file(root, relative, images, sid)


def read(root: Path, *, splits: Sequence[str] | None = None, images: str = "embed", on_error: str = "fail",
         workers: int = 1, cameras: Sequence[str] | None = None) -> Iterator[HandSample | Skipped]:
    """Read STB into HandSample records, one per image of the selected ``cameras`` (default all).

    Label files are discovered as ``labels/<SEQ>_BB.mat`` / ``_SK.mat``; every split asked for
    must have at least one. Images are read (not decoded) in ``workers`` threads (file reads release the GIL).
    """
    root = Path(root)
    chosen = select_splits(NAME, SPLITS, splits, images, on_error)
    streams = tuple(cameras) if cameras else STREAMS
    unknown = [c for c in streams if c not in STREAMS]
    if unknown:
        raise HiuError(f"stb has no camera {unknown[0]!r}; it has: {', '.join(STREAMS)}")
    user_root = Path(root)
    root = dataset_folder(user_root, lambda folder: (folder / "labels").is_dir(), "STB",
                          "no labels/ folder; expected the STB label files labels/<SEQ>_BB.mat / <SEQ>_SK.mat here")
    labels = root / "labels"
    found = [(seq, kind) for seq in SEQUENCES if split_of(seq) in chosen for kind in ("BB", "SK")
             if (labels / f"{seq}_{kind}.mat").is_file() and any(LABEL_KIND[s] == kind for s in streams)]
    for split in chosen if splits else ():
        if not any(split_of(seq) == split for seq, _ in found):
            raise DatasetFormatError(labels, f"no label file of the {split} split (expected e.g. "
                                             f"{'B1Counting' if split == 'test' else 'B2Counting'}_BB.mat) here")
    if not found:
        raise DatasetFormatError(labels, "no STB label files (<SEQ>_BB.mat / <SEQ>_SK.mat, SEQ e.g. B1Counting) here")
    for seq, kind in found:
        yield from emit(_read_labels(user_root, root, seq, kind, [s for s in streams if LABEL_KIND[s] == kind],
                                     images, workers), on_error)


def _read_labels(user_root: Path, root: Path, seq: str, kind: str, streams: list[str], images: str,
                 workers: int) -> Iterator[HandSample | Failure]:
    path = root / "labels" / f"{seq}_{kind}.mat"
    para_m = _load_hand_para(path) / 1000.0
    bad = ~np.isfinite(para_m).all(axis=(1, 2)) | beyond_float32(para_m).any(axis=(1, 2))
    folder = _image_folder(root, seq)
    relative = folder.relative_to(user_root).as_posix()
    split = split_of(seq)
    for stream in streams:
        points = to_stream_frame(gather(np.where(bad[:, None, None], 0.0, para_m), STB_TO_HAND21), stream)
        palms = points[:, 0, :].astype(np.float32)
        xyz = palm_to_wrist(points)
        K = CAMERA[stream]
        kp2d = project(xyz, K).astype(np.float32)
        vis = visibility_in_image(kp2d, *IMAGE_SIZE)
        boxes = bboxes_from_keypoints(kp2d, vis, *IMAGE_SIZE)
        xyz32, K32 = xyz.astype(np.float32), K.astype(np.float32)
        sids = [f"{NAME}/{split}/{seq}/{stream}_{i}" for i in range(len(para_m))]
        jobs = [(str(user_root), f"{relative}/{stream}_{i}.png", images, sid) for i, sid in enumerate(sids)]
        for i, image in enumerate(parallel_map(guarded(_image_job), jobs, workers, chunksize=16, threads=True)):
            if bad[i]:
                yield Failure(str(path), f"frame {i}: handPara contains NaN or inf (or a value beyond float32)", sids[i])
            elif isinstance(image, Failure):
                yield image
            else:
                kp, v, box = kp2d[i], vis[i], boxes[i]
                if (image.width, image.height) != IMAGE_SIZE:
                    v = visibility_in_image(kp, image.width, image.height)
                    box = bboxes_from_keypoints(kp[None], v[None], image.width, image.height)[0]
                yield HandSample(
                    sample_id=sids[i], dataset=NAME, split=split, subset=seq, image_id=sids[i],
                    image_bytes=image.data, image_path=image.path, width=image.width, height=image.height,
                    hand_side="left", bbox=box, keypoints_2d=kp, visibility=v, keypoints_3d=xyz32[i], camera_K=K32,
                    extras={"camera": stream, "palm_3d": palms[i].tolist(), "wrist": WRIST_FORMULA})


# --- writer -----------------------------------------------------------------------------

_SOURCE = re.compile(r"/(BB_left|BB_right|SK_color)_(\d+)$")


def stream_of(sample: HandSample) -> str:
    """The STB stream of a record: ``extras["camera"]``, else recognised from its K."""
    stream = (sample.extras or {}).get("camera")
    if stream in STREAMS:
        return stream
    if sample.camera_K is not None:
        for name in ("BB_left", "SK_color"):
            if np.allclose(sample.camera_K, CAMERA[name], atol=1e-3):
                return name
    raise UnsupportedSampleError(f"sample {sample.sample_id}: not an STB camera (set extras['camera'] to one of "
                                 f"{STREAMS}, or use stb.CAMERA's intrinsics)")


def write(samples: Iterable[HandSample], root: Path, *, source_root: str | Path | None = None) -> None:
    """Write left-hand records as an STB tree under ``root`` (the inverse of :func:`read`).

    - The stream comes from ``extras["camera"]`` or the record's K (:func:`stream_of`); the
      sequence from ``subset`` (default B1Counting for test, B2Counting for train; it must
      match the split); the frame from sample ids ``.../<stream>_<frame>``, else the order.
      Frames of a sequence are renumbered 0..N-1 when they have gaps.
    - ``BB`` frames need both ``BB_left`` and ``BB_right`` records (they share one label);
      single-view data should use ``SK_color``.
    - The palm (label slot 0) comes from ``extras["palm_3d"]``, else from inverting the wrist
      formula. 3D is moved back to the label frame and written in millimetres. Images are
      written as PNG (original bytes when PNG, else re-encoded losslessly); no depth images.
    """
    import scipy.io

    root = Path(root)
    frames: OrderedDict[tuple[str, str], OrderedDict[Any, dict[str, HandSample]]] = OrderedDict()
    counters: dict[tuple[str, str], int] = {}
    for s in samples:
        if s.hand_side != "left":
            raise UnsupportedSampleError(f"sample {s.sample_id}: STB holds left hands only")
        require_labels(s, ["keypoints_3d"], "STB")
        stream = stream_of(s)
        seq = s.subset or ("B1Counting" if s.split == "test" else "B2Counting")
        if seq not in SEQUENCES or split_of(seq) != s.split:
            raise UnsupportedSampleError(f"sample {s.sample_id}: STB sequence {seq!r} does not belong to split {s.split!r}")
        group = (seq, LABEL_KIND[stream])
        match = _SOURCE.search(s.sample_id)
        if match and match.group(1) == stream:
            key: Any = int(match.group(2))
        else:
            key = ("order", counters.get((group[0], stream), 0))
            counters[(group[0], stream)] = key[1] + 1
        views = frames.setdefault(group, OrderedDict()).setdefault(key, {})
        if stream in views:
            raise UnsupportedSampleError(f"sample {s.sample_id}: frame {key} of {seq} already has a {stream} record")
        views[stream] = s
    for (seq, kind), by_frame in frames.items():
        keys = sorted(by_frame) if all(isinstance(k, int) for k in by_frame) else list(by_frame)
        para = np.zeros((3, NUM_JOINTS, len(keys)))
        folder = root / "images" / seq
        folder.mkdir(parents=True, exist_ok=True)
        for i, key in enumerate(keys):
            views = by_frame[key]
            if kind == "BB" and len(views) != 2:
                only = next(iter(views.values()))
                raise UnsupportedSampleError(f"sample {only.sample_id}: STB BB frames need both BB_left and BB_right "
                                             "(a stereo pair sharing one label); use SK_color for single views")
            stream, sample = next(iter(views.items()))
            para[:, :, i] = _label_mm(sample, stream).T
            for stream, sample in views.items():
                (folder / f"{stream}_{i}.png").write_bytes(encoded_image(sample, "png", source_root))
        (root / "labels").mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(str(root / "labels" / f"{seq}_{kind}.mat"), {"handPara": para})


def _label_mm(sample: HandSample, stream: str) -> np.ndarray:
    """(21, 3) float64 mm in raw STB order and the label camera frame (palm in slot 0)."""
    points = sample.keypoints_3d.astype(np.float64)
    palm = (sample.extras or {}).get("palm_3d")
    points[0] = np.asarray(palm, dtype=np.float64) if palm is not None else wrist_to_palm(points[0], points[_RING_MCP])
    if not np.isfinite(points).all():
        raise UnsupportedSampleError(f"sample {sample.sample_id}: STB labels all 21 joints; this record has missing ones")
    return scatter(from_stream_frame(points, stream), STB_TO_HAND21, NUM_JOINTS) * 1000.0
