"""Shared fixtures of the synthetic-data tests: one small generated set per test session."""

from __future__ import annotations

import pytest

from hiu_data.synth.generate import generate_scenes


@pytest.fixture(scope="session")
def scenes() -> list:
    """Sixteen parquet-profile scenes (one render chunk) of seed 3: (index, bytes, records)."""
    return list(generate_scenes(16, seed=3, profile="parquet", size=128, test_fraction=0.25))
