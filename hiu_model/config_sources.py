"""The data sources of a training configuration, checked when the configuration is read.

``train.datasets`` (labeled), ``train.unlabeled`` and ``train.val`` are lists of sources; a
source is a path or a mapping ``{path, weight, split}``:

- ``path``: a converted dataset folder, or a folder of them (one source all the same); an
  unlabeled source may also be a plain image folder.
- ``weight``: the source's relative drawing probability, a number > 0 (default 1). Training
  draws each crop's source first, with the weights of ``datasets`` and ``unlabeled``
  normalised together, then a row of it: a weight is per source, not per row (a source of
  1,000 rows and one of 100,000 with equal weights give as many crops each). Validation reads
  every row and ignores it.
- ``split``: a split name of the schema (``train``, ``val``, ``test``, ``unlabeled``) or a list
  of them; default ``train`` for ``datasets``, every row for ``unlabeled``, and ``val``, else
  ``test``, else every row for ``val``.

:func:`check_sources` checks every entry here, so that a mistake is named with the file and
the entry (``mix.yaml: train.datasets[1].weight: ...``) when the config is read, not by the
data loader later (where nothing says which file or entry it came from).

Relative paths. DECISION: a relative path written in a config file is relative to the folder
of that file, as in a compose file or a build manifest, so that the file means the same data
from whatever folder training is started; a path given on the command line (``--data``,
``--unlabeled``, ``--val``, ``--set``) is relative to the current folder, as any argument is.
``~`` is expanded. The loaded configuration holds absolute paths: the run folder's
``config.yaml`` and each checkpoint's ``config.json`` name the same folders wherever
``--resume``, ``eval`` or ``predict`` are run from. Training from a config relative to the
current folder instead would make a file work from one folder only, and a stored one, read
from its run folder, from none.
"""

from __future__ import annotations

import difflib
import math
import os
from pathlib import Path
from typing import Any

from hiu_data.schema import SPLITS
from hiu_model.config_values import ConfigError

SOURCE_LISTS: tuple[str, ...] = ("datasets", "unlabeled", "val")
"""The fields of ``TrainConfig`` that list data sources."""

SOURCE_KEYS: tuple[str, ...] = ("path", "weight", "split")
"""The keys of a source mapping."""


def absolute_path(value: str, base: Path) -> str:
    """``value`` (``~`` expanded) as an absolute, normalised path; a relative one is taken
    relative to the folder ``base`` (itself relative to the current folder when relative)."""
    return os.path.abspath(os.path.join(base, os.path.expanduser(value)))


def check_sources(train: Any, where: str, base: Path) -> None:
    """Check the source lists of ``train`` (a ``TrainConfig``) in place, and make their paths
    absolute (relative ones relative to the folder ``base``).

    Args:
        where: the prefix of an error message, e.g. ``"mix.yaml: "``.
    Raises:
        ConfigError: an entry that is neither a path nor a mapping of :data:`SOURCE_KEYS`, an
            unknown key (with the closest known one), a weight that is not a number > 0, or a
            split the schema does not have.
    """
    for name in SOURCE_LISTS:
        entries = getattr(train, name)
        setattr(train, name, [_source(entry, f"{where}train.{name}[{i}]", base) for i, entry in enumerate(entries)])


def _source(entry: Any, where: str, base: Path) -> Any:
    if isinstance(entry, (str, Path)):
        return absolute_path(_path(entry, where), base)
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a path or a mapping {{path, weight, split}}, got {entry!r}")
    for key in entry:
        if key not in SOURCE_KEYS:
            close = difflib.get_close_matches(str(key), SOURCE_KEYS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; a source has {', '.join(SOURCE_KEYS)}"
            raise ConfigError(f"{where}: unknown key {key!r}{hint}")
    if "path" not in entry:
        raise ConfigError(f"{where}: a source mapping needs 'path' (and optionally 'weight', 'split'), got {entry!r}")
    checked = dict(entry)
    checked["path"] = absolute_path(_path(entry["path"], f"{where}.path"), base)
    if "weight" in entry:
        checked["weight"] = source_weight(entry["weight"], f"{where}.weight")
    if entry.get("split") is not None:
        checked["split"] = _split(entry["split"], f"{where}.split")
    return checked


def _path(value: Any, where: str) -> str:
    if isinstance(value, Path):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: expected a path, got {value!r}")
    return value


def source_weight(value: Any, where: str) -> float:
    """``value`` as a drawing weight: a finite number > 0; raises :class:`ConfigError` naming ``where``."""
    number: Any = value
    if isinstance(value, str):
        try:  # YAML 1.1 reads exponent notation without a dot (``3e-3``) as a string
            number = float(value)
        except ValueError:
            pass
    if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number) or number <= 0:
        raise ConfigError(f"{where}: must be a number > 0, got {value!r}")
    return float(number)


def _split(value: Any, where: str) -> Any:
    names = value if isinstance(value, list) else [value]
    for name in names:
        if name not in SPLITS:
            close = difflib.get_close_matches(str(name), SPLITS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{where}: {name!r} is not a split ({', '.join(SPLITS)}){hint}")
    return value
