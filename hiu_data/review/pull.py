"""``hiu-data review pull``: what a person decided in FiftyOne -> a reviewed converted dataset.

Every row of the pushed dataset is written again (nothing unreviewed is lost), in the
source order within each split, as ``OUT/<dataset>/``:

- the decision of each hand comes from its tags (:func:`hiu_data.review.labels.decide`):
  sample tags of its image and label tags of its keypoints or mask, ``accepted``,
  ``rejected`` or ``fix``;
- keypoints or masks changed in the FiftyOne dataset (through its Python API or any tool
  that writes back into it) are compared with what push wrote; a hand with a change is
  ``corrected`` and takes the new labels. Moved joints get visibility 2 (0 when removed) and
  keypoint confidence 1 (0 when removed). When the 2D keypoints changed, the predicted 3D
  joints and MANO parameters no longer agree with them and are dropped (set to None). A
  keypoints label whose ``label`` a person changed to the other side changes ``hand_side``
  (and drops the MANO parameters, which belong to one side's hand model);
- accepted and corrected hands get ``label_source = "human"``; rows of split ``unlabeled``
  move to ``train`` since they now carry a person's labels. Rejected hands keep their
  pseudo-labels and split with ``review_status = "rejected"``: the loader and any training
  set built from ``train`` leave them out, and they stay in the output for the record;
- a hand whose keypoints label was deleted (its image still there) counts as rejected; a
  keypoints label a person added (no ``hiu_sample_id``) becomes a new ``corrected`` row of
  that image, ``<dataset>/<split>/<image_id>/added-<label id>`` (``rejected`` in its image's
  split when it or its image is tagged ``rejected``);
- a reviewed row records ``extras["review"] = {"dataset", "status", "tags", "edited"}`` (a
  record of an earlier round moves to the list ``extras["review_history"]``, oldest first);
  rows the review says nothing about are written unchanged.

The result depends only on the source rows and the FiftyOne dataset's state, so pulling
twice gives identical shards. The pushed shards must be unchanged (their sha256 recorded at
push); shards added to the dataset since (``pseudo-label --update`` adds new images as new
shards and leaves the others as they are) are allowed, and their rows, which nobody has
reviewed yet, are written unchanged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from hiu_data.errors import HiuError
from hiu_data.formats._common import bbox_from_keypoints
from hiu_data.io import rle
from hiu_data.io.manifest import sha256_file
from hiu_data.io.parquet import DatasetWriter, HandDataset, find_dataset_dirs
from hiu_data.review import labels as L
from hiu_data.review._fiftyone import (HIU_INFO_KEY, KEYPOINTS_FIELD, MASKS_FIELD, SAMPLE_ID_ATTR, ReviewError,
                                       load_review_dataset)
from hiu_data.review.push import source_checksums
from hiu_data.schema import HAND_SIDES, HandSample
from hiu_data.skeleton import NUM_JOINTS

log = logging.getLogger(__name__)


@dataclass
class _HandState:
    """A hand's labels as they are now in FiftyOne (None = label absent)."""

    points: list[Any] | None = None
    side: str | None = None  # the keypoints label's ``label``: the hand side a person sees
    keypoint_tags: list[str] = field(default_factory=list)
    box: list[float] | None = None
    mask: np.ndarray | None = None
    mask_tags: list[str] = field(default_factory=list)


@dataclass
class _ReviewState:
    image_tags: dict[str, list[str]] = field(default_factory=dict)
    hands: dict[str, _HandState] = field(default_factory=dict)
    added: list[tuple[str, str, Any]] = field(default_factory=list)  # (image_id, label id, fo.Keypoint)
    ignored: list[str] = field(default_factory=list)


@dataclass
class PullResult:
    """Where the reviewed dataset went and how many hands ended in each review status."""

    path: Path
    counts: dict[str, int]
    changed: int
    added: int
    ignored: list[str]


def _duplicate(name: str, kind: str, sid: str, first: str, second: str) -> ReviewError:
    # A label copied with ``label.copy()`` (a natural way to add a second hand) keeps every
    # attribute, hiu_sample_id included: taking either one silently would lose the other.
    return ReviewError(f"FiftyOne dataset {name!r}: hand {sid} has two {kind} labels ({first}, {second}); "
                       f"set {SAMPLE_ID_ATTR} to None on the one that is a new hand, or delete one")


def _read_state(dataset: Any, name: str) -> _ReviewState:
    """The review state of every pushed hand; ReviewError when two labels claim one hand."""
    state = _ReviewState()
    seen: dict[tuple[str, str], str] = {}  # (field, hiu_sample_id) -> label id
    for sample in dataset.select_fields([KEYPOINTS_FIELD, MASKS_FIELD, "hiu_image_id"]).iter_samples():
        image_id = sample["hiu_image_id"]
        state.image_tags[image_id] = list(sample.tags)
        keypoints = sample[KEYPOINTS_FIELD]
        for kp in (keypoints.keypoints if keypoints is not None else []):
            sid = kp[SAMPLE_ID_ATTR] if SAMPLE_ID_ATTR in kp else None
            if sid is None:
                state.added.append((image_id, kp.id, kp))
                continue
            if (KEYPOINTS_FIELD, sid) in seen:
                raise _duplicate(name, "keypoints", sid, seen[KEYPOINTS_FIELD, sid], kp.id)
            seen[KEYPOINTS_FIELD, sid] = kp.id
            hand = state.hands.setdefault(sid, _HandState())
            hand.points, hand.keypoint_tags, hand.side = list(kp.points), list(kp.tags), kp.label
        detections = sample[MASKS_FIELD]
        for det in (detections.detections if detections is not None else []):
            sid = det[SAMPLE_ID_ATTR] if SAMPLE_ID_ATTR in det else None
            if sid is None:
                state.ignored.append(det.id)
                continue
            if (MASKS_FIELD, sid) in seen:
                raise _duplicate(name, "mask", sid, seen[MASKS_FIELD, sid], det.id)
            seen[MASKS_FIELD, sid] = det.id
            hand = state.hands.setdefault(sid, _HandState())
            hand.box, hand.mask, hand.mask_tags = list(det.bounding_box), det.get_mask(), list(det.tags)
    return state


def _user_tags(*tag_lists: list[str]) -> list[str]:
    return sorted({t for tags in tag_lists for t in tags} - {L.LOW_CONFIDENCE})


def review_row(row: HandSample, hand: _HandState | None, image_tags: list[str] | None, name: str) -> HandSample:
    """The reviewed version of one source row (the row itself when the review says nothing)."""
    if image_tags is None:  # the image was deleted from the FiftyOne dataset: nothing decided
        return row
    hand = hand or _HandState()
    deleted = hand.points is None
    edited: list[str] = []
    new_kp, changed = None, np.zeros(NUM_JOINTS, dtype=bool)
    if not deleted:
        try:
            new_kp = L.keypoints_from_relative(hand.points, row.width, row.height)
        except ValueError as e:
            raise ReviewError(f"FiftyOne dataset {name!r}, hand {row.sample_id}: {e}") from None
        changed = L.keypoints_changed(row.keypoints_2d, new_kp)
        if changed.any():
            edited.append("keypoints_2d")
    old_mask = L.full_mask_of(row.mask, row.width, row.height)
    new_mask = (L.instance_to_full_mask(hand.box, hand.mask, row.width, row.height)
                if hand.box is not None and hand.mask is not None else np.zeros_like(old_mask))
    if not np.array_equal(old_mask, new_mask):
        edited.append("mask")
    if not deleted and hand.side is not None and hand.side != row.hand_side:
        if hand.side not in HAND_SIDES:
            raise ReviewError(f"FiftyOne dataset {name!r}, hand {row.sample_id}: keypoints label {hand.side!r} "
                              f"is not a hand side ({' or '.join(HAND_SIDES)})")
        edited.append("hand_side")
    tags = _user_tags(image_tags, hand.keypoint_tags, hand.mask_tags)
    decision = L.decide(image_tags, hand.keypoint_tags + hand.mask_tags, bool(edited), deleted)
    if decision.status is None and not tags:
        return row
    out = replace(row, extras=dict(row.extras or {}))
    if decision.status is not None:
        out.review_status = decision.status
    if decision.human:
        out.label_source = "human"
        if out.split == "unlabeled":
            out.split = "train"
    if decision.status == "corrected":
        if "keypoints_2d" in edited:
            before = row.visibility if row.keypoints_2d is not None else np.zeros(NUM_JOINTS, np.uint8)
            out.visibility = L.corrected_visibility(before, new_kp, changed)
            conf = np.zeros(NUM_JOINTS, np.float32) if row.keypoint_confidence is None else row.keypoint_confidence.copy()
            conf[changed] = np.where(np.isnan(new_kp[changed]).any(1), 0.0, 1.0)
            out.keypoints_2d, out.keypoint_confidence = new_kp, conf
            out.keypoints_3d = out.mano_pose = out.mano_betas = None
        if "hand_side" in edited:
            # MANO parameters belong to one side's hand model; the 2D, 3D joints and mask do not.
            out.hand_side = hand.side
            out.mano_pose = out.mano_betas = None
        if "mask" in edited:
            out.mask = rle.encode(new_mask) if new_mask.any() else None
    if "review" in out.extras:
        # A second review round: the earlier round's record moves to the history, oldest first.
        out.extras["review_history"] = [*out.extras.get("review_history", []), out.extras["review"]]
    out.extras["review"] = {"dataset": name, "status": out.review_status, "tags": tags,
                            "edited": edited if decision.status == "corrected" else []}
    return out


def _added_row(template: HandSample, label_id: str, keypoint: Any, image_tags: list[str], name: str) -> HandSample:
    """A hand a person added in FiftyOne, as a new row of the image ``template`` belongs to.

    The same tag rules as for a pushed hand apply: adding is an edit, so the hand is
    ``corrected`` unless its own tags, or its image's, say ``rejected``; a rejected added hand
    is kept for the record in its image's split with ``review_status = "rejected"``.
    """
    try:
        points = L.keypoints_from_relative(keypoint.points, template.width, template.height)
    except ValueError as e:  # a person's label: name it instead of failing with a traceback
        raise ReviewError(f"FiftyOne dataset {name!r}, image {template.image_id}, added keypoints label "
                          f"{label_id}: {e}") from None
    present = ~np.isnan(points).any(1)
    visibility = np.where(present, 2, 0).astype(np.uint8)
    bbox = (bbox_from_keypoints(points, visibility, template.width, template.height) if present.any()
            else template.bbox.copy())
    decision = L.decide(image_tags, list(keypoint.tags), edited=True)
    status = decision.status or "corrected"
    split = "train" if template.split == "unlabeled" and decision.human else template.split
    side = keypoint.label if keypoint.label in HAND_SIDES else template.hand_side
    return HandSample(
        sample_id=f"{template.dataset}/{split}/{template.image_id}/added-{label_id}", dataset=template.dataset,
        split=split, image_id=template.image_id, width=template.width, height=template.height, hand_side=side,
        bbox=bbox, visibility=visibility, image_bytes=template.image_bytes,
        image_path=template.image_path, subset=template.subset, keypoints_2d=points,
        keypoint_confidence=present.astype(np.float32), label_source="human", review_status=status,
        extras={"review": {"dataset": name, "status": status, "tags": _user_tags(image_tags, list(keypoint.tags)),
                           "edited": ["added"] if decision.human else []}},
    )


def _check_shard_files(source_dir: Path, shards: dict[str, str], name: str) -> None:
    """Refuse a source whose shard files differ from the checksums recorded at push.

    The manifest alone is not enough: a shard rewritten in place (its manifest untouched)
    would be read as it is now, and the hands it lost, with their review, would silently be
    missing from the output.
    """
    for file, sha in sorted(shards.items()):
        if sha256_file(source_dir / file) != sha:
            raise ReviewError(f"{source_dir / file}: changed since it was pushed as {name!r} (its sha256 differs); "
                              "pull needs the exact pushed dataset")


def pull(name: str, out: str | Path, *, source: str | Path | None = None, overwrite: bool = False,
         progress: Callable[[int], None] | None = None) -> PullResult:
    """Write the reviewed version of the dataset pushed as ``name`` to ``out/<dataset>/``.

    Args:
        name: the FiftyOne dataset made by :func:`hiu_data.review.push.push`.
        out: output folder; the dataset keeps the source's dataset name.
        source: where the pushed dataset lies now, when it moved since the push.
        overwrite: replace an existing ``out/<dataset>/``.
        progress: called with the number of rows written, as they are written.
    Returns:
        :class:`PullResult` (counts per review status, None counted as "none").
    """
    dataset = load_review_dataset(name)
    info = dataset.info[HIU_INFO_KEY]
    if source is None and not Path(info["source"]).exists():
        raise ReviewError(f"{info['source']}: the dataset pushed as {name!r} is no longer there; "
                          "pass --source with the folder it lies in now")
    source_dir = find_dataset_dirs(source if source is not None else info["source"])[0].resolve()
    rows = HandDataset(source_dir)
    manifest = rows.manifests[source_dir]
    shards = source_checksums(manifest)
    if any(shards.get(file) != sha for file, sha in info["shards"].items()):
        raise ReviewError(f"{source_dir}: differs from the dataset pushed as {name!r} (shard checksums changed); "
                          "pull needs the exact pushed dataset (pass --source if it moved)")
    if len(shards) > len(info["shards"]):
        # Shards added since the push (pseudo-label --update): their rows were not reviewed
        # and are written as they are, so that pulling loses none of them.
        log.info("%s: %d shards added since the push are written unchanged", source_dir,
                 len(shards) - len(info["shards"]))
    _check_shard_files(source_dir, info["shards"], name)
    if (Path(out) / manifest["dataset"]).resolve() == source_dir:
        raise HiuError(f"{out}: pull would overwrite the pushed dataset {source_dir}; choose another OUT")
    state = _read_state(dataset, name)
    counts: dict[str, int] = {}
    changed = added = 0
    templates: dict[str, HandSample] = {}
    with DatasetWriter(out, manifest["dataset"], options={"review": name, "review_source": str(source_dir)},
                       source_root=manifest.get("source_root"), overwrite=overwrite) as writer:
        for batch in rows.iter_batches(batch_size=64):
            for row in batch:
                templates.setdefault(row.image_id, row)
                reviewed = review_row(row, state.hands.get(row.sample_id), state.image_tags.get(row.image_id), name)
                changed += reviewed is not row
                writer.add(reviewed)
                key = reviewed.review_status or "none"
                counts[key] = counts.get(key, 0) + 1
            if progress is not None:
                progress(len(batch))
        for image_id, label_id, keypoint in state.added:
            if image_id not in templates:
                state.ignored.append(label_id)
                continue
            new = _added_row(templates[image_id], label_id, keypoint, state.image_tags[image_id], name)
            writer.add(new)
            key = new.review_status or "none"
            counts[key] = counts.get(key, 0) + 1
            added += 1
    if state.ignored:
        log.warning("%s: %d label(s) without %s were ignored: %s", name, len(state.ignored), SAMPLE_ID_ATTR,
                    ", ".join(state.ignored[:10]))
    return PullResult(writer.target, dict(sorted(counts.items())), changed, added, state.ignored)
