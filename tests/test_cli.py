"""The command line frame: --help everywhere, --version, one-line user errors, schema and info."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hiu_cli.main import app, main
from hiu_data.io.parquet import write_dataset
from hiu_data.schema import arrow_schema
from tests.data_io.records import random_records


def _command_paths() -> list[list[str]]:
    """Every command and sub-command path of the Typer app."""
    import typer.main

    root = typer.main.get_command(app)
    paths: list[list[str]] = [[]]

    def walk(cmd, prefix):  # noqa: ANN001, ANN202
        for name, sub in getattr(cmd, "commands", {}).items():
            paths.append(prefix + [name])
            walk(sub, prefix + [name])

    walk(root, [])
    return paths


@pytest.mark.parametrize("path", _command_paths(), ids=lambda p: " ".join(p) or "hiu-data")
def test_help_works_for_every_command(path: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*path, "--help"]) == 0
    assert "Usage" in capsys.readouterr().out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("hiu ")


def test_user_error_is_one_line_and_exit_1(tmp_path: Path) -> None:
    env = {**os.environ, "HIU_DEBUG": "0", "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-m", "hiu_cli.main", "info", str(tmp_path / "missing")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [f"error: {tmp_path / 'missing'}: no such folder"]
    assert "Traceback" not in proc.stderr


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "HIU_DEBUG": "1"}
    proc = subprocess.run([sys.executable, "-m", "hiu_cli.main", "info", str(tmp_path / "missing")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1 and "Traceback" in proc.stderr



def test_ctrl_c_in_a_command_says_interrupted_and_exits_130(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import hiu_cli.info

    def ctrl_c(*_: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(hiu_cli.info, "dataset_info", ctrl_c)
    assert main(["info", str(tmp_path)]) == 130
    assert capsys.readouterr().err.strip() == "interrupted"


def test_an_output_path_that_is_a_file_and_a_list_manifest_are_one_line_errors(tmp_path: Path,
                                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from tests.targets.handmade import write_hands

    data = write_hands(tmp_path / "data", 2, seed=3)
    (tmp_path / "afile").write_text("x")
    assert main(["targets", "preview", str(data), str(tmp_path / "afile"), "-n", "1"]) == 1
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'afile'}: exists and is not a folder"
    (data / "manifest.json").write_text("[1]")
    assert main(["info", str(data)]) == 1
    assert "manifest.json: not a hiu manifest" in capsys.readouterr().err

def test_unknown_format_lists_the_available_ones(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["convert", "nosuchset", str(tmp_path), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "'nosuchset' is not registered; available:" in err


def test_format_names_in_any_case_and_choices_as_a_plain_list(capsys: pytest.CaptureFixture[str],
                                                               tmp_path: Path) -> None:
    import cv2
    import numpy as np

    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), np.zeros((8, 8, 3), np.uint8))
    assert main(["convert", "Folder", str(images), str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "folder" / "manifest.json").is_file()  # the registered spelling
    capsys.readouterr()
    assert main(["convert", "folder", str(images), str(tmp_path / "out2"), "--images", "copy"]) == 2  # usage error
    assert "Invalid value for '--images'" in (err := capsys.readouterr().err) and "'copy' is not one of" in err
    assert main(["convert", "folder", str(images), str(tmp_path / "out2"), "--on-error", "ignore"]) == 2
    assert "Invalid value for '--on-error'" in (err := capsys.readouterr().err) and "'ignore' is not one of" in err
    assert main(["synth", str(tmp_path / "raw"), "--format", "RHD", "--n", "2", "--workers", "1"]) == 0
    assert main(["convert", "RHD", str(tmp_path / "raw"), str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "rhd" / "manifest.json").is_file()


def test_schema_json_matches_the_arrow_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in doc["columns"]] == arrow_schema().names
    assert len(doc["skeleton"]["joints"]) == 21 and len(doc["skeleton"]["bones"]) == 20
    for column in doc["columns"]:
        assert {"arrow_type", "nullable", "unit", "frame", "description"} <= column.keys()


def test_schema_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    out = capsys.readouterr().out
    assert "keypoints_3d" in out and "camera" in out


def test_schema_table_fits_the_terminal(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """On a 100-column terminal no line is longer (the terminal would break every row in two);
    a file still gets the wide table."""
    import re

    monkeypatch.setenv("FORCE_COLOR", "1")  # rich treats stdout as a terminal
    monkeypatch.setenv("COLUMNS", "100")
    assert main(["schema"]) == 0
    lines = re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out).splitlines()
    assert "keypoints_3d" in "".join(lines) and max(map(len, lines)) <= 100


def test_info_counts_splits_and_labels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    records = random_records(20)
    write_dataset(records, tmp_path, "synthetic")
    assert main(["info", str(tmp_path / "synthetic"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)["datasets"][0]
    assert doc["splits"] == {"train": 15, "test": 5}
    assert doc["labels"]["keypoints_3d"] == sum(r.keypoints_3d is not None for r in records)
    assert doc["labels"]["mask"] == sum(r.mask is not None for r in records)
    assert main(["info", str(tmp_path)]) == 0


def test_schema_states_the_coordinate_conventions(capsys: pytest.CaptureFixture[str]) -> None:
    # Without them a 2D keypoint is off by half a pixel or a 3D one mirrored in another tool.
    assert main(["schema", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert "pixel centres at +0.5" in doc["coordinates"]["keypoints_2d"]
    assert "y down, z forward" in doc["coordinates"]["keypoints_3d"]
    assert "EXIF" in doc["coordinates"]["image"]
    assert "image_id" in doc["row"]
    assert main(["schema"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "pixel centres at +0.5" in out and "x right, y down, z forward" in out and "flat_hand_mean" in out
