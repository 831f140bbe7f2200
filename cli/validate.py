"""``hiu-data validate``: check a converted dataset (schema, manifest, values, images, masks, 3D)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hiu_cli._common import DatasetDir, JsonOut, Workers, progress_bar
from hiu_data.validate import rows_to_check, validate as validate_dataset

# The report goes to stdout (progress and errors to stderr), as for eval and info.
console = Console(highlight=False, soft_wrap=True)

_STATUS_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red", "skipped": "dim"}


def validate(
    dataset_dir: DatasetDir,
    json_out: JsonOut = False,
    reprojection_px: Annotated[float, typer.Option("--reprojection-px", help="Flag rows whose 3D projects farther than this from the 2D (pixels).")] = 2.0,
    max_outlier_fraction: Annotated[float, typer.Option("--max-outliers", help="Statistical checks fail above this fraction of flagged rows.")] = 0.01,
    skip_images: Annotated[bool, typer.Option("--skip-images", help="Do not decode the images (the slowest check).")] = False,
    workers: Workers = 1,
) -> None:
    """Check a converted dataset; exit 1 when a check fails.

    Checks the manifest (sha256, counts), duplicate ids, visibility vs NaN, visible keypoints and
    boxes inside the image, image decoding and size, mask size, 3D + K reprojection onto the 2D,
    bone lengths and the joint order.

    Example: hiu-data validate ~/hiu/freihand --workers 2
    """
    with progress_bar("validate", total=rows_to_check(dataset_dir), unit="rows") as advance:
        report = validate_dataset(dataset_dir, reprojection_px=reprojection_px, max_outlier_fraction=max_outlier_fraction,
                                  check_images=not skip_images, workers=workers, progress=advance)
    if json_out:
        typer.echo(report.to_json())
    else:
        for d in report.datasets:
            verdict = "[green]passed[/green]" if d.ok else "[bold red]FAILED[/bold red]"
            table = Table(title=f"{escape(str(d.dataset))}  {escape(str(d.path))}  ({d.rows} rows)  {verdict}",
                          title_justify="left")
            for column, justify in (("check", "left"), ("status", "left"), ("flagged", "right"), ("checked", "right"),
                                    ("first flagged", "left")):
                table.add_column(column, justify=justify)  # type: ignore[arg-type]
            for c in d.checks:
                style = _STATUS_STYLE.get(c.status, "")
                table.add_row(c.name, f"[{style}]{c.status}[/{style}]", str(c.flagged), str(c.checked),
                              escape(c.examples[0] if c.examples else c.note))
            console.print(table)
            if d.reprojection_px:
                r = d.reprojection_px
                console.print(f"reprojection error over {r['joints']} labelled joints: p50 {r['p50']:.3f} px, "
                              f"p90 {r['p90']:.3f} px, p99 {r['p99']:.3f} px, max {r['max']:.3f} px")
    if not report.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
