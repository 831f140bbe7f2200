"""``hiu-data pseudo-label``: a trained checkpoint's predictions on an image folder, as a dataset.

Every hand of every image (one per image, or one per box of ``--boxes``, read by the
``folder`` format) gets a row of ``OUT/<name>/`` (default name ``pseudo``); what each field
holds (the assumed camera of the 3D, the confidence, the box, the side) is described in
:mod:`hiu_model.pseudo_row`.

Shards and resume. ``--shard i/n`` takes images ``i, i + n, i + 2n, ...`` of the folder's
sorted list, so any launcher can start the ``n`` processes (on one machine or many sharing
``OUT``). Each shard writes its images in chunks of ``chunk_images``, each chunk an atomic
small dataset under ``OUT/.<name>.parts/``; a restarted shard skips the chunks that exist.
The plan (folder, its image files' names, sizes and modification times, boxes, checkpoint,
shard count, chunk size) is recorded in ``plan.json`` there, and a process whose options
differ is refused rather than mixing two runs. The process that completes the last chunk
merges all chunks, in the folder's image order, into ``OUT/<name>/`` and removes the parts.

``--update`` labels only the images that ``OUT/<name>/`` lacks (:mod:`hiu_model.pseudo_update`),
with shards and resume as above (the plan also records the sha256 of the dataset's manifest),
and the merge adds their rows as new shards (:func:`hiu_data.io.append.append_dataset`): the
existing rows, reviewed ones included, stay byte-identical, and the dataset is replaced whole.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from hiu_data.errors import HiuError
from hiu_data.formats import Skipped, folder
from hiu_data.io.append import DatasetChangedError, append_dataset
from hiu_data.io.images import decode
from hiu_data.io.parquet import MANIFEST, DatasetWriter, HandDataset, sha256_file
from hiu_data.schema import HandSample
from hiu_model.pseudo_row import labelled_row
from hiu_model.pseudo_update import FolderDiff, check_output, compare, read_inventory

log = logging.getLogger(__name__)

DEFAULT_NAME = "pseudo"
DEFAULT_CHUNK_IMAGES = 256
PLAN_FILE = "plan.json"
MERGE_LOCK = "merging"
ADDITION = "addition"  # where an update's merge writes the new rows, inside the parts folder


class PseudoLabelError(HiuError):
    """Bad shard specification, or parts of another run in the output folder."""


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n``."""
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise PseudoLabelError(f"--shard {text!r}: expected i/n, e.g. 0/4") from None
    if count < 1 or not 0 <= index < count:
        raise PseudoLabelError(f"--shard {text!r}: need 0 <= i < n")
    return index, count


@dataclass
class PseudoLabelResult:
    """What one call did: its shard, images and hands labelled now or found done, and the
    merged dataset's path once every shard is complete (None before)."""

    shard: tuple[int, int]
    images: int
    hands: int
    chunks_done: int
    chunks_resumed: int
    label_source: str
    path: Path | None = None
    skipped: list[Skipped] = field(default_factory=list)
    without_boxes: int = 0
    """With detections: images of the folder that have no box in them, hence no row."""
    update: FolderDiff | None = None
    """With ``update``: the folder's images against the dataset (``update.new`` were labelled), the
    rows of the dataset ``kept`` as they were and the ``other_sources`` (``pseudo:<sha256>``) of its rows."""
    kept: int = 0
    other_sources: list[str] = field(default_factory=list)


def _folder_rows(images_dir: Path, boxes: Path | None, on_error: str) -> tuple[list[list[HandSample]], list[Skipped]]:
    """The folder's rows grouped by image (sorted order; reference mode: nothing held in
    memory but paths), and the images skipped as corrupt."""
    by_image: dict[str, list[HandSample]] = {}
    skipped: list[Skipped] = []
    for item in folder.read(images_dir, images="reference", on_error=on_error, boxes=boxes):
        if isinstance(item, Skipped):
            skipped.append(item)
        else:
            by_image.setdefault(item.image_id, []).append(item)
    return list(by_image.values()), skipped


def _image_files_sha256(images_dir: Path, groups: Sequence[list[HandSample]]) -> str:
    """sha256 over the labelled images' relative paths, sizes and modification times.

    Chunks hold images by their position in the folder's sorted list, so a resumed run must see
    the same files: an image added, removed or rewritten since the first run would shift the
    positions (images labelled twice or never) or leave a stale prediction behind.
    """
    digest = hashlib.sha256()
    for rows in groups:
        stat = (images_dir / rows[0].image_path).stat()
        digest.update(f"{rows[0].image_path}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _ensure_plan(parts: Path, plan: dict[str, Any]) -> None:
    """Record the run's plan, or check that the recorded one is the same run's."""
    parts.mkdir(parents=True, exist_ok=True)
    path = parts / PLAN_FILE
    tmp = parts / f".{PLAN_FILE}.{uuid.uuid4().hex[:8]}"
    tmp.write_text(json.dumps(plan, indent=2, sort_keys=True) + "\n")
    try:
        os.link(tmp, path)  # atomic create-if-absent: concurrent shards agree on one plan
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    recorded = json.loads(path.read_text())
    if recorded != plan:
        differ = sorted(k for k in set(plan) | set(recorded) if plan.get(k) != recorded.get(k))
        raise PseudoLabelError(f"{parts}: holds parts of another pseudo-label run (different {', '.join(differ)}); "
                               "finish that run with the same options, or delete the folder to start over")


def parts_dir(out: str | Path, name: str) -> Path:
    """Where the shards of ``pseudo_label(..., out, name=name)`` keep their finished chunks."""
    return Path(out) / f".{name}.parts"


def _chunk_dir(parts: Path, shard: tuple[int, int], chunk: int) -> Path:
    return parts / f"shard-{shard[0]:05d}-of-{shard[1]:05d}" / f"chunk-{chunk:05d}"


def _shard_images(num_images: int, shard: tuple[int, int]) -> list[int]:
    return list(range(shard[0], num_images, shard[1]))


def _chunks_of(num_images: int, shard: tuple[int, int], chunk_images: int) -> int:
    return math.ceil(len(_shard_images(num_images, shard)) / chunk_images)


def _label_chunk(model: Any, cfg: Any, images_dir: Path, groups: Sequence[list[HandSample]], out: Path, name: str,
                 label_source: str, batch_size: int) -> int:
    """Predict the hands of some images (on the model's device) and write them as the dataset ``out/<name>/``.

    Images are decoded and predicted ``batch_size`` at a time: a decoded photo and the
    full-image masks of its hands (both sides tried when the side is unknown) take about
    80 MB for 12 megapixels, so a whole chunk of such photos at once would need tens of GB.
    """
    from hiu_model.predict import predict_images

    hands = 0
    with DatasetWriter(out, name, overwrite=True) as writer:
        for start in range(0, len(groups), batch_size):
            some = groups[start:start + batch_size]
            encoded = [(images_dir / rows[0].image_path).read_bytes() for rows in some]
            pictures = [decode(data, str(images_dir / rows[0].image_path), rows[0].sample_id)
                        for data, rows in zip(encoded, some)]
            boxes = [[r.bbox for r in rows] for rows in some]
            sides = [["auto" if (r.extras or {}).get("hand_side_known") is False else r.hand_side for r in rows]
                     for rows in some]
            predictions = iter(predict_images(model, cfg, pictures, boxes=boxes, sides=sides, batch_size=batch_size))
            for data, rows in zip(encoded, some):
                for row in rows:
                    writer.add(labelled_row(row, next(predictions), data, name, label_source))
                    hands += 1
    return hands


def _merge(out: Path, name: str, parts: Path, groups: list[list[HandSample]], num_shards: int, chunk_images: int,
           options: dict[str, Any], skipped: list[Skipped], overwrite: bool,
           update_of: str | None = None) -> Path | None:
    """Every chunk of every shard -> ``out/<name>/`` in the folder's image order (added to it
    when ``update_of``, the sha256 of its manifest, is given); None when another process holds
    the merge."""
    try:
        (parts / MERGE_LOCK).mkdir()
    except FileExistsError:
        log.warning("%s exists: another process is merging (delete it if none is)", parts / MERGE_LOCK)
        return None
    except FileNotFoundError:  # another shard merged in the meantime and removed the parts
        return None
    chunk_rows: dict[str, tuple[HandDataset, list[int]]] = {}
    for j in range(num_shards):
        for c in range(_chunks_of(len(groups), (j, num_shards), chunk_images)):
            data = HandDataset(_chunk_dir(parts, (j, num_shards), c) / name)
            for index, image_id in enumerate(data.to_table(["image_id"]).column("image_id").to_pylist()):
                chunk_rows.setdefault(image_id, (data, []))[1].append(index)
    try:
        with DatasetWriter(out if update_of is None else parts / ADDITION, name, options=options,
                           overwrite=overwrite or update_of is not None) as writer:
            for rows in groups:
                data, indices = chunk_rows[name + rows[0].image_id[len(rows[0].dataset):]]
                for index in indices:
                    writer.add(data[index])
            for item in skipped:
                writer.skip(item.sample_id, item.reason)
        if update_of is not None:
            append_dataset(out / name, writer.target, manifest_sha256=update_of, record=options)
    except DatasetChangedError as e:
        (parts / MERGE_LOCK).rmdir()
        raise PseudoLabelError(f"{e}; its new images were not added: delete {parts} and run the update again") from None
    except BaseException:
        # A merge stopped by Ctrl-C or an error must not leave its lock: the lock would make
        # every later run of the same command wait for a merge that nobody is doing.
        (parts / MERGE_LOCK).rmdir()
        raise
    shutil.rmtree(parts, ignore_errors=True)
    return out / name


def pseudo_label(checkpoint: str | Path, images_dir: str | Path, out: str | Path, *, boxes: str | Path | None = None,
                 shard: tuple[int, int] = (0, 1), batch_size: int = 16, name: str = DEFAULT_NAME,
                 chunk_images: int = DEFAULT_CHUNK_IMAGES, device: str | None = None, on_error: str = "fail",
                 overwrite: bool = False, update: bool = False, tta_rotation: float = 0.0,
                 progress: Callable[[int], None] | None = None) -> PseudoLabelResult:
    """Pseudo-label this shard's images of ``images_dir``; merge when all shards are done.

    Args:
        checkpoint: a run folder or checkpoint folder (:func:`hiu_model.checkpoint.load_checkpoint`).
        images_dir: a folder of images (searched recursively, see :mod:`hiu_data.formats.folder`).
        out: output folder; the dataset goes to ``out/<name>/``.
        boxes: optional COCO-format hand detections (one row per box).
        shard: ``(i, n)``: this process labels images ``i, i + n, ...``.
        batch_size: crops per forward pass, and images decoded and held at once (memory).
        chunk_images: images per resumable chunk (must be the same for every shard).
        device: torch device (``auto``: CUDA when available); default CPU.
        on_error: ``fail`` at a corrupt image, or ``skip`` it (counted in the manifest).
        overwrite: replace an existing ``out/<name>/`` at the merge.
        update: label only the images that the existing ``out/<name>/`` lacks and add their rows
            to it (see the module docstring); nothing to add returns at once, the dataset untouched.
        tta_rotation: average the heat-maps and masks over crops turned by 0 and +-this many
            degrees (:mod:`hiu_model.tta`; 0 = one plain pass). Part of the resumable plan.
        progress: called with the number of images of this shard done (resumed ones included).
    """
    from hiu_model.checkpoint import load_checkpoint
    from hiu_model.tta import with_rotation_tta

    out, images_dir = Path(out), Path(images_dir)
    boxes = None if boxes is None else Path(boxes)
    if not name or name.startswith(".") or Path(name).name != name or "\\" in name:
        raise PseudoLabelError(f"--name {name!r}: must be a plain folder name (the dataset goes to OUT/NAME/)")
    check_output(out / name, overwrite=overwrite, update=update)
    if chunk_images < 1 or batch_size < 1:
        raise PseudoLabelError("--chunk-images and --batch-size must be at least 1")
    inventory = read_inventory(out, name) if update else None
    groups, skipped = _folder_rows(images_dir, boxes, on_error)
    with_rows, diff = len(groups), None if inventory is None else compare(images_dir, groups, inventory)
    without_boxes = 0 if boxes is None else len(folder.image_paths(images_dir)) - with_rows - len(skipped)
    if diff is not None:
        groups = diff.new
        if not groups:  # nothing to label: the dataset is left exactly as it is
            return PseudoLabelResult(shard, 0, 0, 0, 0, "", out / name, skipped, update=diff, kept=inventory.rows,
                                     without_boxes=without_boxes)
    model, cfg, info = load_checkpoint(checkpoint, device=device or "cpu")
    model = with_rotation_tta(model, tta_rotation)
    label_source = f"pseudo:{info['sha256']}"
    plan = {"images_dir": str(images_dir.resolve()), "boxes_sha256": None if boxes is None else sha256_file(boxes), "images": len(groups),
            "image_files_sha256": _image_files_sha256(images_dir, groups),
            "checkpoint_sha256": info["sha256"], "shards": shard[1], "chunk_images": chunk_images, "name": name,
            "tta_rotation_deg": tta_rotation}
    if inventory is not None:
        plan["update_of"] = inventory.manifest_sha256
    parts = parts_dir(out, name)
    _ensure_plan(parts, plan)
    mine = _shard_images(len(groups), shard)
    result = PseudoLabelResult(shard, len(mine), 0, 0, 0, label_source, skipped=skipped, update=diff)
    if inventory is not None:
        result.kept, result.other_sources = inventory.rows, sorted(inventory.label_sources - {label_source})
    result.without_boxes = without_boxes
    for c in range(_chunks_of(len(groups), shard, chunk_images)):
        members = [groups[k] for k in mine[c * chunk_images:(c + 1) * chunk_images]]
        target = _chunk_dir(parts, shard, c)
        if (target / name / MANIFEST).is_file():
            result.chunks_resumed += 1
            result.hands += sum(len(rows) for rows in members)
        else:
            result.hands += _label_chunk(model, cfg, images_dir, members, target, name, label_source, batch_size)
        result.chunks_done += 1
        if progress is not None:
            progress(len(members))
    complete = all((_chunk_dir(parts, (j, shard[1]), c) / name / MANIFEST).is_file()
                   for j in range(shard[1]) for c in range(_chunks_of(len(groups), (j, shard[1]), chunk_images)))
    if complete:
        options = {"checkpoint": info["path"], "checkpoint_step": info["step"], "label_source": label_source,
                   "boxes": None if boxes is None else str(boxes), "shards": shard[1]}
        result.path = _merge(out, name, parts, groups, shard[1], chunk_images, options, skipped, overwrite,
                             None if inventory is None else inventory.manifest_sha256)
    if result.path is None and not parts.exists() and (Path(out) / name / MANIFEST).is_file():
        # Two shards finishing together: the other one merged and removed the parts folder.
        log.info("another shard wrote %s", Path(out) / name)
        result.path = Path(out) / name
    return result
