"""Stop signals: the first SIGINT / SIGTERM becomes a flag, a second Ctrl-C interrupts at once."""

from __future__ import annotations

import os
import signal

import pytest

from hiu_model.interrupt import TrainingInterrupted, stop_on_signals


def _send(signum: int) -> None:
    os.kill(os.getpid(), signum)  # delivered to the main thread before the next bytecode


def test_first_ctrl_c_only_requests_a_stop_and_a_second_interrupts() -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with stop_on_signals() as stop:
        assert not stop.requested
        _send(signal.SIGINT)
        assert stop.requested and stop.signum == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            _send(signal.SIGINT)
    assert {s: signal.getsignal(s) for s in before} == before


def test_sigterm_is_absorbed_until_the_block_ends() -> None:
    with stop_on_signals() as stop:
        _send(signal.SIGTERM)
        _send(signal.SIGTERM)  # torchrun follows the terminal's Ctrl-C with SIGTERM
        assert stop.signum == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):  # while a Ctrl-C after a stop request still interrupts
            _send(signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_interruption_names_the_step_the_folder_and_the_exit_code() -> None:
    error = TrainingInterrupted(signal.SIGTERM, 7, "runs/a")
    assert error.exit_code == 143
    assert str(error) == "SIGTERM at step 7: checkpoint saved; continue with: hiu-data train --out runs/a --resume"
