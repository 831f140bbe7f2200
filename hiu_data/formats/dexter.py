"""Dexter+Object (Sridhar et al., ECCV 2016): fingertip labels of a left hand grasping objects.

Layout read (the original release; Minimal-Hand's ``DO_supp`` files are ignored)::

    <root>/data/<SEQ>/color/*.png            640 x 480 colour frames (file order = sorted names)
    <root>/data/<SEQ>/depth/*.png            320 x 240 depth frames (not read)
    <root>/data/<SEQ>/annotations/<SEQ>3D.txt  one line per colour frame: 5 fields "x, y, z"; mm
    <root>/data/<SEQ>/annotations/<SEQ>2D.txt  one line per frame: 5 fields "u, v" (depth pixels)
    SEQ in Grasp1, Grasp2, Occlusion, Pinch, Rigid, Rotate  (``root`` may also be ``data/``,
    or the folder holding the dataset's folder)

Frame ``i`` is line ``i`` of the label files. The frame file names are not documented: frames
are taken in name order with numbers compared as numbers (``2.png`` before ``10.png``), the
order of a plain sort (Minimal-Hand's) when the names are zero-padded.

Fields are separated by ``;`` and are the fingertips thumb, index, middle, ring, little; a
missing fingertip has ``z == 32001``. Every row is a **left** hand in split ``test``
(Dexter+Object is an evaluation set); ``subset`` is the sequence.

Frames and the sign convention (from Minimal-Hand's loader): the 3D labels
``(x, y, z)`` are in the depth camera with x and y negated, i.e. the depth-camera point is
``P_d = (-x, -y, z)`` (x right, y down, z forward). The colour-camera point is
``P_c = R @ P_d + t`` with the fixed depth-to-colour extrinsics below (t in mm), and
``keypoints_3d = P_c / 1000`` (metres, colour camera = the camera of the stored image);
``keypoints_2d`` is ``P_c`` projected with the colour intrinsics. The 16 other HAND21 joints
are NaN with visibility 0; tips inside the image get visibility 2, outside 1.

When ``<SEQ>2D.txt`` is present the reader checks this convention on the real files: the
depth-image pixels it lists must match ``P_d`` projected with the depth intrinsics. If they
match the projection without the sign flip better, a warning names the file. The writer
writes 2D.txt by that same rule, and the round-trip test checks that the reader's 2D lands on
fingertips drawn into generated images.

Licence: Dexter+Object is for research use (see the dataset page, MPI Informatik).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from hiu_data.errors import DatasetFormatError
from hiu_data.formats import Skipped
from hiu_data.formats._common import (UnsupportedSampleError, bbox_from_keypoints, beyond_float32, emit,
                                      encoded_image, guarded, image_file, parallel_map, project, require_dir,
                                      sample_id, select_splits, visibility_in_image)
from hiu_data.formats._layout import dataset_folder, subfolders
from hiu_data.io.images import encode
from hiu_data.schema import HandSample
from hiu_data.skeleton import DEXTER_TIPS_TO_HAND21_SLOTS, NUM_JOINTS

log = logging.getLogger(__name__)

NAME = "dexter"
SPLITS: tuple[str, ...] = ("test",)
SEQUENCES: tuple[str, ...] = ("Grasp1", "Grasp2", "Occlusion", "Pinch", "Rigid", "Rotate")
IMAGE_SIZE: tuple[int, int] = (640, 480)
"""Colour frames (width, height)."""
DEPTH_SIZE: tuple[int, int] = (320, 240)
CAMERA = np.array([[587.45209, 0.0, 325.0], [0.0, 600.67456, 249.0], [0.0, 0.0, 1.0]])
"""Colour intrinsics (pixels), as in Minimal-Hand's loader."""
DEPTH_CAMERA = np.array([[224.502, 0.0, 160.0], [0.0, 230.494, 120.0], [0.0, 0.0, 1.0]])
DEPTH_TO_COLOR_R = np.array([[0.9999, 0.0034, 0.0161], [-0.0033, 1.0000, -0.0079], [-0.0162, 0.0079, 0.9998]])
DEPTH_TO_COLOR_T = np.array([19.0473, -1.8514, -4.7501])
"""Translation of the depth-to-colour extrinsics, millimetres."""
MISSING_Z = 32001.0
SIGN_FLIP = np.array([-1.0, -1.0, 1.0])
NUM_TIPS = len(DEXTER_TIPS_TO_HAND21_SLOTS)
_CONVENTION_TOLERANCE_PX = 3.0


def raw_to_color_mm(raw: np.ndarray) -> np.ndarray:
    """Raw 3D labels (..., 3) mm (depth camera, x/y negated) -> colour-camera points (..., 3) mm."""
    return (np.asarray(raw, dtype=np.float64) * SIGN_FLIP) @ DEPTH_TO_COLOR_R.T + DEPTH_TO_COLOR_T


def color_mm_to_raw(points: np.ndarray) -> np.ndarray:
    """Inverse of :func:`raw_to_color_mm`: colour-camera points (..., 3) mm -> raw labels (..., 3)."""
    depth = (np.asarray(points, dtype=np.float64) - DEPTH_TO_COLOR_T) @ np.linalg.inv(DEPTH_TO_COLOR_R).T
    return depth * SIGN_FLIP


# --- reading ----------------------------------------------------------------------------


def frame_order(name: str) -> tuple[Any, ...]:
    """Sort key of a frame file name: its digit runs compared as numbers (``2.png`` before
    ``10.png``), the same order as a name sort for zero-padded names."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def _parse_lines(path: Path, values: int) -> list[np.ndarray]:
    """Each non-empty line of a 2D/3D annotation file as a (5, values) float64 array."""
    rows = []
    text = path.read_text(encoding="utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = [f for f in line.split(";") if f.strip()]
        try:
            row = np.array([[float(v) for v in f.split(",")] for f in fields], dtype=np.float64)
        except ValueError:
            raise DatasetFormatError(path, f"line {number}: expected {NUM_TIPS} ';'-separated fields of {values} "
                                           f"numbers, got {line.strip()[:60]!r}") from None
        if row.shape != (NUM_TIPS, values):
            raise DatasetFormatError(path, f"line {number}: expected {NUM_TIPS} fields of {values} numbers, "
                                           f"got {len(fields)} field(s)")
        if not np.isfinite(row).all() or beyond_float32(row).any():
            raise DatasetFormatError(path, f"line {number}: contains NaN or inf (or a value beyond float32)")
        rows.append(row)
    return rows


def _sequences_in(folder: Path) -> list[Path]:
    """The sequence folders of ``folder/data/`` (or of ``folder`` itself, the ``data`` folder)."""
    data = folder / "data" if (folder / "data").is_dir() else folder
    return [p for p in subfolders(data) if (p / "annotations" / f"{p.name}3D.txt").is_file()]


def _sequence_dirs(root: Path) -> list[Path]:
    found = dataset_folder(root, lambda folder: bool(_sequences_in(folder)), "Dexter+Object",
                           "no Dexter+Object sequence found; expected data/<SEQ>/annotations/<SEQ>3D.txt "
                           f"(SEQ one of {', '.join(SEQUENCES)}) here")
    return _sequences_in(found)


def _check_convention(path: Path, raw3d: list[np.ndarray], raw2d: list[np.ndarray]) -> None:
    """Warn when the depth pixels of 2D.txt contradict the x/y sign flip of the 3D labels."""
    if len(raw2d) != len(raw3d) or not raw3d:
        log.warning("%s: %d lines but %d lines in the 3D file; not used to check the sign convention",
                    path, len(raw2d), len(raw3d))
        return
    pts3d, pts2d = np.stack(raw3d).reshape(-1, 3), np.stack(raw2d).reshape(-1, 2)
    ok = (pts3d[:, 2] != MISSING_Z) & (pts3d[:, 2] > 0)
    if not ok.any():
        return
    flipped = np.median(np.linalg.norm(project(pts3d[ok] * SIGN_FLIP, DEPTH_CAMERA) - pts2d[ok], axis=1))
    unflipped = np.median(np.linalg.norm(project(pts3d[ok], DEPTH_CAMERA) - pts2d[ok], axis=1))
    if flipped > _CONVENTION_TOLERANCE_PX and unflipped < flipped:
        log.warning("%s: depth pixels match the 3D labels without the x/y sign flip (median %.1f px vs %.1f px); "
                    "the colour projection of this sequence may be mirrored", path, unflipped, flipped)


def _load_frame(job: tuple[str, str, str, str, np.ndarray, str]) -> HandSample:
    root_s, rel_image, seq, stem, raw, images = job
    sid = sample_id(NAME, "test", f"{seq}/{stem}")
    image = image_file(Path(root_s), rel_image, images, sid)
    tips = np.full((NUM_TIPS, 3), np.nan)
    present = raw[:, 2] != MISSING_Z
    tips[present] = raw_to_color_mm(raw[present]) / 1000.0
    kp3 = np.full((NUM_JOINTS, 3), np.nan)
    kp3[DEXTER_TIPS_TO_HAND21_SLOTS] = tips
    kp2 = project(kp3, CAMERA)
    vis = visibility_in_image(kp2, image.width, image.height)
    return HandSample(
        sample_id=sid, dataset=NAME, split="test", subset=seq, image_id=f"{NAME}/{seq}/{stem}",
        image_bytes=image.data, image_path=image.path, width=image.width, height=image.height,
        hand_side="left", keypoints_2d=kp2.astype(np.float32), keypoints_3d=kp3.astype(np.float32),
        camera_K=CAMERA.astype(np.float32), visibility=vis, bbox=bbox_from_keypoints(kp2, vis, image.width, image.height),
    )


def read(root: Path, *, splits: Sequence[str] | None = None, images: str = "embed", on_error: str = "fail",
         workers: int = 1, **options: Any) -> Iterator[HandSample | Skipped]:
    """Read every Dexter+Object sequence under ``root`` (see the module docstring).

    Yields:
        One left-hand HandSample per colour frame: ``keypoints_3d`` (21, 3) float32 metres in
        the colour camera (fingertips only), ``keypoints_2d`` (21, 2) float32 pixels,
        ``camera_K`` (3, 3) the colour intrinsics; or Skipped markers with ``on_error="skip"``.
    Raises:
        DatasetFormatError: no sequence found, a malformed annotation file, or a frame count
            that disagrees with the colour folder.
    """
    select_splits(NAME, SPLITS, splits, images, on_error)
    root = Path(root)
    for seq_dir in _sequence_dirs(root):
        seq = seq_dir.name
        path3d = seq_dir / "annotations" / f"{seq}3D.txt"
        raw3d = _parse_lines(path3d, 3)
        color = require_dir(seq_dir / "color", f"the colour frames of {seq}")
        frames = sorted((p for p in color.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")),
                        key=lambda p: frame_order(p.name))
        if len(frames) != len(raw3d):
            raise DatasetFormatError(path3d, f"{len(raw3d)} labelled frames but {len(frames)} images in {color}")
        path2d = seq_dir / "annotations" / f"{seq}2D.txt"
        if path2d.is_file():
            _check_convention(path2d, raw3d, _parse_lines(path2d, 2))
        jobs = [(str(root), str(f.relative_to(root)), seq, f.stem, raw, images) for f, raw in zip(frames, raw3d)]
        yield from emit(parallel_map(guarded(_load_frame), jobs, workers), on_error)


# --- writing ----------------------------------------------------------------------------


def _check_writable(sample: HandSample) -> None:
    problem = None
    if sample.hand_side != "left":
        problem = "Dexter+Object holds left hands only"
    elif (sample.width, sample.height) != IMAGE_SIZE:
        problem = f"Dexter+Object frames are {IMAGE_SIZE[0]}x{IMAGE_SIZE[1]}, not {sample.width}x{sample.height}"
    elif sample.keypoints_3d is None:
        problem = "Dexter+Object stores 3D fingertips; this record has no keypoints_3d"
    elif sample.camera_K is not None and not np.allclose(sample.camera_K, CAMERA, rtol=1e-4, atol=1e-3):
        problem = "camera_K differs from the Dexter+Object colour camera (dexter.CAMERA)"
    if problem:
        raise UnsupportedSampleError(f"{sample.sample_id}: {problem}")


def _frame_line(sample: HandSample) -> tuple[str, str]:
    """The 3D.txt and 2D.txt lines of one record (fingertips thumb..little; missing z = 32001)."""
    tips = np.asarray(sample.keypoints_3d, dtype=np.float64)[DEXTER_TIPS_TO_HAND21_SLOTS] * 1000.0
    labelled = np.isfinite(tips).all(axis=1) & (sample.visibility[DEXTER_TIPS_TO_HAND21_SLOTS] > 0)
    raw = np.zeros((NUM_TIPS, 3))
    raw[:, 2] = MISSING_Z
    raw[labelled] = color_mm_to_raw(tips[labelled])
    depth_px = np.zeros((NUM_TIPS, 2))
    depth_px[labelled] = project(raw[labelled] * SIGN_FLIP, DEPTH_CAMERA)
    line3d = "; ".join(", ".join(f"{v:.6f}" for v in p) for p in raw)
    line2d = "; ".join(", ".join(f"{v:.4f}" for v in p) for p in depth_px)
    return line3d, line2d


def _frame_stem(sample: HandSample, seq: str, index: int) -> str:
    prefix = f"{NAME}/test/{seq}/"
    if sample.sample_id.startswith(prefix) and "/" not in sample.sample_id[len(prefix):]:
        return sample.sample_id[len(prefix):]
    return f"{index:05d}"


def write(samples: Iterable[HandSample], root: Path, *, source_root: Path | None = None, depth: bool = True,
          **options: Any) -> None:
    """Write left-hand records (640 x 480, the Dexter colour camera) as ``root/data/<SEQ>/``.

    Only the fingertips are stored (the other joints are dropped). Records of another dataset
    go into sequence ``subset`` when it is a Dexter sequence name, else ``Grasp1``, as frames
    ``%05d.png``. Non-PNG images are re-encoded as PNG (lossless). With ``depth``, blank
    16-bit 320 x 240 depth frames complete the layout.

    Raises:
        UnsupportedSampleError: a right hand, another image size or camera, or no 3D.
    """
    root = Path(root)
    lines: dict[str, dict[str, tuple[str, str]]] = {}
    blank_depth = encode(np.zeros((DEPTH_SIZE[1], DEPTH_SIZE[0]), np.uint16), ".png") if depth else b""
    for sample in samples:
        _check_writable(sample)
        seq = sample.subset if sample.subset and re.fullmatch(r"[A-Za-z0-9_-]+", sample.subset) else SEQUENCES[0]
        frames = lines.setdefault(seq, {})
        stem = _frame_stem(sample, seq, len(frames))
        if stem in frames:
            raise UnsupportedSampleError(f"{sample.sample_id}: a second frame named {stem!r} in {seq}")
        frames[stem] = _frame_line(sample)
        data = encoded_image(sample, "png", source_root)
        seq_dir = root / "data" / seq
        (seq_dir / "color").mkdir(parents=True, exist_ok=True)
        (seq_dir / "color" / f"{stem}.png").write_bytes(data)
        if depth:
            (seq_dir / "depth").mkdir(parents=True, exist_ok=True)
            (seq_dir / "depth" / f"{stem}.png").write_bytes(blank_depth)
    for seq, frames in lines.items():
        annotations = root / "data" / seq / "annotations"
        annotations.mkdir(parents=True, exist_ok=True)
        ordered = [frames[stem] for stem in sorted(frames, key=lambda s: frame_order(f"{s}.png"))]
        (annotations / f"{seq}3D.txt").write_text("".join(f"{a}\n" for a, _ in ordered))
        (annotations / f"{seq}2D.txt").write_text("".join(f"{b}\n" for _, b in ordered))
