"""JSON label files: parsing with one-line errors, and fast reading of files that hold one
list of equally shaped number arrays.

Label files such as FreiHAND's ``training_xyz.json`` (32,560 x 21 x 3 numbers) take seconds
through ``json.loads`` + ``np.asarray``; :func:`number_lists`, about twice as fast, checks the file's structure
exactly (its text with the numbers removed must be the bracket/comma skeleton of ``n``
entries of the expected shape) and lets numpy parse the numbers. Anything else returns
None, and :func:`read_number_list` falls back to the json module, naming the file when it is
not JSON and every entry that does not have the expected shape.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hiu_data.errors import DatasetFormatError

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


def parse_json(data: bytes, path: str | Path) -> Any:
    """The JSON value of a file's bytes.

    Raises:
        DatasetFormatError: truncated or malformed JSON, not UTF-8, or nested too deeply; the
            message names where the parser stopped.
    """
    try:
        return json.loads(data)
    except json.JSONDecodeError as e:
        kind = "truncated" if e.pos >= len(e.doc) - 1 else "malformed"
        raise DatasetFormatError(path, f"{kind} JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except UnicodeDecodeError:
        raise DatasetFormatError(path, "not a UTF-8 JSON file") from None
    except RecursionError:
        raise DatasetFormatError(path, "JSON nested too deeply to be an annotation file") from None


def read_number_list(path: Path, shape: tuple[int, ...], what: str, n: int | None = None, n_from: str = ""
                     ) -> tuple[np.ndarray, dict[int, str]]:
    """A JSON file holding a list of number arrays of ``shape`` (an entry may carry a leading
    axis of 1, as FreiHAND's ``[[61 values]]``).

    Args:
        what: what an entry is, for the problems (``"K"``, ``"xyz (21x3 metres)"``).
        n: the number of entries expected (None: any); ``n_from`` says where it comes from.
    Returns:
        ((n, *shape) float64 entries, {entry index: problem}): an entry of another shape is
        NaN and has a problem; non-finite values are returned as they are.
    Raises:
        DatasetFormatError: the file cannot be read, is not JSON, is not a list, or has not ``n`` entries.
    """
    shapes = (shape, (1,) + shape)
    try:
        text = path.read_bytes()
    except OSError as e:
        raise DatasetFormatError(path, f"cannot read ({e.strerror})") from None
    flat = number_lists(text, shapes, n)
    if flat is not None:
        return flat.reshape((len(flat),) + shape), {}
    entries = parse_json(text, path)
    if not isinstance(entries, list):
        raise DatasetFormatError(path, f"expected a JSON list of {what}, found {type(entries).__name__}")
    if n is not None and len(entries) != n:
        like = f" like {n_from}" if n_from else ""
        raise DatasetFormatError(path, f"expected a list of {n} entries{like}, got {len(entries)}")
    values = np.full((len(entries),) + shape, np.nan)
    problems: dict[int, str] = {}
    for i, entry in enumerate(entries):
        try:
            value = np.asarray(entry, dtype=np.float64)
        except (TypeError, ValueError):
            value = np.zeros(0)
        if value.shape in shapes:
            values[i] = value.reshape(shape)
        else:
            problems[i] = f"entry {i}: {what} has shape {value.shape}, expected {shape}"
    return values, problems
