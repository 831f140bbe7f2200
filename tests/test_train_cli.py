"""The train / eval / predict commands end to end on a few drawn hands."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from hiu_cli.main import main
from hiu_data.io.images import decode, encode
from hiu_data.io.parquet import HandDataset
from hiu_data.schema import HandSample
from hiu_model.presets import bf16_matrix_hardware as MACHINE_BF16_MATRIX_HARDWARE  # before conftest's patch
from tests.targets.handmade import write_hands

SMALL = ["--set", "model.input_size=32", "--set", "model.num_stacks=1", "--set", "model.decoder_channels=16",
         "--set", "model.regressor_hidden=64", "--set", "train.log_every=1"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _one_image_with_its_box(tmp_path: Path, data: Path) -> tuple[Path, Path, HandSample]:
    """A folder holding the first hand's image as hand.png, a boxes JSON with its box, and its record."""
    images = tmp_path / "images"
    images.mkdir()
    record = HandDataset(data)[0]
    (images / "hand.png").write_bytes(encode(decode(record.image_bytes), ".png"))
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"hand.png": [record.bbox.tolist()]}))
    return images, boxes, record


def test_train_eval_predict_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_hands(tmp_path / "data", 4, seed=7)
    run = tmp_path / "run"
    code = main(["train", "--preset", "tiny", *SMALL, "--data", str(data), "--val", str(data), "--steps", "2",
                 "--batch-size", "2", "--workers", "0", "--out", str(run)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert (run / "checkpoints" / "step-000002" / "model.safetensors").exists()
    assert f"run folder {run}" in err.splitlines()

    # Resume with more steps: the run's own config, extended by the flag.
    assert main(["train", "--out", str(run), "--resume", "--steps", "3"]) == 0
    assert (run / "checkpoints" / "step-000003").exists()
    capsys.readouterr()

    assert main(["eval", str(run), str(data), "--json", "--max-samples", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["datasets"]["handmade"]["rows"] == 2 and "pck@0.1" in report["datasets"]["handmade"]["heatmap"]
    assert report["checkpoint"]["step"] in (2, 3)
    assert main(["eval", str(run), str(data), "--max-samples", "2"]) == 0
    assert "heat-map branch" in capsys.readouterr().out
    assert main(["eval", str(run), str(data), "--json", "--max-samples", "2", "--tta-rotation", "30"]) == 0
    turned = json.loads(capsys.readouterr().out)
    assert turned["tta_rotation_deg"] == 30 and report["tta_rotation_deg"] == 0
    assert turned["datasets"]["handmade"]["heatmap"]["epe_px"] != report["datasets"]["handmade"]["heatmap"]["epe_px"]
    assert main(["eval", str(run), str(data), "--tta-rotation", "-5"]) == 2  # usage error, no traceback

    images, boxes, record = _one_image_with_its_box(tmp_path, data)
    assert main(["predict", str(run), str(images), "--out", str(tmp_path / "pred"), "--boxes", str(boxes)]) == 0
    written = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    assert len(written["images"]["hand.png"]) == 1
    assert main(["predict", str(run), str(images), "--out", str(tmp_path / "turned"), "--boxes", str(boxes),
                 "--tta-rotation", "20"]) == 0
    turned = json.loads((tmp_path / "turned" / "predictions.json").read_text())
    assert turned["tta_rotation_deg"] == 20 and written["tta_rotation_deg"] == 0
    assert turned["images"]["hand.png"][0]["keypoints_2d"] != written["images"]["hand.png"][0]["keypoints_2d"]
    overlay = decode((tmp_path / "pred" / "hand.png").read_bytes())
    assert overlay.shape == (record.height, record.width, 3)

    # COCO-format detections (what synth-wild writes) work too, and their hand side is kept.
    other = "left" if written["images"]["hand.png"][0]["hand_side"] == "right" else "right"
    coco = tmp_path / "detections.json"
    coco.write_text(json.dumps({"images": [{"id": 1, "file_name": "hand.png"}, {"id": 2, "file_name": "elsewhere.png"}],
                                "annotations": [{"image_id": 1, "bbox": record.bbox.tolist(), "hand_side": other},
                                                {"image_id": 2, "bbox": [0, 0, 5, 5]}]}))
    assert main(["predict", str(run), str(images), "--out", str(tmp_path / "coco"), "--boxes", str(coco)]) == 0
    hands = json.loads((tmp_path / "coco" / "predictions.json").read_text())["images"]["hand.png"]
    assert len(hands) == 1 and hands[0]["hand_side"] == other
    np.testing.assert_allclose(hands[0]["bbox"], record.bbox, atol=1e-4)
    boxes.write_text(json.dumps({"hand.png": [[1, 2, 3]]}))
    capsys.readouterr()
    assert main(["predict", str(run), str(images), "--out", str(tmp_path / "bad"), "--boxes", str(boxes)]) == 1
    assert "'hand.png': expected a list of [x, y, w, h] boxes" in capsys.readouterr().err

    # --device auto (the default of every command that runs the model) picks CUDA when there is
    # one and the CPU otherwise, for each of them.
    capsys.readouterr()
    assert main(["eval", str(run), str(data), "--json", "--max-samples", "2", "--device", "auto"]) == 0
    assert main(["predict", str(run), str(images), "--out", str(tmp_path / "auto"), "--device", "auto"]) == 0
    assert main(["pseudo-label", str(run), str(images), str(tmp_path / "auto_pseudo"), "--device", "auto"]) == 0
    assert (tmp_path / "auto_pseudo" / "pseudo" / "manifest.json").is_file()

    # An existing output is refused without --overwrite, and replaced whole with it: the overlays
    # of the earlier call do not stay beside a predictions.json that no longer lists them.
    other_images = tmp_path / "other_images"
    other_images.mkdir()
    (other_images / "second.png").write_bytes((images / "hand.png").read_bytes())
    capsys.readouterr()
    assert main(["predict", str(run), str(other_images), "--out", str(tmp_path / "pred")]) == 1
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'pred'}: output exists; pass --overwrite to replace it"
    assert json.loads((tmp_path / "pred" / "predictions.json").read_text()) == written
    assert main(["predict", str(run), str(other_images), "--out", str(tmp_path / "pred"), "--overwrite"]) == 0
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == ["predictions.json", "second.png"]
    assert list(json.loads((tmp_path / "pred" / "predictions.json").read_text())["images"]) == ["second.png"]
    assert not list(tmp_path.glob(".pred.*"))
    # --overwrite never replaces the folder the images are read from.
    capsys.readouterr()
    assert main(["predict", str(run), str(other_images), "--out", str(other_images), "--overwrite"]) == 1
    assert "holds the input image" in capsys.readouterr().err
    assert (other_images / "second.png").is_file()

    # A corrupt image after a good one: the output folder stays as it was (here: absent), and an
    # existing one replaced with --overwrite is left as it was.
    (images / "zz_broken.png").write_bytes(b"not an image")
    assert main(["predict", str(run), str(images), "--out", str(tmp_path / "partial"), "--batch-size", "1"]) == 1
    assert "zz_broken.png" in capsys.readouterr().err
    assert not (tmp_path / "partial").exists() and not list(tmp_path.glob(".partial.tmp-*"))
    before = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    assert main(["predict", str(run), str(images), "--out", str(tmp_path / "pred"), "--batch-size", "1",
                 "--overwrite"]) == 1
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == ["predictions.json", "second.png"]
    assert json.loads((tmp_path / "pred" / "predictions.json").read_text()) == before


def test_a_run_from_before_first_block_zeros_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Runs stored before ``model.first_block_zeros`` existed trained with the zeros and lack the
    key in their configuration: they resume as they trained."""
    data = write_hands(tmp_path / "data", 2, seed=7)
    run = tmp_path / "run"
    assert main(["train", "--preset", "tiny", *SMALL, "--set", "model.first_block_zeros=true", "--data", str(data),
                 "--steps", "2", "--batch-size", "2", "--workers", "0", "--out", str(run)]) == 0
    for stored in [run / "config.yaml", *run.glob("checkpoints/*/config.json")]:
        text = stored.read_text()
        assert "first_block_zeros" in text
        if stored.suffix == ".yaml":
            stored.write_text(yaml.safe_dump(_without_key(yaml.safe_load(text), "first_block_zeros"), sort_keys=False))
        else:
            stored.write_text(json.dumps(_without_key(json.loads(text), "first_block_zeros")))
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume", "--steps", "3"]) == 0, capsys.readouterr().err
    assert (run / "checkpoints" / "step-000003").exists()
    resumed = json.loads((run / "checkpoints" / "step-000003" / "config.json").read_text())
    assert resumed["config"]["model"]["first_block_zeros"] is True


def _without_key(value: object, key: str) -> object:
    """``value`` (parsed JSON) with every mapping's ``key`` removed."""
    if isinstance(value, dict):
        return {k: _without_key(v, key) for k, v in value.items() if k != key}
    if isinstance(value, list):
        return [_without_key(v, key) for v in value]
    return value



def test_the_float32_preset_trains_evaluates_and_predicts(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # On a machine without bf16 matrix hardware tiny is tiny-fp32: one block and no POF task,
    # so every command must do without the POF maps.
    from hiu_model import presets

    monkeypatch.setattr(presets, "bf16_matrix_hardware", lambda device="auto": False)
    data = write_hands(tmp_path / "data", 4, seed=3)
    run = tmp_path / "run"
    small = ["--set", "model.input_size=32", "--set", "model.regressor_hidden=64"]
    assert main(["train", "--preset", "tiny", *small, "--data", str(data), "--steps", "2", "--batch-size", "2",
                 "--workers", "0", "--out", str(run)]) == 0
    assert "preset tiny: tiny-fp32 (this machine multiplies matrices in float32" in capsys.readouterr().err
    stored = (run / "config.yaml").read_text()
    assert "num_stacks: 1" in stored and "- pof" not in stored
    assert main(["eval", str(run), str(data), "--json", "--max-samples", "2"]) == 0
    report = json.loads(capsys.readouterr().out)["datasets"]["handmade"]
    assert {"heatmap", "mesh", "mask"} <= set(report)
    images, boxes, record = _one_image_with_its_box(tmp_path, data)
    assert main(["predict", str(run), str(images), "--out", str(tmp_path / "pred"), "--boxes", str(boxes)]) == 0
    predicted = json.loads((tmp_path / "pred" / "predictions.json").read_text())["images"]["hand.png"]
    assert len(predicted) == 1 and len(predicted[0]["keypoints_2d"]) == 21


@pytest.mark.parametrize("device, expected", [
    ("auto", "preset tiny: tiny-bf16 (this machine has bf16 matrix hardware)"),
    ("cpu", "preset tiny: tiny-fp32 (training on the CPU (train.device cpu), which multiplies matrices in float32")])
def test_the_preset_note_names_the_network_for_the_device(monkeypatch: pytest.MonkeyPatch, device: str,
                                                          expected: str) -> None:
    # On a CUDA machine without AMX, --device cpu trains the float32 network, and says why.
    from hiu_cli.train import _resolved_preset_note
    from hiu_model import presets

    monkeypatch.setattr(presets, "bf16_matrix_hardware", MACHINE_BF16_MATRIX_HARDWARE)
    monkeypatch.setattr(presets.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(presets, "cpu_has_bf16_matmul", lambda: False)
    assert (_resolved_preset_note("tiny", None, device) or "").startswith(expected)
    assert _resolved_preset_note("tiny-fp32", None, device) is None


def test_corrupt_checkpoint_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "run" / "checkpoints" / "step-000001"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"\x00" * 7)
    (folder / "config.json").write_text("{not json")
    assert main(["eval", str(tmp_path / "run"), str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "config.json: corrupt JSON" in err


def test_ctrl_c_saves_a_checkpoint_and_the_loader_workers_survive_it(tmp_path: Path) -> None:
    data = write_hands(tmp_path / "data", 4, seed=7)
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    # Its own process group, as a terminal's foreground job: Ctrl-C reaches the loader worker too.
    process = subprocess.Popen(
        [sys.executable, "-m", "hiu_cli.main", "train", "--preset", "tiny", *SMALL, "--data", str(data),
         "--steps", "100000", "--batch-size", "2", "--workers", "1", "--out", str(run)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (run / "metrics.csv").exists() or "train/loss" not in (run / "metrics.csv").read_text():
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1][-2000:]
            time.sleep(0.2)
        os.killpg(process.pid, signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, err[-2000:]
    message = err.strip().splitlines()[-1]
    step = int(message.split("SIGINT at step ")[1].split(":")[0])
    assert message.endswith(f"continue with: hiu-data train --out {run} --resume") and step >= 1
    assert [p.name for p in (run / "checkpoints").iterdir()] == [f"step-{step:06d}"]
    assert "Traceback" not in err
    for _ in range(50):  # the loader worker leaves with the main process
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("a process of the training run outlived it")


def test_only_the_main_process_reports_an_interruption(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    import hiu_model.train
    from hiu_model.interrupt import TrainingInterrupted

    data = write_hands(tmp_path / "data", 2, seed=7)
    for is_main in (True, False):
        def stopped(*args: object, **kwargs: object) -> None:
            raise TrainingInterrupted(signal.SIGTERM, 5, str(tmp_path / "run"), is_main)

        monkeypatch.setattr(hiu_model.train, "train", stopped)
        assert main(["train", "--preset", "tiny", "--data", str(data), "--out", str(tmp_path / "run")]) == 143
        err = capsys.readouterr().err
        assert ("interrupted: SIGTERM at step 5" in err) is is_main


def test_minutes_size_the_schedule_and_stop_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    from hiu_model import budget

    data = write_hands(tmp_path / "data", 4, seed=7)
    timed: list = []

    def timing(cfg, batch_size: int, max_seconds: float | None = None) -> float:  # noqa: ANN001
        # Timing that takes 0.3 s and finds 0.05 s per step.
        timed.append((batch_size, max_seconds))
        time.sleep(0.3)
        return 0.05

    monkeypatch.setattr(budget, "time_step", timing)
    common = ["train", "--preset", "tiny", *SMALL, "--batch-size", "2", "--workers", "0"]

    def run_config(run: Path) -> dict:
        return yaml.safe_load((run / "config.yaml").read_text())["train"]

    # 0.02 minutes = 1.2 s, of which the timing takes 0.3 s (at most a tenth of the budget is
    # asked for): the schedule and the stop fit the 0.9 s or less that are left.
    assert main([*common, "--data", str(data), "--minutes", "0.02", "--out", str(tmp_path / "a")]) == 0
    assert len(timed) == 1 and timed[0][0] == 2 and timed[0][1] <= 0.12
    assert 10 <= run_config(tmp_path / "a")["steps"] <= int(0.9 / 0.05)
    assert 0 < run_config(tmp_path / "a")["max_minutes"] <= 0.9 / 60
    assert f"{run_config(tmp_path / 'a')['steps']} steps of batch 2" in " ".join(capsys.readouterr().err.split())

    # --steps sets the schedule: --minutes only stops the run.
    assert main([*common, "--data", str(data), "--minutes", "5", "--steps", "2", "--out", str(tmp_path / "b")]) == 0
    assert len(timed) == 1 and run_config(tmp_path / "b")["steps"] == 2 and run_config(tmp_path / "b")["max_minutes"] == 5
    capsys.readouterr()

    # A wrong folder, or a run folder in use, is named before any timing.
    assert main([*common, "--data", str(tmp_path / "missing"), "--minutes", "1", "--out", str(tmp_path / "c")]) == 1
    assert len(timed) == 1 and f"{tmp_path / 'missing'}: no such folder" in capsys.readouterr().err
    assert main([*common, "--data", str(data), "--minutes", "1", "--out", str(tmp_path / "a")]) == 1
    assert len(timed) == 1 and "holds a run" in capsys.readouterr().err

    # --set train.steps=N is an explicit step count as well: no timing, never re-sized.
    assert main([*common, "--data", str(data), "--minutes", "5", "--set", "train.steps=2",
                 "--out", str(tmp_path / "e")]) == 0
    assert len(timed) == 1 and run_config(tmp_path / "e")["steps"] == 2


def test_minutes_resize_the_schedule_to_the_pace_and_say_so(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    import hiu_model.train
    from hiu_model import budget, schedule
    from hiu_model.checkpoint import load_train_state, resolve_checkpoint
    from hiu_model.run_log import read_metrics

    data = write_hands(tmp_path / "data", 4, seed=7)
    # The timing finds 0.5 s a step, the run's steps take 0.25 s of a fake clock: the run re-sizes.
    monkeypatch.setattr(budget, "time_step", lambda cfg, batch_size, max_seconds=None: 0.5)
    clock = [0.0]
    seed_step = hiu_model.train.seed_step

    def timed_step(seed: int, step: int, rank: int) -> None:
        clock[0] += 0.25
        seed_step(seed, step, rank)

    monkeypatch.setattr(hiu_model.train, "seed_step", timed_step)
    monkeypatch.setattr(hiu_model.train, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    monkeypatch.setattr(schedule, "MIN_WINDOW_STEPS", 2)
    run = tmp_path / "run"
    assert main(["train", "--preset", "tiny", *SMALL, "--batch-size", "2", "--workers", "0", "--data", str(data),
                 "--minutes", "0.1", "--out", str(run)]) == 0
    err = " ".join(capsys.readouterr().err.split())
    planned = int(re.search(r"(\d+) steps of batch 2 \(train.steps\)", err).group(1))
    # About 6 s: 11 or so steps of 0.5 s planned; at step 3 (0.75 s, past 10 %) they take 0.25 s.
    resized = re.search(rf"step 3 \(0.0125 of 0.0\d+ min, 0.25 s a step\): schedule re-sized from {planned} to (\d+) "
                        r"steps to end inside train.max_minutes", err)
    assert resized, err
    total = int(resized.group(1))
    assert total >= 1.5 * planned  # twice as many steps fit, less the reserve
    state = load_train_state(resolve_checkpoint(run))
    assert state["step"] == state["schedule"]["total"] == total
    assert [r["value"] for r in read_metrics(run) if r["tag"] == "train/planned_steps"][-1] == total
    assert "stopped at the time limit" not in err


def test_a_budget_the_timing_uses_up_is_named_as_given_and_trains_one_step(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from hiu_model import budget

    def timing(cfg, batch_size: int, max_seconds: float | None = None) -> float:  # noqa: ANN001
        time.sleep(0.7)  # longer than the whole budget: a loaded machine, or a slow first step
        return 0.05

    monkeypatch.setattr(budget, "time_step", timing)
    data = write_hands(tmp_path / "data", 4, seed=7)
    assert main(["train", "--preset", "tiny", *SMALL, "--batch-size", "2", "--workers", "0", "--data", str(data),
                 "--minutes", "0.01", "--out", str(tmp_path / "run")]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "warning: timing a step took all of --minutes 0.01 (0.6 s)" in err, err
    assert "train.max_minutes=1e-06" not in err and "in the 0.0 minutes left" not in err
    assert "stopped at the time limit after step 1 of 10 (--minutes 0.01, the timing included), with a checkpoint" in err
    assert (tmp_path / "run" / "checkpoints" / "step-000001").is_dir()


def test_a_run_stopped_by_its_time_limit_says_so_plainly(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          caplog: pytest.LogCaptureFixture) -> None:
    data = write_hands(tmp_path / "data", 4, seed=7)
    # A limit far below one step: the run stops after its first step, as asked.
    assert main(["train", "--preset", "tiny", *SMALL, "--batch-size", "2", "--workers", "0", "--data", str(data),
                 "--steps", "50", "--set", "train.max_minutes=0.00001", "--out", str(tmp_path / "run")]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "stopped at the time limit after step 1 of 50 (train.max_minutes=1e-05), with a checkpoint" in err
    assert "WARNING" not in err and not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert (tmp_path / "run" / "checkpoints" / "step-000001").is_dir()


def test_a_corrupt_image_read_by_a_loader_worker_ends_the_run(tmp_path: Path) -> None:
    from hiu_data.convert import convert

    data = write_hands(tmp_path / "data", 4, seed=7)
    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        (images / f"{i}.png").write_bytes(encode(np.full((48, 48, 3), 90 + i, np.uint8)))
    convert("folder", images, tmp_path / "unlabeled", images="reference")
    for path in images.iterdir():  # spoilt after conversion: found by the training loader only
        path.write_bytes(b"not an image")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[1]), *filter(None, [os.environ.get("PYTHONPATH")])])}
    process = subprocess.Popen(
        [sys.executable, "-m", "hiu_cli.main", "train", "--preset", "tiny", *SMALL, "--data", str(data),
         "--unlabeled", str(tmp_path / "unlabeled"), "--steps", "50", "--batch-size", "4", "--workers", "1",
         "--out", str(tmp_path / "run")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, err = process.communicate(timeout=120)  # it waited for its worker for ever
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # the worker ignores SIGTERM
    assert process.returncode == 1, err[-2000:]
    # The worker's error as the command line prints any other: one line naming the image.
    assert err.strip().splitlines()[-1].startswith("error: ") and "cannot be decoded" in err, err[-2000:]
    assert "Traceback" not in err
