"""Does adding unlabeled images with only the self-supervised losses help? (issue 10)

The paper's claim, measured on synthetic hands: train ``tiny`` on 10% of the training images
with labels, once alone (baseline) and once with the other 90% as unlabeled images (their
batches see only the self-supervised pair: rendered silhouette vs. predicted mask, projected
joints vs. the heat-maps' soft-arg-max), then compare on a held-out set: 2D PCK of the
heat-map and mesh branches, mask and silhouette IoU.

Fair comparison (a choice, printed with the results): the same steps, seed and schedule; the
run with unlabeled images draws twice the batch with equal weights for the two sources, so
both runs see the same number of labeled crops per step in expectation.

    hiu-data synth DATA/train --n 4400 --seed 0 --test-fraction 0      # about 5,000 hands
    hiu-data synth DATA/heldout --n 500 --seed 1 --test-fraction 1
    python bench/self_supervised.py DATA/train/synth DATA/heldout/synth RUNS --steps 300
    python bench/self_supervised.py DATA/train/synth DATA/heldout/synth RUNS --steps 300 --only mutual
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from hiu_data.io.parquet import HandDataset, write_dataset
from hiu_data.schema import HandSample
from hiu_data.skeleton import NUM_JOINTS


def split_labeled(train_dir: Path, out: Path, every: int) -> tuple[Path, Path, int, int]:
    """Images ``k % every == 0`` keep their labels (split train); the others lose every label
    and go to split ``unlabeled``. Hands of one image stay together."""
    import numpy as np

    rows = HandDataset(train_dir)
    order: dict[str, int] = {}
    labeled: list[HandSample] = []
    unlabeled: list[HandSample] = []
    for row in rows:
        k = order.setdefault(row.image_id, len(order))
        if k % every == 0:
            row.split = "train"
            labeled.append(row)
        else:
            unlabeled.append(HandSample(
                sample_id=row.sample_id, dataset="synth_unlabeled", split="unlabeled", image_id=row.image_id,
                width=row.width, height=row.height, hand_side=row.hand_side, bbox=row.bbox,
                visibility=np.zeros(NUM_JOINTS, np.uint8), image_bytes=row.image_bytes))
    labeled_dir = write_dataset(labeled, out / "labeled", "synth", overwrite=True)
    unlabeled_dir = write_dataset(unlabeled, out / "unlabeled", "synth_unlabeled", overwrite=True)
    return labeled_dir, unlabeled_dir, len(labeled), len(unlabeled)


def run(name: str, labeled: Path, unlabeled: Path | None, heldout: Path, runs: Path, args: argparse.Namespace,
        overrides: tuple[str, ...] = ()) -> dict[str, Any]:
    """Train one arm (``unlabeled`` None: labeled only), evaluate it on ``heldout``; its table row."""
    from hiu_model.config import load_config
    from hiu_model.evaluate import evaluate, flatten
    from hiu_model.train import train
    from hiu_model.checkpoint import load_checkpoint

    batch = args.batch_size * (2 if unlabeled is not None else 1)
    cfg = load_config(None, "tiny", [f"train.steps={args.steps}", f"train.batch_size={batch}",
                                     f"train.warmup_steps={max(1, args.steps // 20)}", f"train.lr={args.lr}",
                                     f"train.num_workers={args.workers}", "train.device=cpu", "train.seed=0",
                                     f"train.checkpoint_every={args.steps}", f"train.eval_every={args.steps * 10}",
                                     "train.log_every=20", *overrides])
    cfg.train.datasets = [{"path": str(labeled), "weight": 1.0}]
    cfg.train.unlabeled = [] if unlabeled is None else [{"path": str(unlabeled), "weight": 1.0}]
    start = time.perf_counter()
    run_dir = train(cfg, runs / name, overwrite=True)
    train_s = time.perf_counter() - start
    model, cfg, _ = load_checkpoint(run_dir)
    report = evaluate(model, cfg, [heldout], max_samples=args.eval_samples)
    metrics = flatten(report["overall"])
    return {"name": name, "batch": batch, "train_s": round(train_s, 1), "run": str(run_dir),
            **{k: metrics.get(k) for k in KEYS}}


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


KEYS = ("heatmap/pck@0.1", "heatmap/auc_0_30px", "heatmap/epe_px", "mesh/pck@0.1", "mask/mask_iou", "silhouette/mask_iou")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("train_dir", type=Path)
    parser.add_argument("heldout_dir", type=Path)
    parser.add_argument("runs", type=Path)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=16, help="labeled crops per step (both runs)")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--every", type=int, default=10, help="1 image in EVERY keeps its labels (10%%)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--eval-samples", type=int, default=0, help="held-out rows (0 = all)")
    parser.add_argument("--only", choices=("labeled_only", "with_unlabeled", "mutual"), action="append",
                        help="run only these (repeatable); results of earlier runs in RUNS are reused")
    args = parser.parse_args()

    labeled, unlabeled, n_lab, n_unlab = split_labeled(args.train_dir, args.runs / "data", args.every)
    print(f"labeled hands {n_lab}, unlabeled hands {n_unlab}; held-out {len(HandDataset(args.heldout_dir))} hands")
    plans = {
        "labeled_only": (None, ()),
        "with_unlabeled": (unlabeled, ()),
        # The configured self-supervised pair teaches only the mesh branch (the heat-maps and the
        # mask are its detached targets); "mutual" lets the gradients reach the dense heads too.
        "mutual": (unlabeled, ("loss.detach_self_targets=false",)),
    }
    saved = args.runs / "self_supervised.json"
    previous = {r["name"]: r for r in json.loads(saved.read_text())} if saved.exists() else {}
    chosen = args.only or ["labeled_only", "with_unlabeled"]
    for name in chosen:
        source, overrides = plans[name]
        previous[name] = run(name, labeled, source, args.heldout_dir, args.runs, args, overrides)
    results = [previous[name] for name in plans if name in previous]
    header = ["run", "batch", "train s", *KEYS]
    print(" | ".join(header))
    for r in results:
        print(" | ".join([r["name"], str(r["batch"]), str(r["train_s"]), *[_fmt(r[k]) for k in KEYS]]))
    base = previous.get("labeled_only")
    for other in results:
        if base is not None and other is not base:
            print(f"ratio {other['name']} / labeled_only: "
                  + ", ".join(f"{k} {other[k] / base[k]:.3f}" for k in KEYS if base[k] and other[k] is not None))
    saved.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
