"""hiu's folder for files it keeps between runs: ``$HIU_HOME``, default ``~/.cache/hiu``.

One root for everything cached or installed outside a project: the MANO model files
(``HIU_HOME/mano``, :func:`hiu_model.mano.mano_dir`) and the images that ``review push``
materialises for the FiftyOne App (``HIU_HOME/review/<name>``). Here, in ``hiu_data``, because
the data side needs it without importing torch.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "HIU_HOME"
"""The environment variable that moves the root."""


def hiu_home() -> Path:
    """``$HIU_HOME`` (``~`` expanded) when set and not empty, else ``~/.cache/hiu``."""
    value = os.environ.get(HOME_ENV)
    return Path(value).expanduser() if value else Path.home() / ".cache" / "hiu"
