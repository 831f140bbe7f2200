"""A converted dataset folder's ``manifest.json``: finding dataset folders, reading and checking
manifests, row counts without opening a shard, and the sha256 and tool version they record;
and the output-folder steps every writer shares (a hidden staging path, moving a finished
folder into place, removing what a failed write made).

(:mod:`hiu_data.io.parquet` writes the manifests and re-exports these names.)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterator, Sequence

from hiu_data.errors import HiuError, OutputExistsError, SchemaError
from hiu_data.schema import SCHEMA_VERSION

MANIFEST = "manifest.json"


def tool_version() -> str:
    """Installed version of the ``hiu`` distribution."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hiu")
    except PackageNotFoundError:  # running from a source tree without installing
        return "0+unknown"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def find_dataset_dirs(path: str | Path) -> list[Path]:
    """Dataset folders at ``path``: itself if it holds a manifest, else its children that do.

    Raises:
        HiuError: ``path`` is missing or is a file (a shard or the manifest itself).
        SchemaError: no dataset folder there; the message says where one is, or how to make one.
    """
    path = Path(path)
    if not path.exists():
        raise HiuError(f"{path}: no such folder")
    if not path.is_dir():
        # A shard or the manifest is a natural thing to pass; the folder holding it is meant.
        inside = f"; pass the dataset folder {path.parent}" if (path.parent / MANIFEST).is_file() else ""
        raise HiuError(f"{path}: is a file, expected a converted dataset folder (with {MANIFEST}){inside}")
    if (path / MANIFEST).is_file():
        return [path]
    found = sorted(p for p in path.iterdir() if (p / MANIFEST).is_file())
    if not found:
        raise SchemaError(f"{path}: not a converted dataset (no {MANIFEST} in it or in its sub-folders); "
                          + _where_datasets_are(path))
    return found


def _where_datasets_are(path: Path) -> str:
    """The hint of a folder without datasets: the sub-folders one level further down that hold
    some (e.g. the demo's output folder, whose ``converted/`` holds them), else how to make one."""
    holders = sorted({p.parent.parent for p in path.glob(f"*/*/{MANIFEST}")})
    if holders:
        shown = " or ".join(str(p) for p in holders[:3]) + (" or ..." if len(holders) > 3 else "")
        return f"converted datasets are in {shown}: pass that folder"
    return "convert the raw files first (hiu-data convert NAME RAW_ROOT OUT, then pass OUT or OUT/NAME)"


def first_missing_folder(path: Path) -> Path | None:
    """The topmost folder of ``path`` (itself included) that does not exist yet, or None."""
    return next((p for p in reversed([path, *path.parents]) if not p.exists()), None)


def staging_path(final: Path, tag: str = "tmp") -> Path:
    """A hidden, unique sibling of ``final`` (``.NAME.tmp-1a2b3c4d``) to write into before it is
    renamed to ``final``: a reader of ``final``'s folder never sees a half-written output."""
    return final.with_name(f".{final.name}.{tag}-{uuid.uuid4().hex[:8]}")


def replace_folder(staging: Path, final: Path) -> None:
    """Rename the finished folder ``staging`` to ``final``. An existing ``final`` is first
    renamed aside and removed only once ``staging`` is in its place, so a failure on the way
    leaves either the old output or the new one, never neither."""
    old = None
    if final.exists():
        old = staging_path(final, "old")
        final.rename(old)
    try:
        staging.rename(final)
    except BaseException:
        if old is not None:
            old.rename(final)  # the old output back where it was
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def check_output_folder(out: Path, overwrite: bool, inputs: Sequence[Path] = (), what: str = "input",
                        option: str = "output folder") -> None:
    """Refuse an output folder ``out`` that is a file, or holds files without ``overwrite``, or
    holds one of ``inputs`` (a :func:`staged_folder` replacing ``out`` would delete it).

    Raises:
        HiuError: ``out`` is a file, or it holds an input (named as ``what``; the message asks
            for another ``option``).
        OutputExistsError: ``out`` holds files and ``overwrite`` is False.
    """
    if out.exists() and not out.is_dir():
        raise HiuError(f"{out}: exists and is not a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not overwrite:
        raise OutputExistsError(f"{out}: output exists; pass --overwrite to replace it")
    inside = next((f for f in inputs if f.resolve().is_relative_to(out.resolve())), None)
    if inside is not None:
        raise HiuError(f"{out}: holds the {what} {inside}, which --overwrite would delete; choose another {option}")


@contextlib.contextmanager
def staged_folder(final: Path) -> Iterator[Path]:
    """Yield an empty staging folder beside ``final`` (parents made); when the block ends it
    replaces ``final`` (:func:`replace_folder`), and when the block raises it is removed and
    ``final`` is left as it was."""
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_path(final)
    staging.mkdir()
    try:
        yield staging
        replace_folder(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def remove_empty_folders(folder: Path, top: Path | None) -> None:
    """Remove ``folder`` and its parents up to ``top`` while they are empty: what a failed
    write made (:func:`first_missing_folder` before it) goes again; a folder that holds
    anything, another writer's output included, stays. ``top`` None removes nothing."""
    for current in [folder, *folder.parents] if top is not None else []:
        with contextlib.suppress(OSError):
            current.rmdir()
        if current == top or current.exists():
            break


def load_manifest(folder: str | Path) -> dict[str, Any]:
    """Parse and check a dataset folder's manifest."""
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise SchemaError(f"{path}: missing; not a converted dataset") from None
    except json.JSONDecodeError as e:
        raise SchemaError(f"{path}: malformed JSON ({e.msg} at line {e.lineno})") from None
    except UnicodeDecodeError:
        raise SchemaError(f"{path}: not a UTF-8 JSON file") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("shards", []), list) \
            or not isinstance(manifest.get("counts", {}), dict):
        raise SchemaError(f"{path}: not a hiu manifest (a JSON object with 'shards' and 'counts')")
    for index, entry in enumerate(manifest.get("shards", [])):
        if not _shard_entry_ok(entry):
            raise SchemaError(f"{path}: shard entry {index} is not an object with 'file' (a file name in the "
                              "dataset folder) and 'split' strings; the manifest is damaged")
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise SchemaError(
            f"{path}: schema version {manifest.get('schema_version')} but this hiu reads version {SCHEMA_VERSION}; "
            "re-convert the dataset with this version of hiu"
        )
    return manifest


def _shard_entry_ok(entry: Any) -> bool:
    """A ``shards`` entry as written: ``file`` names a file directly in the dataset folder (a
    path elsewhere would read another dataset's shard), ``split`` a string."""
    if not isinstance(entry, dict) or not isinstance(entry.get("split"), str):
        return False
    file = entry.get("file")
    return isinstance(file, str) and file not in ("", ".", "..") and "/" not in file and "\\" not in file


def manifest_counts(path: str | Path) -> dict[str, int]:
    """Rows per split of every dataset folder at ``path``, as their manifests count them
    (without opening a shard); a folder whose manifest cannot be read counts nothing, for
    :func:`load_manifest` reports it where it matters.

    Raises:
        HiuError: ``path`` is missing or holds no dataset folder.
    """
    counts: dict[str, int] = {}
    for folder in find_dataset_dirs(path):
        try:
            for split, rows in load_manifest(folder).get("counts", {}).items():
                counts[split] = counts.get(split, 0) + int(rows)
        except (HiuError, TypeError, ValueError, AttributeError):
            continue
    return counts
