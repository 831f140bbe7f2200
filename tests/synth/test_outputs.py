"""Writing synthetic data: converted dataset, every raw layout through its writer, the wild folder, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hiu_cli.main import main
from hiu_data import formats
from hiu_data.convert import convert
from hiu_data.io.parquet import HandDataset
from hiu_data.synth.generate import DETECTIONS_FILE, write_synth, write_wild
from hiu_data.synth.profiles import FORMATS, profile_for
from hiu_data.validate import validate

RAW_FORMATS = [f for f in FORMATS[1:] if f in formats.available()]


def _assert_valid(path: Path) -> None:
    report = validate(path, reprojection_px=0.5, max_outlier_fraction=0.0)
    failed = [(d.dataset, c.name, c.examples[:1]) for d in report.datasets for c in d.checks if c.status == "fail"]
    assert report.ok, failed
    for d in report.datasets:
        if d.reprojection_px is not None:
            assert d.reprojection_px["max"] < 0.5


def test_parquet_output_validates(tmp_path: Path) -> None:
    result = write_synth(tmp_path, n=6, seed=1, size=96)
    assert result.path == tmp_path / "synth"
    ds = HandDataset(result.path)
    assert len(ds) == sum(result.hands.values()) and ds.manifests[result.path]["options"]["seed"] == 1
    _assert_valid(result.path)


@pytest.mark.parametrize("name", RAW_FORMATS)
def test_raw_layout_converts_and_validates(name: str, tmp_path: Path) -> None:
    profile = profile_for(name)
    write_synth(tmp_path / "raw", n=3, seed=2, format=name, test_fraction=0.0)
    result = convert(name, tmp_path / "raw", tmp_path / "out")
    assert sum(result.counts.values()) >= 3 and result.skipped == 0
    ds = HandDataset(result.path)
    sample = ds[0]
    assert (sample.width, sample.height) == (profile.width, profile.height)
    assert sample.hand_side in profile.sides
    if profile.fixed_K is not None:
        assert np.allclose(sample.camera_K, profile.fixed_K, atol=1e-3)
    _assert_valid(result.path)


def test_existing_output_is_refused_and_nothing_partial_is_left(tmp_path: Path) -> None:
    from hiu_data.errors import HiuError

    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "keep.txt").write_text("x")
    with pytest.raises(HiuError, match="exists"):
        write_synth(tmp_path / "raw", n=1, format="cmu")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]


def test_wild_folder_reads_with_its_boxes(tmp_path: Path) -> None:
    result = write_wild(tmp_path / "wild", n=5, seed=0, size=96, labels=tmp_path / "truth")
    files = sorted(p.name for p in (tmp_path / "wild").iterdir())
    assert DETECTIONS_FILE in files and len([f for f in files if f.endswith(".jpg")]) == 5
    boxes = json.loads((tmp_path / "wild" / DETECTIONS_FILE).read_text())
    assert len(boxes["annotations"]) == result.hands["unlabeled"] >= 5
    converted = convert("folder", tmp_path / "wild", tmp_path / "out", boxes=tmp_path / "wild" / DETECTIONS_FILE)
    rows = HandDataset(converted.path)
    assert len(rows) == len(boxes["annotations"])
    assert rows[0].split == "unlabeled" and rows[0].width == 128 and rows[0].keypoints_2d is None
    truth = HandDataset(tmp_path / "truth" / "synth_wild")
    assert len(truth) == len(rows) and truth[0].split == "test"


def test_cli_synth_and_synth_wild(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["synth", str(tmp_path / "s"), "--n", "3", "--size", "64", "--workers", "1"]) == 0
    assert (tmp_path / "s" / "synth" / "manifest.json").is_file()
    assert main(["synth", str(tmp_path / "s"), "--n", "3"]) == 1
    assert "exists" in capsys.readouterr().err
    assert main(["synth", str(tmp_path / "t"), "--format", "nope"]) == 2  # usage error
    assert main(["synth-wild", str(tmp_path / "w"), "--n", "2", "--size", "64", "--workers", "1"]) == 0
    assert len(list((tmp_path / "w").glob("*.jpg"))) == 2
    # The ground truth cannot be written (its folder is a file): no images are left either.
    (tmp_path / "afile").write_text("x")
    capsys.readouterr()
    assert main(["synth-wild", str(tmp_path / "w2"), "--n", "2", "--size", "64", "--workers", "1",
                 "--labels", str(tmp_path / "afile")]) == 1
    assert "a folder on this path is a file" in capsys.readouterr().err
    assert not (tmp_path / "w2").exists() and not list(tmp_path.glob(".w2.tmp-*"))
    assert main(["synth", str(tmp_path / "u"), "--n", "0"]) == 2  # usage error: at least one image
