"""Converted datasets on disk: size-bounded Parquet shards plus ``manifest.json``.

Layout of a dataset folder ``OUT/<dataset>/``::

    train-00000-of-00002.parquet  train-00001-of-00002.parquet  test-00000-of-00001.parquet
    manifest.json    counts per split, skipped samples, schema version, options, tool version,
                     and the sha256 of every shard

Writes go to a hidden temporary folder beside the target that is renamed into place at the
end, so an interrupted or failed conversion leaves no dataset folder. The image column is
stored uncompressed and without dictionary encoding (the bytes are already JPEG/PNG); every
other column is zstd-compressed. Shards use small row groups so that one row can be read
without reading its whole shard.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import shutil
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from hiu_data.errors import OutputExistsError, SchemaError
from hiu_data.io.manifest import (MANIFEST, find_dataset_dirs, first_missing_folder, load_manifest,  # noqa: F401
                                  manifest_counts, remove_empty_folders, replace_folder, sha256_file, staging_path,
                                  tool_version)
from hiu_data.schema import (SCHEMA_VERSION, SPLITS, HandSample, arrow_schema, check_schema, sample_at, samples_to_table,
                             table_columns, table_to_samples)
from hiu_data.skeleton import SKELETON_NAME

log = logging.getLogger(__name__)

DEFAULT_SHARD_BYTES = 512 * 1024 * 1024
DEFAULT_ROW_GROUP_ROWS = 16
MAX_LISTED_SKIPS = 1000


def shard_name(split: str, index: int, total: int) -> str:
    """``<split>-00000-of-00003.parquet``."""
    return f"{split}-{index:05d}-of-{total:05d}.parquet"


class _SplitWriter:
    """Rows of one split, written into a sequence of shards of bounded size."""

    def __init__(self, folder: Path, split: str, max_bytes: int, row_group_rows: int) -> None:
        self.folder, self.split = folder, split
        self.max_bytes, self.row_group_rows = max_bytes, row_group_rows
        self.buffer: list[HandSample] = []
        self.files: list[tuple[Path, int]] = []
        self._writer: pq.ParquetWriter | None = None
        self._bytes = 0
        self._rows = 0

    def add(self, sample: HandSample) -> None:
        self.buffer.append(sample)
        if len(self.buffer) >= self.row_group_rows:
            self.flush()

    def add_table(self, table: pa.Table) -> None:
        self.flush()
        self._write(table)

    def flush(self) -> None:
        if not self.buffer:
            return
        try:
            table = samples_to_table(self.buffer)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as e:
            # A value of the wrong type or range that the reader let through: name the rows.
            ids = [s.sample_id for s in self.buffer]
            where = ids[0] if len(ids) == 1 else f"one of {ids[0]} .. {ids[-1]}"
            raise SchemaError(f"sample {where}: a value does not fit the hand_sample schema ({e})") from e
        self.buffer = []
        self._write(table)

    def _write(self, table: pa.Table) -> None:
        if self._writer is None:
            path = self.folder / f"{self.split}.part{len(self.files):05d}.parquet"
            self._writer = pq.ParquetWriter(
                path, arrow_schema(), compression={n: ("NONE" if n == "image" else "ZSTD") for n in arrow_schema().names},
                use_dictionary=[n for n in arrow_schema().names if n not in ("image", "mask")],
                write_statistics=[n for n in arrow_schema().names if n not in ("image", "mask", "extras")],
            )
            self.files.append((path, 0))
        self._writer.write_table(table, row_group_size=self.row_group_rows)
        self._rows += len(table)
        self._bytes += table.nbytes
        if self._bytes >= self.max_bytes:
            self._close_shard()

    def _close_shard(self) -> None:
        if self._writer is not None:
            self._writer.close()
            path, _ = self.files[-1]
            self.files[-1] = (path, self._rows)
            self._writer, self._bytes, self._rows = None, 0, 0

    def close(self) -> None:
        self.flush()
        self._close_shard()


class DatasetWriter:
    """Write HandSample records as a converted dataset folder ``out/<dataset>/``.

    Use as a context manager: on an exception nothing is left behind; on success the
    temporary folder is renamed into place. ``skip`` records samples dropped by
    ``--on-error skip`` so the manifest and the summary count them.
    """

    def __init__(
        self,
        out: str | Path,
        dataset: str,
        *,
        options: dict[str, Any] | None = None,
        source_root: str | Path | None = None,
        overwrite: bool = False,
        max_shard_bytes: int = DEFAULT_SHARD_BYTES,
        row_group_rows: int = DEFAULT_ROW_GROUP_ROWS,
    ) -> None:
        self.target = Path(out) / dataset
        if self.target.exists() and not overwrite:
            raise OutputExistsError(f"{self.target}: output exists; pass --overwrite to replace it")
        self.dataset = dataset
        self.options = dict(options or {})
        self.source_root = None if source_root is None else str(source_root)
        self.max_shard_bytes, self.row_group_rows = max_shard_bytes, row_group_rows
        self.tmp = staging_path(self.target)
        # The first folder of OUT made here: an aborted write removes it again (when empty).
        self._made = first_missing_folder(Path(out))
        self.tmp.mkdir(parents=True)
        self._splits: dict[str, _SplitWriter] = {}
        self.skipped: list[dict[str, str]] = []
        self.num_skipped = 0
        self.counts: dict[str, int] = {}

    def add(self, sample: HandSample) -> None:
        """Append one record (rows keep their order within a split)."""
        if sample.split not in SPLITS:
            raise SchemaError(f"sample {sample.sample_id}: split {sample.split!r} is not one of {', '.join(SPLITS)}")
        writer = self._splits.get(sample.split)
        if writer is None:
            writer = self._splits[sample.split] = _SplitWriter(self.tmp, sample.split, self.max_shard_bytes, self.row_group_rows)
        writer.add(sample)
        self.counts[sample.split] = self.counts.get(sample.split, 0) + 1

    def add_table(self, table: pa.Table) -> None:
        """Append a batch of rows of one split given as a table of :func:`arrow_schema` (the
        fast path of column-wise readers; rows keep their order within the split)."""
        if len(table) == 0:
            return
        if not table.schema.equals(arrow_schema(), check_metadata=False):
            raise SchemaError(f"add_table: table does not match the hand_sample v{SCHEMA_VERSION} schema")
        splits = table.column("split").unique().to_pylist()
        if len(splits) != 1 or splits[0] not in SPLITS:
            raise SchemaError(f"add_table: a table must hold rows of one split of {', '.join(SPLITS)}, got {splits}")
        split = splits[0]
        writer = self._splits.get(split)
        if writer is None:
            writer = self._splits[split] = _SplitWriter(self.tmp, split, self.max_shard_bytes, self.row_group_rows)
        writer.add_table(table)
        self.counts[split] = self.counts.get(split, 0) + len(table)

    def skip(self, sample_id: str, reason: str) -> None:
        """Record a sample that was dropped (``--on-error skip``)."""
        self.num_skipped += 1
        if len(self.skipped) < MAX_LISTED_SKIPS:
            self.skipped.append({"sample_id": sample_id, "reason": reason})

    def commit(self) -> Path:
        """Finish the shards, write the manifest and move the folder into place."""
        shards = []
        for split, writer in sorted(self._splits.items()):
            writer.close()
            total = len(writer.files)
            for index, (path, rows) in enumerate(writer.files):
                final = self.tmp / shard_name(split, index, total)
                path.rename(final)
                shards.append({"file": final.name, "split": split, "rows": rows,
                               "bytes": final.stat().st_size, "sha256": sha256_file(final)})
        manifest = {
            "dataset": self.dataset,
            "schema": "hand_sample",
            "schema_version": SCHEMA_VERSION,
            "skeleton": SKELETON_NAME,
            "tool": "hiu",
            "tool_version": tool_version(),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "source_root": self.source_root,
            "options": self.options,
            "counts": dict(sorted(self.counts.items())),
            "skipped": {"count": self.num_skipped, "samples": self.skipped},
            "shards": shards,
        }
        (self.tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        replace_folder(self.tmp, self.target)
        log.info("wrote %s: %s", self.target, manifest["counts"])
        return self.target

    def abort(self) -> None:
        """Remove the temporary folder."""
        for writer in self._splits.values():
            if writer._writer is not None:
                writer._writer.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
        remove_empty_folders(self.tmp.parent, self._made)

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            try:
                self.commit()  # writes the last buffered rows, which can still fail
            except BaseException:
                self.abort()
                raise
        else:
            self.abort()


def write_dataset(samples: Any, out: str | Path, dataset: str, **kwargs: Any) -> Path:
    """Write an iterable of records as ``out/<dataset>/`` (see :class:`DatasetWriter`)."""
    with DatasetWriter(out, dataset, **kwargs) as writer:
        for sample in samples:
            writer.add(sample)
    return writer.target


@dataclass
class _Shard:
    path: Path
    split: str
    dataset_dir: Path
    group_starts: list[int]  # cumulative row offsets of the row groups, plus the total
    start: int = 0  # global index of the first row


class HandDataset:
    """Read one or several converted dataset folders as one indexable sequence.

    ``len``, random access by index (reads one row group, not the shard), batched
    iteration and a split filter. Safe to use from forked DataLoader workers: file handles
    are reopened per process.

    Row groups read by index stay in a least-recently-used cache of up to ``cache_bytes``
    (Arrow buffer sizes, per process): training visits every row once per epoch in random
    order, so a cache smaller than the dataset re-reads (and decompresses) a whole row group
    for almost every sample, while a dataset that fits is read from disk once.
    """

    def __init__(self, paths: str | Path | Sequence[str | Path], split: str | Sequence[str] | None = None,
                 cache_bytes: int = 256 * 2**20) -> None:
        if isinstance(paths, (str, Path)):
            paths = [paths]
        splits = None if split is None else ({split} if isinstance(split, str) else set(split))
        self.dataset_dirs: list[Path] = [d for p in paths for d in find_dataset_dirs(p)]
        self.manifests: dict[Path, dict[str, Any]] = {}
        self.shards: list[_Shard] = []
        total = 0
        for folder in self.dataset_dirs:
            manifest = self.manifests[folder] = load_manifest(folder)
            for entry in manifest["shards"]:
                if splits is not None and entry["split"] not in splits:
                    continue
                path = folder / entry["file"]
                if not path.is_file():
                    raise SchemaError(f"{path}: shard listed in {folder / MANIFEST} is missing")
                try:
                    pf = pq.ParquetFile(path)
                except (pa.ArrowInvalid, OSError) as e:
                    raise SchemaError(f"{path}: not a readable Parquet file ({e})") from None
                check_schema(pf.schema_arrow, str(path))
                starts = [0]
                for g in range(pf.metadata.num_row_groups):
                    starts.append(starts[-1] + pf.metadata.row_group(g).num_rows)
                self.shards.append(_Shard(path, entry["split"], folder, starts, total))
                total += starts[-1]
        self._len = total
        self._shard_starts = [s.start for s in self.shards]
        self._cache_bytes = cache_bytes
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._files: dict[int, pq.ParquetFile] = {}
        self._groups: OrderedDict[tuple[int, int, tuple[str, ...] | None], pa.Table] = OrderedDict()
        self._cached = 0  # bytes held by self._groups
        self._labels: dict[int, dict[str, Any]] = {}

    def __len__(self) -> int:
        return self._len

    def _file(self, shard: int) -> pq.ParquetFile:
        if os.getpid() != self._pid:
            self._reset()
        pf = self._files.get(shard)
        if pf is None:
            pf = self._files[shard] = pq.ParquetFile(self.shards[shard].path, memory_map=True)
        return pf

    def locate(self, index: int) -> tuple[int, int, int]:
        """(shard, row group, row within the group) of a global index."""
        if index < 0:
            index += self._len
        if not 0 <= index < self._len:
            raise IndexError(f"index {index} out of range for {self._len} rows")
        import bisect

        s = bisect.bisect_right(self._shard_starts, index) - 1
        shard = self.shards[s]
        local = index - shard.start
        g = bisect.bisect_right(shard.group_starts, local) - 1
        return s, g, local - shard.group_starts[g]

    def _group(self, s: int, g: int, columns: tuple[str, ...] | None) -> pa.Table:
        key = (s, g, columns)
        table = self._groups.get(key)
        if table is None:
            table = self._file(s).read_row_group(g, columns=list(columns) if columns else None)
            self._groups[key] = table
            self._cached += table.nbytes
            while self._cached > self._cache_bytes and len(self._groups) > 1:
                self._cached -= self._groups.popitem(last=False)[1].nbytes
        else:
            self._groups.move_to_end(key)
        return table

    def row(self, index: int, columns: Sequence[str] | None = None) -> dict[str, Any]:
        """One row as a dict of Python values (fixed-size lists as nested lists)."""
        s, g, r = self.locate(index)
        table = self._group(s, g, tuple(columns) if columns else None)
        return {name: table.column(name)[r].as_py() for name in table.column_names}

    def _label_columns(self, s: int) -> dict[str, Any]:
        # Labels are small next to images: decode a shard's label columns once and keep them,
        # so random access reads only the image of its row group.
        cols = self._labels.get(s)
        if cols is None:
            names = [n for n in arrow_schema().names if n != "image"]
            cols = self._labels[s] = table_columns(self._file(s).read(columns=names))
        return cols

    def __getitem__(self, index: int) -> HandSample:
        s, g, r = self.locate(index)
        image = self._group(s, g, ("image",)).column("image")[r].as_py()
        return sample_at(self._label_columns(s), self.shards[s].group_starts[g] + r, image)

    def dataset_dir_of(self, index: int) -> Path:
        """The dataset folder a row comes from (root of its reference-mode image paths)."""
        return self.shards[self.locate(index)[0]].dataset_dir

    def iter_tables(self, batch_size: int = 1024, columns: Sequence[str] | None = None) -> Iterator[pa.Table]:
        """Sequential batches as Arrow tables, shard by shard."""
        for s in range(len(self.shards)):
            for batch in self._file(s).iter_batches(batch_size=batch_size, columns=list(columns) if columns else None):
                yield pa.Table.from_batches([batch])

    def iter_batches(self, batch_size: int = 256) -> Iterator[list[HandSample]]:
        """Sequential batches of records."""
        for table in self.iter_tables(batch_size):
            yield table_to_samples(table)

    def __iter__(self) -> Iterator[HandSample]:
        for batch in self.iter_batches():
            yield from batch

    def to_table(self, columns: Sequence[str] | None = None) -> pa.Table:
        """All rows (optionally only some columns) as one Arrow table."""
        tables = [pq.read_table(sh.path, columns=list(columns) if columns else None, memory_map=True) for sh in self.shards]
        if not tables:
            return arrow_schema().empty_table().select(list(columns) if columns else arrow_schema().names)
        return pa.concat_tables(tables)


def image_bytes_of(dataset: HandDataset, index: int, sample: HandSample | None = None) -> bytes:
    """Encoded image of row ``index``, resolving reference-mode paths against the source root."""
    from hiu_data.io.images import sample_image_bytes

    sample = sample if sample is not None else dataset[index]
    root = dataset.manifests[dataset.dataset_dir_of(index)].get("source_root")
    return sample_image_bytes(sample.image_bytes, sample.image_path, root, sample.sample_id)
