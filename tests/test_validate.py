"""``validate``: clean converted datasets pass; planted errors (joint order, unit, NaN/visibility,
out-of-image, corrupt image, mask size, duplicates, damaged shard, reprojection) are caught."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hiu_cli.main import main
from hiu_data.io import rle
from hiu_data.io.parquet import write_dataset
from hiu_data.skeleton import RHD_TO_HAND21, STB_TO_HAND21
from hiu_data.validate import rows_to_check, validate
from tests.formats import test_freihand, test_rhd, test_stb


def _statuses(report) -> dict[str, str]:  # noqa: ANN001
    (d,) = report.datasets
    return {c.name: c.status for c in d.checks}


@pytest.fixture(scope="module")
def rhd_records():  # noqa: ANN201
    return test_rhd.make_records(n_train=6, n_test=4)


def test_clean_datasets_pass_with_reprojection_percentiles(tmp_path: Path, rhd_records) -> None:
    write_dataset(test_freihand.make_records(3), tmp_path, "freihand")
    write_dataset(rhd_records, tmp_path, "rhd")
    write_dataset(test_stb.make_records({"B1Counting": 2}), tmp_path, "stb")
    done: list[int] = []
    report = validate(tmp_path, workers=2, progress=done.append)
    assert report.ok, report.to_dict()
    # The progress follows every row of every dataset, and its total is known before the run.
    assert sum(done) == sum(d.rows for d in report.datasets) == rows_to_check(tmp_path) > 0
    by_name = {d.dataset: d for d in report.datasets}
    assert set(by_name) == {"freihand", "rhd", "stb"}
    assert by_name["rhd"].reprojection_px["p99"] < 0.5 and by_name["freihand"].reprojection_px["max"] < 0.01
    assert {c.name: c.status for c in by_name["stb"].checks}["masks"] == "skipped"


@pytest.mark.parametrize("table, name", [(RHD_TO_HAND21, "rhd raw tip->MCP"), (STB_TO_HAND21, "stb raw little-first")])
def test_planted_wrong_joint_order(tmp_path: Path, rhd_records, table, name: str) -> None:
    records = [r.__class__(**{**r.__dict__}) for r in rhd_records]
    for r in records:
        r.keypoints_2d, r.keypoints_3d = r.keypoints_2d[table], r.keypoints_3d[table]
    write_dataset(records, tmp_path, "rhd")
    report = validate(tmp_path, check_images=False)
    statuses = _statuses(report)
    assert not report.ok and statuses["joint_order"] == "fail", name
    assert statuses["reprojection"] == "ok"  # a permutation keeps 3D and 2D consistent


def test_planted_unit_error(tmp_path: Path, rhd_records) -> None:
    records = [r.__class__(**{**r.__dict__}) for r in rhd_records]
    for r in records:
        r.keypoints_3d = r.keypoints_3d * 1000  # millimetres stored as metres
    write_dataset(records, tmp_path, "rhd")
    report = validate(tmp_path, check_images=False)
    statuses = _statuses(report)
    assert statuses["plausible_3d"] == "fail" and statuses["reprojection"] == "ok" and not report.ok
    example = report.datasets[0].checks[[c.name for c in report.datasets[0].checks].index("plausible_3d")].examples[0]
    assert "wrong unit" in example


def test_planted_value_errors(tmp_path: Path, rhd_records) -> None:
    records = [r.__class__(**{**r.__dict__}) for r in rhd_records]
    records[0].keypoints_2d = records[0].keypoints_2d.copy()
    records[0].keypoints_2d[3] = np.nan  # NaN with visibility > 0
    records[1].keypoints_2d = records[1].keypoints_2d.copy()
    records[1].keypoints_2d[4] = [500, 10]  # visible, outside the 320 x 320 image
    records[1].visibility = records[1].visibility.copy()
    records[1].visibility[4] = 2
    records[2].bbox = np.array([300, 10, 50, 50])
    records[3].image_bytes = b"\x89PNG\r\n\x1a\n" + b"garbage"
    records[4].mask = rle.encode(np.ones((10, 10), np.uint8))
    records[5].sample_id = records[6].sample_id
    write_dataset(records, tmp_path, "rhd")
    report = validate(tmp_path)
    statuses = _statuses(report)
    for name in ("visibility_nan", "keypoints_in_image", "bbox_in_image", "images", "masks", "duplicate_ids"):
        assert statuses[name] == "fail", name
    checks = {c.name: c for c in report.datasets[0].checks}
    assert checks["masks"].examples == [f"{records[4].sample_id}: decodes to [10, 10], expected [320, 320]"]
    assert checks["bbox_in_image"].flagged == 1


def test_reprojection_outliers_warn_then_fail(tmp_path: Path, rhd_records) -> None:
    records = [r.__class__(**{**r.__dict__}) for r in rhd_records]
    records[0].keypoints_2d = records[0].keypoints_2d + np.float32(5)
    write_dataset(records, tmp_path, "rhd")
    assert _statuses(validate(tmp_path, check_images=False, max_outlier_fraction=0.2))["reprojection"] == "warn"
    assert _statuses(validate(tmp_path, check_images=False))["reprojection"] == "fail"  # 1 of 20 > 1 %
    assert _statuses(validate(tmp_path, check_images=False, reprojection_px=10))["reprojection"] == "ok"


def test_damaged_shard_and_manifest(tmp_path: Path, rhd_records) -> None:
    folder = write_dataset(rhd_records, tmp_path, "rhd")
    shard = sorted(folder.glob("train-*.parquet"))[0]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["counts"]["test"] = 99
    entry = next(e for e in manifest["shards"] if e["file"] == shard.name)
    entry["rows"] += 1  # a second problem of the same shard
    (folder / "manifest.json").write_text(json.dumps(manifest))
    report = validate(folder, check_images=False)
    checks = {c.name: c for c in report.datasets[0].checks}
    # Two files are wrong (the shard twice over, and manifest.json); every file was checked.
    assert checks["manifest"].status == "fail" and checks["manifest"].flagged == 2
    assert checks["manifest"].checked == 1 + len(manifest["shards"])
    assert any("sha256" in e and "rows, the manifest says" in e for e in checks["manifest"].examples)


def test_cli_exit_codes_and_json(tmp_path: Path, rhd_records, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_dataset(rhd_records, tmp_path / "good", "rhd")
    assert main(["validate", str(folder), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    records = [r.__class__(**{**r.__dict__}) for r in rhd_records]
    for r in records:
        r.keypoints_3d = r.keypoints_3d * 1000
    bad = write_dataset(records, tmp_path / "bad", "rhd")
    assert main(["validate", str(bad), "--skip-images"]) == 1
    assert "plausible_3d" in capsys.readouterr().out
    assert main(["validate", str(tmp_path / "missing")]) == 1


def test_the_report_goes_to_stdout_and_paths_are_printed_verbatim(tmp_path: Path, rhd_records,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # `hiu-data validate DIR > report.txt` keeps the report, as `eval` and `info` do; a folder name
    # with brackets, which rich would read as markup and drop.
    folder = write_dataset(rhd_records, tmp_path / "hands[v2]", "rhd")
    assert main(["validate", str(folder)]) == 0
    captured = capsys.readouterr()
    out = " ".join(captured.out.split())
    assert str(folder) in out and "passed" in out
    assert "duplicate_ids" in out and "reprojection error over" in out
    assert captured.err == ""


def test_pseudo_labels_are_not_judged_as_ground_truth(tmp_path: Path, rhd_records) -> None:
    # 2D and 3D of a pseudo-label come from two branches of the model and disagree by design;
    # the same disagreement in dataset labels is a reprojection failure.
    records = [r.__class__(**{**r.__dict__}) for r in rhd_records]
    for r in records:
        r.keypoints_3d = r.keypoints_3d + np.array([0.02, 0.0, 0.0], np.float32)
    write_dataset(records, tmp_path / "truth", "rhd")
    assert _statuses(validate(tmp_path / "truth", check_images=False))["reprojection"] == "fail"
    for r in records:
        r.label_source, r.review_status, r.confidence = "pseudo:abc", "pending", 0.5
    write_dataset(records, tmp_path / "pseudo", "rhd")
    report = validate(tmp_path / "pseudo", check_images=False)
    assert report.ok, report.to_dict()
    (d,) = report.datasets
    assert "pseudo-labelled rows not judged" in {c.name: c.note for c in d.checks}["reprojection"]


def test_joint_order_from_2d_only_rows(tmp_path: Path, rhd_records) -> None:
    records = [r.__class__(**{**r.__dict__}) for r in rhd_records]
    for r in records:
        r.keypoints_3d, r.camera_K = None, None
    write_dataset(records, tmp_path / "right", "rhd")
    statuses = _statuses(validate(tmp_path / "right", check_images=False))
    assert statuses["joint_order_2d"] == "ok" and statuses["joint_order"] == "skipped"
    for r in records:
        r.keypoints_2d = r.keypoints_2d[RHD_TO_HAND21]
    write_dataset(records, tmp_path / "permuted", "rhd")
    report = validate(tmp_path / "permuted", check_images=False)
    assert not report.ok and _statuses(report)["joint_order_2d"] == "fail"


def test_a_review_status_outside_the_schema_values_is_flagged(tmp_path: Path, rhd_records) -> None:
    records = [r.__class__(**{**r.__dict__}) for r in rhd_records]
    records[0].review_status = "Rejected"  # would not be left out of training as "rejected" is
    records[1].review_status = "rejected"
    records[2].review_status = None
    write_dataset(records, tmp_path, "rhd")
    checks = {c.name: c for c in validate(tmp_path, check_images=False).datasets[0].checks}
    assert checks["fields"].status == "fail" and checks["fields"].flagged == 1
    assert checks["fields"].examples == [f"{records[0].sample_id}: split={records[0].split!r} side="
                                         f"{records[0].hand_side!r} size=320x320 review_status='Rejected'"]
