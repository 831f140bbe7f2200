"""The image and mask check of ``hiu-data validate``: every row's image decodes at the stored
size (EXIF orientation applied, as training reads it) and its mask decodes to [height, width].

The slowest check by far (one decode per row), so it runs in worker processes and reports
progress; the other checks work on whole columns in :mod:`hiu_data.validate`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pyarrow.parquet as pq

from hiu_data.formats._common import parallel_map


def _decode_job(job: tuple[str, bytes | None, str | None, Any, int, int, Any]) -> tuple[str, str | None, str | None]:
    """(sample_id, image problem, mask problem) of one row; None = fine, "" = not checked."""
    from hiu_data.errors import CorruptImageError
    from hiu_data.io import images, rle

    sid, data, path, root, width, height, mask = job
    image_problem = None if data is not None or path is not None else ""
    if image_problem is None:
        try:
            pixels = images.decode(images.sample_image_bytes(data, path, root, sid), path or "<embedded>", sid)
            if pixels.shape[:2] != (height, width):
                image_problem = f"decodes to {pixels.shape[1]}x{pixels.shape[0]}, stored size {width}x{height}"
        except CorruptImageError as e:
            image_problem = e.problem
    mask_problem = None if mask is not None else ""
    if mask is not None:
        try:
            decoded = rle.decode(mask)
            if decoded.shape != (height, width):
                mask_problem = f"decodes to {list(decoded.shape)}, expected [{height}, {width}]"
        except Exception as e:  # pycocotools raises bare exceptions on malformed counts
            mask_problem = f"does not decode ({e})"
    return sid, image_problem, mask_problem


def _jobs(shards: list[Path], source_root: Any, with_images: bool) -> Iterator[tuple[Any, ...]]:
    columns = ["sample_id", "width", "height", "mask"] + (["image"] if with_images else [])
    for shard in shards:
        for batch in pq.ParquetFile(shard).iter_batches(batch_size=256, columns=columns):
            values = batch.to_pydict()
            for i, sid in enumerate(values["sample_id"]):
                image = values["image"][i] if with_images else None
                yield (sid, image and image["bytes"], image and image["path"], source_root,
                       values["width"][i], values["height"][i], values["mask"][i])


def check_images_and_masks(shards: list[Path], checks: dict[str, Any], with_images: bool, source_root: str | None,
                           workers: int, progress: Callable[[int], None] | None = None) -> None:
    """Decode every row's image (when ``with_images``) and mask of the ``shards`` in ``workers``
    processes and add the rows to ``checks["images"]`` and ``checks["masks"]`` (collectors with
    ``add(checked, flagged_ids, details)``, :mod:`hiu_data.validate`'s); ``progress(n)`` follows
    the rows done."""
    if not with_images:
        checks["images"].note = "not checked (--skip-images)"
    done = 0
    for sid, image_problem, mask_problem in parallel_map(_decode_job, _jobs(shards, source_root, with_images),
                                                         workers, chunksize=16):
        for name, problem in (("images", image_problem), ("masks", mask_problem)):
            if problem != "":
                checks[name].add(1, [sid] if problem else [], [problem] if problem else None)
        done += 1
        if progress is not None and done % 64 == 0:
            progress(64)
    if progress is not None and done % 64:
        progress(done % 64)
