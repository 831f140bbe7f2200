"""``hiu-data convert``: raw dataset files -> a converted dataset folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.table import Table

from hiu_cli._common import OnError, Overwrite, Split, Workers, console, counted, progress_bar
from hiu_data import formats
from hiu_data.convert import convert as convert_dataset
from hiu_data.errors import HiuError


def convert(
    name: Annotated[str, typer.Argument(help="Dataset format (any case): " + ", ".join(formats.REGISTRY), show_default=False)],
    paths: Annotated[list[Path], typer.Argument(help="RAW_ROOT OUT (coco: ANNOTATIONS.json IMAGE_ROOT OUT).", show_default=False)],
    split: Split = None,
    images: Annotated[Literal["embed", "reference"], typer.Option("--images", help="embed: store the image bytes; reference: store paths relative to RAW_ROOT.")] = "embed",
    workers: Workers = 1,
    on_error: OnError = "fail",
    overwrite: Overwrite = False,
    boxes: Annotated[Path | None, typer.Option("--boxes", help="folder only: COCO-format detections JSON, one hand per box (default: the whole image is one hand).")] = None,
) -> None:
    """Convert a dataset from the files as its authors distribute them into OUT/NAME/.

    Example: hiu-data convert freihand ~/data/FreiHAND_pub_v2 ~/hiu --split train
    """
    name = formats.canonical(name)
    if name not in formats.REGISTRY and Path(name).exists():
        # The raw folder typed first: say so instead of only listing the format names.
        raise HiuError(f"{name}: is a path, not a dataset format; the format comes first: hiu-data convert NAME "
                       f"RAW_ROOT OUT, with NAME one of {', '.join(formats.available())}")
    module = formats.get(name)
    inputs = getattr(module, "INPUTS", ("raw_root",))
    if len(paths) != len(inputs) + 1:
        expected = " ".join(i.upper() for i in inputs) + " OUT"
        raise HiuError(f"convert {name} expects {expected}; got {len(paths)} path(s)")
    extra = {key: value for key, value in zip(inputs[1:], paths[1:-1])}
    if boxes is not None:
        extra["boxes"] = boxes
    out = paths[-1]
    with progress_bar(f"convert {name}", unit="hands") as advance:
        result = convert_dataset(name, paths[0], out, splits=split, images=images, workers=workers,
                                 on_error=on_error, overwrite=overwrite, progress=advance, **extra)
    table = Table(title=f"{name} -> {result.path}")
    table.add_column("split")
    table.add_column("hands", justify="right")
    for s, n in result.counts.items():
        table.add_row(s, str(n))
    console.print(table)
    if result.skipped or on_error == "skip":
        # Every reader skips a whole image (or the annotation entry of one image) at a time, with
        # however many hands it held, which a skipped image does not say: an RHD image holds two.
        their = "its" if result.skipped == 1 else "their"
        console.print(f"skipped {counted(result.skipped, 'image')} ({their} hands are not counted above)")
    for reason in result.skip_reasons:
        console.print(f"  skipped {reason}", markup=False)


def register(app: typer.Typer) -> None:
    app.command("convert")(convert)
