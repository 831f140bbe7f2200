"""``hiu-data eval``: the metrics of a checkpoint on converted datasets, per dataset and overall."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from hiu_cli._common import BatchSize, Checkpoint, Device, JsonOut, TtaRotation, progress_bar

# Results go to stdout (progress and messages to stderr), so they can be redirected.
console = Console(highlight=False)
_FILE_WIDTH = 200

# Tables: (title, branch, columns); the JSON output has every metric.
_TABLES = (
    ("2D, heat-map branch (image px)", "heatmap", ("pck@0.05", "pck@0.1", "pck@0.2", "auc_0_30px", "epe_px", "pckh@0.7")),
    ("2D, mesh branch projected (image px)", "mesh", ("pck@0.05", "pck@0.1", "pck@0.2", "auc_0_30px", "epe_px", "pckh@0.7")),
    ("3D, mesh branch (wrist-relative mm)", "mesh", ("pck3d@20mm", "auc_20_50mm", "mpjpe_mm", "pa_mpjpe_mm")),
    ("mesh vertices (FreiHAND alignment)", "mesh", ("pa_mpvpe_mm", "f@5mm", "f@15mm")),
    ("mask head", "mask", ("mask_iou", "mask_miou")),
    ("rendered mesh silhouette", "silhouette", ("mask_iou", "mask_miou")),
)


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float) and math.isinf(value):
        return "inf"  # a labelled joint predicted as NaN: an error, not a missing number
    return f"{value:.2f}" if abs(value) >= 10 else f"{value:.3f}"


def print_tables(report: dict[str, Any]) -> None:
    """One rich table per group of metrics: a row per dataset plus ``overall``."""
    rows = [(name, t["split"], t["rows"], t) for name, t in report["datasets"].items()]
    if len(rows) > 1:
        rows.append(("overall", "", report["overall"].get("rows", 0), report["overall"]))
    for title, branch, columns in _TABLES:
        present = [c for c in columns if any(c in t.get(branch, {}) for *_, t in rows)]
        if not present:
            continue
        table = Table(title=title, title_justify="left")
        for header in ("dataset", "split", "rows"):
            table.add_column(header, justify="right" if header == "rows" else "left")
        for column in present:
            table.add_column(column, justify="right")
        for name, split, count, t in rows:
            table.add_row(name, split, str(count), *(_cell(t.get(branch, {}).get(c)) for c in present))
        # A report redirected to a file is not cut to 80 columns, which shortened the names of
        # datasets and metrics to "interhan…" and "pck@0.…"; a terminal keeps its own width.
        (console if console.is_terminal else Console(highlight=False, width=_FILE_WIDTH)).print(table)
    for branch, text in report["protocol"].items():
        console.print(f"[dim]{branch}: {text}[/dim]", highlight=False)


def evaluate(
    checkpoint: Checkpoint,
    datasets: Annotated[list[Path], typer.Argument(help="Converted dataset folders (or folders of them).", show_default=False)],
    json_out: JsonOut = False,
    split: Annotated[str | None, typer.Option("--split", "-s", help="Split to evaluate (default: test, else val, else all rows).")] = None,
    max_samples: Annotated[int, typer.Option("--max-samples", min=0, help="Rows per dataset, evenly spaced (0 = all).")] = 0,
    batch_size: BatchSize = 16,
    which: Annotated[str, typer.Option("--which", help="In a run folder: auto (best if recorded, else latest), best, latest.")] = "auto",
    device: Device = "auto",
    tta_rotation: TtaRotation = 0.0,
) -> None:
    """Evaluate a checkpoint: 2D PCK/AUC/EPE, 3D PCK/AUC/MPJPE/PA-MPJPE, PA-MPVPE, F-scores, mask IoU.

    Example: hiu-data eval runs/tiny synth-val/synth --json
    """
    from hiu_model.checkpoint import load_checkpoint
    from hiu_model.evaluate import evaluate as evaluate_model
    from hiu_model.evaluate import json_safe
    from hiu_model.tta import with_rotation_tta

    model, cfg, info = load_checkpoint(checkpoint, which=which, device=device)
    model = with_rotation_tta(model, tta_rotation)
    with progress_bar("evaluate", unit="hands") as advance:
        # device=None: where load_checkpoint put the model (it resolves "auto").
        report = evaluate_model(model, cfg, datasets, split=split, max_samples=max_samples, batch_size=batch_size,
                                device=None, progress=advance)
    report["checkpoint"] = {"path": info["path"], "step": info["step"], "sha256": info["sha256"],
                            "hand_model": info["hand_model"]}
    report["tta_rotation_deg"] = tta_rotation
    if json_out:
        typer.echo(json.dumps(json_safe(report)))
        return
    tta = f", test-time rotations 0 and ±{tta_rotation:g} deg averaged" if tta_rotation else ""
    hand_model = (info.get("hand_model") or {}).get("name", "unknown")
    console.print(f"checkpoint {info['path']} (step {info['step']}, {hand_model} hand model){tta}", markup=False)
    print_tables(report)


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate)
