"""Where a dataset's files are under the ``RAW_ROOT`` a user gives to ``convert``.

The archives unpack differently, and users point ``RAW_ROOT`` at different levels:

- at the archive's top folder (``RHD_published_v2/``, ``FreiHAND_pub_v2/``): read as it is;
- at the folder they unpacked into, one level above (``~/data`` holding
  ``RHD_published_v2/``): the single folder directly below that holds the dataset is read;
  two such folders are an error naming both (which one is meant is not ours to guess);
- at a folder inside the dataset, one level below (``RHD_published_v2/training``): an error
  naming the folder to give instead (reading only part of a dataset silently would look like
  a complete conversion).

Some datasets come in several archives that unpack side by side: FreiHAND's evaluation
labels (``FreiHAND_pub_v2_eval/``), InterHand2.6M's image batches
(``InterHand2.6M_5fps_batch1/images``) beside its ``annotations/``. Their readers look for each
part in ``RAW_ROOT`` and in the folders directly below it (:func:`folders_holding`).

Image paths of reference-mode records stay relative to the ``RAW_ROOT`` the user gave (the
manifest's ``source_root``): :func:`relative_prefix` is what a reader puts before its own
dataset-relative paths.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable

from hiu_data.errors import DatasetFormatError

log = logging.getLogger(__name__)

MAX_LISTED = 3
"""How many candidate folders an error names before it says "and N more"."""


def subfolders(root: Path) -> list[Path]:
    """The folders directly below ``root``, sorted by name, hidden ones (``.``) left out."""
    try:
        with os.scandir(root) as entries:
            names = sorted(e.name for e in entries if not e.name.startswith(".") and e.is_dir())
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return []
    return [root / name for name in names]


def folders_holding(root: Path, holds: Callable[[Path], bool]) -> list[Path]:
    """``[root]`` when it holds the files ``holds`` looks for, else those folders directly below it that do."""
    root = Path(root)
    if holds(root):
        return [root]
    return [folder for folder in subfolders(root) if holds(folder)]


def _names(folders: list[Path]) -> str:
    shown = ", ".join(f.name for f in folders[:MAX_LISTED])
    return shown + (f" and {len(folders) - MAX_LISTED} more" if len(folders) > MAX_LISTED else "")


def dataset_folder(root: Path, holds: Callable[[Path], bool], what: str, expected: str) -> Path:
    """The folder of ``root`` or directly below it that holds the dataset (see the module docstring).

    Args:
        root: the user's ``RAW_ROOT``.
        holds: whether a folder is the dataset's top folder (checks a few marker files).
        what: the dataset, for messages (``"RHD"``).
        expected: the end of the error when nothing is found, naming the marker files
            (``"not an RHD folder; expected training/anno_training.pickle ... here"``).
    Raises:
        DatasetFormatError: nothing found (naming ``root``; when ``root`` lies inside the
            dataset, the folder to give instead), or two candidate folders below ``root``.
    """
    root = Path(root)
    found = folders_holding(root, holds)
    if len(found) == 1:
        if found[0] != root:
            log.info("%s: reading the %s folder %s below it", root, what, found[0].name)
        return found[0]
    if found:
        raise DatasetFormatError(root, f"{len(found)} folders here hold {what} ({_names(found)}); "
                                       "give one of them as RAW_ROOT")
    for above in (root.parent, root.parent.parent):
        if above != root and holds(above):
            raise DatasetFormatError(root, f"a folder inside the {what} dataset; give {above} as RAW_ROOT")
    raise DatasetFormatError(root, f"{expected} (or in a folder directly below it)")


def relative_prefix(user_root: Path, folder: Path) -> str:
    """``"FreiHAND_pub_v2/"`` for a folder below the user's root, ``""`` for the root itself: the
    start of the root-relative image paths of ``folder``'s files."""
    relative = Path(folder).relative_to(Path(user_root)).as_posix()
    return "" if relative == "." else relative + "/"


def one_folder(root: Path, holds: Callable[[Path], bool], what: str) -> Path | None:
    """The one folder of ``root`` or directly below it holding a part of a dataset ``what``
    (e.g. an image batch), None when there is none.

    Raises:
        DatasetFormatError: two folders below ``root`` hold it (naming them).
    """
    found = folders_holding(root, holds)
    if len(found) > 1:
        raise DatasetFormatError(root, f"{len(found)} folders here hold {what} ({_names(found)}); "
                                       "keep one of them, or give the one to read as RAW_ROOT")
    return found[0] if found else None
