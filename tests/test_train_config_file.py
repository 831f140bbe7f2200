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


EXAMPLE = Path(__file__).resolve().parents[1] / "configs" / "mix.yaml"


def test_the_example_config_loads_with_the_values_it_claims(tmp_path: Path) -> None:
    from hiu_model.config import load_config
    from hiu_model.train_data import parse_sources

    config = load_config(EXAMPLE)
    root = EXAMPLE.parents[1]
    assert config.model.input_size == 128 and config.train.optimizer == "muon"  # preset: tiny
    train = config.train
    assert train.datasets == [{"path": str(root / "data" / "freihand"), "weight": 2.0},
                              {"path": str(root / "data" / "rhd"), "split": "train"}, str(root / "data" / "cmu")]
    assert train.unlabeled == [{"path": str(root / "wild"), "weight": 1.0}]
    assert train.val == [{"path": str(root / "data" / "freihand"), "split": "test"}, str(root / "data" / "rhd")]
    sources = parse_sources(train.datasets, "train") + parse_sources(train.unlabeled, None)
    assert [s.split for s in sources] == ["train", "train", "train", None]
    weights = [s.weight for s in sources]
    assert [w / sum(weights) for w in weights] == [0.4, 0.2, 0.2, 0.2]  # the 40 % and 20 % of the comments
    assert (train.steps, train.batch_size, train.lr, train.eval_every, train.eval_samples, train.checkpoint_every,
            train.keep_checkpoints) == (20000, 32, 0.006, 1000, 500, 1000, 3)
    # The commented sections at the end load as they are once uncommented.
    lines = EXAMPLE.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# model:"))
    uncommented = tmp_path / "mix.yaml"
    uncommented.write_text("\n".join(lines[:start] + [line[2:] for line in lines[start:]]) + "\n")
    more = load_config(uncommented, relative_to=EXAMPLE.parent)
    assert (more.model.num_stacks, more.data.rotation_deg, more.loss.self_mask) == (3, 20.0, 0.5)
    assert more.train == train


def test_a_run_from_the_example_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    from hiu_data.io.parquet import write_dataset
    from hiu_model.run_log import read_metrics
    from tests.targets.handmade import make_hand

    project = tmp_path / "project"
    (project / "configs").mkdir(parents=True)
    config = project / "configs" / "mix.yaml"
    config.write_text(EXAMPLE.read_text())
    for k, (name, splits) in enumerate({"freihand": ("train", "test"), "rhd": ("train", "test"),
                                        "cmu": ("train",)}.items()):
        hands = [make_hand(100 * k + i, "left" if i % 2 else "right", split=split, dataset=name)
                 for split in splits for i in range(3 if split == "train" else 2)]
        write_dataset(hands, project / "data", name)
    (project / "wild").mkdir()
    for i in range(2):
        (project / "wild" / f"{i}.jpg").write_bytes(make_hand(900 + i).image_bytes)
    monkeypatch.chdir(tmp_path)  # not the config's folder
    run = tmp_path / "run"
    assert main(["train", str(config), *QUICK, "--steps", "2", "--set", "train.eval_every=2",
                 "--out", str(run)]) == 0, capsys.readouterr().err
    stored = yaml.safe_load((run / "config.yaml").read_text())["train"]
    assert stored["datasets"][0] == {"path": str(project / "data" / "freihand"), "weight": 2.0}
    assert stored["unlabeled"] == [{"path": str(project / "wild"), "weight": 1.0}]
    tags = {row["tag"] for row in read_metrics(run)}
    assert {"val/freihand/heatmap/pck@0.1", "val/rhd/heatmap/pck@0.1", "train/self_mask"} <= tags, sorted(tags)
    assert (run / "best.json").is_file() and (run / "checkpoints" / "step-000002").is_dir()


@pytest.mark.parametrize("train, named, message", [
    ("  datasets: [data/handmade]\n  steps: [2\n", "file", "line 5, column 1: not valid YAML"),
    ("  datasets: [data/handmade]\n  step: 2\n", "file", "unknown key 'train.step'; did you mean 'train.steps'?"),
    ("  datasets: [data/handmade]\n  steps: two\n", "file", "train.steps: expected an integer, got 'two'"),
    ("  datasets: [{path: data/handmade, weight: -1}]\n", "file", "train.datasets[0].weight: must be a number > 0"),
    ("  datasets: [nowhere]\n", "nowhere", "no such folder"),
    ("  datasets: [{path: data/handmade, split: test}]\n", "data/handmade",
     "no rows in split 'test' (it has: train 8; a source picks its split with {path: ..., split: ...} in the config)"),
    ("  datasets: [data/handmade]\n  val: [{path: data/handval, split: train}]\n", "data/handval",
     "no rows in split 'train' (it has: val 4;"),
])
def test_typical_mistakes_in_a_config_are_one_line_and_exit_1(
        hands_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], train: str, named: str,
        message: str) -> None:
    path = hands_root / "mistake.yaml"
    path.write_text(f"preset: tiny\ntrain:\n{train}")
    assert main(["train", str(path), *QUICK, "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    lines = err.splitlines()  # no "run folder" line: none is made
    where = str(path) if named == "file" else str(hands_root / named)
    assert len(lines) == 1 and lines[0].startswith(f"error: {where}: ") and message in lines[0], err
    assert not (tmp_path / "run").exists()


def test_no_training_data_is_one_line_that_names_no_run_folder(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--preset", "tiny", "--out", str(tmp_path / "run")]) == 1
    assert capsys.readouterr().err.splitlines() == ["error: no training data: set train.datasets (or pass --data DIR)"]
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def hands_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("project")
    write_train_and_val(root / "data")
    return root
