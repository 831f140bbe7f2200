"""``hiu-data review push|launch|pull``: the FiftyOne review loop of pseudo-labels."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from hiu_cli._common import Overwrite, console, progress_bar

review_app = typer.Typer(help="Review pseudo-labels in FiftyOne: push, launch the App, pull the decisions.",
                         no_args_is_help=True)


@review_app.command("push")
def push(
    pseudo_dir: Annotated[Path, typer.Argument(help="A converted dataset folder (e.g. pseudo-label output).", show_default=False)],
    name: Annotated[str | None, typer.Option("--name", help="FiftyOne dataset name (default: hiu-FOLDER_NAME).")] = None,
    threshold: Annotated[float, typer.Option("--threshold", min=0.0, max=1.0, help="Tag images with a hand below this confidence 'low_confidence'.")] = 0.5,
    cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help="Where images are materialised (default: $HIU_HOME/review/NAME, HIU_HOME defaulting to ~/.cache/hiu).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing FiftyOne dataset of that name.")] = False,
) -> None:
    """Create a persistent FiftyOne dataset of the hands in PSEUDO_DIR, least confident first.

    Example: hiu-data review push out/pseudo --name wild-round1
    """
    from hiu_data.review.push import push as push_dataset

    with progress_bar("push", unit="hands") as advance:
        result = push_dataset(pseudo_dir, name, threshold=threshold, cache_dir=cache_dir, overwrite=overwrite, progress=advance)
    console.print(f"pushed {result.hands} hands on {result.images} images to FiftyOne dataset '{result.name}' "
                  f"({result.low_confidence} images below {threshold}); images in {result.cache_dir}", markup=False)
    if result.reviewed:
        console.print(f"{result.images - result.reviewed} images to review come first; the {result.reviewed} images "
                      "decided in an earlier round come last (field 'reviewed') and keep their status unless "
                      "tagged again", markup=False)
    console.print(f"next: hiu-data review launch {result.name}", markup=False)


@review_app.command("launch")
def launch(
    name: Annotated[str, typer.Argument(help="The FiftyOne dataset made by review push.", show_default=False)],
    port: Annotated[int, typer.Option("--port", help="Port of the App.")] = 5151,
    address: Annotated[str, typer.Option("--address", help="Address the App listens on.")] = "127.0.0.1",
) -> None:
    """Serve the FiftyOne App on a pushed dataset until Ctrl-C, and print what to do in it.

    Example: hiu-data review launch wild-round1 --port 5151
    """
    import logging

    from hiu_data.review._fiftyone import import_fiftyone
    from hiu_data.review.app import launch as launch_app, review_instructions

    # FiftyOne's banner and its remote-session advice (for another port) would bury ours.
    import_fiftyone().set_logging_level(logging.WARNING)
    session, url = launch_app(name, port=port, address=address)
    typer.echo(review_instructions(name, url))
    try:
        session.wait(-1)
    except KeyboardInterrupt:
        pass


@review_app.command("pull")
def pull(
    name: Annotated[str, typer.Argument(help="The FiftyOne dataset made by review push.", show_default=False)],
    out: Annotated[Path, typer.Argument(help="Output folder; the reviewed dataset goes to OUT/<dataset>/.", show_default=False)],
    source: Annotated[Path | None, typer.Option("--source", help="Where the pushed dataset lies now, if it moved.")] = None,
    overwrite: Overwrite = False,
) -> None:
    """Write every pushed hand with the reviewer's decisions and edits as a converted dataset.

    Example: hiu-data review pull wild-round1 out/reviewed
    """
    from hiu_data.review.pull import pull as pull_dataset

    with progress_bar("pull", unit="hands") as advance:
        result = pull_dataset(name, out, source=source, overwrite=overwrite, progress=advance)
    table = Table(title=f"{name} -> {result.path}")
    table.add_column("review status")
    table.add_column("hands", justify="right")
    for status, n in result.counts.items():
        table.add_row(status, str(n))
    console.print(table)
    console.print(f"{result.changed} rows changed by the review, {result.added} hands added", markup=False)
    if result.ignored:
        console.print(f"ignored {len(result.ignored)} label(s) without hiu_sample_id", markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(review_app, name="review")
