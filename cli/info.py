"""``hiu-data info``: what a converted dataset holds."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hiu_cli._common import DatasetDir, JsonOut, counted
from hiu_data.info import LABEL_COLUMNS, dataset_info
from hiu_data.skeleton import NUM_JOINTS

# The summary is the command's result: stdout, so it can be piped or redirected (errors go to
# stderr). soft_wrap: a long path in a heading stays on one line.
console = Console(highlight=False, soft_wrap=True)


def info(dataset_dir: DatasetDir, json_out: JsonOut = False) -> None:
    """Show a converted dataset's manifest, hands and images per split and side, label coverage
    (rows and labelled joints), label sources and review status.

    Example: hiu-data info ~/hiu/freihand
    """
    result = dataset_info(dataset_dir)
    if json_out:
        typer.echo(json.dumps(result, indent=2))
        return
    for d in result["datasets"]:
        _print_dataset(d)


def _print_dataset(d: dict[str, Any]) -> None:
    console.print(f"[bold]{escape(str(d['dataset']))}[/bold]  {escape(d['path'])}  ({counted(d['rows'], 'hand')} on "
                  f"{counted(d['images'], 'image')}, {counted(d['shards'], 'shard')}, hiu {d['tool_version']}, schema v{d['schema_version']}, "
                  f"skipped {counted(d['skipped'], 'image')})")
    table = Table(show_header=True)
    table.add_column("split")
    table.add_column("hands", justify="right")
    table.add_column("images", justify="right")
    for split, n in d["splits"].items():
        table.add_row(split, str(n), str(d["images_by_split"][split]))
    for side, n in d["hand_side"].items():
        table.add_row(f"{side} hands", str(n), str(d["images_by_side"][side]))
    console.print(table)
    labels = Table(show_header=True, title="label columns present")
    labels.add_column("column")
    labels.add_column("rows", justify="right")
    labels.add_column("share", justify="right")
    labels.add_column("joints labelled", justify="right")
    for name in LABEL_COLUMNS:
        n = d["labels"][name]
        joints = ""
        if name in d["labelled_joints"] and n:
            # A row can hold some joints only (fingertips, occluded joints left unlabelled).
            joints = f"{d['labelled_joints'][name] / (n * NUM_JOINTS):.0%} of {n} x {NUM_JOINTS}"
        labels.add_row(name, str(n), f"{n / max(d['rows'], 1):.0%}", joints)
    console.print(labels)
    for title, key in (("label source", "label_source"), ("review status", "review_status")):
        if d[key]:
            counts = Table(show_header=True)
            counts.add_column(title, overflow="fold")  # a pseudo:<sha> source in full
            counts.add_column("hands", justify="right")
            for value, n in d[key].items():
                counts.add_row(escape(value), str(n))
            console.print(counts)


def register(app: typer.Typer) -> None:
    app.command("info")(info)
    # The design notes and older scripts call it `stats`: the same command, not listed twice.
    app.command("stats", hidden=True)(info)
