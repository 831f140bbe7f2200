"""``hiu-data export``: converted datasets -> other tools' formats (COCO keypoints for mmpose)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hiu_cli._common import DatasetDir, Overwrite, Split, console, progress_bar
from hiu_data.io.coco import export_coco

export_app = typer.Typer(help="Export converted datasets to other formats.", no_args_is_help=True)


@export_app.command("coco")
def coco(
    dataset_dir: DatasetDir,
    out_json: Annotated[Path, typer.Argument(help="The COCO keypoint JSON to write.", show_default=False)],
    split: Split = None,
    image_dir: Annotated[Path | None, typer.Option("--image-dir", help="Where the images go (default: images/ beside OUT.json).")] = None,
    overwrite: Overwrite = False,
) -> None:
    """Export hands as a COCO keypoint JSON (one 'hand' category, 21 keypoints and their OKS
    sigmas, RLE masks, hand_side / keypoints_3d / camera_K as extra keys) with the images
    written beside it. For COCOeval set params.kpt_oks_sigmas to the category's sigmas.

    Example: hiu-data export coco ~/hiu/freihand ~/coco/freihand_train.json --split train
    """
    with progress_bar("export coco", unit="hands") as advance:
        result = export_coco(dataset_dir, out_json, splits=split, image_dir=image_dir, overwrite=overwrite,
                             progress=advance)
    console.print(f"wrote {result.path}: {result.annotations} hands on {result.images} images; "
                  f"images under {result.image_dir}", markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(export_app, name="export")
