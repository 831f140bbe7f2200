"""hiu-data info: what it prints is on stdout, true to the shards and complete."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hiu_cli.main import main
from hiu_data.io.parquet import write_dataset
from tests.data_io.records import random_records


def test_the_tables_go_to_stdout_and_paths_are_printed_verbatim(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    # A folder name with brackets, which rich would read as markup and drop.
    write_dataset(random_records(8), tmp_path / "hands[v2]", "synthetic")
    assert main(["info", str(tmp_path / "hands[v2]" / "synthetic")]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert str(tmp_path / "hands[v2]" / "synthetic") in captured.out
    assert "keypoints_2d" in captured.out and "train" in captured.out
