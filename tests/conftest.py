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
