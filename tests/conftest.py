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
