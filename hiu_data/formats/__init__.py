"""Dataset formats: one module per dataset, one line per dataset in the registry below.

Every format module defines:

- ``NAME: str`` and ``SPLITS: tuple[str, ...]`` (the unified splits it can produce);
- ``read(root, *, splits=None, images="embed", on_error="fail", workers=1)``: an iterator of
  :class:`~hiu_data.schema.HandSample` (and :class:`Skipped` markers when
  ``on_error="skip"``), reading the raw files as the authors distribute them and never
  decoding images it does not need;
- ``write(samples, root)``: the inverse, writing records into the dataset's own layout and
  file formats (used by tests, benches, the synthetic data and the demo);
- optionally ``read_tables(...)`` with ``read``'s arguments: the same rows as ``hand_sample``
  Arrow tables (batches) and Skipped markers, built column-wise (see ``_columns.hand_table``);
  ``convert`` prefers it and runs it in a reader thread, so it must parallelise with threads,
  not forked processes.

Shared helpers for format modules (paths, JSON, on_error, projections, boxes, parallel reads)
live in ``_common``.

Modules are imported lazily so that one format's optional dependency cannot break another.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from hiu_data.errors import NotRegisteredError

REGISTRY: dict[str, str] = {
    "freihand": "hiu_data.formats.freihand",
    "rhd": "hiu_data.formats.rhd",
    "stb": "hiu_data.formats.stb",
    "cmu": "hiu_data.formats.cmu",
    "dexter": "hiu_data.formats.dexter",
    "hiu": "hiu_data.formats.hiu",
    "interhand26m": "hiu_data.formats.interhand26m",
    "folder": "hiu_data.formats.folder",
    "coco": "hiu_data.formats.coco",
}


@dataclass(frozen=True)
class Skipped:
    """A sample the reader dropped under ``on_error="skip"``, with the one-line reason."""

    sample_id: str
    reason: str


def available() -> list[str]:
    """Names of the registered formats whose module is present."""
    return [name for name, module in REGISTRY.items() if importlib.util.find_spec(module) is not None]


def canonical(name: str) -> str:
    """The registered spelling of a format name given in any case (``FreiHAND`` -> ``freihand``);
    an unknown name comes back unchanged, for :func:`get` to report."""
    lowered = name.lower()
    return lowered if lowered in REGISTRY else name


def get(name: str) -> ModuleType:
    """The format module registered as ``name`` (any case)."""
    key = canonical(name)
    if key not in REGISTRY or importlib.util.find_spec(REGISTRY[key]) is None:
        raise NotRegisteredError("dataset format", name, available())
    return importlib.import_module(REGISTRY[key])
