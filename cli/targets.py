"""``hiu-data targets preview``: contact sheets of crops and training targets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hiu_cli._common import DatasetDir, Overwrite, console, progress_bar

targets_app = typer.Typer(help="Training targets (heat-maps, POF, masks) as the data loader makes them.",
                          no_args_is_help=True)


@targets_app.command("preview")
def preview(
    dataset_dir: DatasetDir,
    out_dir: Annotated[Path, typer.Argument(help="Folder for the PNG contact sheets (created; one that holds files is refused without --overwrite).", show_default=False)],
    n: Annotated[int, typer.Option("--n", "-n", "--num", min=1, help="Samples to show, spread over the dataset.")] = 16,
    preset: Annotated[str | None, typer.Option("--preset", help="Draw the crops and targets of this training preset (tiny, tiny-bf16, tiny-fp32, paper): its crop and map sizes, Gaussian width, margin and upright crops. The options below override it. Default: the paper preset's.")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="Draw the crops and targets of this training config (YAML, as hiu-data train reads it; its preset included).", show_default=False)] = None,
    augment: Annotated[bool, typer.Option("--augment", help="Apply training augmentation (scale, rotation, shift, colour, blur).")] = False,
    upright: Annotated[bool | None, typer.Option("--upright/--no-upright", help="Turn each crop so that the hand points up (wrist below the middle knuckle, from its labels), as training with data.upright does (on in the tiny preset).", show_default=False)] = None,
    erase: Annotated[float | None, typer.Option("--erase", min=0.0, max=1.0, help="With --augment, paint a random rectangle over this share of the crops, as training with data.erase_prob does (random erasing; default: the preset's, off).", show_default=False)] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the augmentation draws.")] = 0,
    split: Annotated[str | None, typer.Option("--split", "-s", help="Only this split.")] = None,
    input_size: Annotated[int | None, typer.Option("--input-size", min=16, help="Crop side in pixels (default: the preset's; paper 256, tiny 128).", show_default=False)] = None,
    heatmap_size: Annotated[int | None, typer.Option("--heatmap-size", min=4, help="Heat-map / POF / mask side in pixels (default: the preset's; paper 64, tiny 32).", show_default=False)] = None,
    sigma: Annotated[float | None, typer.Option("--sigma", min=0.1, help="Heat-map Gaussian sigma in heat-map pixels (default: the preset's).", show_default=False)] = None,
    overwrite: Overwrite = False,
) -> None:
    """Draw crops with their 2D skeleton, heat-maps, POF (direction and z) and mask as PNG sheets.

    Example: hiu-data targets preview ~/hiu/freihand previews/ -n 16 --augment --preset tiny
    """
    from hiu_model.target_preview import preview_options, preview_targets

    options = preview_options(config, preset, input_size=input_size, heatmap_size=heatmap_size, sigma=sigma,
                              upright=upright, erase_prob=erase)
    with progress_bar("drawing targets", total=n) as advance:
        paths = preview_targets(dataset_dir, out_dir, n=n, augment=augment, seed=seed, split=split,
                                options=options, overwrite=overwrite, progress=advance)
    for path in paths:
        console.print(f"wrote {path}")


def register(app: typer.Typer) -> None:
    app.add_typer(targets_app, name="targets")
