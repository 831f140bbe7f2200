"""Convert a raw dataset into a converted dataset folder (the library side of ``convert``)."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import pyarrow as pa

from hiu_data import formats
from hiu_data.errors import DatasetFormatError, HiuError
from hiu_data.formats import Skipped
from hiu_data.formats._common import IMAGE_MODES, ON_ERROR
from hiu_data.io.parquet import DatasetWriter

log = logging.getLogger(__name__)


def _check_format_options(name: str, module: Any, format_options: dict[str, Any]) -> None:
    """Refuse an option the format's reader does not take (``--boxes`` belongs to ``folder``)
    in one line, instead of the reader's TypeError."""
    import inspect

    reader = getattr(module, "read_tables", None) or module.read
    accepted = inspect.signature(reader).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
        return
    for key in format_options:
        if key not in accepted:
            takers = [n for n in formats.available() if key in inspect.signature(formats.get(n).read).parameters]
            raise HiuError(f"--{key.replace('_', '-')} does not apply to convert {name}"
                           + (f"; it is an option of convert {', '.join(takers)}" if takers else ""))


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

    A format with ``read_tables`` (column-wise Arrow batches) is read in a background thread
    while this thread writes the shards; other formats yield records read inline.

    Args:
        progress: called with the number of rows written since the last call.
        format_options: extra keyword arguments of the format's ``read`` (e.g. COCO's image root).
    Raises:
        HiuError: bad input (named file and sample), unknown format, existing output.
    """
    if images not in IMAGE_MODES:
        raise HiuError(f"--images must be one of {', '.join(IMAGE_MODES)}, not {images!r}")
    if on_error not in ON_ERROR:
        raise HiuError(f"--on-error must be one of {', '.join(ON_ERROR)}, not {on_error!r}")
    name = formats.canonical(name)  # the dataset folder and the manifest carry the registered spelling
    module = formats.get(name)
    _check_format_options(name, module, format_options)
    raw_root = Path(raw_root)
    if not raw_root.exists():
        raise DatasetFormatError(raw_root, f"raw {name} folder not found")
    options = {"format": name, "splits": list(splits) if splits else None, "images": images, "on_error": on_error,
               **{k: str(v) for k, v in format_options.items()}}
    reasons: list[str] = []
    read_tables = getattr(module, "read_tables", None)
    kwargs = dict(splits=splits, images=images, on_error=on_error, workers=workers, **format_options)
    # Column-wise readers yield Arrow batches and read with threads: they run in a background
    # thread so that reading overlaps the Parquet writing here. Per-record readers may fork
    # worker processes, which must not happen while another thread runs, so they stay inline.
    items = _prefetch(read_tables(raw_root, **kwargs)) if read_tables else module.read(raw_root, **kwargs)
    with contextlib.ExitStack() as stack:
        if hasattr(items, "close"):  # stop the reader (its thread, its worker pool) on an error here too
            stack.callback(items.close)
        writer = stack.enter_context(DatasetWriter(out, name, options=options, source_root=raw_root.resolve(),
                                                   overwrite=overwrite))
        for item in _named_failures(items, name, raw_root):
            if isinstance(item, Skipped):
                writer.skip(item.sample_id, item.reason)
                if len(reasons) < 5:
                    reasons.append(f"{item.sample_id}: {item.reason}")
                log.warning("skipped %s: %s", item.sample_id, item.reason)
                continue
            if isinstance(item, pa.Table):
                writer.add_table(item)
                rows = len(item)
            else:
                writer.add(item)
                rows = 1
            if progress is not None:
                progress(rows)
    return ConvertResult(writer.target, dict(writer.counts), writer.num_skipped, reasons)


_DONE = object()

# What a reader raises when an annotation file holds a value of an unexpected type or shape that
# its own checks did not anticipate (the formats name every anticipated problem themselves).
_UNANTICIPATED = (TypeError, ValueError, KeyError, AttributeError, IndexError, OverflowError, RecursionError)


def _named_failures(items: Iterator[Any], name: str, raw_root: Path) -> Iterator[Any]:
    """``items``, with an unanticipated error of the reader turned into one line naming the raw
    folder and the Python error (``HIU_DEBUG=1`` shows the traceback, chained)."""
    try:
        yield from items
    except _UNANTICIPATED as e:
        raise DatasetFormatError(raw_root, f"unexpected content in the {name} files ({type(e).__name__}: {e}); "
                                           "HIU_DEBUG=1 shows where") from e


def _prefetch(items: Iterator[Any], depth: int = 4) -> Iterator[Any]:
    """Run ``items`` in a background thread, ``depth`` items ahead; its exceptions re-raise here."""
    buffer: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    break
            else:
                put(_DONE)
        except BaseException as e:  # handed to the consumer, which re-raises it
            put(e)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()  # ends the reader's worker pool when the consumer stopped early

    thread = threading.Thread(target=produce, name="hiu-convert-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
