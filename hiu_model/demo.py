"""``hiu-data demo``: the whole pipeline on generated hands, out of the box.

Stages, each writing under ``out``:

1. ``raw/<format>/``: synthetic hands in the six source layouts (FreiHAND, RHD, STB, CMU,
   Dexter+Object, HIU-Data) through each format's writer;
2. ``converted/<format>/``: each converted with :func:`hiu_data.convert.convert`;
3. validation of every converted folder (a failed check stops the demo);
4. ``wild/``: an unlabeled folder from the shifted "wild" distribution, with detector boxes;
5. ``run/``: the ``tiny`` model trained on the mix of the labeled train splits plus the wild
   folder (self-supervised terms) within the time budget;
6. evaluation on the held-out test splits (the metric table);
7. ``pseudo/``: pseudo-labels of the wild folder, then ``overlays/`` drawn from them;
8. a persistent FiftyOne dataset of the pseudo-labels for review.

No dataset, MANO file or network is needed: the procedural hand model stands in for MANO
when none is installed, and everything reports which hand model it used.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from hiu_data.errors import HiuError

log = logging.getLogger(__name__)

SOURCE_FORMATS: tuple[str, ...] = ("freihand", "rhd", "stb", "cmu", "dexter", "hiu")
"""The six source layouts the demo writes and converts again."""
REVIEW_NAME = "hiu-demo"


def review_name_for(out: Path) -> str:
    """The FiftyOne dataset a demo writing to ``out`` pushes to: ``hiu-demo`` for the default
    folder, ``hiu-demo-<folder name>`` for any other.

    A demo replaces its dataset when it runs again; one name for every folder would let a demo
    in a second folder replace the review of the first without a word."""
    import re

    name = Path(out).resolve().name
    return REVIEW_NAME if name == REVIEW_NAME else f"{REVIEW_NAME}-{re.sub(r'[^A-Za-z0-9_-]+', '_', name)}"


class Reporter(Protocol):
    """Progress of the demo's stages (the CLI draws rich bars; tests record calls)."""

    def start(self, stage: str, total: int | None) -> Callable[[int], None]:
        """Begin ``stage``; returns ``advance(n)``."""

    def set_total(self, stage: str, total: int) -> None:
        """``stage`` has a new total (training re-sized its schedule to the measured pace)."""

    def finish(self, stage: str, summary: str) -> None:
        """End ``stage`` with a one-line summary."""


class _SilentReporter:
    def start(self, stage: str, total: int | None) -> Callable[[int], None]:
        return lambda n=1: None

    def set_total(self, stage: str, total: int) -> None:
        log.info("%s: %d steps, re-sized to the measured pace", stage, total)

    def finish(self, stage: str, summary: str) -> None:
        log.info("%s: %s", stage, summary)


@dataclass
class DemoOptions:
    """What the demo makes; the defaults take about 5 minutes on 2 idle CPU cores (measured: 4.5)."""

    out: Path = Path("hiu-demo")
    minutes: float = 5.0
    """Training time budget in minutes (the other stages take 2-3 minutes more)."""
    hands_per_source: int = 250
    """Images generated per source layout (10 % of them held out as test, STB: sequence B1)."""
    wild_images: int = 80
    seed: int = 0
    workers: int = 2
    steps: int | None = None
    """Training steps; default: as many as the budget allows, measured on this machine."""
    batch_size: int = 32
    eval_samples: int = 200
    review: bool = True
    """Push the pseudo-labels to FiftyOne (the database ships with the fiftyone wheels)."""
    overwrite: bool = False


@dataclass
class DemoResult:
    """Where everything is, and what each stage measured."""

    out: Path
    stages: list[tuple[str, float, str]] = field(default_factory=list)
    """(stage, seconds, summary) in order."""
    metrics: dict[str, Any] = field(default_factory=dict)
    run_dir: Path | None = None
    pseudo_dir: Path | None = None
    overlays_dir: Path | None = None
    review_name: str | None = None
    hand_model: str = ""


def _timed(result: DemoResult, reporter: Reporter, stage: str, total: int | None,
           body: Callable[[Callable[[int], None]], str]) -> None:
    start = time.perf_counter()
    advance = reporter.start(stage, total)
    summary = body(advance)
    seconds = time.perf_counter() - start
    result.stages.append((stage, seconds, summary))
    reporter.finish(stage, summary)


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise HiuError(f"{out}: exists and is not empty; pass --overwrite or choose another --out")
        import shutil

        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def run_demo(options: DemoOptions, reporter: Reporter | None = None) -> DemoResult:
    """Run every stage; raises :class:`HiuError` when a stage fails (e.g. validation)."""
    from hiu_data.convert import convert
    from hiu_data.synth.generate import write_synth, write_wild
    from hiu_data.validate import validate

    reporter = reporter or _SilentReporter()
    out = Path(options.out)
    _prepare_out(out, options.overwrite)
    result = DemoResult(out=out)
    n = options.hands_per_source

    def synth_stage(advance: Callable[[int], None]) -> str:
        for offset, name in enumerate(SOURCE_FORMATS):
            write_synth(out / "raw" / name, n=n, seed=options.seed + offset, format=name, workers=options.workers,
                        progress=advance)
        return f"{n} images in each of {len(SOURCE_FORMATS)} layouts under {out / 'raw'}"

    _timed(result, reporter, "generate raw layouts", n * len(SOURCE_FORMATS), synth_stage)

    converted = out / "converted"

    def convert_stage(advance: Callable[[int], None]) -> str:
        hands = 0
        for name in SOURCE_FORMATS:
            r = convert(name, out / "raw" / name, converted, workers=options.workers, progress=advance)
            hands += sum(r.counts.values())
        return f"{hands} hands in {converted}"

    _timed(result, reporter, "convert", None, convert_stage)

    def validate_stage(advance: Callable[[int], None]) -> str:
        report = validate(converted, workers=options.workers)
        advance(len(report.datasets))
        if not report.ok:
            bad = [f"{d.dataset}: {c.name}" for d in report.datasets for c in d.checks if c.status == "fail"]
            raise HiuError(f"{converted}: validation failed ({'; '.join(bad)}); run hiu-data validate {converted}")
        worst = max((d.reprojection_px or {}).get("p99", 0.0) for d in report.datasets)
        return f"{len(report.datasets)} datasets pass; reprojection p99 <= {worst:.2f} px"

    _timed(result, reporter, "validate", len(SOURCE_FORMATS), validate_stage)

    wild = out / "wild"

    def wild_stage(advance: Callable[[int], None]) -> str:
        write_wild(wild, n=options.wild_images, seed=options.seed + 100, workers=options.workers, progress=advance)
        return f"{options.wild_images} unlabeled images in {wild}"

    _timed(result, reporter, "generate wild folder", options.wild_images, wild_stage)
    _train_and_label(options, result, reporter, converted, wild)
    return result


def _train_and_label(options: DemoOptions, result: DemoResult, reporter: Reporter, converted: Path, wild: Path) -> None:
    import torch

    from hiu_model.budget import estimate_steps
    from hiu_model.checkpoint import load_checkpoint
    from hiu_model.config import load_config
    from hiu_model.evaluate import evaluate
    from hiu_model.overlay import predict_files
    from hiu_model.pseudo_label import pseudo_label
    from hiu_model.train import train

    out = result.out
    cfg = load_config(preset="tiny")
    cfg.train.datasets = [str(converted / name) for name in SOURCE_FORMATS if name != "dexter"]
    # Dexter+Object is a test set of fingertips only; it is evaluated, not trained on.
    cfg.train.unlabeled = [str(wild)]
    cfg.train.batch_size = options.batch_size
    # On a small CPU machine one core trains and the other feeds it: more threads or loader
    # processes than cores made steps 2-20x slower (OpenMP threads waiting on busy cores).
    torch.set_num_threads(1)
    cfg.train.num_workers = 1 if options.workers > 1 else 0
    cfg.train.seed = options.seed
    cfg.train.max_minutes = options.minutes
    steps = options.steps or estimate_steps(cfg, options.minutes, options.batch_size)
    cfg.train.steps = steps
    cfg.train.eval_every = steps + 1  # evaluated once below, on the test splits
    cfg.train.checkpoint_every = max(50, steps // 4)
    cfg.train.log_every = max(1, min(20, steps // 10))
    run_dir = out / "run"

    def train_stage(advance: Callable[[int], None]) -> str:
        done, planned = [0], [steps]

        def on_step(step: int, total: int, values: dict[str, float]) -> None:
            advance(step - done[0])
            done[0] = step
            if total != planned[0]:
                planned[0] = total
                reporter.set_total("train", total)

        # A budget's steps come from a few timed steps; training re-sizes them to its own pace
        # (as ``hiu-data train --minutes`` does), so the cosine ends within the budget.
        train(cfg, run_dir, progress=on_step, steps_from_budget=options.steps is None)
        return f"{done[0]} steps of the tiny model in {run_dir}"

    _timed(result, reporter, "train", steps, train_stage)
    result.run_dir = run_dir
    model, cfg_loaded, info = load_checkpoint(run_dir)
    result.hand_model = str((info.get("hand_model") or {}).get("name", "unknown"))

    def eval_stage(advance: Callable[[int], None]) -> str:
        result.metrics = evaluate(model, cfg_loaded, [converted], split="test", max_samples=options.eval_samples,
                                  progress=advance)
        overall = result.metrics.get("overall", {})
        pck = overall.get("heatmap", {}).get("pck@0.1", float("nan"))
        iou = overall.get("mask", {}).get("mask_iou", float("nan"))
        return f"overall heat-map PCK@0.1 {pck:.3f}, mask IoU {iou:.3f}"

    _timed(result, reporter, "evaluate", None, eval_stage)

    boxes = wild / "detections.json"

    def pseudo_stage(advance: Callable[[int], None]) -> str:
        r = pseudo_label(run_dir, wild, out / "pseudo", boxes=boxes if boxes.exists() else None,
                         batch_size=options.batch_size, progress=advance)
        result.pseudo_dir = r.path
        return f"{r.hands} hands on {r.images} images in {r.path}"

    _timed(result, reporter, "pseudo-label", options.wild_images, pseudo_stage)

    overlays = out / "overlays"

    def overlay_stage(advance: Callable[[int], None]) -> str:
        predict_files(run_dir, [wild], overlays, boxes=_boxes_by_file(boxes, out), progress=advance)
        result.overlays_dir = overlays
        return f"overlay PNGs in {overlays}"

    _timed(result, reporter, "overlays", options.wild_images, overlay_stage)

    if options.review:
        def review_stage(advance: Callable[[int], None]) -> str:
            from hiu_data.review.push import push

            r = push(_review_source(result), review_name_for(out), overwrite=True, progress=advance)
            result.review_name = r.name
            return f"{r.hands} hands in FiftyOne dataset '{r.name}' ({r.low_confidence} images flagged low_confidence)"

        _timed(result, reporter, "push to FiftyOne", None, review_stage)


def _review_source(result: DemoResult) -> Path:
    """The pseudo-label dataset the review stage pushes.

    Raises:
        HiuError: the pseudo-label stage left none (it merges only when every shard is done, and
            not while another process holds the merge lock).
    """
    if result.pseudo_dir is None:
        raise HiuError(f"{result.out / 'pseudo'}: the pseudo-label stage wrote no dataset to push for review")
    return result.pseudo_dir


def _boxes_by_file(coco_path: Path, out: Path) -> Path | None:
    """The wild folder's COCO detections as the ``{file name: [[x, y, w, h], ...]}`` JSON that
    ``predict`` reads, or None without detections."""
    import json

    if not coco_path.exists():
        return None
    coco = json.loads(coco_path.read_text())
    names = {img["id"]: img["file_name"] for img in coco["images"]}
    by_file: dict[str, list[list[float]]] = {}
    for ann in coco["annotations"]:
        by_file.setdefault(Path(names[ann["image_id"]]).name, []).append(ann["bbox"])
    path = out / "run" / "wild_boxes.json"
    path.write_text(json.dumps(by_file))
    return path
