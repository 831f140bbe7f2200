"""Mixing several datasets with weights, and the DataLoader of training and evaluation.

:class:`MixedSampler` draws, for every position of an epoch, a source dataset with the given
probabilities and then a row of that source; each source is walked through shuffled passes
(no row repeats before the whole source has been seen). The sequence depends only on
``(seed, epoch)``: never on the number of workers. With ``world_size`` processes every rank
takes its own positions of the same sequence (``rank::world_size``), so ranks never share a
draw. ``set_epoch(epoch, start)`` also skips the first ``start`` draws of this rank, which is
what an exactly resumed run needs; its ``plain_from`` turns the augmentation off from a
position of the epoch on (the last steps of a run may train on the crops evaluation sees).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np
import torch

from hiu_data.errors import HiuError

if TYPE_CHECKING:  # pragma: no cover
    from hiu_model.data import DataOptions, HandCropDataset

log = logging.getLogger(__name__)


class MixedSampler(torch.utils.data.Sampler):
    """Weighted mixing of datasets laid end to end (indices of a :class:`MixedDataset`).

    Args:
        lengths: rows of each source, in the order of the concatenation.
        weights: relative drawing probability of each source (normalised here); None draws
            in proportion to ``lengths``.
        num_samples: draws per epoch over all ranks; None = the total number of rows.
        seed: seed of the sequence.
        rank, world_size: this process's share: positions ``rank, rank + world_size, ...``.
        keys: yield ``(index, key, augment)`` triples, ``key`` a 63-bit number unique to the
            draw that keys the item's augmentation and ``augment`` False from the epoch's
            ``plain_from`` position on; False yields plain indices.
    """

    def __init__(self, lengths: Sequence[int], weights: Sequence[float] | None = None,
                 num_samples: int | None = None, seed: int = 0, rank: int = 0, world_size: int = 1,
                 keys: bool = False) -> None:
        self.lengths = [int(n) for n in lengths]
        if not self.lengths or min(self.lengths) < 0:
            raise ValueError(f"lengths must be non-negative row counts, got {list(lengths)}")
        w = np.asarray(self.lengths if weights is None else weights, dtype=np.float64)
        if w.shape != (len(self.lengths),) or (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
            raise ValueError(f"weights must be one non-negative number per source with a positive sum, got {weights}")
        empty = [i for i, (n, wi) in enumerate(zip(self.lengths, w)) if n == 0 and wi > 0]
        if empty:
            raise ValueError(f"sources {empty} have weight but no rows")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.probabilities = w / w.sum()
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)
        self.num_samples = int(sum(self.lengths) if num_samples is None else num_samples)
        self.seed, self.rank, self.world_size, self.keys = int(seed), int(rank), int(world_size), keys
        self.epoch, self.start, self.plain_from = 0, 0, None

    def set_epoch(self, epoch: int, start: int = 0, plain_from: int | None = None) -> None:
        """Select the epoch's sequence; skip this rank's first ``start`` draws (for resuming).

        ``plain_from``: this rank's draws at and after this position of the epoch (counted from
        its first draw, skipped ones included) are yielded with ``augment`` False; None: none.
        """
        self.epoch, self.start = int(epoch), int(start)
        self.plain_from = None if plain_from is None else int(plain_from)

    def __len__(self) -> int:
        return max(math.ceil(self.num_samples / self.world_size) - self.start, 0)

    def draws(self, epoch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The whole epoch over all ranks: (global indices (N,), augmentation keys (N,)) int64."""
        epoch = self.epoch if epoch is None else epoch
        total = math.ceil(self.num_samples / self.world_size) * self.world_size
        rng = np.random.default_rng([self.seed, epoch])
        source = rng.choice(len(self.lengths), size=total, p=self.probabilities)
        index = np.empty(total, dtype=np.int64)
        for s, n in enumerate(self.lengths):
            where = np.flatnonzero(source == s)
            if len(where) == 0:
                continue
            passes = [rng.permutation(n) for _ in range(math.ceil(len(where) / n))]
            index[where] = self.offsets[s] + np.concatenate(passes)[: len(where)]
        keys = rng.integers(0, 2**63 - 1, size=total, dtype=np.int64)
        return index, keys

    def __iter__(self) -> Iterator[Any]:
        index, keys = self.draws()
        mine = slice(self.rank + self.start * self.world_size, None, self.world_size)
        if self.keys:
            index, keys = index[mine].tolist(), keys[mine].tolist()
            first_plain = len(index) if self.plain_from is None else max(self.plain_from - self.start, 0)
            augment = [position < first_plain for position in range(len(index))]
            return iter(zip(index, keys, augment))
        return iter(index[mine].tolist())


class WorkerDataError(HiuError):
    """A :class:`HiuError` met in a DataLoader worker process (a corrupt image), with its message.

    The main process gets a worker's error back as its type called with the worker's formatted
    traceback (one string), or as a RuntimeError where the type takes other arguments; this
    type keeps the error's own message out of that text, so the command line still prints it
    as one line."""

    def __init__(self, text: str) -> None:
        marker = f"{__name__}.{type(self).__qualname__}: "
        super().__init__(text[text.rindex(marker) + len(marker):].strip() if marker in text else text)


class MixedDataset(torch.utils.data.ConcatDataset):
    """Several :class:`HandCropDataset` end to end; items also carry ``source`` (int64).

    Accepts the ``(index, key[, augment])`` items of :class:`MixedSampler`.
    """

    def __getitem__(self, item: int | tuple[int, ...]) -> dict[str, torch.Tensor]:
        try:
            return self._item(item)
        except HiuError as e:
            if torch.utils.data.get_worker_info() is None or isinstance(e, WorkerDataError):
                raise
            raise WorkerDataError(str(e)) from None

    def _item(self, item: int | tuple[int, ...]) -> dict[str, torch.Tensor]:
        index, draw = (int(item[0]), tuple(item[1:])) if isinstance(item, (tuple, list)) else (int(item), ())
        if index < 0:
            index += len(self)
        source = int(np.searchsorted(self.cumulative_sizes, index, side="right"))
        local = index - (self.cumulative_sizes[source - 1] if source else 0)
        out = self.datasets[source][(local, *draw) if draw else local]
        out["source"] = torch.tensor(source, dtype=torch.int64)
        return out


@dataclass
class DataSource:
    """One weighted source of a loader: a converted dataset folder (or a folder of them)."""

    path: str | Path
    weight: float = 1.0
    split: str | None = None


def as_source(entry: Any, split: str | None) -> DataSource:
    """One data source from a path, a ``{path, weight, split}`` mapping (a config entry), a
    ``(path[, weight[, split]])`` sequence or a :class:`DataSource`; ``split`` fills a missing split.

    Raises:
        HiuError: a mapping without ``path`` or with other keys, a weight that is not a finite
            number > 0, or an entry of any other type.
    """
    if isinstance(entry, DataSource):
        return entry if entry.split is not None or split is None else DataSource(entry.path, entry.weight, split)
    if isinstance(entry, dict):
        unknown = set(entry) - {"path", "weight", "split"}
        if unknown or "path" not in entry:
            raise HiuError(f"data source {entry}: expected a mapping with 'path' (and 'weight', 'split')"
                           + (f"; unknown keys {sorted(unknown)}" if unknown else ""))
        path, weight, entry_split = entry["path"], entry.get("weight", 1.0), entry.get("split", split)
    elif isinstance(entry, (tuple, list)) and 1 <= len(entry) <= 3:
        path = entry[0]
        weight = entry[1] if len(entry) > 1 else 1.0
        entry_split = entry[2] if len(entry) > 2 else split
    elif isinstance(entry, (str, Path)):
        path, weight, entry_split = entry, 1.0, split
    else:
        raise HiuError(f"data source {entry!r}: expected a path or a mapping with 'path' (and 'weight', 'split')")
    from hiu_model.config_sources import source_weight

    try:
        checked = source_weight(weight, "weight")
    except HiuError:
        raise HiuError(f"data source {path}: weight {weight!r} is not a number > 0 (a relative drawing "
                       "probability)") from None
    return DataSource(str(path), checked, entry_split)


def no_rows_error(path: str | Path, split: str | None,
                  how: str = "a source picks its split with {path: ..., split: ...} in the config",
                  rejected: int = 0) -> HiuError:
    """The error for a source without usable rows (in ``split``): it names the splits the folder
    does hold, and ``how`` to pick one; or says that a reviewer rejected all ``rejected`` rows."""
    from hiu_data.io.manifest import manifest_counts

    if rejected:
        where = f" of split {split!r}" if split is not None else ""
        return HiuError(f"{path}: all {rejected} hand(s){where} were rejected in review (review_status), "
                        "so none is usable")
    if split is None:
        return HiuError(f"{path}: no rows")
    try:
        counts = manifest_counts(path)
    except HiuError:
        counts = {}
    present = ", ".join(f"{name} {rows}" for name, rows in sorted(counts.items()) if rows)
    hint = f" (it has: {present}; {how})" if present else ""
    return HiuError(f"{path}: no rows in split {split!r}{hint}")


def _worker_init(_: int) -> None:
    import cv2

    from hiu_model.interrupt import ignore_in_worker

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    ignore_in_worker()  # the main process stops training gracefully; its workers must outlive the signal


def build_loader(sources: Sequence[Any], options: "DataOptions | None" = None, *, batch_size: int = 32,
                 train: bool = True, split: str | None = None, num_samples: int | None = None, seed: int = 0,
                 num_workers: int = 0, rank: int = 0, world_size: int = 1, epoch: int = 0,
                 drop_last: bool | None = None, pin_memory: bool = False) -> torch.utils.data.DataLoader:
    """A DataLoader of crop batches over weighted sources.

    Args:
        sources: each a path, ``(path, weight[, split])``, ``{"path", "weight", "split"}`` or
            :class:`DataSource`; every source is one mixing component.
        options: crop and target settings (``DataOptions()`` when None).
        train: augment and mix with :class:`MixedSampler` (``num_samples`` draws per epoch,
            keyed augmentation); False reads every row once in order (this rank's share).
        split: split of the sources that do not name one (None: all rows).
        seed, rank, world_size, epoch: see :class:`MixedSampler`. Call
            ``loader.sampler.set_epoch(e)`` before each later epoch.
        drop_last: default True for training, False for evaluation.
    Returns:
        A DataLoader yielding dicts of batched tensors (see :mod:`hiu_model.data`) plus
        ``source`` (B,) int64, the position of each item's source in ``sources``.
    Raises:
        HiuError: a source folder is missing, not a converted dataset, or has no rows.
    """
    from hiu_model.data import DataOptions, HandCropDataset

    options = options if options is not None else DataOptions()
    parsed = [as_source(s, split) for s in sources]
    if not parsed:
        raise HiuError("no data sources given")
    datasets: list[HandCropDataset] = []
    for i, src in enumerate(parsed):
        ds = HandCropDataset(src.path, split=src.split, options=options, train=train, seed=seed + 7919 * i)
        if len(ds) == 0:
            raise no_rows_error(src.path, src.split, rejected=ds.rejected)
        datasets.append(ds)
    mixed = MixedDataset(datasets)
    if train:
        sampler: torch.utils.data.Sampler = MixedSampler([len(d) for d in datasets], [s.weight for s in parsed],
                                                          num_samples, seed, rank, world_size, keys=True)
        sampler.set_epoch(epoch)
    else:
        sampler = _ShardSampler(len(mixed), rank, world_size)
    log.info("loader: %s rows from %d sources, %s", len(mixed), len(parsed), "train" if train else "eval")
    return torch.utils.data.DataLoader(
        mixed, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
        drop_last=train if drop_last is None else drop_last, pin_memory=pin_memory,
        worker_init_fn=_worker_init if num_workers > 0 else None,
        # Training loaders are iterated once per epoch: workers that persist keep their row-group
        # cache (augmentation is keyed by the sampler, so a worker's state never changes an item).
        persistent_workers=train and num_workers > 0)


class _ShardSampler(torch.utils.data.Sampler):
    """Rows ``rank, rank + world_size, ...`` in order (evaluation)."""

    def __init__(self, length: int, rank: int, world_size: int) -> None:
        self.length, self.rank, self.world_size = length, rank, world_size

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.length, self.world_size))
