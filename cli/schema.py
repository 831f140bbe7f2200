"""``hiu-data schema``: print the hand_sample schema."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hiu_data.schema import SCHEMA_VERSION, arrow_schema, column_specs, schema_conventions
from hiu_data.skeleton import BONES, JOINT_NAMES, SKELETON_NAME


def schema(json_out: Annotated[bool, typer.Option("--json", help="Print the schema as JSON.")] = False) -> None:
    """Print the hand_sample schema: every column's arrow type, unit, frame and meaning, and the
    coordinate conventions (pixel centres, camera axes, image orientation, MANO mean pose).

    Example: hiu-data schema --json > hand_sample.json
    """
    types = {f.name: str(f.type) for f in arrow_schema()}
    conventions = schema_conventions()
    if json_out:
        doc = {"name": "hand_sample", "version": SCHEMA_VERSION, **conventions,
               "skeleton": {"name": SKELETON_NAME, "joints": list(JOINT_NAMES), "bones": [list(b) for b in BONES]},
               "columns": [{**c, "arrow_type": types[c["name"]]} for c in column_specs()]}
        typer.echo(json.dumps(doc, indent=2))
        return
    table = Table(title=f"hand_sample v{SCHEMA_VERSION} ({SKELETON_NAME}, one row per hand)")
    for col in ("column", "arrow type", "null", "unit", "frame", "description"):
        table.add_column(col, overflow="fold")
    for c in column_specs():
        table.add_row(*(escape(v) for v in (c["name"], types[c["name"]], "yes" if c["nullable"] else "", c["unit"], c["frame"], c["description"])))
    console = Console()
    if not console.is_terminal:  # a file or a pipe gets the table unfolded; a terminal its own width
        console = Console(width=200)
    console.print(table)
    console.print(f"one row: {escape(conventions['row'])}")
    console.print("coordinates:")
    for name, text in conventions["coordinates"].items():
        console.print(f"  {name}: {escape(text)}")


def register(app: typer.Typer) -> None:
    app.command("schema")(schema)
