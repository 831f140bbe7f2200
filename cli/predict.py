"""``hiu-data predict``: hands on image files, as overlay PNGs and predictions.json."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from hiu_cli._common import BatchSize, Checkpoint, Device, OnError, Overwrite, TtaRotation, console, counted, progress_bar


def predict(
    checkpoint: Checkpoint,
    images: Annotated[list[Path], typer.Argument(help="Image files and/or folders of images (only the images directly in a folder; not its sub-folders).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the overlays and predictions.json.")] = Path("predictions"),
    boxes: Annotated[Path | None, typer.Option("--boxes", help='JSON {"file name": [\\[x, y, w, h], ...]} (pixels) or COCO-format detections; default: the whole image is one hand.')] = None,
    side: Annotated[Literal["auto", "left", "right"], typer.Option("--side", help="auto (try both, keep the more consistent), left or right.")] = "auto",
    batch_size: BatchSize = 16,
    device: Device = "auto",
    tta_rotation: TtaRotation = 0.0,
    on_error: OnError = "fail",
    overwrite: Overwrite = False,
) -> None:
    """Predict hands and draw them: skeleton (heat-map branch), mask, mesh silhouette and mesh joints.

    Example: hiu-data predict runs/tiny photos/ --out overlays/

    An image file that cannot be read stops the run with nothing written; with --on-error skip it
    is named in a warning, gets no overlay and no entry in predictions.json, and is counted.
    """
    from hiu_model.overlay import find_images, images_in_sub_folders, predict_files

    total = len(find_images(images))
    for folder, count in images_in_sub_folders(images).items():
        console.print(f"note: {folder}: {counted(count, 'image')} in its sub-folders {'was' if count == 1 else 'were'} "
                      "not read (predict reads the images directly in a folder; pass the sub-folders too, "
                      "e.g. DIR/*/)", markup=False)
    with progress_bar("predict", total=total, unit="images") as advance:
        result = predict_files(checkpoint, images, out, boxes=boxes, side=side, batch_size=batch_size, device=device,
                               tta_rotation=tta_rotation, overwrite=overwrite, progress=advance, on_error=on_error,
                               warn=lambda line: console.print(f"warning: {line}", markup=False))
    skipped = len(result.skipped)
    console.print(f"wrote {counted(result.images, 'overlay')} and {result.path}"
                  + (f"; skipped {skipped} image{'s' if skipped > 1 else ''} that could not be read (named above)"
                     if skipped else ""), markup=False)


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)
