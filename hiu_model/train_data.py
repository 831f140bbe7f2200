"""The training batches of :func:`hiu_model.train.train`: sources, unlabeled folders, the stream.

``cfg.train.datasets`` (labeled) and ``cfg.train.unlabeled`` are drawn with their weights from
one :class:`hiu_model.sampling.MixedSampler` sequence; an unlabeled plain image folder is
converted once into ``RUN_DIR/data/``. :class:`_Batches` chains the epochs and positions the
stream at any step (an exact resume), and turns the augmentation off for the last
``train.final_plain_fraction`` of the steps.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any, Iterator

import torch

from hiu_data.errors import HiuError
from hiu_model import distributed
from hiu_model.sampling import DataSource, as_source, build_loader, no_rows_error
from hiu_model.schedule import first_plain_step

log = logging.getLogger(__name__)


def parse_sources(entries: list[Any], default_split: str | None) -> list[DataSource]:
    """Config data sources (paths or ``{path, weight, split}`` mappings) as :class:`DataSource`.

    Raises:
        HiuError: an entry that is neither (see :func:`hiu_model.sampling.as_source`).
    """
    return [as_source(entry, default_split) for entry in entries]


def _unlabeled_folder(source: DataSource) -> Path:
    """The folder of an unlabeled source; raises HiuError when it is not there."""
    path = Path(source.path)
    if not path.exists():
        raise HiuError(f"{path}: unlabeled folder not found")
    return path


def _prepare_unlabeled(sources: list[DataSource], run_dir: Path, info: distributed.DistInfo) -> list[DataSource]:
    """Convert plain image folders among the unlabeled sources (rank 0 first) and return converted paths."""
    from hiu_data.io.parquet import MANIFEST

    out = []
    for i, src in enumerate(sources):
        path = _unlabeled_folder(src)
        if (path / MANIFEST).exists() or any((p / MANIFEST).exists() for p in path.iterdir() if p.is_dir()):
            out.append(src)
            continue
        target = run_dir / "data" / f"unlabeled-{i}"
        failure: BaseException | None = None
        if info.is_main and not target.exists():
            from hiu_data.convert import convert

            # A detections file beside the images (as synth-wild writes) gives one row per hand box.
            boxes = path / "detections.json"
            log.info("converting image folder %s into %s", path, target)
            try:
                convert("folder", path, target, images="reference", **({"boxes": boxes} if boxes.exists() else {}))
            except (HiuError, OSError) as e:
                failure = e
        # The other ranks wait here for the converted folder, and stop with rank 0 if it failed.
        distributed.share_failure(info, failure)
        out.append(dataclasses.replace(src, path=str(target)))
    return out


class _Batches:
    """Endless batches from a training loader, positioned at any step (epochs chained); batches
    from number ``first_plain`` on (0-based) are not augmented. A stream reads ahead: after
    ``first_plain`` changes, start a new one with :meth:`from_step`."""

    def __init__(self, loader: torch.utils.data.DataLoader, steps_per_epoch: int, batch_size: int,
                 first_plain: int | None = None) -> None:
        self.loader, self.steps_per_epoch, self.batch_size = loader, steps_per_epoch, batch_size
        self.first_plain = first_plain

    def from_step(self, step: int) -> Iterator[dict[str, torch.Tensor]]:
        epoch, offset = divmod(step, self.steps_per_epoch)
        while True:
            plain_from = (None if self.first_plain is None
                          else max(self.first_plain - epoch * self.steps_per_epoch, 0) * self.batch_size)
            self.loader.sampler.set_epoch(epoch, offset * self.batch_size, plain_from)  # type: ignore[attr-defined]
            yield from self.loader
            epoch, offset = epoch + 1, 0

    def close(self) -> None:
        """Stop the loader's worker processes now.

        They ignore SIGTERM (:func:`hiu_model.interrupt.ignore_in_worker`), so a process leaving
        with an exception whose traceback still holds the loader would otherwise wait for them
        at exit for ever (Python's exit handler terminates its children with SIGTERM, then joins
        them)."""
        iterator = getattr(self.loader, "_iterator", None)  # the persistent workers' iterator
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
        self.loader._iterator = None  # type: ignore[attr-defined]


def _sources(cfg: Any) -> tuple[list[DataSource], list[DataSource]]:
    """The labeled (default split ``train``) and unlabeled sources of ``cfg.train``."""
    labeled = parse_sources(cfg.train.datasets, "train")
    unlabeled = parse_sources(cfg.train.unlabeled, None)
    if not labeled and not unlabeled:
        raise HiuError("no training data: set train.datasets (or pass --data DIR)")
    return labeled, unlabeled


def check_training_data(cfg: Any) -> None:
    """Raise the error :func:`build_training_data` would raise for a missing or empty labeled
    source or a missing unlabeled folder, without converting anything (a fraction of a second:
    manifests and Parquet footers), so that a slow step before training can come after it."""
    labeled, unlabeled = _sources(cfg)
    if labeled:
        build_loader(labeled, cfg.data, batch_size=1, train=True, num_samples=1, seed=cfg.train.seed)
    for src in unlabeled:
        _unlabeled_folder(src)


def check_val_sources(sources: list[DataSource]) -> None:
    """Raise the error the first validation would meet for a missing folder, or a split named
    by a source that one of its dataset folders lacks (manifests only); a source without a split
    takes ``val``, else ``test``, else every row, and cannot lack it."""
    from hiu_data.io.manifest import find_dataset_dirs, load_manifest

    for source in sources:
        for folder in find_dataset_dirs(source.path):
            if source.split is None:
                continue
            wanted = [source.split] if isinstance(source.split, str) else list(source.split)
            counts = load_manifest(folder).get("counts", {})
            if not any(int(counts.get(split, 0)) > 0 for split in wanted):
                raise no_rows_error(folder, source.split)


CPU_CORES_WITHOUT_WORKERS = 4
"""Up to this many cores per process, CPU training loads in the main process (see
:func:`loader_workers`)."""


def loader_workers(requested: int | None, device: torch.device, world_size: int = 1) -> int:
    """Loader processes of a training run: ``requested`` when set, else none when training on
    a CPU with at most :data:`CPU_CORES_WITHOUT_WORKERS` cores per process, else 2.

    On a small CPU the workers take the very cores torch computes on, so hiding the loading in
    them costs as much as it hides and adds switching: a ``tiny`` step at batch 32 on 2 cores
    took 411 ms with 2 workers, 401 with one and 383 loading in the main process
    (bench/RESULTS.md, issue 9). An accelerator leaves the CPU to the loader.
    """
    if requested is not None:
        return requested
    if device.type != "cpu":
        return 2
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 0 if cores // max(world_size, 1) <= CPU_CORES_WITHOUT_WORKERS else 2


def build_training_data(cfg: Any, run_dir: Path, info: distributed.DistInfo) -> tuple[_Batches, int]:
    """The training batches and the number of labeled sources (sources after them are unlabeled)."""
    labeled, unlabeled = _sources(cfg)
    unlabeled = _prepare_unlabeled(unlabeled, run_dir, info)
    sources = labeled + unlabeled
    per_step = cfg.train.batch_size * info.world_size
    probe = build_loader(sources, cfg.data, batch_size=cfg.train.batch_size, train=True, num_samples=per_step,
                         seed=cfg.train.seed)
    rows = len(probe.dataset)
    steps_per_epoch = max(1, rows // per_step)
    loader = build_loader(sources, cfg.data, batch_size=cfg.train.batch_size, train=True,
                          num_samples=steps_per_epoch * per_step, seed=cfg.train.seed,
                          num_workers=loader_workers(cfg.train.num_workers, info.device, info.world_size),
                          rank=info.rank, world_size=info.world_size,
                          pin_memory=info.device.type == "cuda")
    log.info("training data: %d rows, %d sources (%d unlabeled), %d steps per epoch", rows, len(sources),
             len(unlabeled), steps_per_epoch)
    first_plain = first_plain_step(cfg.train.steps, cfg.train.final_plain_fraction)
    return _Batches(loader, steps_per_epoch, cfg.train.batch_size, first_plain), len(labeled)
