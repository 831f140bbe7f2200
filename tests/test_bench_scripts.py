"""The benchmark scripts under bench/: each one's --help, and the commands bench/RESULTS.md and
the scripts' docstrings quote still name options that exist (not run: they take minutes)."""

from __future__ import annotations

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


@lru_cache(maxsize=None)
def script_help(name: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(BENCH / name), "--help"], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300)
    assert proc.returncode == 0, f"{name} --help failed:\n{proc.stderr[-2000:]}"
    return proc.stdout


def test_convert_more_help_describes_itself() -> None:
    text = script_help("convert_more.py")
    assert "Converters II formats" in text
    assert "python bench/convert_more.py" in text
    assert "default: cmu interhand26m" in " ".join(text.split())
