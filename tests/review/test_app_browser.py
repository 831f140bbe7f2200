"""The FiftyOne App on a pushed dataset, rendered by headless Chromium (marker ``browser``)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _render_dom(url: str) -> str:
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--window-size=1400,900", "--virtual-time-budget=15000",
             "--dump-dom", url],
            capture_output=True, text=True, timeout=120)
    return done.stdout


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt-get install -y chromium)")
def test_launched_app_shows_the_pushed_samples(pseudo_dir: Path, review_name: str, fiftyone_env: dict[str, str]) -> None:
    from hiu_data.review.app import wait_for_app
    from hiu_data.review.push import push

    expected = push(pseudo_dir, review_name).images
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    app = subprocess.Popen([sys.executable, "-m", "hiu_cli.main", "review", "launch", review_name, "--port", str(port)],
                           env={**os.environ, **fiftyone_env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_app(url, timeout=120)
        for _ in range(3):  # the grid fills after the App's queries return; a loaded machine may need another look
            dom = _render_dom(url)
            if dom.count('data-cy="looker"') == expected:
                break
        assert dom.count('data-cy="looker"') == expected  # one tile per pushed image
        count = re.search(r'data-cy="entry-count-part"[^>]*>(\d+)<', dom)
        assert count is not None and count.group(1) == str(expected)
        assert 'data-cy="hands-field"' in dom and 'data-cy="hand_masks-field"' in dom
    finally:
        app.terminate()
        output = app.communicate(timeout=60)[0]
    assert f"hiu-data review pull {review_name} OUT_DIR" in output
