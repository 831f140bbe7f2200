"""``hiu-data review launch`` errors a user can cause, without starting the App."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from hiu_cli.main import main


def test_launch_on_a_port_in_use_is_one_error_line(pseudo_dir: Path, review_name: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from hiu_data.review.push import push

    push(pseudo_dir, review_name)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert main(["review", "launch", review_name, "--port", str(port)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"127.0.0.1:{port}: cannot serve the App there" in err[0] and "--port" in err[0]
