"""Predictions drawn over their images, and the file side of ``hiu-data predict``.

An overlay shows, for every hand: the predicted mask tinted green, the rendered mesh
silhouette as a yellow outline, the heat-map branch's skeleton in the HAND21 finger colours
(joint dots shaded by confidence), and the mesh branch's projected joints as small white
rings, so that the two 2D branches can be compared by eye. ``predictions.json`` holds the numbers (image pixels, metres, MANO parameters).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np

from hiu_data.errors import DatasetFormatError, HiuError
from hiu_data.formats._common import ON_ERROR
from hiu_data.io.images import IMAGE_SUFFIXES
from hiu_data.skeleton import BONES, bone_colors, joint_colors
from hiu_model.predict import Prediction

log = logging.getLogger(__name__)

_MASK_COLOUR = np.array([40, 220, 90], np.float32)
_SILHOUETTE_COLOUR = (255, 215, 0)
TINT_STRIP_PIXELS = 1 << 18
"""Pixels of the float32 strips the mask tint is blended in (about 24 bytes each while one is
blended): the tint never needs a float copy of the whole image (12 bytes a pixel, 24 while it
was made)."""


def _point(p: np.ndarray) -> tuple[int, int]:
    # hiu pixel centres are at +0.5; OpenCV draws at integer centres (4 fractional bits).
    return int(round((p[0] - 0.5) * 16)), int(round((p[1] - 0.5) * 16))


def draw_prediction(image: np.ndarray, predictions: Sequence[Prediction]) -> np.ndarray:
    """Draw hands over an RGB image.

    Args:
        image: (H, W, 3) uint8 RGB.
        predictions: the hands of this image (image pixels).
    Returns:
        (H, W, 3) uint8 RGB overlay (a new array). Besides it, drawing needs about one byte a
        pixel at most (the masks are blended in float strips, the outlines traced in their box).
    """
    canvas = np.array(image, np.uint8, copy=True)
    _tint_masks(canvas, [pred.mask for pred in predictions if pred.mask is not None])
    scale = max(image.shape[:2]) / 400.0
    thickness = max(1, int(round(2 * scale)))
    for pred in predictions:
        if pred.silhouette is not None and pred.silhouette.any():
            cv2.drawContours(canvas, _outline(pred.silhouette), -1, _SILHOUETTE_COLOUR, thickness, cv2.LINE_AA)
        keypoints = pred.keypoints_2d
        if np.isfinite(keypoints).all():
            for (parent, child), colour in zip(BONES, bone_colors()):
                cv2.line(canvas, _point(keypoints[parent]), _point(keypoints[child]), colour, thickness, cv2.LINE_AA, 4)
            for joint, colour in enumerate(joint_colors()):
                shade = 0.4 + 0.6 * float(np.clip(pred.keypoint_confidence[joint], 0, 1))
                cv2.circle(canvas, _point(keypoints[joint]), int(16 * 2.5 * scale) + 8,
                           tuple(int(c * shade) for c in colour), -1, cv2.LINE_AA, 4)
        if pred.mesh_keypoints_2d is not None:
            for point in pred.mesh_keypoints_2d:
                cv2.circle(canvas, _point(point), int(16 * 3 * scale) + 16, (255, 255, 255), 1, cv2.LINE_AA, 4)
    return canvas


def _box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Rows ``[top, bottom)`` and columns ``[left, right)`` of a (H, W) bool mask's True pixels."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not rows.size:
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _tint_masks(canvas: np.ndarray, masks: Sequence[np.ndarray]) -> None:
    """Blend the mask colour into ``canvas`` ((H, W, 3) uint8, in place) at 40 % over each (H, W)
    bool mask in turn, in float32 strips of at most :data:`TINT_STRIP_PIXELS` pixels of the masks'
    common box: the same pixels as one float canvas (overlaps tinted twice before the one rounding
    down), without its memory."""
    boxes = [box for box in map(_box, masks) if box is not None]
    if not boxes:
        return
    top, bottom = min(b[0] for b in boxes), max(b[1] for b in boxes)
    left, right = min(b[2] for b in boxes), max(b[3] for b in boxes)
    rows = max(1, TINT_STRIP_PIXELS // (right - left))
    for start in range(top, bottom, rows):
        window = (slice(start, min(start + rows, bottom)), slice(left, right))
        strip = canvas[window].astype(np.float32)
        for mask in masks:
            inside = mask[window]
            values = strip[inside]
            values *= 0.6
            values += 0.4 * _MASK_COLOUR
            strip[inside] = values
        canvas[window] = np.clip(strip, 0, 255).astype(np.uint8)


def _outline(silhouette: np.ndarray) -> Sequence[np.ndarray]:
    """The outer contours of a (H, W) bool silhouette as OpenCV traces them on the whole image
    (int32 image pixels), traced in its box only (a uint8 copy of the box, not of the image). A
    pixel of margin keeps the shape off the box's edge wherever it is off the image's edge, so
    that what OpenCV does at an image's border happens where it did on the whole image."""
    box = _box(silhouette)
    if box is None:
        return []
    height, width = silhouette.shape
    top, bottom, left, right = max(box[0] - 1, 0), min(box[1] + 1, height), max(box[2] - 1, 0), min(box[3] + 1, width)
    contours, _ = cv2.findContours(silhouette[top:bottom, left:right].astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_NONE, offset=(left, top))
    return contours


def find_images(paths: Sequence[str | Path]) -> list[Path]:
    """Image files among ``paths``; folders contribute their images (sorted, not recursive).

    Images are the files with one of :data:`hiu_data.io.images.IMAGE_SUFFIXES`, as for every
    command; a file named outright with another suffix is refused rather than skipped.
    """
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            # Hidden files (e.g. macOS "._x.jpg" resource forks) are skipped, as the folder reader does.
            found += sorted(p for p in path.iterdir()
                            if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file())
        elif path.is_file():
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                raise HiuError(f"{path}: not an image file hiu reads ({', '.join(IMAGE_SUFFIXES)})")
            found.append(path)
        else:
            raise FileNotFoundError(2, "not found", str(path))
    if not found:
        # Folders are read one level deep (the overlays are named by file): say so when the
        # images are further down, as in a dataset's per-sequence folders.
        deeper = any(p.suffix.lower() in IMAGE_SUFFIXES for d in map(Path, paths) if d.is_dir() for p in d.rglob("*"))
        hint = "; predict reads no sub-folders: pass them (e.g. DIR/*/)" if deeper else ""
        raise HiuError(f"{', '.join(map(str, paths))}: no images ({', '.join(IMAGE_SUFFIXES)}){hint}")
    return found


def images_in_sub_folders(paths: Sequence[str | Path]) -> dict[Path, int]:
    """``{folder: count}`` of the images below the sub-folders of each folder among ``paths``,
    which :func:`find_images` does not read (hidden files and folders left out, as there)."""
    counts: dict[Path, int] = {}
    for folder in map(Path, paths):
        if folder.is_dir():
            deeper = sum(1 for p in folder.rglob("*") if len(p.relative_to(folder).parts) > 1
                         and p.suffix.lower() in IMAGE_SUFFIXES
                         and not any(part.startswith(".") for part in p.relative_to(folder).parts) and p.is_file())
            if deeper:
                counts[folder] = deeper
    return counts


def _load_boxes(path: Path | None, names: Sequence[str]) -> dict[str, list[tuple[list[float], str]]]:
    """``{image file name: [(x, y, w, h), side]}`` from ``--boxes``: a mapping ``{"file name":
    [[x, y, w, h], ...]}`` (side ``auto``) or a COCO-format detections JSON, as ``synth-wild``
    and detectors write it (read by the folder converter's reader; its hand sides are kept).
    ``names``: the file names being predicted (detections may name other images too)."""
    if path is None:
        return {}
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise HiuError(f"{path}: unreadable boxes file ({e})") from e
    if isinstance(data, list) or (isinstance(data, dict) and "annotations" in data):
        from hiu_data.formats.folder import load_boxes

        entries = (data.get("images", []) if isinstance(data, dict) else []) + (
            data["annotations"] if isinstance(data, dict) else data)
        listed = {e["file_name"] for e in entries if isinstance(e, dict) and isinstance(e.get("file_name"), str)}
        found = load_boxes(Path(path), sorted(set(names) | listed))
        return {name: [(bbox, side or "auto") for bbox, side, _ in boxes] for name, boxes in found.items()}
    if not isinstance(data, dict):
        raise HiuError(f"{path}: expected a JSON object mapping image file names to lists of [x, y, w, h], "
                       "or COCO-format detections")
    out = {}
    for name, boxes in data.items():
        try:
            array = np.asarray(boxes, np.float64).reshape(-1, 4)
        except (TypeError, ValueError):
            raise HiuError(f"{path}: {name!r}: expected a list of [x, y, w, h] boxes") from None
        if not np.isfinite(array).all() or (array[:, 2:] <= 0).any():
            raise HiuError(f"{path}: {name!r}: boxes must be finite with positive width and height")
        out[name] = [(box.tolist(), "auto") for box in array]
    return out


def prediction_record(pred: Prediction) -> dict[str, Any]:
    """JSON-ready numbers of one hand (2D image px, 3D metres wrist-relative, MANO)."""
    def listed(a: np.ndarray | None) -> Any:
        return None if a is None else np.round(np.asarray(a, np.float64), 5).tolist()

    return {"hand_side": pred.hand_side, "bbox": listed(pred.bbox), "keypoints_2d": listed(pred.keypoints_2d),
            "keypoint_confidence": listed(pred.keypoint_confidence), "mesh_keypoints_2d": listed(pred.mesh_keypoints_2d),
            "keypoints_3d": listed(pred.keypoints_3d), "mano_pose": listed(pred.mano_pose),
            "mano_betas": listed(pred.mano_betas), "scores": {k: round(v, 5) for k, v in pred.scores.items()},
            "mask_area": None if pred.mask is None else int(pred.mask.sum())}


@dataclass
class PredictedFiles:
    """What :func:`predict_files` wrote: ``path`` (``predictions.json``), the number of images
    drawn, and the files skipped under ``on_error="skip"`` as ``(file, one-line reason)``."""

    path: Path
    images: int
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def predict_files(checkpoint: str | Path, paths: Sequence[str | Path], out: str | Path, boxes: Path | None = None,
                  side: str = "auto", batch_size: int = 16, device: str = "cpu", tta_rotation: float = 0.0,
                  overwrite: bool = False, progress: Callable[[int], None] | None = None, on_error: str = "fail",
                  warn: Callable[[str], None] | None = None) -> PredictedFiles:
    """Predict hands on image files and write ``OUT/<image stem>.png`` overlays + ``predictions.json``.

    ``out`` is written whole: everything goes to a folder beside it first, which replaces it at
    the end (so a failure leaves ``out`` as it was, and overlays of an earlier call never sit
    beside a ``predictions.json`` that does not list them).

    Args:
        checkpoint: checkpoint folder or run folder.
        paths: image files and/or folders of images.
        boxes: optional JSON ``{"file name": [[x, y, w, h], ...]}`` or COCO-format detections
            (``synth-wild``'s ``detections.json``); images not in it are treated as one hand
            filling the image.
        side: ``auto``, ``left`` or ``right``.
        device: torch device (``auto``: CUDA when available).
        tta_rotation: average the heat-maps and masks over crops turned by 0 and +-this many
            degrees (:mod:`hiu_model.tta`; 0 = one plain pass).
        overwrite: replace an ``out`` that exists and is not empty (else an error).
        on_error: ``fail``: an image file that cannot be read (corrupt, truncated, too large,
            gone) stops the run, nothing written; ``skip``: it gets no overlay and no entry in
            ``predictions.json``, is passed to ``warn`` and counted in the result.
        warn: called with one line (the file and the reason) for each skipped file; default
            a logged warning.
    Returns:
        The ``predictions.json`` path, the images drawn and the files skipped.
    Raises:
        OutputExistsError: ``out`` holds files and ``overwrite`` is False.
        CorruptImageError: an image cannot be read and ``on_error`` is ``fail``.
    """
    from hiu_data.io.manifest import check_output_folder, staged_folder
    from hiu_model.checkpoint import load_checkpoint
    from hiu_model.tta import with_rotation_tta

    if on_error not in ON_ERROR:
        raise HiuError(f"--on-error must be one of {', '.join(ON_ERROR)}, not {on_error!r}")
    files = find_images(paths)
    _check_unique_stems(files)  # before the model is loaded: a slip in the inputs fails at once
    out = Path(out)
    check_output_folder(out, overwrite, files, what="input image", option="--out")
    model, cfg, info = load_checkpoint(checkpoint, device=device)
    model = with_rotation_tta(model, tta_rotation)
    by_name = _load_boxes(boxes, [path.name for path in files])
    result = PredictedFiles(out / "predictions.json", 0)
    with staged_folder(out) as staging:
        _write_predictions(model, cfg, info, files, by_name, staging, side, batch_size, tta_rotation, progress,
                           result, on_error, warn or (lambda line: log.warning("%s", line)))
    return result


def _check_unique_stems(files: Sequence[Path]) -> None:
    """Refuse two inputs whose overlays would share a name: overlays are ``<stem>.png`` and
    ``predictions.json`` and ``--boxes`` go by file name, so the second would silently replace
    the first (``a/0001.jpg`` and ``b/0001.jpg``, or ``x.jpg`` beside ``x.png``)."""
    seen: dict[str, Path] = {}
    for path in files:
        first = seen.setdefault(path.stem, path)
        if first is not path:
            raise HiuError(f"{first} and {path}: both would be drawn as {path.stem}.png; predict them into "
                           "separate --out folders")


def _read_images(files: Sequence[Path], on_error: str, result: PredictedFiles,
                 warn: Callable[[str], None]) -> tuple[list[Path], list[np.ndarray]]:
    """The files that decode and their (H, W, 3) uint8 RGB pixels; with ``on_error="skip"`` the
    others are warned about and added to ``result.skipped``."""
    from hiu_data.io.images import read_file

    read, images = [], []
    for path in files:
        try:
            images.append(read_file(path))
        except DatasetFormatError as e:
            if on_error != "skip":
                raise
            result.skipped.append((path, e.problem))
            warn(f"{e}; skipped (--on-error skip)")
            continue
        read.append(path)
    return read, images


def _write_predictions(model: Any, cfg: Any, info: dict[str, Any], files: list[Path], by_name: dict[str, Any],
                       out: Path, side: str, batch_size: int, tta_rotation: float,
                       progress: Callable[[int], None] | None, result: PredictedFiles, on_error: str,
                       warn: Callable[[str], None]) -> None:
    """The overlays and ``predictions.json`` of :func:`predict_files`, written into ``out``;
    counts go to ``result``."""
    from hiu_model.predict import predict_images

    records: dict[str, Any] = {}
    for start in range(0, len(files), batch_size):
        chunk, images = _read_images(files[start:start + batch_size], on_error, result, warn)
        listed = [by_name.get(path.name) for path in chunk]
        chunk_boxes = [[box for box, _ in hands] if hands else None for hands in listed]
        # A side given on the command line wins; with "auto" a side the detections name is kept.
        sides = side if side != "auto" else [[s for _, s in hands] if hands else "auto" for hands in listed]
        # On the model's device: load_checkpoint resolved "auto" there.
        predictions = predict_images(model, cfg, images, chunk_boxes, sides=sides, batch_size=batch_size)
        for index, (path, image) in enumerate(zip(chunk, images)):
            hands = [p for p in predictions if p.image_index == index]
            overlay = draw_prediction(image, hands)
            target = out / f"{path.stem}.png"
            if not cv2.imwrite(str(target), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR)):
                raise HiuError(f"{target}: cannot write the overlay")
            records[path.name] = [prediction_record(p) for p in hands]
        if progress is not None:
            progress(min(batch_size, len(files) - start))
    result.images = len(records)
    document = {"checkpoint": info["path"], "step": info["step"], "sha256": info["sha256"],
                "tta_rotation_deg": tta_rotation,
                "frames": "keypoints_2d: image px (heat-map branch); mesh_keypoints_2d: image px "
                          "(projected mesh); keypoints_3d: metres, wrist-relative, camera axes",
                "images": records}
    (out / result.path.name).write_text(json.dumps(document, indent=1))
