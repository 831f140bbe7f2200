"""``hiu-data train`` under ``torchrun`` (2 processes, gloo): what the user sees and when it stops."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hiu_cli.main import main
from tests.targets.handmade import write_hands
from tests.tensorboard_events import csv_scalars, tensorboard_scalars

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--preset", "tiny", "--set", "model.input_size=32", "--set", "model.num_stacks=1",
         "--set", "model.decoder_channels=16", "--set", "model.regressor_hidden=64", "--set", "train.batch_size=2",
         "--set", "train.num_workers=0", "--set", "train.device=cpu"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def hands(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_hands(tmp_path_factory.mktemp("hands"), 8, seed=3)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(processes: int, *args: str, cwd: Path, program: tuple[str, ...] = ("-m", "hiu_cli.main"),
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node N -m hiu_cli.main ARGS`` (stderr of all processes together)."""
    path = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(path), **(env or {})}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
               "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), *program, *args]
    # A hang (a process left waiting in a collective) fails the test instead of blocking it.
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=180)


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize("problem", ["missing data", "bad value", "empty unlabeled folder"])
def test_an_error_every_process_meets_is_printed_once(problem: str, hands: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    args = {"missing data": ["--data", str(tmp_path / "nowhere")],
            "bad value": ["--data", str(hands), "--set", "train.lr=fast"],
            # rank 0 converts the folder for all; the other rank waits for it
            "empty unlabeled folder": ["--data", str(hands), "--unlabeled", str(tmp_path / "empty")]}[problem]
    done = _torchrun(2, "train", *SMALL, *args, "--steps", "2", "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert done.returncode != 0
    errors = _error_lines(done.stderr)
    assert len(errors) == 1, done.stderr[-3000:]
    assert {"missing data": "nowhere", "bad value": "train.lr", "empty unlabeled folder": "empty"}[problem] in errors[0]
    assert "[rank1]" not in done.stderr, done.stderr[-3000:]  # no traceback of the waiting process
    assert not (tmp_path / "run").exists()


def test_resume_with_another_process_count_is_refused(hands: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(["train", *SMALL, "--data", str(hands), "--steps", "2", "--out", str(run)]) == 0
    capsys.readouterr()
    before = (run / "metrics.csv").read_text()
    done = _torchrun(2, "train", "--steps", "4", "--out", str(run), "--resume", cwd=tmp_path)
    assert done.returncode != 0
    errors = _error_lines(done.stderr)
    assert len(errors) == 1 and "trained with 1 process" in errors[0] and "without torchrun" in errors[0], \
        done.stderr[-3000:]
    # Nothing was trained or rewritten.
    assert (run / "metrics.csv").read_text() == before
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-000002"]


def test_only_rank_0_logs_and_reports(hands: Path, tmp_path: Path) -> None:
    done = _torchrun(2, "-v", "train", *SMALL, "--data", str(hands), "--steps", "2",
                     "--set", "train.max_minutes=0.00001", "--set", "train.log_every=1", "--out", str(tmp_path / "run"),
                     cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stderr.splitlines()
    assert sum("joined the gloo group" in line for line in lines) == 1
    assert sum("training data:" in line for line in lines) == 1
    # train.max_minutes: the processes agree on the step to stop at, and it is said once
    assert sum("train.max_minutes=1e-05 reached at step 1" in line for line in lines) == 1
    assert sum(line.startswith("done:") for line in lines) == 1
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()] == ["step-000001"]
    # one writer of the scalars: rank 0's event file, the same as its metrics.csv
    assert len(list((tmp_path / "run" / "tensorboard").iterdir())) == 1
    assert tensorboard_scalars(tmp_path / "run") == csv_scalars(tmp_path / "run") != {}


def test_a_usage_error_is_printed_once(tmp_path: Path) -> None:
    # (other usage errors in-process: tests/test_cli_usage.py)
    done = _torchrun(2, "train", "--no-such-option", "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert done.returncode != 0
    assert done.stderr.count("No such option: --no-such-option") == 1, done.stderr[-3000:]
    assert done.stderr.count("Usage: hiu-data train") == 1, done.stderr[-3000:]
    assert not (tmp_path / "run").exists()


# hiu-data with rank 1 stopping at its second training step: over a damaged image (an error of
# its own, printed by it) or killed (as the kernel's OOM killer would).
_FAILING_RANK = """
import os, signal, sys
from hiu_data.errors import HiuError
from hiu_model import train
from hiu_cli.main import main

original, calls = train._to_device, []
def to_device(*args, **kwargs):
    calls.append(1)
    if os.environ["RANK"] == "1" and len(calls) == 2:
        if os.environ["FAIL_HOW"] == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise HiuError("frame7.png: damaged image (planted)")
    return original(*args, **kwargs)
train._to_device = to_device
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("how", ["error", "kill"])
def test_a_process_stopping_mid_run_stops_rank_0_with_one_line(how: str, hands: Path, tmp_path: Path) -> None:
    script = tmp_path / "failing_rank.py"
    script.write_text(_FAILING_RANK)
    done = _torchrun(2, "train", *SMALL, "--data", str(hands), "--steps", "4", "--out", str(tmp_path / "run"),
                     cwd=tmp_path, program=(str(script),), env={"FAIL_HOW": how})
    assert done.returncode != 0
    stopped = ("error: another process of the torchrun group stopped, so this one did too: that process's error, "
               "or torchrun's summary of the exit codes, says why")
    planted = ["error: frame7.png: damaged image (planted)"] if how == "error" else []
    assert sorted(_error_lines(done.stderr)) == sorted([stopped, *planted]), done.stderr[-3000:]
    # Not rank 0's traceback of the collective it waited in, with gloo's words for the lost peer.
    assert "[rank0]" not in done.stderr and "by peer" not in done.stderr, done.stderr[-3000:]
    if how == "kill":  # what happened to rank 1 is still said, by torchrun
        assert "(SIGKILL)" in done.stderr, done.stderr[-3000:]


def test_only_a_lost_peer_is_turned_into_one_line() -> None:
    import torch

    from hiu_data.errors import HiuError, ReportedElsewhere
    from hiu_model.distributed import DistInfo, report_lost_peer

    def info(rank: int, world_size: int = 2) -> DistInfo:
        return DistInfo(rank=rank, world_size=world_size, local_rank=rank, device=torch.device("cpu"))

    lost = RuntimeError("[gloo/transport/tcp/pair.cc:553] Connection closed by peer [127.0.0.1]:4242. GLHF!")
    for rank, expected in ((0, HiuError), (1, ReportedElsewhere)):
        with pytest.raises(expected, match="another process of the torchrun group stopped") as raised:
            with report_lost_peer(info(rank)):
                raise lost
        assert raised.value.__cause__ is lost  # HIU_DEBUG=1 still shows it
    # Another error of a collective, a bug, or a single process: unchanged.
    for error, where in ((RuntimeError("Timed out waiting 3600000ms"), info(0)), (ValueError("bug"), info(0)),
                         (lost, info(0, world_size=1))):
        with pytest.raises(type(error)) as raised:
            with report_lost_peer(where):
                raise error
        assert raised.value is error


def test_minutes_without_steps_run_one_agreed_schedule(hands: Path, tmp_path: Path) -> None:
    # Every process times its own steps; training starts from the smallest estimate, and the
    # processes re-size together (a total they disagreed on would leave one waiting in a
    # collective: the timeout would fail the test).
    done = _torchrun(2, "train", *SMALL, "--data", str(hands), "--minutes", "0.05", "--out", str(tmp_path / "run"),
                     cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stderr.splitlines()
    assert sum("timing a few steps" in line for line in lines) == 1
    assert sum(line.startswith("done:") for line in lines) == 1
    from hiu_model.checkpoint import load_train_state, resolve_checkpoint

    state = load_train_state(resolve_checkpoint(tmp_path / "run"))
    assert state["world_size"] == 2 and state["schedule"]["sized"]
