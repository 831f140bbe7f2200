"""Adding rows to a finished dataset folder without rewriting the rows it holds.

:func:`append_dataset` takes the shards of a second dataset (written by
:class:`hiu_data.io.parquet.DatasetWriter`) into an existing one. The existing shard files are
linked (or copied) unchanged, under their own names, into a staging folder beside the
dataset; the new shards join them under names of their own (``<split>-add001-00000-of-00001
.parquet``); the manifest lists both, with summed counts; the staging folder then replaces the
dataset folder (:func:`hiu_data.io.manifest.replace_folder`). So every existing row stays
byte-identical, a reader sees the old dataset or the new one and never a mixture, and the
shard checksums that ``hiu-data review push`` recorded stay valid for ``review pull``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
from pathlib import Path
from typing import Any

from hiu_data.errors import HiuError
from hiu_data.io.manifest import MANIFEST, load_manifest, replace_folder, sha256_file, staging_path

ADDED_KEY = "additions"
"""Key of the manifest's ``options`` listing what each append added, oldest first."""


class DatasetChangedError(HiuError):
    """The dataset to append to is not the one the rows were planned for."""


def _link_or_copy(source: str, target: str) -> None:
    # A hard link shares the bytes: nothing of the existing rows is rewritten or duplicated.
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _free_tag(folder: Path, entries: list[dict[str, Any]]) -> str:
    """The first ``addNNN`` that names no file of ``folder`` or of its manifest."""
    taken = {p.name for p in folder.iterdir()} | {str(e.get("file")) for e in entries}
    number = 1
    while any(name.split("-")[1:2] == [f"add{number:03d}"] for name in taken):
        number += 1
    return f"add{number:03d}"


def append_dataset(folder: str | Path, addition: str | Path, *, manifest_sha256: str,
                   record: dict[str, Any] | None = None) -> Path:
    """Add the rows of the dataset folder ``addition`` to the dataset folder ``folder``.

    Args:
        folder: the dataset to grow (its manifest, shards and any other files are kept).
        addition: a finished dataset folder of the same dataset name (left as it is).
        manifest_sha256: sha256 of ``folder``'s ``manifest.json`` when the rows were planned;
            a dataset changed since is refused rather than grown with rows meant for another.
        record: what the addition was (e.g. the command's options); stored, with the rows and
            shards added and the time, as the last entry of the manifest's
            ``options["additions"]``.
    Returns:
        ``folder``.
    Raises:
        DatasetChangedError: ``folder``'s manifest differs from ``manifest_sha256``, or the two
            datasets' names differ.
    """
    folder, addition = Path(folder), Path(addition)
    if sha256_file(folder / MANIFEST) != manifest_sha256:
        raise DatasetChangedError(f"{folder}: changed while rows were being added to it (its {MANIFEST} differs)")
    base, extra = load_manifest(folder), load_manifest(addition)
    if base.get("dataset") != extra.get("dataset"):
        raise DatasetChangedError(f"{addition}: dataset {extra.get('dataset')!r} cannot join {folder} "
                                  f"(dataset {base.get('dataset')!r})")
    tag = _free_tag(folder, base["shards"])
    staging = staging_path(folder)
    try:
        shutil.copytree(folder, staging, copy_function=_link_or_copy, ignore=lambda d, names:
                        [MANIFEST] if Path(d) == folder else [])
        added = []
        for entry in extra["shards"]:
            split, rest = entry["file"].split("-", 1)
            name = f"{split}-{tag}-{rest}"
            _link_or_copy(str(addition / entry["file"]), str(staging / name))
            added.append({**entry, "file": name})
        counts = dict(base.get("counts", {}))
        for split, rows in extra.get("counts", {}).items():
            counts[split] = counts.get(split, 0) + rows
        skipped = dict(base.get("skipped") or {"count": 0, "samples": []})
        listed = {s["sample_id"] for s in skipped.get("samples", [])}
        fresh = [s for s in extra.get("skipped", {}).get("samples", []) if s["sample_id"] not in listed]
        skipped = {"count": skipped.get("count", 0) + len(fresh), "samples": [*skipped.get("samples", []), *fresh]}
        options = dict(base.get("options") or {})
        options[ADDED_KEY] = [*options.get(ADDED_KEY, []), {
            **(record or {}), "rows": dict(sorted(extra.get("counts", {}).items())),
            "shard_files": [e["file"] for e in added],
            "added": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}]
        manifest = {**base, "options": options, "counts": dict(sorted(counts.items())), "skipped": skipped,
                    "shards": [*base["shards"], *added]}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if sha256_file(folder / MANIFEST) != manifest_sha256:  # changed while the copy was made
            raise DatasetChangedError(f"{folder}: changed while rows were being added to it (its {MANIFEST} differs)")
        replace_folder(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder
