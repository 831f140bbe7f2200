"""Helpers shared by the format modules (readers and writers of raw dataset layouts).

What a reader needs, in the order it usually needs it:

- :func:`select_splits` checks ``images`` / ``on_error`` and turns ``splits=`` into the
  unified split names to read (one clear error for an unknown one).
- :func:`require_dir`, :func:`require_file`, :func:`load_json`, :func:`as_array`: raw files
  and values, each failure a :class:`~hiu_data.errors.DatasetFormatError` naming the file, what
  was expected there, and the sample when there is one (wrong shape, NaN/inf, truncated JSON).
- :func:`project`, :func:`visibility_in_image`, :func:`bbox_from_keypoints` (and the batched
  :func:`bboxes_from_keypoints`): derived labels, computed the same way by every format so that
  the writer -> reader round trips agree.
- :func:`image_file`: the bytes (``images="embed"``) or the relative path (``"reference"``) of
  an image plus its size from the file header, without decoding; missing, truncated or
  non-image files raise :class:`~hiu_data.errors.CorruptImageError`.
- :func:`parallel_map` + :func:`guarded` + :func:`emit`: run per-sample work (file reading,
  mask decoding) in ``workers`` processes in input order, and apply ``on_error``: with
  ``"fail"`` the first bad sample raises its one-line error; with ``"skip"`` it becomes a
  :class:`~hiu_data.formats.Skipped` marker that ``convert`` counts in the manifest.

Typical reader body::

    splits = select_splits(NAME, SPLITS, splits, images, on_error)
    jobs = [(path, sample_id, ...) for ...]                 # small, picklable
    results = parallel_map(guarded(_load_one), jobs, workers)   # _load_one: module-level function
    yield from emit(results, on_error)                      # HandSample | Skipped

``_load_one(job)`` returns a HandSample, a list of them, or raises DatasetFormatError (its
``sample_id`` is used for the skip marker). Writers raise :class:`UnsupportedSampleError`
for records the raw format cannot represent.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import signal
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from hiu_data.errors import CorruptImageError, DatasetFormatError, HiuError, UnsafePickleError
from hiu_data.formats import Skipped
from hiu_data.formats._images import (MAX_IMAGE_SIDE, ImageFile, image_file, image_size,  # noqa: F401
                                      read_image_bytes)
from hiu_data.io.json_numbers import parse_json
from hiu_data.schema import HandSample

log = logging.getLogger(__name__)

IMAGE_MODES: tuple[str, ...] = ("embed", "reference")
ON_ERROR: tuple[str, ...] = ("fail", "skip")


class UnsupportedSampleError(HiuError, ValueError):
    """A writer was given a record its raw format cannot represent (names the sample and why)."""


# --- options and files ------------------------------------------------------------------


def select_splits(name: str, available: Sequence[str], splits: Sequence[str] | None, images: str,
                  on_error: str) -> tuple[str, ...]:
    """Check the common ``read`` options; return the unified splits to read, in ``available`` order."""
    if images not in IMAGE_MODES:
        raise HiuError(f"images must be one of {', '.join(IMAGE_MODES)}, not {images!r}")
    if on_error not in ON_ERROR:
        raise HiuError(f"on_error must be one of {', '.join(ON_ERROR)}, not {on_error!r}")
    if not splits:
        return tuple(available)
    unknown = [s for s in splits if s not in available]
    if unknown:
        raise HiuError(f"{name} has no split {unknown[0]!r}; it has: {', '.join(available)}")
    return tuple(s for s in available if s in splits)


def require_dir(path: Path, expected: str) -> Path:
    """``path`` if it is a folder, else a DatasetFormatError saying what was expected there."""
    if not path.is_dir():
        raise DatasetFormatError(path, f"missing folder; expected {expected} here")
    return path


def require_file(path: Path, expected: str, sample_id: str | None = None) -> Path:
    """``path`` if it is a file, else a DatasetFormatError saying what was expected there."""
    if not path.is_file():
        raise DatasetFormatError(path, f"missing file; expected {expected} here", sample_id)
    return path


def load_json(path: Path, expected: str = "a JSON file") -> Any:
    """Parse a JSON file; a missing, truncated or malformed file raises DatasetFormatError."""
    require_file(path, expected)
    return parse_json(path.read_bytes(), path)


def load_record_json(path: Path, keys: Sequence[str], sample_id: str) -> dict[str, Any]:
    """Parse one per-sample annotation file (CMU, HIU-Data): a JSON object holding ``keys``.

    A file that is not JSON, or not an object with those keys, raises
    :class:`DatasetFormatError` naming the file and the sample. Unlike :func:`load_json`
    the file is known to exist (it was listed), so it is not checked first.
    """
    try:
        data = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise DatasetFormatError(path, f"malformed JSON ({e})", sample_id) from None
    if not isinstance(data, dict) or any(key not in data for key in keys):
        raise DatasetFormatError(path, "expected a JSON object with " + " and ".join(f"'{key}'" for key in keys),
                                 sample_id)
    return data


def id_key(value: Any, path: str | Path, what: str) -> Any:
    """A JSON id that joins records (COCO image, annotation and category ids): a number, a
    string or null, never a list or an object (which cannot be looked up)."""
    if isinstance(value, (list, dict)):
        raise DatasetFormatError(path, f"{what} must be a number or a string, not {value!r}")
    return value


FLOAT32_MAX = float(np.finfo(np.float32).max)


def beyond_float32(values: np.ndarray) -> np.ndarray:
    """Where finite ``values`` would become inf when stored as float32 (bool, same shape)."""
    with np.errstate(invalid="ignore"):
        return np.abs(values) > FLOAT32_MAX


def as_array(value: Any, shape: tuple[int, ...], path: str | Path, what: str, sample_id: str | None = None,
             dtype: type = np.float64, allow_nan: bool = False) -> np.ndarray:
    """``value`` as an array of exactly ``shape``; finite unless ``allow_nan``, and within the
    float32 range the schema stores.

    Raises:
        DatasetFormatError: wrong shape, not numbers (booleans, dates and text are not), NaN/inf,
            or beyond float32 (naming ``what`` and the sample).
    """
    try:
        raw = np.asarray(value)
        if raw.dtype.kind in "bMmSUV":  # booleans, dates, text: numbers only by accident
            raise ValueError("not numbers")
        with np.errstate(over="ignore"):  # a value beyond ``dtype`` becomes inf, refused below
            arr = raw.astype(dtype, copy=False)
    except (TypeError, ValueError, OverflowError):
        raise DatasetFormatError(path, f"{what} is not a numeric array of shape {shape}", sample_id) from None
    if arr.shape != shape:
        raise DatasetFormatError(path, f"{what} has shape {arr.shape}, expected {shape}", sample_id)
    if np.issubdtype(arr.dtype, np.floating):
        bad = ~np.isfinite(arr) if not allow_nan else np.isinf(arr)
        if bad.any():
            raise DatasetFormatError(path, f"{what} contains NaN or inf", sample_id)
        if beyond_float32(arr).any():
            raise DatasetFormatError(path, f"{what} holds a value beyond the float32 range it is stored in", sample_id)
    return arr


# --- derived labels ---------------------------------------------------------------------


def project(points: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Pinhole projection ``uv = (K @ X)[:2] / (K @ X)[2]``.

    Args:
        points: (..., N, 3) camera-frame points (any unit; the ratio is unit-free).
        K: (3, 3) or (..., 3, 3) intrinsics in pixels. The datasets' intrinsics are used as
            continuous-coordinate intrinsics (no half-pixel shift): FreiHAND and RHD put the
            principal point at exactly W/2, H/2, the image centre under the +0.5 convention.
    Returns:
        (..., N, 2) float64 pixels.
    """
    points = np.asarray(points, dtype=np.float64)
    K = np.asarray(K, dtype=np.float64)
    homogeneous = points @ np.swapaxes(K, -1, -2)
    with np.errstate(divide="ignore", invalid="ignore"):
        return homogeneous[..., :2] / homogeneous[..., 2:3]


def visibility_in_image(keypoints_2d: np.ndarray, width: int | np.ndarray, height: int | np.ndarray) -> np.ndarray:
    """COCO visibility for datasets without occlusion labels: 2 inside the image, 1 outside, 0 NaN.

    Args:
        keypoints_2d: (..., J, 2) pixels. width, height: numbers, or arrays broadcasting
            against (..., J) (e.g. (B, 1) for a batch of differently sized images).
    Returns:
        (..., J) uint8.
    """
    kp = np.asarray(keypoints_2d, dtype=np.float64)
    finite = np.isfinite(kp).all(axis=-1)
    with np.errstate(invalid="ignore"):
        inside = (kp[..., 0] >= 0) & (kp[..., 0] <= width) & (kp[..., 1] >= 0) & (kp[..., 1] <= height)
    return np.where(finite, np.where(inside, 2, 1), 0).astype(np.uint8)


def bboxes_from_keypoints(keypoints_2d: np.ndarray, visibility: np.ndarray, width: int | np.ndarray,
                          height: int | np.ndarray) -> np.ndarray:
    """Hand boxes from labels, batched: the tight box of the labelled keypoints, clipped to the image.

    Decision (the datasets do not say): no margin is added here (crops add their own), occluded
    and out-of-image keypoints count (they are labelled), and the box is clipped to the
    image so that it always lies inside it; a hand with no labelled keypoint gets a zero box.

    Args:
        keypoints_2d: (B, J, 2) pixels. visibility: (B, J) 0/1/2. width, height: scalars or (B,).
    Returns:
        (B, 4) float32 x, y, w, h in pixels.
    """
    kp = np.asarray(keypoints_2d, dtype=np.float64)
    labelled = (np.asarray(visibility) > 0) & np.isfinite(kp).all(axis=-1)
    has_any = labelled.any(axis=-1)
    x0 = np.where(labelled, kp[..., 0], np.inf).min(axis=-1)
    x1 = np.where(labelled, kp[..., 0], -np.inf).max(axis=-1)
    y0 = np.where(labelled, kp[..., 1], np.inf).min(axis=-1)
    y1 = np.where(labelled, kp[..., 1], -np.inf).max(axis=-1)
    w = np.broadcast_to(np.asarray(width, dtype=np.float64), x0.shape)
    h = np.broadcast_to(np.asarray(height, dtype=np.float64), y0.shape)
    x0, x1 = np.clip(x0, 0, w), np.clip(x1, 0, w)
    y0, y1 = np.clip(y0, 0, h), np.clip(y1, 0, h)
    box = np.stack([x0, y0, x1 - x0, y1 - y0], axis=-1)
    return np.where(has_any[..., None], box, 0.0).astype(np.float32)


def bbox_from_keypoints(keypoints_2d: np.ndarray | None, visibility: np.ndarray, width: int, height: int) -> np.ndarray:
    """One hand's box (4,) float32 x, y, w, h; see :func:`bboxes_from_keypoints` (None -> zeros)."""
    if keypoints_2d is None:
        return np.zeros(4, dtype=np.float32)
    return bboxes_from_keypoints(np.asarray(keypoints_2d)[None], np.asarray(visibility)[None], width, height)[0]


def clip_box(bbox: Sequence[float], width: int, height: int) -> list[float] | None:
    """An x, y, w, h pixel box cut to the ``width`` x ``height`` image; None when nothing of it
    lies inside (a box of zero size included)."""
    x0, y0 = max(float(bbox[0]), 0.0), max(float(bbox[1]), 0.0)
    x1, y1 = min(float(bbox[0]) + float(bbox[2]), float(width)), min(float(bbox[1]) + float(bbox[3]), float(height))
    return [x0, y0, x1 - x0, y1 - y0] if x1 > x0 and y1 > y0 else None


def sample_id(dataset: str, split: str, source_id: str, side: str | None = None) -> str:
    """``<dataset>/<split>/<source id>[/<side>]`` (unique across datasets)."""
    return f"{dataset}/{split}/{source_id}" + (f"/{side}" if side else "")


# --- per-sample work: parallel, ordered, with on_error ----------------------------------


@dataclass(frozen=True)
class Failure:
    """A DatasetFormatError caught in a worker, in a form that pickles (exceptions with extra
    constructor arguments do not survive the trip back from a worker process)."""

    path: str
    problem: str
    sample_id: str | None
    kind: str = "format"

    @classmethod
    def of(cls, error: DatasetFormatError, sample_id: str | None = None) -> "Failure":
        """The picklable form of ``error``; ``sample_id`` is used where the error names none."""
        kind = "image" if isinstance(error, CorruptImageError) else "pickle" if isinstance(error, UnsafePickleError) else "format"
        return cls(error.path, error.problem, error.sample_id or sample_id, kind)

    def exception(self) -> DatasetFormatError:
        """The error again, of its original class, to raise in the parent process."""
        cls = {"image": CorruptImageError, "pickle": UnsafePickleError}.get(self.kind, DatasetFormatError)
        return cls(self.path, self.problem, self.sample_id)

    def skipped(self) -> Skipped:
        """The record ``--on-error skip`` counts instead of raising."""
        return Skipped(self.sample_id or self.path, f"{self.path}: {self.problem}")


def _call_guarded(fn: Callable[[Any], Any], job: Any) -> Any:
    try:
        return fn(job)
    except DatasetFormatError as e:
        return Failure.of(e)


def guarded(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Wrap a module-level per-sample function so DatasetFormatErrors come back as :class:`Failure`."""
    return partial(_call_guarded, fn)


def ignore_interrupt() -> None:
    """Pool worker initialiser: leave Ctrl-C to the parent.

    A terminal's Ctrl-C reaches the whole process group. A worker killed by it mid-chunk prints
    a traceback and leaves the pool waiting for that chunk for ever; the parent handles the
    interrupt, and its pool's ``terminate()`` ends the workers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def parallel_map(fn: Callable[[Any], Any], jobs: Iterable[Any], workers: int = 1, chunksize: int = 32,
                 threads: bool = False) -> Iterator[Any]:
    """``map(fn, jobs)`` in input order, in ``workers`` forked processes when ``workers > 1``.

    ``fn`` and the jobs must pickle (a module-level function, small tuples); keep big shared
    data out of the jobs. Results stream back in order; the pool is closed when the consumer
    stops early (an error raised by ``emit``). ``threads=True`` uses a thread pool instead:
    right for work that releases the GIL (file reads, OpenCV decoding), with no pickling of
    results, and safe to use from a non-main thread (``convert`` prefetches in one).
    """
    if workers <= 1:
        yield from map(fn, jobs)
        return
    if threads:
        from multiprocessing.pool import ThreadPool

        thread_pool = ThreadPool(workers)
        try:
            yield from thread_pool.imap(fn, jobs, chunksize=chunksize)
        finally:
            thread_pool.terminate()
            thread_pool.join()
        return
    pool = multiprocessing.get_context("fork").Pool(workers, initializer=ignore_interrupt)
    try:
        yield from pool.imap(fn, jobs, chunksize=chunksize)
    finally:
        pool.terminate()
        pool.join()


def emit(results: Iterable[Any], on_error: str) -> Iterator[HandSample | Skipped]:
    """Flatten per-sample results (HandSample, list of them, or Failure) applying ``on_error``."""
    for result in results:
        if isinstance(result, Failure):
            if on_error != "skip":
                raise result.exception()
            yield result.skipped()
        elif isinstance(result, HandSample):
            yield result
        else:
            yield from result


# --- writers ----------------------------------------------------------------------------


def image_format(data: bytes) -> str | None:
    """``"png"``, ``"jpeg"`` or None, from the magic bytes."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:2] == b"\xff\xd8":
        return "jpeg"
    return None


def encoded_image(sample: HandSample, fmt: str, source_root: str | Path | None = None, quality: int = 95) -> bytes:
    """A record's image bytes in the encoding a raw format requires (``"png"`` or ``"jpeg"``).

    The original bytes are returned untouched when they already have that encoding; otherwise
    the image is decoded and re-encoded (PNG losslessly, JPEG at ``quality``). Reference-mode
    records are resolved against ``source_root``.
    """
    from hiu_data.io import images

    data = images.sample_image_bytes(sample.image_bytes, sample.image_path, source_root, sample.sample_id)
    if image_format(data) == fmt:
        return data
    pixels = images.decode(data, sample.image_path or "<embedded image>", sample.sample_id)
    return images.encode(pixels, ".png" if fmt == "png" else ".jpg", quality=quality)


def require_labels(sample: HandSample, names: Sequence[str], fmt: str) -> None:
    """Raise :class:`UnsupportedSampleError` unless every field in ``names`` is set on ``sample``."""
    missing = [n for n in names if getattr(sample, n) is None]
    if missing:
        raise UnsupportedSampleError(f"sample {sample.sample_id}: the {fmt} format needs {', '.join(missing)}")


def json_floats(array: np.ndarray) -> list[Any]:
    """Nested lists of Python floats; float32 values survive the JSON round trip exactly."""
    return np.asarray(array, dtype=np.float64).tolist()
