"""Load pickles through an explicit allow-list of globals, refusing everything else.

A pickle is a program: ``pickle.load`` imports and calls whatever globals the file names,
so a hostile annotation file can run code. Dataset pickles (RHD's ``anno_*.pickle``) and
model files (MANO's ``MANO_RIGHT.pkl``) only need plain containers and numpy arrays, so they
go through :func:`load`, which resolves a global only when its dotted name is in the caller's
allow-list and raises :class:`~hiu_data.errors.UnsafePickleError` *before* anything from a
refused global runs. Dicts, lists, tuples, strings, bytes, ints, floats, bools and None need
no global at all and always load.

Usage::

    from hiu_data.io.safe_pickle import NUMPY_ARRAYS, load
    anno = load(path, allow=NUMPY_ARRAYS)                          # RHD

    class ChStub: ...                                              # MANO without chumpy
    model = load(path, allow={**{n: None for n in NUMPY_ARRAYS},
                              "chumpy.ch.Ch": ChStub,
                              "scipy.sparse._csc.csc_matrix": None})

``allow`` is either an iterable of dotted names (``"module.qualname"``), each resolved to the
real object, or a mapping from dotted name to a stand-in object (``None`` = the real object).
A stand-in lets a pickle that references a package you do not want to install (chumpy) load
into a harmless class of your own.

Python 2 pickles (RHD was written with Python 2) store numpy buffers as ``str``; the default
``encoding="latin1"`` turns them back into the original bytes.
"""

from __future__ import annotations

import importlib
import io
import pickle
from pathlib import Path
from typing import IO, Any, Iterable, Mapping

from hiu_data.errors import DatasetFormatError, UnsafePickleError

# Globals numpy's own pickling of arrays, dtypes and scalars refers to. numpy 2 moved
# ``numpy.core`` to ``numpy._core``; pickles written by either version name their own one.
# ``_codecs.encode`` is how Python 3 writes ``bytes`` under protocol 2 (a pure text->bytes
# transform, harmless).
NUMPY_ARRAYS: frozenset[str] = frozenset(
    f"{core}.{name}"
    for core in ("numpy.core", "numpy._core")
    for name in ("multiarray._reconstruct", "multiarray.scalar", "numeric._frombuffer")
) | frozenset({"numpy.ndarray", "numpy.dtype", "_codecs.encode"})
"""Dotted names needed to unpickle numpy arrays, dtypes and numpy scalars (nothing else)."""


def _resolve(dotted: str) -> Any:
    """Import ``module.qualname``, mapping numpy's old ``numpy.core`` to ``numpy._core`` when needed."""
    candidates = [dotted]
    if dotted.startswith("numpy.core."):
        candidates.insert(0, "numpy._core." + dotted[len("numpy.core."):])
    last_error: Exception | None = None
    for name in candidates:
        parts = name.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            try:
                obj: Any = importlib.import_module(".".join(parts[:cut]))
            except ImportError as e:
                last_error = e
                continue
            try:
                for attr in parts[cut:]:
                    obj = getattr(obj, attr)
                return obj
            except AttributeError as e:
                last_error = e
                break
    raise ImportError(f"cannot resolve {dotted}: {last_error}")


class RestrictedUnpickler(pickle.Unpickler):
    """A :class:`pickle.Unpickler` that resolves only allow-listed globals.

    Args:
        file: binary file object positioned at the pickle.
        allow: dotted names, or a mapping dotted name -> stand-in object (None = real object).
        source: file name used in error messages.
        encoding: how Python 2 ``str`` objects are decoded (``latin1`` keeps numpy buffers intact).
    """

    def __init__(self, file: IO[bytes], allow: Iterable[str] | Mapping[str, Any], *, source: str = "<pickle>",
                 encoding: str = "latin1") -> None:
        super().__init__(file, encoding=encoding)
        self.source = source
        self.allow: dict[str, Any] = dict(allow) if isinstance(allow, Mapping) else {name: None for name in allow}

    def find_class(self, module: str, name: str) -> Any:
        """The allowed class or function ``module.name`` (or its stand-in); anything else is refused."""
        dotted = f"{module}.{name}"
        if dotted not in self.allow:
            raise UnsafePickleError(
                self.source,
                f"pickle asks for {dotted}, which is not in the allow-list; refused before running it",
            )
        stand_in = self.allow[dotted]
        return stand_in if stand_in is not None else _resolve(dotted)

    def persistent_load(self, pid: Any) -> Any:
        """Refused: no dataset file needs persistent ids, and they would load outside the allow-list."""
        raise UnsafePickleError(self.source, "pickle uses persistent ids, which are refused")


def load(source: str | Path | bytes | IO[bytes], allow: Iterable[str] | Mapping[str, Any], *,
         name: str | None = None, encoding: str = "latin1") -> Any:
    """Unpickle ``source`` (a path, bytes, or a binary file object) through :class:`RestrictedUnpickler`.

    Raises:
        UnsafePickleError: the pickle names a global outside ``allow`` (nothing of it ran).
        DatasetFormatError: the file is missing, truncated or not a pickle.
    """
    label = name or (str(source) if isinstance(source, (str, Path)) else "<pickle>")
    try:
        if isinstance(source, (str, Path)):
            with open(source, "rb") as f:
                return RestrictedUnpickler(f, allow, source=label, encoding=encoding).load()
        stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
        return RestrictedUnpickler(stream, allow, source=label, encoding=encoding).load()
    except UnsafePickleError:
        raise
    except FileNotFoundError:
        raise DatasetFormatError(label, "pickle file not found") from None
    except EOFError:
        raise DatasetFormatError(label, "truncated pickle (ended before its STOP opcode)") from None
    except pickle.UnpicklingError as e:
        if "truncated" in str(e):
            raise DatasetFormatError(label, "truncated pickle (the data ends early)") from None
        raise DatasetFormatError(label, f"malformed pickle ({e})") from None
    except (ValueError, TypeError, IndexError, KeyError, AttributeError, ImportError,
            UnicodeDecodeError, OverflowError, MemoryError) as e:
        raise DatasetFormatError(label, f"malformed pickle ({type(e).__name__}: {e})") from None
