"""``hiu-data mano``: install the MANO hand model files (licensed; not shipped with hiu)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hiu_cli._common import console

mano_app = typer.Typer(help="The MANO hand model: import the official files, show what is installed.",
                       no_args_is_help=True)


@mano_app.command("import")
def import_files(
    files: Annotated[list[Path], typer.Argument(help="MANO_RIGHT.pkl and/or MANO_LEFT.pkl (official v1.2 files, "
                                                     "or chumpy-free .npz).", show_default=False)],
    mano_dir: Annotated[Path | None, typer.Option("--mano-dir", help="Destination folder (default: $HIU_MANO_DIR, "
                                                                     "else $HIU_HOME/mano, HIU_HOME defaulting to ~/.cache/hiu).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an installed model that differs from the "
                                                                "one given (the same model imports again without it).")] = False,
) -> None:
    """Convert the official MANO pickles into chumpy-free .npz files in the asset folder.

    The pickles are read without chumpy or scipy through a restricted unpickler (anything
    beyond numpy arrays and the chumpy/scipy records a MANO file holds is refused unrun);
    every array's shape is checked; the left model's known shapedirs sign error is fixed when
    MANO_RIGHT is given or installed (a MANO_LEFT imported alone is fixed when MANO_RIGHT is
    imported; manifest.json says which). An installed model is replaced by another only with
    --overwrite: runs trained with it do not load with another. Download mano_v1_2.zip ("Models & Code") from
    https://mano.is.tue.mpg.de after registering.

    Example: hiu-data mano import mano_v1_2/models/MANO_RIGHT.pkl mano_v1_2/models/MANO_LEFT.pkl
    """
    from hiu_model.mano_import import import_mano

    for path in import_mano(files, mano_dir, overwrite=overwrite):
        console.print(f"wrote {path}", soft_wrap=True)


@mano_app.command("info")
def info(
    mano_dir: Annotated[Path | None, typer.Option("--mano-dir", help="Folder to look in (default as for import).")] = None,
) -> None:
    """Say which hand model each side uses (MANO when imported, else the procedural hand).

    Example: hiu-data mano info
    """
    from hiu_model.mano import HandModel, mano_dir as resolve_dir

    typer.echo(f"MANO folder: {resolve_dir(mano_dir)}")  # the command's answer: stdout, with the lines below
    for side in ("right", "left"):
        model = HandModel(side, model_dir=mano_dir)
        typer.echo(f"{side}: {model.name} ({model.num_verts} vertices, {len(model.faces)} faces) from {model.path}")


def register(app: typer.Typer) -> None:
    """Add the ``mano`` command group to the ``hiu-data`` app."""
    app.add_typer(mano_app, name="mano")
