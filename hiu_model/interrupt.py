"""Graceful stops: the first Ctrl-C or SIGTERM ends a training run at a step boundary with a checkpoint.

A long run that is interrupted (Ctrl-C in the terminal, ``kill``, a cluster scheduler's
pre-emption, which sends SIGTERM) should lose nothing: :func:`stop_on_signals` turns the first
SIGINT or SIGTERM into a flag that :func:`hiu_model.train.train` reads after every optimizer
step; the loop then logs the losses of the steps since the last logged one, saves a checkpoint at
that step and raises :class:`TrainingInterrupted`, and ``hiu-data train --out RUN --resume``
continues exactly where it stopped. It does not validate that checkpoint (a run ending at its
time limit does): a stop signal asks for a quick exit, and a scheduler's grace period after
SIGTERM is often shorter than a validation. A second Ctrl-C interrupts at once, as usual.
SIGTERM stays caught until the context ends, because ``torchrun`` answers the terminal's Ctrl-C
by sending its processes SIGTERM as well.

DataLoader workers ignore both signals (:func:`ignore_in_worker`): the terminal sends Ctrl-C to
every process of the foreground group, and a worker that died of it would make the main process
fail before it reaches the step boundary. Workers still exit when their loader shuts down.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from dataclasses import dataclass
from typing import Iterator

from hiu_data.errors import Interrupted

STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)


@dataclass
class StopRequest:
    """Set by the first stop signal: ``signum`` (e.g. ``signal.SIGINT``), None until then."""

    signum: int | None = None

    @property
    def requested(self) -> bool:
        """True once a stop signal arrived."""
        return self.signum is not None


class TrainingInterrupted(Interrupted):
    """A run stopped by a signal after saving a checkpoint at ``step``; the message says how to
    resume it."""

    def __init__(self, signum: int, step: int, run_dir: str, is_main: bool = True) -> None:
        self.step, self.run_dir = step, run_dir
        super().__init__(f"{signal.Signals(signum).name} at step {step}: checkpoint saved; "
                         f"continue with: hiu-data train --out {run_dir} --resume", signum, is_main)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Within the block, the first SIGINT / SIGTERM only sets the yielded :class:`StopRequest`.

    After it, SIGINT acts as before the block again (a second Ctrl-C raises KeyboardInterrupt);
    SIGTERM keeps being absorbed. Handlers are restored when the block ends. Outside the main
    thread (where Python cannot install handlers) the request is never set.
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}

    def handler(signum: int, _frame: object) -> None:
        if request.signum is None:
            request.signum = signum
        signal.signal(signal.SIGINT, previous[signal.SIGINT])

    for signum in STOP_SIGNALS:
        signal.signal(signum, handler)
    try:
        yield request
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def ignore_in_worker() -> None:
    """Make a DataLoader worker ignore SIGINT and SIGTERM (see the module docstring)."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
