"""Shared fixtures: records built at test time."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def one_torch_thread():
    """Run a test's torch code on one thread, then restore the count.

    Tiny convolutions on a shared 2-core machine: OpenMP threads mostly wait on each other.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def tiny_is_the_same_network_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """``tiny`` stands for ``tiny-bf16`` or ``tiny-fp32`` by the machine's matrix hardware
    (:mod:`hiu_model.presets`); in-process tests build ``tiny-bf16`` on every machine, so that
    their networks do not depend on where they run. Tests of ``tiny-fp32`` name it, or patch
    this choice themselves; commands started as subprocesses still choose by the machine."""
    from hiu_model import presets

    monkeypatch.setattr(presets, "bf16_matrix_hardware", lambda device="auto": True)
