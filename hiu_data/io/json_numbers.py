"""Fast parsing of JSON files that hold one list of equally shaped number arrays.

Label files such as FreiHAND's ``training_xyz.json`` (32,560 x 21 x 3 numbers) take seconds
through ``json.loads`` + ``np.asarray``; :func:`number_lists`, about twice as fast, checks the file's structure
exactly (its text with the numbers removed must be the bracket/comma skeleton of ``n``
entries of the expected shape) and lets numpy parse the numbers. Anything else returns
None, so callers fall back to the json module and its precise error messages.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

_NUMBER_BYTES = b"0123456789.eE+-NaInfity \t\r\n"  # digits, exponents, NaN, Infinity, blanks
_BRACKETS_TO_SPACES = bytes.maketrans(b"[],", b"   ")


def _skeleton(shape: tuple[int, ...]) -> bytes:
    """JSON text of a nested list of ``shape`` with the numbers and blanks removed."""
    if len(shape) == 1:
        return b"[" + b"," * (shape[0] - 1) + b"]"
    return b"[" + b",".join([_skeleton(shape[1:])] * shape[0]) + b"]"


def number_lists(text: bytes, shapes: Sequence[tuple[int, ...]], n: int | None) -> np.ndarray | None:
    """Parse a JSON list of ``n`` equally shaped nested number lists with numpy.

    Args:
        text: the JSON file's bytes. shapes: accepted shapes of one entry, tried in order.
        n: the number of entries, or None to infer it from the text.
    Returns:
        (n, prod(shape)) float64 of the first matching shape; None unless the text's
        bracket/comma skeleton is exactly that of n entries of one of ``shapes`` and every
        token is a number (NaN and Infinity included, as Python's json writes them).
    """
    skeleton = text.translate(None, delete=_NUMBER_BYTES)
    for shape in shapes:
        entry = _skeleton(shape)
        count = n if n is not None else (0 if skeleton == b"[]" else (len(skeleton) - 1) // (len(entry) + 1))
        if skeleton == b"[" + b",".join([entry] * count) + b"]":
            try:
                values = np.array(text.translate(_BRACKETS_TO_SPACES).split(), dtype=np.float64)
            except ValueError:
                return None
            size = int(np.prod(shape))
            return values.reshape((count, size)) if values.size == count * size else None
    return None
