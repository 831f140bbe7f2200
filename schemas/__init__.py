"""Language-neutral schema files of hiu, shipped as package data.

- ``hand_sample.v1.json``: the columns of a converted hand sample (type, unit, frame,
  nullability, description).
- ``hand21.json``: the HAND21 skeleton (joint names, finger chains, draw colours).
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

SCHEMA_VERSION = 1


@lru_cache(maxsize=None)
def load(name: str) -> dict[str, Any]:
    """Parse one of the JSON files of this package by file name."""
    text = resources.files(__name__).joinpath(name).read_text(encoding="utf-8")
    return json.loads(text)


def hand_sample() -> dict[str, Any]:
    """The ``hand_sample`` schema description of the current version."""
    return load(f"hand_sample.v{SCHEMA_VERSION}.json")


def hand21() -> dict[str, Any]:
    """The HAND21 skeleton description."""
    return load("hand21.json")
