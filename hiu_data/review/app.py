"""``hiu-data review launch``: the FiftyOne App on a pushed dataset, and what the reviewer does.

The App is served on ``address:port`` (127.0.0.1 by default, so nothing is reachable from
another machine; use an SSH tunnel to review a remote machine's dataset). It reads and
writes the same database as ``push`` and ``pull``, so tags set in the App are what ``pull``
reads, with no export step in between.
"""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from hiu_data.review._fiftyone import ReviewError, import_fiftyone, load_review_dataset
from hiu_data.review.labels import ACCEPTED, FIX, LOW_CONFIDENCE, REJECTED

DEFAULT_PORT = 5151
DEFAULT_ADDRESS = "127.0.0.1"


def review_instructions(name: str, url: str) -> str:
    """The reviewer's steps, printed by ``launch`` (and by the demo)."""
    port = urllib.parse.urlsplit(url).port or DEFAULT_PORT
    return "\n".join([
        f"FiftyOne App on {url}  (dataset {name!r}; from another machine: ssh -N -L {port}:127.0.0.1:{port} THIS_HOST)",
        "The grid starts with the least confident images; the sample tag "
        f"'{LOW_CONFIDENCE}' marks those below the push threshold. Images decided in an earlier round come last "
        "(field 'reviewed' in the sidebar; each hand's 'review_status' is on its keypoints).",
        "For each image or hand (select the sample, or a label in the expanded view, then the tag icon):",
        f"  '{ACCEPTED}'  the keypoints and mask are right;",
        f"  '{REJECTED}'  not a usable hand label (kept in the output, never trained on);",
        f"  '{FIX}'       needs a correction; edit it in a tool that writes back to FiftyOne (or its Python API)",
        "              and an edited hand becomes 'corrected'. A label tag overrides its image's tag.",
        f"Then: hiu-data review pull {name} OUT_DIR    (Ctrl-C here stops the App; the tags stay in the database)",
    ])


def wait_for_app(url: str, timeout: float = 60.0) -> None:
    """Block until ``url`` answers HTTP 200; ReviewError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        if time.monotonic() > deadline:
            raise ReviewError(f"{url}: the FiftyOne App did not answer within {timeout:.0f} s")
        time.sleep(0.5)


def check_port_free(address: str, port: int) -> None:
    """ReviewError when ``address:port`` cannot be bound (another App or server holds it).

    FiftyOne's server would otherwise fail in its own process, print several tracebacks
    and leave this one waiting for a server that never answers.
    """
    with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((address, port))
        except OSError as e:
            raise ReviewError(f"{address}:{port}: cannot serve the App there ({e.strerror or e}); "
                              "pass --port with a free port") from None


def launch(name: str, *, port: int = DEFAULT_PORT, address: str = DEFAULT_ADDRESS, timeout: float = 60.0) -> tuple[Any, str]:
    """Start the App server on the pushed dataset ``name`` and wait until it answers.

    Returns:
        (the ``fo.Session``, the App's URL). The server lives as long as this process;
        call ``session.wait(-1)`` to serve until Ctrl-C.
    """
    dataset = load_review_dataset(name)
    check_port_free(address, port)
    fo = import_fiftyone()
    session = fo.launch_app(dataset, remote=True, port=port, address=address, auto=False)
    url = f"http://{address}:{port}"
    wait_for_app(url, timeout)
    return session, url
