"""Convert a raw dataset into a converted dataset folder (the library side of ``convert``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from hiu_data import formats
from hiu_data.errors import DatasetFormatError, HiuError
from hiu_data.formats import Skipped
from hiu_data.io.parquet import DatasetWriter

log = logging.getLogger(__name__)

IMAGE_MODES = ("embed", "reference")
ON_ERROR = ("fail", "skip")


@dataclass
class ConvertResult:
    """What a conversion wrote: the folder, rows per split, and the skipped samples."""

    path: Path
    counts: dict[str, int]
    skipped: int
    skip_reasons: list[str] = field(default_factory=list)


def convert(
    name: str,
    raw_root: str | Path,
    out: str | Path,
    *,
    splits: Sequence[str] | None = None,
    images: str = "embed",
    workers: int = 1,
    on_error: str = "fail",
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
    **format_options: Any,
) -> ConvertResult:
    """Read ``raw_root`` with format ``name`` and write ``out/<name>/`` atomically.

    Args:
        progress: called with the number of rows written since the last call.
        format_options: extra keyword arguments of the format's ``read`` (e.g. COCO's image root).
    Raises:
        HiuError: bad input (named file and sample), unknown format, existing output.
    """
    if images not in IMAGE_MODES:
        raise HiuError(f"--images must be one of {IMAGE_MODES}, not {images!r}")
    if on_error not in ON_ERROR:
        raise HiuError(f"--on-error must be one of {ON_ERROR}, not {on_error!r}")
    module = formats.get(name)
    raw_root = Path(raw_root)
    if not raw_root.exists():
        raise DatasetFormatError(raw_root, f"raw {name} folder not found")
    options = {"format": name, "splits": list(splits) if splits else None, "images": images, "on_error": on_error,
               **{k: str(v) for k, v in format_options.items()}}
    reasons: list[str] = []
    with DatasetWriter(out, name, options=options, source_root=raw_root.resolve(), overwrite=overwrite) as writer:
        for item in module.read(raw_root, splits=splits, images=images, on_error=on_error, workers=workers, **format_options):
            if isinstance(item, Skipped):
                writer.skip(item.sample_id, item.reason)
                if len(reasons) < 5:
                    reasons.append(f"{item.sample_id}: {item.reason}")
                log.warning("skipped %s: %s", item.sample_id, item.reason)
                continue
            writer.add(item)
            if progress is not None:
                progress(1)
    return ConvertResult(writer.target, dict(writer.counts), writer.num_skipped, reasons)
