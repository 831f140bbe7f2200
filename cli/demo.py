"""``hiu-data demo``: the whole pipeline on generated hands in one command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Callable

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from hiu_cli._common import Overwrite, Seed, Workers, console


class _RichReporter:
    """One progress bar per stage; a line with the stage's summary when it ends."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, int] = {}

    def start(self, stage: str, total: int | None) -> Callable[[int], None]:
        task = self.tasks[stage] = self.progress.add_task(stage, total=total)
        return lambda n=1: self.progress.advance(task, n)

    def set_total(self, stage: str, total: int) -> None:
        self.progress.update(self.tasks[stage], total=total)

    def finish(self, stage: str, summary: str) -> None:
        task = self.tasks[stage]
        self.progress.update(task, total=self.progress.tasks[task].completed or 1, completed=self.progress.tasks[task].completed or 1)
        # The summary holds paths: escaped so "[...]" in a folder name stays, and not wrapped
        # so a path in a log file can be copied whole.
        self.progress.console.print(f"[green]done[/green] {escape(stage)}: {escape(summary)}", highlight=False,
                                    soft_wrap=True)


def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for everything the demo makes.")] = Path("hiu-demo"),
    minutes: Annotated[float, typer.Option("--minutes", "-m", min=0.05, help="Training time budget in minutes.")] = 5.0,
    hands: Annotated[int, typer.Option("--hands", min=10, help="Images generated per source layout.")] = 250,
    wild: Annotated[int, typer.Option("--wild", min=2, help="Unlabeled 'wild' images to pseudo-label.")] = 80,
    steps: Annotated[int | None, typer.Option("--steps", min=1, help="Training steps (default: what the budget allows).")] = None,
    review: Annotated[bool, typer.Option("--review/--no-review", help="Push the pseudo-labels to FiftyOne.")] = True,
    workers: Workers = 2,
    seed: Seed = 0,
    overwrite: Overwrite = False,
) -> None:
    """Run everything on generated hands: six raw layouts, convert, validate, train the tiny
    model (with a wild folder for the self-supervised terms), evaluate, pseudo-label, review.

    Example: hiu-data demo --out hiu-demo --minutes 5
    """
    from hiu_cli.evaluate import print_tables
    from hiu_model.demo import DemoOptions, run_demo

    options = DemoOptions(out=out, minutes=minutes, hands_per_source=hands, wild_images=wild, seed=seed,
                          workers=workers, steps=steps, review=review, overwrite=overwrite)
    columns = [SpinnerColumn(), TextColumn("[bold]{task.description:<22}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn()]
    with Progress(*columns, console=console) as progress:
        result = run_demo(options, _RichReporter(progress))
    if result.metrics:
        print_tables(result.metrics)
    summary = Table(title=f"hiu demo ({result.hand_model} hand model)", title_justify="left")
    summary.add_column("stage")
    summary.add_column("time", justify="right")
    summary.add_column("result", overflow="fold")
    for stage, seconds, text in result.stages:
        summary.add_row(stage, f"{seconds:.0f} s", text)
    summary.add_row("total", f"{sum(s for _, s, _ in result.stages):.0f} s", str(result.out))
    console.print(summary)
    console.print(f"overlays: {result.overlays_dir}", markup=False)
    if result.review_name:
        console.print(f"review the pseudo-labels: hiu-data review launch {result.review_name}", markup=False)
    console.print(f"then: hiu-data review pull {result.review_name or 'NAME'} {result.out / 'reviewed'}", markup=False)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
