"""``hiu-data info``: what a converted dataset holds."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hiu_cli._common import DatasetDir, JsonOut
from hiu_data.info import LABEL_COLUMNS, dataset_info

# The summary is the command's result: stdout, so it can be piped or redirected (errors go to
# stderr). soft_wrap: a long path in a heading stays on one line.
console = Console(highlight=False, soft_wrap=True)


def info(dataset_dir: DatasetDir, json_out: JsonOut = False) -> None:
    """Show a converted dataset's manifest, hands per split, and label coverage.

    Example: hiu-data info ~/hiu/freihand
    """
    result = dataset_info(dataset_dir)
    if json_out:
        typer.echo(json.dumps(result, indent=2))
        return
    for d in result["datasets"]:
        console.print(f"[bold]{escape(str(d['dataset']))}[/bold]  {escape(d['path'])}  ({d['rows']} hands, {d['shards']} shards, "
                      f"hiu {d['tool_version']}, schema v{d['schema_version']}, skipped {d['skipped']})")
        table = Table(show_header=True)
        table.add_column("split")
        table.add_column("hands", justify="right")
        for split, n in d["splits"].items():
            table.add_row(split, str(n))
        for side, n in d["hand_side"].items():
            table.add_row(f"{side} hands", str(n))
        console.print(table)
        labels = Table(show_header=True, title="label columns present")
        labels.add_column("column")
        labels.add_column("rows", justify="right")
        labels.add_column("share", justify="right")
        for name in LABEL_COLUMNS:
            n = d["labels"][name]
            labels.add_row(name, str(n), f"{n / max(d['rows'], 1):.0%}")
        console.print(labels)


def register(app: typer.Typer) -> None:
    app.command("info")(info)
