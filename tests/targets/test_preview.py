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


def test_preview_refuses_a_folder_with_files_and_replaces_it_whole_with_overwrite(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_hands(tmp_path, 10, seed=5)
    out = tmp_path / "sheets"
    small = ["--input-size", "64", "--heatmap-size", "16"]
    # Ten samples at eight rows a sheet: two sheets.
    assert main(["targets", "preview", str(folder), str(out), "-n", "10", *small]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["targets-000.png", "targets-001.png"]
    capsys.readouterr()

    assert main(["targets", "preview", str(folder), str(out), "-n", "3", *small]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {out}: output exists; pass --overwrite to replace it"]
    assert sorted(p.name for p in out.iterdir()) == ["targets-000.png", "targets-001.png"]

    # One sheet now: the second sheet of the earlier call is gone, not left beside it.
    assert main(["targets", "preview", str(folder), str(out), "-n", "3", "--overwrite", *small]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["targets-000.png"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_preview_into_an_empty_folder_is_no_overwrite(tmp_path: Path) -> None:
    folder = write_hands(tmp_path, 2, seed=6)
    out = tmp_path / "empty"
    out.mkdir()
    assert main(["targets", "preview", str(folder), str(out), "-n", "1", "--input-size", "64",
                 "--heatmap-size", "16"]) == 0
    assert [p.name for p in out.iterdir()] == ["targets-000.png"]


def test_preview_that_fails_leaves_no_partial_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import hiu_model.target_preview as target_preview
    from hiu_data.errors import HiuError

    folder = write_hands(tmp_path, 10, seed=7)
    out = tmp_path / "sheets"
    calls = 0
    real_row = target_preview.sample_row

    def failing_row(*args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls == 9:  # the first row of the second sheet: the first sheet is written by then
            raise HiuError("broken sample")
        return real_row(*args, **kwargs)

    monkeypatch.setattr(target_preview, "sample_row", failing_row)
    assert main(["targets", "preview", str(folder), str(out), "-n", "10", "--input-size", "64",
                 "--heatmap-size", "16"]) == 1
    assert capsys.readouterr().err.strip() == "error: broken sample"
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_preview_overwrite_refuses_an_output_folder_that_holds_the_dataset(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_hands(tmp_path / "data", 2, seed=8)
    assert main(["targets", "preview", str(folder), str(tmp_path), "-n", "1", "--overwrite"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {tmp_path}: holds the dataset {folder}")
    assert (folder / "manifest.json").is_file()


def test_preview_with_upright_draws_each_hand_pointing_up_as_training_sees_it(tmp_path: Path) -> None:
    import math

    from hiu_model.data import DataOptions, HandCropDataset
    from hiu_model.target_preview import preview_example
    from hiu_model.upright import MIDDLE_MCP, WRIST

    folder = write_hands(tmp_path, 6, seed=4)

    def direction(options: DataOptions, augment: bool, index: int) -> float:
        dataset = HandCropDataset(folder, options=options, seed=0)
        dx, dy = (lambda k: k[MIDDLE_MCP] - k[WRIST])(preview_example(dataset, index, augment)["keypoints_2d"])
        return math.degrees(math.atan2(dy, dx))

    # Plain crops keep the box's axes unless upright is asked for; with it, plain crops stand
    # straight up and augmented ones within the training rotation of up.
    plain = [direction(DataOptions(input_size=64, heatmap_size=16, mask_size=16), False, i) for i in range(6)]
    assert any(abs(angle + 90.0) > 5.0 for angle in plain)
    upright = DataOptions(input_size=64, heatmap_size=16, mask_size=16, upright=True)
    for i in range(6):
        assert direction(upright, False, i) == pytest.approx(-90.0, abs=1e-3)
        assert abs(direction(upright, True, i) + 90.0) <= upright.rotation_deg + 1e-3


def test_preview_upright_flag_reaches_the_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hiu_model.target_preview as target_preview

    seen = []
    monkeypatch.setattr(target_preview, "preview_targets", lambda *a, **k: seen.append(k["options"].upright) or [])
    folder = write_hands(tmp_path, 1, seed=4)
    for flags, expected in (([], False), (["--upright"], True)):
        assert main(["targets", "preview", str(folder), str(tmp_path / "out"), *flags]) == 0
        assert seen[-1] is expected


def test_preview_erase_flag_reaches_the_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hiu_model.target_preview as target_preview

    seen = []
    monkeypatch.setattr(target_preview, "preview_targets", lambda *a, **k: seen.append(k["options"].erase_prob) or [])
    folder = write_hands(tmp_path, 1, seed=4)
    for flags, expected in (([], 0.0), (["--augment", "--erase", "0.5"], 0.5)):
        assert main(["targets", "preview", str(folder), str(tmp_path / "out"), *flags]) == 0
        assert seen[-1] == expected
    assert main(["targets", "preview", str(folder), str(tmp_path / "out"), "--erase", "1.5"]) == 2
