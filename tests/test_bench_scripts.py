"""The benchmark scripts under bench/: each one's --help, and the commands bench/RESULTS.md and
the scripts' docstrings quote still name options that exist (not run: they take minutes)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
SCRIPTS = sorted(p.name for p in BENCH.glob("*.py") if p.name != "timing.py")  # timing.py: a helper module


# Runs each script given as ``python bench/NAME.py --help`` would, one after the other in one
# interpreter: each as ``__main__`` with its folder first on sys.path, as for a script. Several
# scripts import torch, which takes seconds per process. Prints {name: [exit code, stdout, stderr]}.
_HELP_DRIVER = """
import contextlib, io, json, os, runpy, sys, traceback
path, found = list(sys.path), {}
for script in sys.argv[1:]:
    sys.argv, sys.path[:] = [script, "--help"], [os.path.dirname(script), *path[1:]]
    out, err, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            runpy.run_path(script, run_name="__main__")
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else int(e.code is not None)
        except BaseException:
            code = 1
            traceback.print_exc()
    found[os.path.basename(script)] = [code, out.getvalue(), err.getvalue()]
json.dump(found, sys.__stdout__)
"""


@lru_cache(maxsize=None)
def _helps() -> dict[str, list]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", _HELP_DRIVER, *(str(BENCH / name) for name in SCRIPTS)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def script_help(name: str) -> str:
    code, out, err = _helps()[name]
    assert code == 0, f"{name} --help failed:\n{err[-2000:]}"
    return out


def test_convert_more_help_describes_itself() -> None:
    text = script_help("convert_more.py")
    assert "Converters II formats" in text
    assert "python bench/convert_more.py" in text
    assert "default: cmu interhand26m" in " ".join(text.split())


def _quoted_commands() -> list[tuple[str, str, list[str]]]:
    """(where, program, options) of every ``python bench/X.py ...`` and ``hiu-data CMD ...``
    command quoted in bench/RESULTS.md (inline code, which may wrap a line) and in the bench
    scripts' docstrings."""
    sources = [("bench/RESULTS.md", re.findall(r"`([^`]*)`", (BENCH / "RESULTS.md").read_text()))]
    for name in SCRIPTS:
        sources.append((f"bench/{name}", [line for line in (BENCH / name).read_text().splitlines()
                                          if line.strip().startswith(("python bench/", "hiu-data "))]))
    found = []
    for where, spans in sources:
        for span in spans:
            # one command ends at ';', '|' or '(' (prose after it); '$(which hiu-data) train' is torchrun's
            for match in re.finditer(r"(bench/\w+\.py|hiu-data\)? [a-z][\w-]*)([^;|(]*)", span.replace("\n", " ")):
                program = match.group(1).replace("hiu-data) ", "hiu-data ")
                options = re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", match.group(2))
                if options:
                    found.append((where, program, options))
    return found


COMMANDS = _quoted_commands()


def test_the_quoted_commands_were_found() -> None:
    programs = {program for _, program, _ in COMMANDS}
    assert {"bench/train_quality.py", "bench/render.py", "hiu-data train", "hiu-data eval"} <= programs


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_script_has_help(name: str) -> None:
    assert "usage:" in script_help(name)


@pytest.mark.parametrize("where,program,options", COMMANDS, ids=[f"{w}:{p}" for w, p, _ in COMMANDS])
def test_quoted_options_exist(where: str, program: str, options: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    if program.startswith("bench/"):
        text = script_help(program.removeprefix("bench/"))
    else:
        from hiu_cli.main import main

        assert main([*program.split()[1:], "--help"]) == 0
        text = capsys.readouterr().out
    missing = [o for o in options if not re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", text)]
    assert not missing, f"{where} quotes {program} with {missing}, which its --help does not list"


def test_quoted_config_overrides_exist() -> None:
    from hiu_model.config import load_config

    text = (BENCH / "RESULTS.md").read_text() + "".join((BENCH / n).read_text() for n in SCRIPTS)
    keys = set(re.findall(r"(?<![\w.])((?:model|loss|train|data)\.[a-z_]+)=", text))
    assert "train.max_minutes" in keys
    config = load_config(None, "tiny", []).to_dict()
    for key in sorted(keys):
        section, field = key.split(".")
        assert field in config[section], f"bench quotes the override {key}, which the config does not have"


def test_model_bench_splits_overrides_at_keys_not_inside_lists() -> None:
    from bench.model import split_overrides

    assert split_overrides("model.encoder_blocks=[1,1,2,2],train.lr=0.01") == [
        "model.encoder_blocks=[1,1,2,2]", "train.lr=0.01"]
    assert split_overrides("model.decoder_widths=[32, 48],model.tasks=[heatmap,mask]") == [
        "model.decoder_widths=[32, 48]", "model.tasks=[heatmap,mask]"]
    assert split_overrides("") == []


def test_model_bench_measures_a_network_without_the_mesh_task() -> None:
    import math

    import torch

    from bench.model import measure
    from hiu_model.config import load_config

    small = ["model.input_size=64", "model.regressor_hidden=64"]  # 2x2 at the coarsest stage: batch norm at batch 1
    without = measure(load_config(preset="tiny-fp32", overrides=[*small, "model.tasks=[heatmap,mask]"]), 2, 1,
                      torch.device("cpu"))
    assert without["train"] > 0 and math.isnan(without["mesh_train"]) and math.isnan(without["mesh_forward"])
    full = measure(load_config(preset="tiny-fp32", overrides=small), 2, 1, torch.device("cpu"))
    assert full["mesh_train"] > 0 and full["params"] > without["params"]
