"""Typed exceptions of hiu.

Every error a user can cause (a missing folder, a malformed file, an unknown dataset name)
is a :class:`HiuError`; the command line prints its message as one line and exits 1. The
message names the file (and the sample, where there is one) and what is wrong.
"""

from __future__ import annotations

import signal
from pathlib import Path


class HiuError(Exception):
    """Base class of the errors a user can cause and fix."""


class DatasetFormatError(HiuError):
    """A raw dataset file is missing, malformed, or holds values out of range."""

    def __init__(self, path: str | Path, problem: str, sample_id: str | None = None) -> None:
        self.path = str(path)
        self.problem = problem
        self.sample_id = sample_id
        where = f"{self.path} (sample {sample_id})" if sample_id is not None else self.path
        super().__init__(f"{where}: {problem}")


class CorruptImageError(DatasetFormatError):
    """An image file or embedded image cannot be decoded."""


class UnsafePickleError(DatasetFormatError):
    """A pickle asks for a global outside the allow-list; it was refused before running."""


class SchemaError(HiuError):
    """A converted dataset does not match the ``hand_sample`` schema or its version."""


class OutputExistsError(HiuError):
    """The output folder exists and ``--overwrite`` was not given."""


class NotRegisteredError(HiuError):
    """A name (dataset format, preset, command target) is not registered."""

    def __init__(self, kind: str, name: str, available: list[str] | tuple[str, ...]) -> None:
        self.kind = kind
        self.name = name
        self.available = list(available)
        super().__init__(f"{kind} {name!r} is not registered; available: {', '.join(self.available)}")


class Interrupted(Exception):
    """A command stopped by a signal that kept its finished work; the message says what was kept
    and how to go on. ``exit_code`` is 128 + the signal number, as a shell reports a signal.

    Not a :class:`HiuError` (nothing is wrong) and not a KeyboardInterrupt (the command ended in
    order). The command line prints the message once: ``is_main`` is False on the other processes
    of a ``torchrun`` group, which stop too.
    """

    def __init__(self, message: str, signum: int = signal.SIGINT, is_main: bool = True) -> None:
        self.signum, self.is_main = int(signum), is_main
        super().__init__(message)

    @property
    def exit_code(self) -> int:
        """The shell's code for a command ended by this signal: 128 + its number (130 for Ctrl-C)."""
        return 128 + self.signum


class ReportedElsewhere(Exception):
    """This process of a ``torchrun`` group stops over an error that rank 0 prints: every
    process met it alike (a bad option, a missing folder) or rank 0 did the failed work for all.
    The command line exits 1 without a line of its own, so the error is printed once."""
