"""One real FiftyOne database per test session, in a temporary folder.

FiftyOne reads ``FIFTYONE_DATABASE_DIR`` when it is first imported, so the variables are set
here before any test of this folder imports it; child processes get the same environment
and share the database (FiftyOne's MongoDB serves every client of one folder).
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
from typing import Iterator

import pytest


@pytest.fixture(scope="session")
def fiftyone_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Environment of a session-wide temporary FiftyOne database (also set in this process)."""
    root = tmp_path_factory.mktemp("fiftyone")
    env = {
        "FIFTYONE_DO_NOT_TRACK": "true",
        "FIFTYONE_DATABASE_VALIDATION": "false",
        "FIFTYONE_DATABASE_DIR": str(root / "db"),
        "HIU_HOME": str(root / "home"),
    }
    if "fiftyone" in sys.modules:  # imported earlier in this session: its database is fixed now
        import fiftyone as fo

        env["FIFTYONE_DATABASE_DIR"] = fo.config.database_dir
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def review_name(fiftyone_env: dict[str, str]) -> Iterator[str]:
    """A fresh FiftyOne dataset name, deleted after the test."""
    name = f"hiu-test-{uuid.uuid4().hex[:8]}"
    yield name
    import fiftyone as fo

    if fo.dataset_exists(name):
        fo.delete_dataset(name)


@pytest.fixture
def pseudo_dir(tmp_path: Path) -> Path:
    from tests.review.pseudo_rows import write_pseudo_dataset

    return write_pseudo_dataset(tmp_path / "pseudo", n_images=7)
