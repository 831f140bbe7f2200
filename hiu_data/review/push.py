"""``hiu-data review push``: a converted (pseudo-label) dataset -> a persistent FiftyOne dataset.

One FiftyOne sample per image (the hands of one image share ``image_id``), with

- ``hands``: ``fo.Keypoints``, one ``fo.Keypoint`` per hand: label = hand side, 21 points
  relative to the image in HAND21 order (missing joints NaN in their slot), ``confidence``
  the per-joint list, attributes ``hiu_sample_id`` and ``hand_confidence``; drawn with the
  HAND21 skeleton (``dataset.skeletons`` and ``default_skeleton``), and the row's
  ``review_status``;
- ``hand_masks``: ``fo.Detections``, one instance mask per hand that has a mask
  (see :mod:`hiu_data.review.labels` for the exact box and crop);
- ``confidence``: the image's least confident hand, ``hiu_image_id``, and ``reviewed``: True
  when every hand of the image has a decided ``review_status`` (accepted, corrected or
  rejected: a dataset pulled from an earlier round, perhaps with new images added by
  ``pseudo-label --update``).

Images are materialised from the embedded bytes into a cache folder, one file per distinct
image named by its sha256 (the original bytes, never re-encoded); reference-mode images are
used where they lie. Samples are added least confident first, images still to review before
those decided in an earlier round, so the App's grid opens on the hands most in need of a
look, and images with a hand below ``threshold`` carry the sample tag ``low_confidence``
(the hand's keypoints carry it as a label tag). The dataset's ``info``
records the source folder and its shard checksums so that ``pull`` can rebuild every row.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import mimetypes
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from hiu_data.errors import CorruptImageError, HiuError, OutputExistsError
from hiu_data.home import hiu_home
from hiu_data.io.images import image_suffix
from hiu_data.io.parquet import HandDataset, find_dataset_dirs, tool_version
from hiu_data.review import labels as L
from hiu_data.review._fiftyone import (HIU_INFO_KEY, KEYPOINTS_FIELD, MASKS_FIELD, SAMPLE_ID_ATTR, dataset_exists,
                                       import_fiftyone)
from hiu_data.schema import HandSample
from hiu_data.skeleton import BONES, JOINT_NAMES

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.5
ADD_BATCH = 256
DECIDED = ("accepted", "corrected", "rejected")
"""Review statuses that a person's decision gave; a hand with another (pending, none) is still to review."""


def default_cache_dir(name: str) -> Path:
    """Where pushed images are materialised: ``$HIU_HOME/review/<name>`` (:func:`hiu_data.home.hiu_home`,
    default ``~/.cache/hiu``)."""
    return hiu_home() / "review" / name


def source_checksums(manifest: dict[str, Any]) -> dict[str, str]:
    """``{shard file: sha256}`` from a manifest: what pull checks the source against."""
    return {entry["file"]: entry["sha256"] for entry in manifest["shards"]}


@dataclass
class PushResult:
    """What ``push`` made: the FiftyOne dataset's name, its images and hands, how many images
    were tagged ``low_confidence``, the image cache folder, the pushed dataset folder, and how
    many images were decided in an earlier round (``reviewed``)."""

    name: str
    images: int
    hands: int
    low_confidence: int
    cache_dir: Path
    source: Path
    reviewed: int = 0


def materialise_image(sample: HandSample, source_root: str | None, cache_dir: Path) -> Path:
    """The file FiftyOne shows for a sample: its embedded bytes written once into
    ``cache_dir`` (named by their sha256), or its referenced file where it lies."""
    if sample.image_bytes is None:
        if sample.image_path is None:
            raise CorruptImageError("<no image>", "sample has neither embedded bytes nor a path", sample.sample_id)
        path = Path(sample.image_path)
        if not path.is_absolute() and source_root is not None:
            path = Path(source_root) / path
        if not path.is_file():
            raise CorruptImageError(path, "referenced image file is missing", sample.sample_id)
        return path.resolve()
    data = sample.image_bytes
    path = cache_dir / (hashlib.sha256(data).hexdigest()[:24] + image_suffix(data))
    if not (path.is_file() and path.stat().st_size == len(data)):
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path


def _hand_labels(fo: Any, sample: HandSample, threshold: float) -> tuple[Any, Any | None]:
    """(fo.Keypoint, fo.Detection or None) of one hand."""
    low = sample.confidence is not None and sample.confidence < threshold
    keypoint = fo.Keypoint(
        label=sample.hand_side,
        points=L.keypoints_to_relative(sample.keypoints_2d, sample.width, sample.height),
        confidence=L.confidences_to_list(sample.keypoint_confidence),
        tags=[L.LOW_CONFIDENCE] if low else [],
    )
    keypoint[SAMPLE_ID_ATTR] = sample.sample_id
    keypoint["hand_confidence"] = sample.confidence
    keypoint["review_status"] = sample.review_status
    instance = L.mask_to_instance(sample.mask, sample.width, sample.height)
    if instance is None:
        return keypoint, None
    detection = fo.Detection(label=sample.hand_side, bounding_box=instance.bounding_box, mask=instance.mask,
                             confidence=sample.confidence)
    detection[SAMPLE_ID_ATTR] = sample.sample_id
    return keypoint, detection


def _add_samples(fo: Any, dataset: Any, images: list[tuple[str, dict[str, Any]]], threshold: float) -> int:
    """Add one sample per image in the given order; returns how many were tagged low_confidence."""
    low = 0
    pending: list[Any] = []
    for image_id, image in images:
        score = image["score"]
        is_low = score is not None and score < threshold
        low += is_low
        sample = fo.Sample(filepath=image["filepath"], tags=[L.LOW_CONFIDENCE] if is_low else [],
                           metadata=fo.ImageMetadata(width=image["width"], height=image["height"],
                                                     size_bytes=image["size_bytes"], mime_type=image["mime_type"]))
        sample["hiu_image_id"] = image_id
        sample["confidence"] = score
        sample["reviewed"] = image["reviewed"]
        sample[KEYPOINTS_FIELD] = fo.Keypoints(keypoints=image["keypoints"])
        sample[MASKS_FIELD] = fo.Detections(detections=image["detections"])
        pending.append(sample)
        if len(pending) >= ADD_BATCH:
            dataset.add_samples(pending, progress=False)
            pending = []
    if pending:
        dataset.add_samples(pending, progress=False)
    return low


def push(pseudo_dir: str | Path, name: str | None = None, *, threshold: float = DEFAULT_THRESHOLD,
         cache_dir: str | Path | None = None, overwrite: bool = False,
         progress: Callable[[int], None] | None = None) -> PushResult:
    """Create the persistent FiftyOne dataset ``name`` from the converted dataset ``pseudo_dir``.

    Args:
        pseudo_dir: one converted dataset folder (typically ``hiu-data pseudo-label`` output).
        name: FiftyOne dataset name; default ``hiu-<dataset folder name>``.
        threshold: hands whose ``confidence`` is below it are tagged ``low_confidence``.
        cache_dir: folder for the materialised images; default :func:`default_cache_dir`.
        overwrite: replace an existing FiftyOne dataset of that name (its tags are lost).
        progress: called with the number of hands read, as they are read.
    Returns:
        :class:`PushResult`.
    """
    dirs = find_dataset_dirs(pseudo_dir)
    if len(dirs) != 1:
        raise HiuError(f"{pseudo_dir}: holds {len(dirs)} datasets ({', '.join(d.name for d in dirs)}); push one of them")
    source = dirs[0].resolve()
    name = name or f"hiu-{source.name}"
    fo = import_fiftyone()
    if dataset_exists(name) and not overwrite:
        raise OutputExistsError(f"FiftyOne dataset {name!r} exists; pass --overwrite to replace it "
                                "(its review tags are lost unless pulled first)")
    rows = HandDataset(source)
    manifest = rows.manifests[source]
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir(name)
    cache.mkdir(parents=True, exist_ok=True)

    images: dict[str, dict[str, Any]] = {}
    for batch in rows.iter_batches(batch_size=64):
        for hand in batch:
            image = images.get(hand.image_id)
            if image is None:
                path = materialise_image(hand, manifest.get("source_root"), cache)
                image = images[hand.image_id] = {
                    "filepath": str(path), "size_bytes": path.stat().st_size, "mime_type": mimetypes.guess_type(path.name)[0],
                    "width": hand.width, "height": hand.height, "keypoints": [], "detections": [], "hands": [],
                    "statuses": [],
                }
            keypoint, detection = _hand_labels(fo, hand, threshold)
            image["keypoints"].append(keypoint)
            if detection is not None:
                image["detections"].append(detection)
            image["hands"].append(hand.confidence)
            image["statuses"].append(hand.review_status)
        if progress is not None:
            progress(len(batch))

    for image in images.values():
        scores = [c for c in image["hands"] if c is not None]
        image["score"] = min(scores) if scores else None
        image["reviewed"] = all(status in DECIDED for status in image["statuses"])

    def rank(item: tuple[str, dict[str, Any]]) -> tuple[bool, bool, float]:
        # Images a person decided in an earlier round go after those still to review; within
        # each group, images without any score go last.
        score = item[1]["score"]
        return (item[1]["reviewed"], score is None, 0.0 if score is None else score)

    # Built under a temporary name and renamed when complete: until then an existing dataset of
    # that name (with a person's review tags) is untouched, and an interrupted push leaves no
    # half-filled dataset that the App or pull would take for a finished one.
    building = f"{name}.pushing-{uuid.uuid4().hex[:8]}"
    dataset = fo.Dataset(building, persistent=True)
    try:
        dataset.skeletons = {KEYPOINTS_FIELD: fo.KeypointSkeleton(labels=list(JOINT_NAMES),
                                                                 edges=[list(b) for b in BONES])}
        dataset.default_skeleton = dataset.skeletons[KEYPOINTS_FIELD]
        low = _add_samples(fo, dataset, sorted(images.items(), key=rank), threshold)  # stable sort: ties keep source order
        dataset.info = {HIU_INFO_KEY: {
            "source": str(source), "dataset": manifest["dataset"], "shards": source_checksums(manifest),
            "threshold": threshold, "cache_dir": str(cache.resolve()), "hands": len(rows), "images": len(images),
            "pushed": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "tool_version": tool_version(),
        }}
        dataset.save()
        if dataset_exists(name):
            fo.delete_dataset(name)
        dataset.name = name
    except BaseException:
        dataset.delete()
        raise
    log.info("pushed %d hands on %d images to FiftyOne dataset %s", len(rows), len(images), name)
    return PushResult(name, len(images), len(rows), low, cache, source,
                      sum(image["reviewed"] for image in images.values()))
