"""Shared option aliases and rich progress helpers of the command line."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Annotated, Callable, Iterator, Literal

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

# soft_wrap: a line written to a log file (stderr not a terminal) is not cut at 80 columns.
console = Console(stderr=True, highlight=False, soft_wrap=True)

Checkpoint = Annotated[Path, typer.Argument(
    help="A run folder (its best checkpoint if one is recorded, else the latest) or a checkpoint folder.",
    show_default=False)]
Seed = Annotated[int, typer.Option("--seed", min=0, help="Random seed (>= 0); the same seed gives the same files.")]
DatasetDir = Annotated[Path, typer.Argument(help="A converted dataset folder (or a folder of them).", show_default=False)]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output folder.")]
Workers = Annotated[int, typer.Option("--workers", "-j", min=1, help="Worker processes.")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]
Split = Annotated[list[str] | None, typer.Option("--split", "-s", help="Only these splits (repeatable).")]
TtaRotation = Annotated[float, typer.Option(
    "--tta-rotation", min=0.0, max=90.0,
    help="Test-time augmentation: also run the crops turned by -DEG and +DEG and average the heat-maps and masks (0 = off; 30 = the training rotation range).")]
BatchSize = Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Hand crops per forward pass.")]
Device = Annotated[str, typer.Option("--device", help="Torch device: auto (CUDA when available, else the CPU), cpu, cuda, cuda:N.")]
# Options with a fixed set of values are typed Literal[...]: a value outside it is a usage error
# (the usage and exit 2, before any work), as a value out of a range is, and the help lists them;
# the command still receives the string.
OnError = Annotated[Literal["fail", "skip"], typer.Option(
    "--on-error", help="fail: stop at the first bad sample; skip: skip and count it.")]


def counted(n: int, noun: str) -> str:
    """``n`` and ``noun`` in the singular or the plural (a regular one, with s): "1 image", "2 images"."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def other_process() -> bool:
    """True in a process of a ``torchrun`` group other than rank 0 (``RANK`` is set by torchrun)."""
    return os.environ.get("RANK", "0") not in ("", "0")


LOG_EVERY_S = 30.0
"""Seconds between progress lines when stderr is a log file rather than a terminal."""


@contextlib.contextmanager
def progress_bar(description: str, total: int | None = None, unit: str = "samples") -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr; yields ``advance(n)``.

    When stderr is not a terminal (a job writing to a log file) a bar would be drawn once at the
    end: one plain line every :data:`LOG_EVERY_S` seconds says how far the work is instead."""
    if not console.is_terminal:
        yield _progress_lines(description, total, unit)
        return
    columns = [SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn(unit), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)


def _progress_lines(description: str, total: int | None, unit: str) -> Callable[[int], None]:
    start = last = time.monotonic()
    done = 0

    def advance(n: int = 1) -> None:
        nonlocal done, last
        done += n
        now = time.monotonic()
        if now - last >= LOG_EVERY_S:
            last = now
            count = f"{done}/{total}" if total else str(done)
            console.print(f"{description}: {count} {unit} in {now - start:.0f} s", markup=False)

    return advance
