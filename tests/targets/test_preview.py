"""``hiu-data targets preview``: readable PNG sheets; one-line errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from hiu_cli.main import main
from tests.targets.handmade import write_hands


def test_preview_writes_contact_sheets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_hands(tmp_path, 5, seed=4)
    out = tmp_path / "sheets"
    assert main(["targets", "preview", str(folder), str(out), "-n", "5", "--augment",
                 "--input-size", "96", "--heatmap-size", "24"]) == 0
    sheets = sorted(out.glob("targets-*.png"))
    assert [p.name for p in sheets] == ["targets-000.png"]
    image = cv2.imread(str(sheets[0]))
    tile = 192
    assert image.shape[1] == 5 * tile and image.shape[0] > 5 * tile
    assert image.std() > 20  # not blank
    assert "wrote" in capsys.readouterr().err


def test_preview_of_a_missing_folder_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["targets", "preview", str(tmp_path / "missing"), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path / 'missing'}: no such folder"]
    assert not (tmp_path / "out").exists()
