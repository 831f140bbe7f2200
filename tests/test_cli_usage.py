"""What a new user meets first: help texts as written, and one-line errors with a hint for the
usual slips (arguments swapped, a raw folder or a run's parent passed where a converted
dataset or a run is expected)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from hiu_cli.main import app, main

# Rich reads "[word ...]" in a help text as a style tag and drops it; "\[" keeps it.
_RICH_TAG = re.compile(r"(?<!\\)\[[a-zA-Z#/@][^\[\]]*\]")


def _all_commands() -> list[tuple[str, Any]]:
    import typer.main

    found: list[tuple[str, Any]] = []

    def walk(cmd: Any, prefix: str) -> None:
        found.append((prefix, cmd))
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, f"{prefix} {name}".strip())

    walk(typer.main.get_command(app), "")
    return found


def test_no_help_text_loses_brackets_to_rich_markup() -> None:
    lost = []
    for name, cmd in _all_commands():
        texts = [cmd.help or ""] + [getattr(p, "help", None) or "" for p in cmd.params]
        lost += [f"{name}: {t}" for t in texts if _RICH_TAG.search(t)]
    assert not lost


def test_predict_help_shows_the_box_format(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "300")
    assert main(["predict", "--help"]) == 0
    assert '{"file name": [[x, y, w, h], ...]}' in capsys.readouterr().out


def _write_dataset(folder: Path) -> Path:
    """Three hands with embedded images as ``folder/toy/``."""
    from tests.targets.handmade import write_hands

    return write_hands(folder, 3, dataset="toy")


def _one_error(capsys: pytest.CaptureFixture[str]) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_a_shard_passed_as_the_dataset_names_the_folder_to_pass(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    data = _write_dataset(tmp_path)
    shard = next(data.glob("*.parquet"))
    assert main(["validate", str(shard)]) == 1
    line = _one_error(capsys)
    assert f"{shard}: is a file" in line and f"pass the dataset folder {data}" in line


def test_a_raw_folder_passed_as_a_dataset_says_to_convert_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "raw" / "training").mkdir(parents=True)
    assert main(["info", str(tmp_path / "raw")]) == 1
    assert "hiu-data convert NAME RAW_ROOT OUT" in _one_error(capsys)


def test_a_folder_two_levels_above_the_datasets_names_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write_dataset(tmp_path / "demo" / "converted")
    assert main(["info", str(tmp_path / "demo")]) == 1
    assert _one_error(capsys).endswith(f"; converted datasets are in {tmp_path / 'demo' / 'converted'}: pass that folder")


def _fake_run(run: Path, step: int = 5) -> Path:
    """A run folder as far as finding its checkpoints goes (the weights are not read)."""
    folder = run / "checkpoints" / f"step-{step:06d}"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"")
    (folder / "config.json").write_text("{}")
    return folder


@pytest.mark.parametrize("slip", ["parent", "checkpoints", "weights", "dataset"])
def test_a_wrong_checkpoint_argument_says_what_to_pass(slip: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    step = _fake_run(tmp_path / "runs" / "a")
    data = _write_dataset(tmp_path / "data")
    given, hint = {
        "parent": (tmp_path / "runs", f"it holds runs: pass one of them ({tmp_path / 'runs' / 'a'})"),
        "checkpoints": (step.parent, f"pass the run folder {tmp_path / 'runs' / 'a'}"),
        "weights": (step / "model.safetensors", f"pass the checkpoint folder {step}"),
        "dataset": (data, "it is a converted dataset: the checkpoint or run folder comes first"),
    }[slip]
    assert main(["eval", str(given), str(data)]) == 1
    line = _one_error(capsys)
    assert line.startswith(f"error: {given}: ") and line.endswith(hint)


def test_export_coco_with_the_paths_swapped_names_the_input_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _write_dataset(tmp_path / "data")
    before = sorted(tmp_path.rglob("*"))
    # An earlier export's JSON given first, the dataset second: the dataset must not be called
    # an existing output that --overwrite would replace.
    (tmp_path / "old.json").write_text("{}")
    assert main(["export", "coco", str(tmp_path / "old.json"), str(data)]) == 1
    assert _one_error(capsys).startswith(f"error: {tmp_path / 'old.json'}: is a file, expected a converted dataset")
    assert main(["export", "coco", str(data), str(tmp_path / "new" / "out.json"), "--split", "val"]) == 1
    assert "no rows to export in split(s) val" in _one_error(capsys)
    assert sorted(tmp_path.rglob("*")) == [*before, tmp_path / "old.json"]


@pytest.mark.parametrize("given", ["dataset", "run"])
def test_a_folder_given_as_the_train_config_says_which_flag_was_meant(given: str, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    data = _write_dataset(tmp_path / "data")
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("train:\n  steps: 3\n")
    folder, hint = {"dataset": (data, "training data goes in --data DIR"),
                    "run": (run, f"to continue that run: --out {run} --resume")}[given]
    assert main(["train", str(folder), "--steps", "1", "--out", str(tmp_path / "new")]) == 1
    line = _one_error(capsys)
    assert line.startswith(f"error: {folder}: is a folder, expected a YAML config file; {hint}")
    assert not (tmp_path / "new").exists()


def test_convert_with_the_raw_folder_first_says_the_format_comes_first(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    raw = tmp_path / "RHD_published_v2"
    raw.mkdir()
    assert main(["convert", str(raw), "rhd", str(tmp_path / "out")]) == 1
    assert _one_error(capsys).startswith(f"error: {raw}: is a path, not a dataset format; the format comes first: "
                                         "hiu-data convert NAME RAW_ROOT OUT, with NAME one of freihand, rhd,")
    assert not (tmp_path / "out").exists()


def test_a_cuda_device_without_cuda_is_named_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from hiu_data.errors import HiuError
    from hiu_model.distributed import pick_device

    # eval, predict and pseudo-label take --device too: the message must not speak of train.device.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(HiuError, match=r"^device 'cuda': no CUDA device is available here; use 'cpu' or 'auto'$"):
        pick_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(HiuError, match=r"^device 'cuda:3': this machine has 1 CUDA device\(s\), cuda:0 to cuda:0$"):
        pick_device("cuda:3")


def test_batch_size_and_device_are_one_option_across_commands() -> None:
    commands = dict(_all_commands())
    for name in ("eval", "predict", "pseudo-label", "train"):
        (batch,) = [p for p in commands[name].params if p.name == "batch_size"]
        assert set(batch.opts) == {"--batch-size", "-b"}, name
    helps = {name: [p.help for p in commands[name].params if p.name == "device"][0]
             for name in ("eval", "predict", "pseudo-label")}
    assert len(set(helps.values())) == 1, helps


def test_convert_boxes_for_a_format_without_boxes_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    boxes = tmp_path / "detections.json"
    boxes.write_text('{"images": [], "annotations": []}')
    assert main(["convert", "rhd", str(raw), str(tmp_path / "out"), "--boxes", str(boxes)]) == 1
    assert _one_error(capsys) == "error: --boxes does not apply to convert rhd; it is an option of convert folder"
    assert not (tmp_path / "out").exists()


def test_long_work_logs_progress_lines_when_stderr_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import hiu_cli._common as common

    # Under pytest stderr is no terminal, as in a job writing to a log file.
    monkeypatch.setattr(common, "LOG_EVERY_S", 0.0, raising=False)
    data = _write_dataset(tmp_path / "data")
    assert main(["export", "coco", str(data), str(tmp_path / "coco" / "toy.json")]) == 0
    err = capsys.readouterr().err
    assert "export coco: 3 hands in " in err


def test_demo_stage_lines_keep_paths_whole(capsys: pytest.CaptureFixture[str]) -> None:
    from rich.console import Console
    from rich.progress import Progress

    from hiu_cli.demo import _RichReporter

    path = "/data/hands [run 2]/" + "deep/" * 20 + "raw"
    with Progress(console=Console(stderr=True, width=80)) as progress:
        reporter = _RichReporter(progress)
        reporter.start("convert", None)
        reporter.finish("convert", f"12 hands in {path}")
    assert f"done convert: 12 hands in {path}\n" in capsys.readouterr().err


def test_targets_preview_of_an_empty_split_names_the_splits_there(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    data = _write_dataset(tmp_path / "data")
    assert main(["targets", "preview", str(data), str(tmp_path / "sheets"), "--split", "val"]) == 1
    assert _one_error(capsys) == f"error: {data}: no rows in split 'val' (it has: train 3; choose one with --split)"


def test_convert_coco_with_images_and_json_swapped_says_the_json_comes_first(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _write_dataset(tmp_path / "data")
    coco = tmp_path / "coco" / "toy.json"
    assert main(["export", "coco", str(data), str(coco)]) == 0
    capsys.readouterr()
    images = coco.parent / "images"
    assert main(["convert", "coco", str(images), str(coco), str(tmp_path / "out")]) == 1
    assert _one_error(capsys) == (f"error: {images}: is a folder and {coco} a file: the annotations JSON comes first "
                                  "(hiu-data convert coco ANNOTATIONS.json IMAGE_ROOT OUT)")
    assert main(["convert", "coco", str(coco), str(images), str(tmp_path / "out")]) == 0


def test_predict_refuses_two_images_that_would_share_an_overlay(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    import cv2
    import numpy as np

    _fake_run(tmp_path / "run")  # never loaded: the inputs are refused first
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        cv2.imwrite(str(tmp_path / folder / "0001.png"), np.zeros((8, 8, 3), np.uint8))
    out = tmp_path / "overlays"
    assert main(["predict", str(tmp_path / "run"), str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]) == 1
    assert _one_error(capsys) == (f"error: {tmp_path / 'a' / '0001.png'} and {tmp_path / 'b' / '0001.png'}: both would "
                                  "be drawn as 0001.png; predict them into separate --out folders")
    assert not out.exists()


def test_predict_on_a_folder_of_sub_folders_says_it_reads_no_sub_folders(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    import cv2
    import numpy as np

    _fake_run(tmp_path / "run")
    (tmp_path / "images" / "seq1").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "images" / "seq1" / "0001.png"), np.zeros((8, 8, 3), np.uint8))
    assert main(["predict", str(tmp_path / "run"), str(tmp_path / "images"), "--out", str(tmp_path / "o")]) == 1
    assert _one_error(capsys).endswith("; predict reads no sub-folders: pass them (e.g. DIR/*/)")


def test_a_failed_conversion_leaves_no_empty_output_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import cv2
    import numpy as np

    # A folder of images whose second file is not an image: the conversion stops at it.
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), np.zeros((8, 8, 3), np.uint8))
    (images / "b.png").write_bytes(b"not a png")
    assert main(["convert", "folder", str(images), str(tmp_path / "new" / "out")]) == 1
    assert "b.png" in _one_error(capsys)
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()  # a folder that was there stays
    assert main(["convert", "folder", str(images), str(tmp_path / "kept")]) == 1
    assert (tmp_path / "kept").is_dir()


def test_a_failed_coco_export_leaves_no_empty_output_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hiu_data.io.parquet import write_dataset
    from tests.data_io.records import random_records

    # Among these rows is a reference-mode one whose image file is missing: the export fails there.
    data = write_dataset(random_records(3, seed=0, dataset="toy"), tmp_path / "data", dataset="toy")
    assert main(["export", "coco", str(data), str(tmp_path / "new" / "coco" / "toy.json")]) == 1
    assert "referenced image file is missing" in _one_error(capsys)
    assert not (tmp_path / "new").exists()


def test_every_device_option_defaults_to_auto() -> None:
    """A GPU user gets the GPU from every command that runs the model without asking for it; train
    takes its default from train.device, which is auto too."""
    from hiu_model.config import load_config

    defaults = {name: p.default for name, cmd in _all_commands() for p in cmd.params if p.name == "device"}
    assert set(defaults) == {"train", "eval", "predict", "pseudo-label"}
    assert defaults.pop("train") is None and load_config(None, "tiny", []).train.device == "auto"
    assert defaults == {"eval": "auto", "predict": "auto", "pseudo-label": "auto"}


def test_the_same_argument_reads_the_same_in_every_command(tmp_path: Path) -> None:
    """One concept, one name and one help text: the checkpoint of eval / predict / pseudo-label,
    the seed of synth / synth-wild / demo, the image count of synth / synth-wild / targets preview."""
    params = {(name, p.name): p for name, cmd in _all_commands() for p in cmd.params}
    checkpoint = {params[(c, "checkpoint")].help for c in ("eval", "predict", "pseudo-label")}
    assert len(checkpoint) == 1 and "best checkpoint" in checkpoint.pop()
    seeds = [params[(c, "seed")] for c in ("synth", "synth-wild", "demo")]
    assert len({p.help for p in seeds}) == 1 and all(p.help for p in seeds)
    assert main(["demo", "--seed", "-1", "--out", str(tmp_path / "demo")]) == 2  # refused before any work
    for command in ("synth", "synth-wild", "targets preview"):
        assert "-n" in params[(command, "n")].opts


def test_a_long_line_reaches_a_log_file_in_one_piece(capsys: pytest.CaptureFixture[str]) -> None:
    from hiu_cli._common import console

    line = "step 10/2000  " + "  ".join(f"loss_{k} 0.{k:04d}" for k in range(12))  # wider than 80 columns
    console.print(line, markup=False)
    assert capsys.readouterr().err == line + "\n"


@pytest.mark.parametrize("args", [["train", "--no-such-option"], ["train", "--steps", "0"],
                                  ["train", "--steps", "2"]],  # several processes need --out
                         ids=["unknown option", "value out of range", "command's own usage error"])
def test_a_usage_error_in_another_torchrun_process_is_left_to_rank_0(
        args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert main(args) == 2
    assert "Usage: hiu-data train" in capsys.readouterr().err
    monkeypatch.setenv("RANK", "1")
    # 0, not 2: torchrun stops the group at the first failed process, which could be this one,
    # before rank 0 has printed; rank 0's status makes the group fail.
    assert main(args) == 0
    assert capsys.readouterr().err == ""


def test_another_torchrun_process_runs_commands_and_their_exit_status(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert main(["schema", "--json"]) == 0
    assert '"sample_id"' in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("hiu ")
    # A command's own exit status (validate: 1 on a failed check) and its errors come through.
    import json

    from tests.targets.handmade import write_hands

    data = write_hands(tmp_path / "data", 2, seed=1)
    manifest = json.loads((data / "manifest.json").read_text())
    manifest["counts"]["train"] += 1
    (data / "manifest.json").write_text(json.dumps(manifest))
    assert main(["validate", str(data), "--skip-images", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["ok"] is False
    assert main(["info", str(tmp_path / "missing")]) == 1
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'missing'}: no such folder"


def test_help_paragraphs_are_not_cut_at_the_docstrings_line_breaks(capsys: pytest.CaptureFixture[str],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # Typer's rich help keeps a docstring's single line breaks: a paragraph wrapped at 100
    # columns in the source would come out as ragged half-lines at any terminal width.
    monkeypatch.setenv("COLUMNS", "300")
    assert main(["validate", "--help"]) == 0
    assert "visible keypoints and boxes inside the image" in capsys.readouterr().out
    assert main(["--help"]) == 0
    assert "train the tiny model (with a wild folder" in capsys.readouterr().out


def test_a_short_option_has_one_long_name_in_every_command() -> None:
    """-n, -j, -o, -s, ...: what a user learnt as `--n 4` of synth works wherever -n does."""
    long_names: dict[str, list[set[str]]] = {}
    for _, cmd in _all_commands():
        for p in cmd.params:
            opts = set(getattr(p, "opts", [])) | set(getattr(p, "secondary_opts", []))
            for short in (o for o in opts if len(o) == 2 and o.startswith("-") and o != "-h"):
                long_names.setdefault(short, []).append({o for o in opts if o.startswith("--")})
    shared = {short: set.intersection(*names) for short, names in long_names.items()}
    assert all(shared.values()), {short: names for short, names in long_names.items() if not shared[short]}


@pytest.mark.parametrize("args, option", [
    (["convert", "folder", "IMAGES", "OUT", "--images", "copy"], "--images"),
    (["convert", "folder", "IMAGES", "OUT", "--on-error", "ignore"], "--on-error"),
    (["predict", "RUN", "a.png", "--out", "OUT", "--on-error", "ignore"], "--on-error"),
    (["predict", "RUN", "a.png", "--out", "OUT", "--side", "both"], "--side"),
    (["pseudo-label", "RUN", "IMAGES", "OUT", "--on-error", "ignore"], "--on-error"),
    (["synth", "OUT", "--format", "coco"], "--format"),
])
def test_a_value_outside_an_options_choices_is_a_usage_error(args: list[str], option: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """As a value out of a range is: the usage and exit 2, before any work (nothing is written)."""
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "Usage: hiu-data" in err and f"Invalid value for '{option}'" in err and args[-1] in err
    assert list(tmp_path.iterdir()) == []
