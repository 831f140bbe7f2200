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


def test_preview_options_follow_the_preset_then_the_overrides() -> None:
    from hiu_model.config_values import ConfigError
    from hiu_model.data import DataOptions
    from hiu_model.presets import tiny
    from hiu_model.target_preview import preview_options

    assert preview_options() == DataOptions()
    assert preview_options(preset="tiny") == tiny().data
    assert preview_options(preset="tiny").input_size != DataOptions().input_size  # the preset is not the default
    options = preview_options(preset="tiny", heatmap_size=16, sigma=1.25, upright=None)
    assert (options.heatmap_size, options.mask_size, options.sigma) == (16, 16, 1.25)
    assert options.upright is tiny().data.upright  # None leaves the preset's value
    with pytest.raises(ConfigError, match="unknown preset 'tinyy'; did you mean 'tiny'"):
        preview_options(preset="tinyy")
    with pytest.raises(ConfigError, match="unknown data option"):
        preview_options(sigmaa=2.0)


def test_preview_options_read_a_training_config(tmp_path: Path) -> None:
    from hiu_model.target_preview import preview_options

    config = tmp_path / "run.yaml"
    config.write_text("preset: tiny\ndata:\n  sigma: 3.5\n  margin: 0.2\n")
    options = preview_options(config)
    assert (options.input_size, options.sigma, options.margin) == (128, 3.5, 0.2)


def _heatmap_column_brightness(sheet: Path) -> float:
    image = cv2.imread(str(sheet))
    tile = 192
    return float(image[26:, tile:2 * tile].mean())  # below the header, the heat-map column


def test_preview_sigma_widens_the_drawn_gaussians(tmp_path: Path) -> None:
    folder = write_hands(tmp_path, 3, seed=8)
    brightness = {}
    for sigma in ("1", "3"):
        out = tmp_path / f"sigma{sigma}"
        assert main(["targets", "preview", str(folder), str(out), "-n", "3", "--preset", "tiny",
                     "--sigma", sigma]) == 0
        brightness[sigma] = _heatmap_column_brightness(out / "targets-000.png")
    assert brightness["3"] > 1.3 * brightness["1"]


def test_preview_of_an_unknown_preset_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_hands(tmp_path, 1, seed=9)
    out = tmp_path / "sheets"
    assert main(["targets", "preview", str(folder), str(out), "--preset", "tinyy"]) == 1
    assert capsys.readouterr().err.strip().splitlines() == ["error: unknown preset 'tinyy'; did you mean 'tiny'?"]
    assert not out.exists()
