"""``hiu-data synth`` and ``hiu-data synth-wild``: procedural hand scenes with exact labels."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.table import Table

from hiu_cli._common import Overwrite, Seed, Workers, console, progress_bar
from hiu_data.synth.profiles import FORMATS

# A value outside FORMATS is a usage error, as for every option with a fixed set of values
# (hiu_cli._common); format names in any case, as for convert.
Format = Literal[FORMATS]  # type: ignore[valid-type]

Size = Annotated[int, typer.Option("--size", min=32, max=2048, help="Image side in pixels where the format fixes none.")]


def synth(
    out: Annotated[Path, typer.Argument(help="Output folder (parquet: OUT/synth/; a format: its raw layout in OUT).",
                                        show_default=False)],
    n: Annotated[int, typer.Option("--n", "-n", min=1, help="Number of images (a few have two hands).")] = 2000,
    seed: Seed = 0,
    format: Annotated[Format, typer.Option("--format", "-f", case_sensitive=False,
                                           help="parquet, or a dataset's raw layout (any case).")] = "parquet",
    size: Size = 224,
    test_fraction: Annotated[float, typer.Option("--test-fraction", min=0.0, max=1.0,
                                                 help="Share of images in the held-out split.")] = 0.1,
    workers: Workers = 2,
    overwrite: Overwrite = False,
) -> None:
    """Render labeled synthetic hand scenes: 2D/3D keypoints, visibility, mask, K, MANO pose and shape.

    Example: hiu-data synth ~/hiu --n 5000 --seed 0          (then: hiu-data validate ~/hiu/synth)

    Example: hiu-data synth /tmp/rhd_raw --format rhd --n 200 (then: hiu-data convert rhd /tmp/rhd_raw ~/hiu)
    """
    from hiu_data.synth.generate import write_synth

    with progress_bar(f"synth {format}", total=n, unit="images") as advance:
        result = write_synth(out, n, seed, format, size=size, workers=workers, test_fraction=test_fraction,
                             overwrite=overwrite, progress=advance)
    table = Table(title=f"synth ({format}) -> {result.path}")
    table.add_column("split")
    table.add_column("hands", justify="right")
    for split, count in sorted(result.hands.items()):
        table.add_row(split, str(count))
    table.add_row("images", str(result.images))
    console.print(table)


def synth_wild(
    out_dir: Annotated[Path, typer.Argument(help="Output folder of unlabeled images.", show_default=False)],
    n: Annotated[int, typer.Option("--n", "-n", min=1, help="Number of images.")] = 200,
    seed: Seed = 0,
    size: Annotated[int, typer.Option("--size", min=32, max=2048, help="Image height in pixels (width is 4:3).")] = 224,
    boxes: Annotated[bool, typer.Option("--boxes/--no-boxes", help="Write detections.json with the hand boxes.")] = True,
    labels: Annotated[Path | None, typer.Option("--labels", help="Also write the ground truth as LABELS/synth_wild/.")] = None,
    workers: Workers = 2,
    overwrite: Overwrite = False,
) -> None:
    """Render an unlabeled image folder from a shifted distribution (other backgrounds, lighting, framing).

    The input of pseudo-labelling: hiu-data convert folder OUT_DIR ~/hiu --boxes OUT_DIR/detections.json

    Example: hiu-data synth-wild ~/wild --n 200
    """
    from hiu_data.synth.generate import write_wild

    with progress_bar("synth-wild", total=n, unit="images") as advance:
        result = write_wild(out_dir, n, seed, size=size, workers=workers, boxes=boxes, labels=labels,
                            overwrite=overwrite, progress=advance)
    console.print(f"synth-wild -> {result.path}: {result.images} images, {result.hands['unlabeled']} hands"
                  + (f"; ground truth in {labels}" if labels else ""), markup=False)


def register(app: typer.Typer) -> None:
    app.command("synth")(synth)
    app.command("synth-wild")(synth_wild)
