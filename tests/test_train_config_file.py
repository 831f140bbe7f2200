"""``hiu-data train CONFIG.yaml`` end to end: a config file run from any folder, flags on top of it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hiu_cli.main import main
from tests.targets.handmade import write_train_and_val
from tests.test_train_cli import SMALL

pytestmark = pytest.mark.usefixtures("one_torch_thread")

QUICK = [*SMALL, "--batch-size", "2", "--workers", "0", "--set", "train.eval_samples=2"]


def test_a_config_file_trains_from_any_folder_and_its_run_resumes_from_any_other(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    project = tmp_path / "project"
    write_train_and_val(project / "data")
    (project / "configs").mkdir()
    (project / "configs" / "run.yaml").write_text(
        "preset: tiny\ntrain:\n  datasets: [../data/handmade]\n  val: [{path: ../data/handval, split: val}]\n"
        "  steps: 1\n")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path)  # neither the config's folder nor the data's
    assert main(["train", "project/configs/run.yaml", *QUICK, "--out", "runs/a"]) == 0, capsys.readouterr().err
    stored = yaml.safe_load((tmp_path / "runs" / "a" / "config.yaml").read_text())["train"]
    assert stored["datasets"] == [str(project / "data" / "handmade")]
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert main(["train", "--out", str(tmp_path / "runs" / "a"), "--resume", "--steps", "2"]) == 0, \
        capsys.readouterr().err
    assert (tmp_path / "runs" / "a" / "checkpoints" / "step-000002").is_dir()


@pytest.mark.parametrize("datasets", ["[]", "", "[{path: ../data/handmade, weight: 0}]"])
def test_a_config_without_training_data_is_one_line_naming_the_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], datasets: str) -> None:
    path = tmp_path / "configs" / "empty.yaml"
    path.parent.mkdir()
    path.write_text(f"preset: tiny\ntrain:\n  datasets: {datasets}\n  steps: 1\n")
    assert main(["train", str(path), "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: ") and err.count("\n") == 1, err
    assert ("no training data: train.datasets is empty" if "weight" not in datasets else "must be a number > 0") in err
    assert not (tmp_path / "run").exists()


def test_a_data_flag_replaces_the_files_list_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mix.yaml"
    path.write_text("preset: tiny\ntrain:\n  datasets: [a, {path: b, weight: 2}]\n  unlabeled: [c]\n  val: [d]\n")
    # The flags' folders are missing: the run stops after the notes, before any training.
    assert main(["train", str(path), "--data", str(tmp_path / "flagged"), "--val", str(tmp_path / "d"),
                 "--out", str(tmp_path / "run")]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert f"note: --data replaces the 2 sources of train.datasets in {path}" in err
    assert "replaces the 1 source of train.val" in err and "unlabeled" not in err
    assert err.endswith("no such folder")


def test_print_config_shows_every_value_and_trains_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from hiu_model.config import load_config

    monkeypatch.chdir(tmp_path)
    (tmp_path / "mix.yaml").write_text("preset: tiny\ntrain:\n  datasets: [{path: data/a, weight: 2}]\n  lr: 0.01\n")
    assert main(["train", "mix.yaml", "--steps", "5", "--set", "loss.mask=0.5", "--print-config"]) == 0
    printed = capsys.readouterr().out
    values = yaml.safe_load(printed)
    assert values["train"]["datasets"] == [{"path": str(tmp_path / "data" / "a"), "weight": 2.0}]
    assert values["train"]["steps"] == 5 and values["train"]["lr"] == 0.01 and values["loss"]["mask"] == 0.5
    assert values["model"]["input_size"] == 128 and "soft_argmax_beta" in values["model"]  # every field
    assert list(tmp_path.iterdir()) == [tmp_path / "mix.yaml"]  # no run folder
    # What it prints is a config file that gives the same configuration.
    (tmp_path / "printed.yaml").write_text(printed)
    assert load_config("printed.yaml") == load_config("mix.yaml", overrides=["train.steps=5", "loss.mask=0.5"])
    assert main(["train", "--preset", "tiny", "--print-config"]) == 0  # the preset's values, no data needed
    assert yaml.safe_load(capsys.readouterr().out)["train"]["optimizer"] == "muon"
