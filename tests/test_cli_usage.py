"""What a new user meets first: help texts as written, and one-line errors with a hint for the
usual slips (arguments swapped, a raw folder or a run's parent passed where a converted
dataset or a run is expected)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from hiu_cli.main import app, main

# Rich reads "[word ...]" in a help text as a style tag and drops it; "\[" keeps it.
_RICH_TAG = re.compile(r"(?<!\\)\[[a-zA-Z#/@][^\[\]]*\]")


def _all_commands() -> list[tuple[str, Any]]:
    import typer.main

    found: list[tuple[str, Any]] = []

    def walk(cmd: Any, prefix: str) -> None:
        found.append((prefix, cmd))
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, f"{prefix} {name}".strip())

    walk(typer.main.get_command(app), "")
    return found


def test_no_help_text_loses_brackets_to_rich_markup() -> None:
    lost = []
    for name, cmd in _all_commands():
        texts = [cmd.help or ""] + [getattr(p, "help", None) or "" for p in cmd.params]
        lost += [f"{name}: {t}" for t in texts if _RICH_TAG.search(t)]
    assert not lost


def test_predict_help_shows_the_box_format(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "300")
    assert main(["predict", "--help"]) == 0
    assert '{"file name": [[x, y, w, h], ...]}' in capsys.readouterr().out
