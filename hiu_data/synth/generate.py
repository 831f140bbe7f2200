"""Generate synthetic scenes in parallel and write them: converted dataset, raw layout, wild folder.

Determinism: scene ``i`` depends only on ``(seed, i)`` and the output kind (see
:mod:`hiu_data.synth.scene`); scenes are rendered in fixed chunks and every process renders
with one torch thread, so the bytes written are the same for any ``workers``. Workers are
forked (they inherit the hand models already built) and set one torch thread before any torch
work, as PyTorch's own DataLoader workers do, which keeps OpenMP usable after the fork.

Splits: a share ``test_fraction`` of the scenes, spread evenly over the indices (scene ``i``
is held out when ``floor((i + 1) f) > floor(i f)``), goes to the held-out split — ``test``
where the output has one, else its last split; the rest to ``train`` (or the output's first
split). Outputs with a single split (Dexter+Object: ``test``) put everything there.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import multiprocessing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from hiu_data.errors import HiuError, OutputExistsError
from hiu_data.formats._common import ignore_interrupt
from hiu_data.io.manifest import staged_folder
from hiu_data.schema import HandSample
from hiu_data.synth.profiles import PARQUET, Profile, profile_for
from hiu_data.synth.scene import CHUNK, DATASET

log = logging.getLogger(__name__)

WILD_DATASET = "synth_wild"
MIN_VISIBLE_FRACTION = 0.3
"""Wild hands with less of their rendered area visible get no box in ``detections.json``."""
DETECTIONS_FILE = "detections.json"
"""Name of the boxes file of a wild folder (the name the folder format uses for its detections)."""
Progress = Callable[[int], None]


@dataclass
class SynthResult:
    """What a generation wrote: the folder, images and hands per split."""

    path: Path
    images: int
    hands: dict[str, int]


def split_plan(n: int, profile: Profile, test_fraction: float, start: int = 0) -> list[str]:
    """The split of scenes ``start .. start + n - 1`` (see the module docstring)."""
    if not 0.0 <= test_fraction <= 1.0:
        raise HiuError(f"--test-fraction must be within [0, 1], not {test_fraction}")
    splits = profile.splits
    held_out = "test" if "test" in splits else splits[-1]
    main = "train" if "train" in splits else splits[0]
    return [held_out if math.floor((i + 1) * test_fraction) > math.floor(i * test_fraction) else main
            for i in range(start, start + n)]


def _init_worker() -> None:
    ignore_interrupt()  # first: importing torch takes seconds on a loaded machine
    import torch

    torch.set_num_threads(1)


def _render_job(job: tuple[int, list[int], list[str], Profile, str]) -> list[tuple[int, bytes, list[HandSample]]]:
    from hiu_data.synth.scene import render_chunk

    return render_chunk(*job)


@contextlib.contextmanager
def _single_thread() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def generate_scenes(n: int, seed: int = 0, profile: Profile | str = PARQUET, *, size: int = 224, workers: int = 1,
                    test_fraction: float = 0.1, start: int = 0, dataset: str | None = None
                    ) -> Iterator[tuple[int, bytes, list[HandSample]]]:
    """Scenes ``start .. start + n - 1`` in index order.

    Args:
        profile: a :class:`Profile` or an output name (``parquet`` or a format name).
        size: image size where the output does not fix one.
        workers: processes rendering in parallel (1 = in this process).
        dataset: the records' ``dataset`` field (default ``synth`` for parquet and wild
            folders, else the format name, so that ids look native to the format).
    Yields:
        ``(scene index, encoded image bytes, records)`` with one record per hand.
    """
    if n < 0:
        raise HiuError(f"--n must be >= 0, not {n}")
    if workers < 1:
        raise HiuError(f"--workers must be >= 1, not {workers}")
    profile = profile_for(profile, size) if isinstance(profile, str) else profile
    if dataset is None:
        dataset = DATASET if profile.name in (PARQUET, "wild") else profile.name
    plan = split_plan(n, profile, test_fraction, start)
    first = (start // CHUNK) * CHUNK
    jobs = []
    for chunk_start in range(first, start + n, CHUNK):
        indices = [i for i in range(chunk_start, chunk_start + CHUNK) if start <= i < start + n]
        jobs.append((seed, indices, [plan[i - start] for i in indices], profile, dataset))
    if workers == 1 or len(jobs) == 1:
        with _single_thread():
            for job in jobs:
                yield from _render_job(job)
        return
    context = multiprocessing.get_context("fork")
    with context.Pool(min(workers, len(jobs)), initializer=_init_worker) as pool:
        for result in pool.imap(_render_job, jobs):
            yield from result


def _records(scenes: Iterator[tuple[int, bytes, list[HandSample]]], progress: Progress | None,
             counts: dict[str, int]) -> Iterator[HandSample]:
    for _, _, records in scenes:
        for record in records:
            counts[record.split] = counts.get(record.split, 0) + 1
            yield record
        if progress is not None:
            progress(1)


@contextlib.contextmanager
def _atomic_folder(out: Path, overwrite: bool) -> Iterator[Path]:
    """A temporary folder renamed to ``out`` on success, removed on failure."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise OutputExistsError(f"{out}: output exists; pass --overwrite to replace it")
    with staged_folder(out) as tmp:
        yield tmp


def write_synth(out: str | Path, n: int = 2000, seed: int = 0, format: str = PARQUET, *, size: int = 224,
                workers: int = 1, test_fraction: float = 0.1, overwrite: bool = False,
                progress: Progress | None = None) -> SynthResult:
    """Generate ``n`` labeled scenes and write them.

    ``format="parquet"`` writes the converted dataset ``out/synth/`` (shards + manifest);
    a format name writes that dataset's raw layout into ``out`` through the format's writer,
    ready for ``hiu-data convert NAME out ...`` (the writers group records per split or image,
    so a raw layout's images are held in memory until written: mind ``n`` for 640 x 480 PNG
    layouts such as STB). Either way nothing is left behind on failure.

    Returns:
        :class:`SynthResult` with the folder written and the hands per split.
    """
    out = Path(out)
    profile = profile_for(format, size)
    scenes = generate_scenes(n, seed, profile, size=size, workers=workers, test_fraction=test_fraction)
    counts: dict[str, int] = {}
    options = {"generator": "hiu-data synth", "n": n, "seed": seed, "size": size, "format": format,
               "test_fraction": test_fraction}
    if format == PARQUET:
        from hiu_data.io.parquet import DatasetWriter

        with DatasetWriter(out, DATASET, options=options, overwrite=overwrite) as writer:
            for record in _records(scenes, progress, counts):
                writer.add(record)
        return SynthResult(writer.target, n, counts)
    from hiu_data import formats

    module = formats.get(format)
    with _atomic_folder(out, overwrite) as tmp:
        # Nothing but the format's own files: readers list folders and would trip on extras.
        module.write(_records(scenes, progress, counts), tmp)
    return SynthResult(out, n, counts)


def write_wild(out_dir: str | Path, n: int = 200, seed: int = 0, *, size: int = 224, workers: int = 1,
               boxes: bool = True, labels: str | Path | None = None, overwrite: bool = False,
               progress: Progress | None = None) -> SynthResult:
    """Write an unlabeled folder of ``n`` images from the shifted "wild" distribution.

    Files: ``out_dir/wild_000000.jpg`` ...; with ``boxes``, ``out_dir/detections.json`` in COCO form
    (``images`` with ``file_name`` relative to ``out_dir``, ``annotations`` with ``bbox``
    x, y, w, h and ``score`` 1.0, category ``hand``), the hand boxes a detector would give.
    With ``labels``, the ground truth of the same images as a converted dataset
    ``labels/synth_wild/`` (split ``test``), to measure pseudo-labels against.
    """
    out_dir = Path(out_dir)
    profile = profile_for(PARQUET, size, wild=True)
    coco: dict[str, Any] = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "hand"}]}
    truth: list[HandSample] = []
    hands = 0
    with _atomic_folder(out_dir, overwrite) as tmp:
        for index, data, records in generate_scenes(n, seed, profile, size=size, workers=workers, test_fraction=0.0,
                                                    dataset=WILD_DATASET):
            name = f"wild_{index:06d}.jpg"
            (tmp / name).write_bytes(data)
            coco["images"].append({"id": index + 1, "file_name": name, "width": profile.width, "height": profile.height})
            for record in records:
                if record.extras["visible_fraction"] < MIN_VISIBLE_FRACTION:
                    continue  # a detector would not find a hand hidden this much
                hands += 1
                coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": index + 1, "category_id": 1,
                                            "bbox": [round(float(v), 2) for v in record.bbox], "score": 1.0,
                                            "hand_side": record.hand_side})
                if labels is not None:
                    record.split = "test"
                    record.sample_id = record.sample_id.replace("/unlabeled/", "/test/")
                    record.image_id = record.image_id.replace("/unlabeled/", "/test/")
                    truth.append(record)
            if progress is not None:
                progress(1)
        if boxes:
            (tmp / DETECTIONS_FILE).write_text(json.dumps(coco) + "\n")
        if labels is not None:  # inside the folder's transaction: a failure here leaves no images either
            from hiu_data.io.parquet import write_dataset

            write_dataset(truth, labels, WILD_DATASET, overwrite=overwrite,
                          options={"generator": "hiu-data synth-wild", "n": n, "seed": seed, "size": size})
    return SynthResult(out_dir, n, {"unlabeled": hands})
