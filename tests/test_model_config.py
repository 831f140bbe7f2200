"""Configuration: presets, YAML + overrides, unknown keys with suggestions, size consistency."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hiu_model.config import Config, ConfigError, load_config
from hiu_model.presets import bf16_matrix_hardware, tiny


def test_presets_differ_and_default_is_paper() -> None:
    small, paper, default = load_config(preset="tiny"), load_config(preset="paper"), load_config()
    assert small.model.input_size == 128 and small.model.heatmap_size == 32 and small.model.num_stacks == 2
    assert paper.model.input_size == 256 and paper.model.heatmap_size == 64 and paper.model.num_stacks == 4
    assert paper.model.encoder_blocks == (3, 4, 6, 3)
    assert default.to_dict() == paper.to_dict()
    assert small.data.input_size == 128 and small.data.heatmap_size == 32 and small.data.mask_size == 32


def test_yaml_then_overrides(tmp_path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("preset: tiny\nmodel:\n  num_stacks: 3\n  use_tam: false\nloss:\n  heatmap: 2\n")
    config = load_config(path, overrides=["model.num_stacks=1", "model.tasks=[heatmap, mask]",
                                          "loss.self_mask=0.5", "model.mano_dir=null"])
    assert config.model.input_size == 128  # from the preset named in the file
    assert config.model.num_stacks == 1  # the override wins over the file
    assert config.model.use_tam is False
    assert config.model.tasks == ("heatmap", "mask")
    assert config.loss.heatmap == 2.0 and isinstance(config.loss.heatmap, float)
    assert config.loss.self_mask == 0.5
    assert config.model.mano_dir is None


def test_round_trip_through_json() -> None:
    config = load_config(preset="tiny", overrides=["model.use_tam=false"])
    again = Config.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config


@pytest.mark.parametrize("override, message", [
    ("model.num_stack=3", "did you mean 'model.num_stacks'"),
    ("modle.num_stacks=3", "did you mean 'model'"),
    ("loss.heatmapp=1", "did you mean 'loss.heatmap'"),
    ("model.num_stacks=two", "expected an integer"),
    ("model.use_tam=3", "expected true or false"),
    ("model.tasks=[heatmap, depth]", "unknown task"),
    ("model.tasks=[mesh]", "at least one of"),
    ("model.input_size=130", "multiple of 4"),
    ("model.num_stacks", "section.key=value"),
    ("model.tasks=[heatmap", "override 'model.tasks=[heatmap': value is not valid YAML"),
    ("train.device=[cpu", "override 'train.device=[cpu': value is not valid YAML"),
    ("model.stem_channels=[1, 2, 3]", "expected 2 values"),
    ("model.decoder_widths=[64, 64, 128, 256]", "decoder_channels \\(32\\) first"),
    ("model.decoder_widths=[32, 64]", "one width per encoder stage"),
    ("model.stem_kernels=[7, 4]", "model.stem_kernels: must be odd numbers >= 1, got [7, 4]"),
    ("train.lr=fast", "expected a number"),
    ("train.silhouette_samples=-1", "must be >= 0"),
    ("train.final_plain_fraction=1", "final_plain_fraction: must be in"),
    # Values a layer, the schedule or the loop would only fail on later (or hang on, for a zero
    # regressor grid), named here instead.
    ("model.regressor_grid=0", "model.regressor_grid: must be >= 1, got 0"),
    ("model.input_size=0", "model.input_size: must be >= 1, got 0"),
    ("model.encoder_widths=[0, 48, 64, 96]", "model.encoder_widths: must be >= 1, got [0, 48, 64, 96]"),
    ("model.tam_reduction=0", "model.tam_reduction: must be >= 1"),
    ("model.crop_extent_m=0", "model.crop_extent_m: must be > 0"),
    ("model.silhouette_sigma=-1", "model.silhouette_sigma: must be > 0"),
    ("model.hand_model=bogus", "model.hand_model: must be one of auto, mano, procedural, got 'bogus'"),
    ("train.lr=.nan", "train.lr: must be a finite number, got nan"),
    ("train.lr=-1", "train.lr: must be > 0, got -1.0"),
    ("train.log_every=0", "train.log_every: must be >= 1"),
    ("train.steps=-1", "train.steps: must be >= 1"),
    ("train.min_lr_ratio=2", "train.min_lr_ratio: must be in [0, 1]"),
    ("data.std=[0, 0, 0]", "data.std: must be > 0"),
    ("train.best_metric=bogus", "train.best_metric: must be BRANCH/METRIC"),
    ("loss.heatmap_hard_joints=-2", "loss.heatmap_hard_joints: must be >= 0, got -2"),
])
def test_bad_overrides_are_one_line_errors(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")) as error:
        load_config(preset="tiny", overrides=[override])
    assert "\n" not in str(error.value)


def test_sizes_follow_the_side_that_was_set() -> None:
    assert load_config(preset="tiny", overrides=["data.input_size=96"]).model.input_size == 96
    assert load_config(preset="tiny", overrides=["model.mask_size=64"]).data.mask_size == 64
    with pytest.raises(ConfigError, match="differs from model.input_size"):
        load_config(preset="tiny", overrides=["data.input_size=96", "model.input_size=64"])


def test_file_errors_name_the_file(tmp_path) -> None:
    with pytest.raises(ConfigError, match="missing.yaml: config file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml: line 2, column 1: not valid YAML"):
        load_config(bad)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("model:\n  decoder_channel: 8\n")
    with pytest.raises(ConfigError, match=r"unknown.yaml: unknown key 'model.decoder_channel'"):
        load_config(unknown)
    with pytest.raises(ConfigError, match="unknown preset"):
        load_config(preset="huge")


def test_tiny_is_small() -> None:
    model = tiny().model
    assert model.encoder_block == "basic" and model.decoder_channels <= 64


@pytest.mark.parametrize("hardware, expected", [(True, "tiny-bf16"), (False, "tiny-fp32")])
def test_tiny_follows_the_matrix_hardware(monkeypatch: pytest.MonkeyPatch, hardware: bool, expected: str) -> None:
    from hiu_model import presets

    monkeypatch.setattr(presets, "bf16_matrix_hardware", lambda device="auto": hardware)
    assert load_config(preset="tiny") == load_config(preset=expected)


@pytest.mark.parametrize("cuda, amx, device, expected", [
    (True, False, "auto", "tiny-bf16"), (True, False, "cuda:0", "tiny-bf16"), (True, False, "cpu", "tiny-fp32"),
    (True, True, "cpu", "tiny-bf16"), (False, False, "auto", "tiny-fp32"), (False, True, "auto", "tiny-bf16")])
def test_tiny_follows_the_device_it_trains_on(monkeypatch: pytest.MonkeyPatch, cuda: bool, amx: bool, device: str,
                                              expected: str) -> None:
    # A CUDA machine told to train on its CPU gets the network for that CPU.
    from hiu_model import presets

    monkeypatch.setattr(presets, "bf16_matrix_hardware", bf16_matrix_hardware)  # the machine's own choice
    monkeypatch.setattr(presets.torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(presets, "cpu_has_bf16_matmul", lambda: amx)
    given = [f"train.device={device}"]
    assert load_config(preset="tiny", overrides=given) == load_config(preset=expected, overrides=given)


def test_the_device_of_the_file_or_the_last_override_picks_tiny(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    from hiu_model import presets

    monkeypatch.setattr(presets, "bf16_matrix_hardware", lambda device="auto": device != "cpu")
    file = tmp_path / "run.yaml"
    file.write_text("preset: tiny\ntrain:\n  device: cpu\n")
    assert load_config(file).model == load_config(preset="tiny-fp32").model
    assert load_config(file, overrides=["train.device=auto"]).model == load_config(preset="tiny-bf16").model
    last = ["train.device=auto", "train.device=cpu"]
    assert load_config(preset="tiny", overrides=last).model == load_config(preset="tiny-fp32").model


def test_the_float32_preset_is_the_bf16_one_with_fewer_convolutions() -> None:
    fast, full = load_config(preset="tiny-fp32"), load_config(preset="tiny-bf16")
    assert (fast.model.num_stacks, full.model.num_stacks) == (1, 2)
    assert "pof" not in fast.model.tasks and "pof" in full.model.tasks
    assert (fast.model.stem_kernels, fast.model.decoder_head_conv) == ((7, 3), False)
    assert sum(fast.model.encoder_blocks) > sum(full.model.encoder_blocks)  # depth where maps are small
    # Everything but the network and the augmentation's range is shared: the crops, targets,
    # losses and training schedule.
    assert (fast.loss, fast.train) == (full.loss, full.train)
    milder = {"rotation_deg", "scale_range"}
    assert fast.data.rotation_deg < full.data.rotation_deg
    assert full.data.scale_range[0] < fast.data.scale_range[0] < 1 < fast.data.scale_range[1] < full.data.scale_range[1]
    assert {k: v for k, v in vars(fast.data).items() if k not in milder} == \
        {k: v for k, v in vars(full.data).items() if k not in milder}


def test_numbers_in_exponent_notation() -> None:
    # YAML 1.1 reads 3e-3 (no dot) as a string; a number field takes it as the number it is.
    config = load_config(preset="tiny", overrides=["train.lr=3e-3", "train.weight_decay=1.0e-5"])
    assert config.train.lr == 0.003 and config.train.weight_decay == 1e-5


def test_off_stays_a_word_in_text_fields() -> None:
    # YAML 1.1 reads off/on as booleans; a text field gets the word back.
    assert load_config(preset="tiny", overrides=["train.amp=off"]).train.amp == "off"


def test_a_yaml_syntax_error_names_its_line(tmp_path) -> None:
    path = tmp_path / "mix.yaml"
    path.write_text("preset: tiny\ntrain:\n  datasets:\n    - path: data/freihand\n     weight: 2\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value).startswith(f"{path}: line 5, column 6: not valid YAML (")
    assert "\n" not in str(error.value)
    path.write_text("train:\n\tsteps: 2\n")  # a tab cannot indent YAML
    with pytest.raises(ConfigError, match=r"mix.yaml: line 2, column 1: not valid YAML \(.*tab"):
        load_config(path)


def test_a_key_given_twice_is_an_error_not_a_silent_override(tmp_path) -> None:
    # PyYAML keeps the last of two equal keys: a second train: section would drop the first.
    path = tmp_path / "twice.yaml"
    path.write_text("train:\n  steps: 2\nmodel:\n  num_stacks: 1\ntrain:\n  lr: 0.1\n")
    with pytest.raises(ConfigError, match=r"twice.yaml: line 5, column 1: 'train' is given twice \(first at line 1\)"):
        load_config(path)
    path.write_text("train:\n  steps: 2\n  steps: 3\n")
    with pytest.raises(ConfigError, match=r"line 3, column 3: 'steps' is given twice \(first at line 2\)"):
        load_config(path)
