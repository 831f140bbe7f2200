"""``hiu-data pseudo-label``: a checkpoint's predictions on an image folder, as a converted dataset."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from hiu_cli._common import BatchSize, Checkpoint, Device, OnError, Overwrite, TtaRotation, console, progress_bar
from hiu_data.errors import Interrupted

if TYPE_CHECKING:  # the model package (torch) is imported when the command runs
    from hiu_model.pseudo_label import PseudoLabelResult


def pseudo_label(
    checkpoint: Checkpoint,
    images_dir: Annotated[Path, typer.Argument(help="A folder of images (searched recursively).", show_default=False)],
    out: Annotated[Path, typer.Argument(help="Output folder; the dataset goes to OUT/NAME/.", show_default=False)],
    boxes: Annotated[Path | None, typer.Option("--boxes", help="COCO-format detections JSON, one hand per box (default: the whole image is one hand).")] = None,
    shard: Annotated[str, typer.Option("--shard", help="i/n: label images i, i+n, ... (run n processes, any launcher).")] = "0/1",
    batch_size: BatchSize = 16,
    name: Annotated[str, typer.Option("--name", help="Dataset name (the folder under OUT).")] = "pseudo",
    chunk_images: Annotated[int, typer.Option("--chunk-images", min=1, help="Images per resumable chunk (same for all shards).")] = 256,
    device: Device = "auto",
    on_error: OnError = "fail",
    overwrite: Overwrite = False,
    update: Annotated[bool, typer.Option("--update", help="Label only the images that OUT/NAME lacks and add them to it as new shards; its rows, reviewed ones included, stay as they are.")] = False,
    tta_rotation: TtaRotation = 0.0,
) -> None:
    """Predict keypoints, mask, MANO and 3D for every hand of IMAGES_DIR, with a confidence per hand.

    Rows get label_source pseudo:<checkpoint sha256> and review_status pending.

    An interrupted shard resumes where it stopped when run again; the last shard to finish merges.

    With --update, images that OUT/NAME already holds (same path and content) are left alone,
    and so are its rows; images changed since they were labelled are named and not labelled
    again; rows of images gone from the folder are kept.

    Example: hiu-data pseudo-label runs/tiny wild/ out --boxes wild/detections.json --shard 0/4

    Example: hiu-data pseudo-label runs/tiny wild/ reviewed --update   (new images of wild/ -> reviewed/pseudo/)
    """
    from hiu_model.pseudo_label import parse_shard, parts_dir, pseudo_label as run

    index, count = parse_shard(shard)
    finished = 0  # images of this shard in finished chunks (the progress advances chunk by chunk)
    with progress_bar(f"pseudo-label {index}/{count}", unit="images") as advance:
        def counted(images: int) -> None:
            nonlocal finished
            finished += images
            advance(images)

        try:
            result = run(checkpoint, images_dir, out, boxes=boxes, shard=(index, count), batch_size=batch_size, name=name,
                         chunk_images=chunk_images, device=device, on_error=on_error, overwrite=overwrite,
                         update=update, tta_rotation=tta_rotation, progress=counted)
        except KeyboardInterrupt:
            raise Interrupted(f"shard {index}/{count} stopped with {finished} images labelled and kept in "
                              f"{parts_dir(out, name)}; run the same command again to continue") from None
    if result.update is not None:
        _say_update(result, images_dir)
        if not result.update.new:
            _say_without_boxes(result, boxes)
            return
    console.print(f"shard {index}/{count}: {result.hands} hands on {result.images} images "
                  f"({result.chunks_resumed} of {result.chunks_done} chunks were already done); {result.label_source}",
                  markup=False)
    for item in result.skipped:
        console.print(f"  skipped {item.sample_id}: {item.reason}", markup=False)
    _say_without_boxes(result, boxes)
    if result.path is not None and result.update is not None:
        console.print(f"added the new rows to {result.path} beside its {result.kept} rows, which are unchanged; "
                      f"next: hiu-data review push {result.path}", markup=False)
    elif result.path is not None:
        console.print(f"wrote {result.path}; next: hiu-data review push {result.path}", markup=False)
    else:  # this process ends here; it does not wait for the others
        console.print(f"shard {index}/{count} is done; the dataset {out / name} is written by the last shard to "
                      "finish", markup=False)


def _say_without_boxes(result: PseudoLabelResult, boxes: Path | None) -> None:
    if result.without_boxes:
        console.print(f"  {result.without_boxes} images of the folder have no box in {boxes} and got no row",
                      markup=False)


def _listed(paths: list[str], most: int = 10) -> str:
    return ", ".join(paths[:most]) + (f" and {len(paths) - most} more" if len(paths) > most else "")


def _say_update(result: PseudoLabelResult, images_dir: Path) -> None:
    """What ``--update`` found: one line per kind of image that is not simply new or held."""
    diff = result.update
    if diff.changed:
        console.print(f"warning: {len(diff.changed)} images of {images_dir} changed since they were labelled and were "
                      f"not labelled again (their rows keep the picture they were labelled on; give a new picture a "
                      f"new file name to label it): {_listed(diff.changed)}", markup=False)
    if diff.moved:
        console.print(f"note: {len(diff.moved)} images of {images_dir} are in {result.path} under another path "
                      f"(moved or copied) and were not labelled again: "
                      f"{_listed([f'{new} (as {old})' for new, old in diff.moved])}", markup=False)
    if diff.gone:
        console.print(f"note: {len(diff.gone)} images of {result.path} are no longer in {images_dir}; their rows are "
                      f"kept (the images are embedded): {_listed(diff.gone)}", markup=False)
    if not diff.new:
        console.print(f"nothing to add: no image of {images_dir} is new to {result.path} ({diff.held} images "
                      "held already); it is unchanged", markup=False)
    elif result.other_sources:
        console.print(f"note: the new rows are labelled by {result.label_source[:19]}…, other pseudo-labels of "
                      f"{result.path} by {', '.join(s[:19] + '…' for s in result.other_sources)}; each row's "
                      "label_source names its checkpoint", markup=False)


def register(app: typer.Typer) -> None:
    app.command("pseudo-label")(pseudo_label)
