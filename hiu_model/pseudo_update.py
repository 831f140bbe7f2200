"""``hiu-data pseudo-label --update``: which images of a folder an existing pseudo-label
dataset already holds, and which it lacks.

An image of the folder is identified by its path relative to the folder (a row's
``image_id`` is ``<name>/<relative path>``, see :mod:`hiu_model.pseudo_label`) and by its
content: the sha256 of the file's bytes, compared with the bytes embedded in the dataset's
rows. Against the dataset ``OUT/<name>/`` each image of the folder is

- **held**: a row holds the same bytes under the same path: nothing to do;
- **moved**: a row holds the same bytes under another path (the file was moved, renamed or
  copied): not labelled again, so that a picture is not reviewed twice; its row keeps the
  path it was labelled under;
- **changed**: a row holds that path with other bytes (the file was rewritten since it was
  labelled): not labelled again. Its row keeps the picture it was labelled on, embedded in
  the row, so its labels (and a person's review of them) still describe its image; labelling
  the new picture under the same path would give one path two images, and replacing the row
  would throw away its review. The command names these files: a new picture labelled under a
  new file name is added by the next ``--update``;
- **new**: neither its path nor its bytes are in the dataset: labelled.

Rows whose image is no longer in the folder (neither by path nor by content) are kept: their
images are embedded, so nothing of them is lost; the command names them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from hiu_data.errors import HiuError, OutputExistsError
from hiu_data.formats import folder
from hiu_data.io.images import sample_image_bytes
from hiu_data.io.parquet import MANIFEST, HandDataset, load_manifest, sha256_file
from hiu_data.schema import HandSample

PSEUDO_EXTRAS_KEY = "pseudo"
"""Key of ``extras`` that every row written by ``pseudo-label`` carries (pull keeps it)."""


class UpdateError(HiuError):
    """``--update`` on a folder that holds no pseudo-label dataset, or with a contradicting option."""


@dataclass
class Inventory:
    """What the dataset ``folder`` (``OUT/<name>/``) holds, by image.

    ``paths`` maps an image's relative path to the sha256 of its embedded bytes (None when a
    row has no readable bytes: such a path counts as held); ``contents`` maps a sha256 to the
    path holding it; ``sizes`` are the byte lengths of the embedded images (a file of another
    length cannot hold the same bytes, so only files of these lengths are hashed);
    ``label_sources`` are the ``pseudo:<sha256>`` sources of its pseudo-labelled rows.
    """

    folder: Path
    manifest_sha256: str
    rows: int
    paths: dict[str, str | None] = field(default_factory=dict)
    contents: dict[str, str] = field(default_factory=dict)
    sizes: set[int] = field(default_factory=set)
    label_sources: set[str] = field(default_factory=set)


@dataclass
class FolderDiff:
    """The images of a folder against an :class:`Inventory` (see the module docstring).

    ``new`` holds the rows to label, grouped by image as :func:`hiu_model.pseudo_label`
    labels them; the others are relative paths (``moved`` as (path in the folder, path in
    the dataset) pairs), sorted.
    """

    new: list[list[HandSample]]
    held: int
    moved: list[tuple[str, str]]
    changed: list[str]
    gone: list[str]


def check_output(target: Path, *, overwrite: bool, update: bool) -> None:
    """Refuse ``--update`` with ``--overwrite``, and an existing ``target`` (``OUT/<name>``) with neither."""
    if update and overwrite:
        raise UpdateError("--update keeps the rows of OUT/NAME and --overwrite replaces them: pass one of them")
    if target.exists() and not overwrite and not update:
        raise OutputExistsError(f"{target}: output exists; pass --update to label only the images it lacks, "
                                "or --overwrite to replace it")


def read_inventory(out: Path, name: str) -> Inventory:
    """The images of the pseudo-label dataset ``out/<name>/``.

    Raises:
        UpdateError: ``out/<name>`` is missing, or is not a dataset written by ``pseudo-label``
            under that name (rows of a pulled review of one count).
    """
    target = out / name
    if not (target / MANIFEST).is_file():
        what = "holds no dataset" if target.is_dir() else "does not exist"
        if (out / MANIFEST).is_file():  # the dataset folder itself given as OUT
            raise UpdateError(f"{target}: {what} to update; {out} is a dataset folder: pass the folder holding it, "
                              f"{out.parent}, as OUT (with --name {out.name})")
        raise UpdateError(f"{target}: {what} to update; run pseudo-label without --update to create it")
    manifest = load_manifest(target)
    prefix = f"{name}/"
    if manifest.get("dataset") != name:
        raise UpdateError(f"{target}: holds dataset {manifest.get('dataset')!r}, "
                          f"not a pseudo-label dataset named {name!r}")
    inventory = Inventory(target, sha256_file(target / MANIFEST), 0)
    rows = HandDataset(target)
    pseudo = False
    for table in rows.iter_tables(batch_size=64, columns=["sample_id", "image_id", "image", "label_source", "extras"]):
        columns = table.to_pydict()
        for sid, image_id, image, source, extras in zip(columns["sample_id"], columns["image_id"], columns["image"],
                                                        columns["label_source"], columns["extras"]):
            inventory.rows += 1
            if not image_id.startswith(prefix):
                raise UpdateError(f"{target}: row {sid} has image_id {image_id!r}, not {prefix}<path in the image "
                                  "folder>: not a pseudo-label dataset")
            parsed = None if extras is None else json.loads(extras)
            pseudo |= isinstance(parsed, dict) and PSEUDO_EXTRAS_KEY in parsed
            if source.startswith("pseudo:"):
                inventory.label_sources.add(source)
            rel = image_id[len(prefix):]
            if rel in inventory.paths:
                continue  # another hand of an image already seen
            try:
                data = sample_image_bytes(image["bytes"], image["path"], manifest.get("source_root"), sid)
            except HiuError:
                data = None
            digest = None if data is None else hashlib.sha256(data).hexdigest()
            inventory.paths[rel] = digest
            if data is not None:
                inventory.contents.setdefault(digest, rel)
                inventory.sizes.add(len(data))
    if not pseudo:
        raise UpdateError(f"{target}: none of its {inventory.rows} rows was written by pseudo-label "
                          f"(no extras[{PSEUDO_EXTRAS_KEY!r}]): not a pseudo-label dataset")
    return inventory


def compare(images_dir: Path, groups: Sequence[list[HandSample]], inventory: Inventory) -> FolderDiff:
    """Sort the folder's images against the dataset (see the module docstring).

    ``groups`` are the folder's rows by image (those with a box, with ``--boxes``); every
    image of the folder counts for ``moved``, ``changed`` and ``gone``.
    """
    contents: dict[str, str | None] = {}  # relative path -> sha256, for files that may match a row
    for rel in folder.image_paths(images_dir):
        path = images_dir / rel
        contents[rel] = sha256_file(path) if path.stat().st_size in inventory.sizes else None
    held, moved, changed, wanted = 0, [], [], set()
    for rel, digest in contents.items():
        if rel in inventory.paths:
            stored = inventory.paths[rel]
            if stored is None or stored == digest:
                held += 1
            else:
                changed.append(rel)
        elif digest is not None and digest in inventory.contents:
            moved.append((rel, inventory.contents[digest]))
        else:
            wanted.add(rel)
    new = [rows for rows in groups if rows[0].image_path in wanted]
    seen = set(contents.values())
    gone = sorted(rel for rel, digest in inventory.paths.items()
                  if rel not in contents and (digest is None or digest not in seen))
    return FolderDiff(new, held, sorted(moved), sorted(changed), gone)
