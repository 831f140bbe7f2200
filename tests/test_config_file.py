"""A training config file as a user writes it: data sources, relative paths, typical mistakes."""

from __future__ import annotations

from pathlib import Path

import pytest

from hiu_data.errors import HiuError
from hiu_model.config import ConfigError, load_config
from hiu_model.sampling import as_source


def _write(tmp_path: Path, text: str, name: str = "mix.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("sources, message", [
    ("datasets: [{path: a, wieght: 2}]", "train.datasets[0]: unknown key 'wieght'; did you mean 'weight'?"),
    ("datasets: [{weight: 2}]", "train.datasets[0]: a source mapping needs 'path'"),
    ("datasets: [a, {path: b, weight: 0}]", "train.datasets[1].weight: must be a number > 0, got 0"),
    ("datasets: [{path: a, weight: -1}]", "train.datasets[0].weight: must be a number > 0, got -1"),
    ("datasets: [{path: a, weight: .nan}]", "train.datasets[0].weight: must be a number > 0, got nan"),
    ("datasets: [{path: a, weight: high}]", "train.datasets[0].weight: must be a number > 0, got 'high'"),
    ("datasets: [{path: a, weight: true}]", "train.datasets[0].weight: must be a number > 0, got True"),
    ("datasets: [{path: a, split: trian}]",
     "train.datasets[0].split: 'trian' is not a split (train, val, test, unlabeled); did you mean 'train'?"),
    ("val: [{path: a, split: [val, tst]}]", "train.val[0].split: 'tst' is not a split"),
    ("unlabeled: [3]", "train.unlabeled[0]: expected a path or a mapping {path, weight, split}, got 3"),
    ("unlabeled: [{path: 3}]", "train.unlabeled[0].path: expected a path, got 3"),
    ("datasets: ['']", "train.datasets[0]: expected a path, got ''"),
])
def test_a_bad_source_names_the_file_and_the_entry(tmp_path: Path, sources: str, message: str) -> None:
    path = _write(tmp_path, f"train:\n  {sources}\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value).startswith(f"{path}: {message}") and "\n" not in str(error.value)


def test_a_bad_source_given_on_the_command_line_names_the_override() -> None:
    with pytest.raises(ConfigError, match=r"^--set train.val=\[\{path: a, weight: 0\}\]: train.val\[0\].weight"):
        load_config(overrides=["train.val=[{path: a, weight: 0}]"])


@pytest.mark.parametrize("weight", [0, -1.0, float("nan"), float("inf")])
def test_a_source_weight_that_cannot_be_drawn_is_refused(weight: float) -> None:
    # Sources set in code (the demo, the benches) meet the same rule, not a ValueError of the sampler.
    with pytest.raises(HiuError, match="weight .* is not a number > 0"):
        as_source({"path": "a", "weight": weight}, "train")


def test_an_empty_section_changes_nothing(tmp_path: Path) -> None:
    # Every line of a section commented out leaves `loss:` with no value (None in YAML).
    path = _write(tmp_path, "preset: tiny\nloss:\n  # heatmap: 2\ntrain:\n  steps: 7\n")
    config = load_config(path)
    assert config.loss == load_config(preset="tiny").loss and config.train.steps == 7


def test_an_unknown_preset_in_a_file_names_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "preset: tiyn\n")
    with pytest.raises(ConfigError, match=rf"^{path}: unknown preset 'tiyn'; did you mean 'tiny'\?"):
        load_config(path)


def test_relative_paths_in_a_file_are_relative_to_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    configs, elsewhere, home = tmp_path / "configs", tmp_path / "elsewhere", tmp_path / "home"
    for folder in (configs, elsewhere, home):
        folder.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(elsewhere)
    path = _write(configs, "train:\n  datasets:\n    - ../data/freihand\n    - {path: data/rhd, weight: 2}\n"
                           f"  unlabeled: [~/wild]\n  val: [{tmp_path / 'held'}/]\nmodel:\n  mano_dir: ../mano\n")
    for given in (path, Path("../configs/mix.yaml")):  # the file named by an absolute or a relative path
        train = load_config(given).train
        assert train.datasets == [str(tmp_path / "data" / "freihand"),
                                  {"path": str(configs / "data" / "rhd"), "weight": 2.0}]
        assert train.unlabeled == [str(home / "wild")] and train.val == [str(tmp_path / "held")]
        assert load_config(given).model.mano_dir == str(tmp_path / "mano")


def test_paths_on_the_command_line_are_relative_to_the_current_folder(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "configs").mkdir()
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path / "configs", "train:\n  datasets: [a]\n  val: [b]\n")
    train = load_config(path, overrides=["train.val=[{path: c, split: test}]", "train.unlabeled=[d]"]).train
    assert train.datasets == [str(tmp_path / "configs" / "a")]
    assert train.val == [{"path": str(tmp_path / "c"), "split": "test"}] and train.unlabeled == [str(tmp_path / "d")]


def test_a_stored_config_loads_with_the_same_paths_from_anywhere(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from hiu_model.checkpoint import config_from_dict

    (tmp_path / "a").mkdir()
    path = _write(tmp_path / "a", "train:\n  datasets: [{path: data, split: test}]\nmodel:\n  mano_dir: mano\n")
    stored = load_config(path).to_dict()
    monkeypatch.chdir(tmp_path)
    again = config_from_dict(stored)  # as eval and predict read a checkpoint's config.json
    assert again.train.datasets == [{"path": str(tmp_path / "a" / "data"), "split": "test"}]
    assert again.model.mano_dir == str(tmp_path / "a" / "mano")


def test_a_source_list_left_empty_is_an_empty_list(tmp_path: Path) -> None:
    # `datasets:` with its entries commented out is null in YAML.
    path = _write(tmp_path, "train:\n  datasets:\n  # - data/freihand\n  val: []\n")
    assert load_config(path).train.datasets == []


def test_a_relative_path_stored_by_an_older_run_still_means_the_current_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hiu_model.checkpoint import config_from_dict

    monkeypatch.chdir(tmp_path)
    stored = load_config(preset="tiny").to_dict()
    stored["train"]["datasets"] = ["data/freihand"]  # as runs stored it before paths were made absolute
    assert config_from_dict(stored).train.datasets == [str(tmp_path / "data" / "freihand")]
