"""Chumpy-free import of the official MANO model files (``hiu-data mano import``).

The official ``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl`` (v1.2) are Python-2 pickles whose
``shapedirs`` is a chumpy object and whose ``J_regressor`` is a scipy CSC matrix; chumpy does
not import on Python 3.11 with numpy 2 (it uses names both have removed). They are read here with the
project's restricted unpickler (:mod:`hiu_data.io.safe_pickle`) and an allow-list of exactly
the globals such a file names (:data:`ALLOWED_GLOBALS`):

- ``numpy.core.multiarray._reconstruct`` (also spelled ``numpy._core.multiarray``), ``numpy.ndarray``,
  ``numpy.dtype``, ``__builtin__.set`` / ``builtins.set``: rebuilt by numpy and Python (numpy's
  other pickling globals, :data:`hiu_data.io.safe_pickle.NUMPY_ARRAYS`, are allowed too, for
  chumpy-free re-saves written by Python 3);
- ``chumpy.ch.Ch``, ``chumpy.reordering.Select``, ``scipy.sparse.csc.csc_matrix`` (also
  ``scipy.sparse._csc``): inert stand-ins that only store their pickled state, turned into
  numpy arrays afterwards (``Ch`` -> its ``x``; ``Select`` -> ``a.ravel()[idxs]`` reshaped to
  ``preferred_shape``; CSC -> a dense array from ``data``, ``indices``, ``indptr``, ``_shape``).

Any other global is refused with :class:`UnsafePickleError` when the unpickler meets its name,
before anything it names can be called. Every array's shape and values are checked, and the
result is written as a compressed ``.npz`` without pickled objects (``MANO_RIGHT.npz``) into the
asset folder, with a ``manifest.json`` holding the sha256 of each written file and its source.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import tempfile
import zipfile
from pathlib import Path
from typing import IO, Any, Callable

import numpy as np

from hiu_data.errors import DatasetFormatError, OutputExistsError
from hiu_data.io import safe_pickle
from hiu_data.skeleton import MANO_PARENTS

log = logging.getLogger(__name__)

NUM_MANO_JOINTS = len(MANO_PARENTS)
MANO_NUM_VERTS = 778
MANO_NUM_FACES = 1538
REQUIRED_KEYS = ("v_template", "f", "J_regressor", "kintree_table", "weights", "posedirs", "shapedirs",
                 "hands_components", "hands_mean")
OPTIONAL_KEYS = ("J", "hands_coeffs", "tip_vertex_ids", "model_name")
MANIFEST = "manifest.json"


class _Inert:
    """Stand-in for a pickled class: keeps the pickled state and runs nothing."""

    def __init__(self, *args: Any) -> None:
        self.args = args
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class ChStandIn(_Inert):
    """``chumpy.ch.Ch``: the value is ``state['x']``."""


class SelectStandIn(_Inert):
    """``chumpy.reordering.Select``: the value is ``a.ravel()[idxs].reshape(preferred_shape)``."""


class CscStandIn(_Inert):
    """``scipy.sparse.csc_matrix``: state ``data``, ``indices``, ``indptr``, ``_shape``."""


ALLOWED_GLOBALS: dict[str, Any] = {
    # numpy's reconstruction of arrays, dtypes and scalars (None: the real object). The official
    # files need only _reconstruct, ndarray and dtype; a chumpy-free re-save written by Python 3
    # also names numpy scalars, _frombuffer (protocol 5) or _codecs.encode (protocol 2).
    **{name: None for name in safe_pickle.NUMPY_ARRAYS},
    "__builtin__.set": set,
    "builtins.set": set,
    # chumpy and scipy records become inert stand-ins (neither package is imported).
    "chumpy.ch.Ch": ChStandIn,
    "chumpy.reordering.Select": SelectStandIn,
    "scipy.sparse.csc.csc_matrix": CscStandIn,
    "scipy.sparse._csc.csc_matrix": CscStandIn,
}
"""Everything a MANO model pickle may name, for :func:`hiu_data.io.safe_pickle.load`."""


def csc_to_dense(data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Dense (rows, cols) float64 array of a compressed-sparse-column matrix."""
    dense = np.zeros(shape, dtype=np.float64)
    cols = np.repeat(np.arange(shape[1]), np.diff(indptr))
    np.add.at(dense, (np.asarray(indices), cols), np.asarray(data, dtype=np.float64))
    return dense


def resolve(obj: Any, path: Path) -> Any:
    """Turn stand-ins (recursively) into numpy arrays; other values pass through."""
    if isinstance(obj, ChStandIn):
        return resolve(_state(obj, path, ("x",))["x"], path)
    if isinstance(obj, SelectStandIn):
        st = _state(obj, path, ("a", "idxs", "preferred_shape"))
        flat = np.asarray(resolve(st["a"], path)).ravel()
        return flat[np.asarray(st["idxs"])].reshape(tuple(st["preferred_shape"]))
    if isinstance(obj, CscStandIn):
        st = _state(obj, path, ("data", "indices", "indptr", "_shape"))
        return csc_to_dense(st["data"], st["indices"], st["indptr"], tuple(int(s) for s in st["_shape"]))
    return obj


def _state(obj: _Inert, path: Path, keys: tuple[str, ...]) -> dict[str, Any]:
    st = obj.state
    if not isinstance(st, dict) or any(k not in st for k in keys):
        raise DatasetFormatError(path, f"{type(obj).__name__[:-7]} object lacks {', '.join(keys)}")
    return st


def read_mano_pickle(path: Path) -> dict[str, np.ndarray]:
    """Read an official MANO ``.pkl`` (or a chumpy-free re-save of one) without chumpy or scipy.

    Returns:
        MANO arrays (float64; ``f`` and ``kintree_table`` int64; ``J_regressor`` dense), checked
        by :func:`check_arrays`.
    Raises:
        UnsafePickleError: the pickle names a global outside the allow-list.
        DatasetFormatError: not a MANO model (unreadable, missing keys, wrong shapes).
    """
    path = Path(path)
    raw = safe_pickle.load(path, ALLOWED_GLOBALS)
    if not isinstance(raw, dict):
        raise DatasetFormatError(path, f"expected a dict of model arrays, found {type(raw).__name__}")
    _refuse_body_model(raw, path)
    arrays = {}
    for key in REQUIRED_KEYS + OPTIONAL_KEYS:
        if key in raw:
            arrays[key] = np.asarray(resolve(raw[key], path))
    arrays = normalise_arrays(arrays, path)
    check_arrays(arrays, path, num_verts=None)
    return arrays


def normalise_arrays(arrays: dict[str, np.ndarray], path: Path) -> dict[str, np.ndarray]:
    """Coerce dtypes: faces and the tree to int64 (root parent -1), numeric arrays to float64."""
    out = {}
    for key, value in arrays.items():
        if key == "model_name":
            out[key] = np.asarray(str(value))
        elif key in ("f", "kintree_table", "tip_vertex_ids"):
            if not np.issubdtype(value.dtype, np.integer):
                raise DatasetFormatError(path, f"{key} must hold integers, found {value.dtype}")
            out[key] = value.astype(np.int64)
        else:
            try:
                out[key] = np.asarray(value, dtype=np.float64)
            except (TypeError, ValueError):
                raise DatasetFormatError(path, f"{key} is not numeric") from None
    if "kintree_table" in out and out["kintree_table"].ndim == 2:
        # The root's stored parent is a sentinel (2**32 - 1 in the official files).
        out["kintree_table"][0, 0] = -1
    return out


def check_arrays(arrays: dict[str, np.ndarray], path: Path, num_verts: int | None = MANO_NUM_VERTS,
                 num_faces: int | None = None) -> None:
    """Check a MANO-format model's keys, shapes and values; raise :class:`DatasetFormatError`.

    ``num_verts`` / ``num_faces`` pin the mesh size (778 / 1538 for MANO); None accepts any.
    """
    missing = [k for k in REQUIRED_KEYS if k not in arrays]
    if missing:
        raise DatasetFormatError(path, f"not a MANO model: missing {', '.join(missing)}")
    v = arrays["v_template"].shape[0]
    f = arrays["f"].shape[0]
    if num_verts is not None and v != num_verts:
        raise DatasetFormatError(path, f"v_template has {v} vertices, MANO has {num_verts}")
    if num_faces is not None and f != num_faces:
        raise DatasetFormatError(path, f"f has {f} faces, MANO has {num_faces}")
    j = NUM_MANO_JOINTS
    shapes = {
        "v_template": (v, 3), "f": (f, 3), "J_regressor": (j, v), "kintree_table": (2, j),
        "weights": (v, j), "posedirs": (v, 3, 9 * (j - 1)), "shapedirs": (v, 3, 10),
        "hands_components": (45, 45), "hands_mean": (45,), "J": (j, 3), "tip_vertex_ids": (5,),
    }
    for key, shape in shapes.items():
        if key in arrays and arrays[key].shape != shape:
            raise DatasetFormatError(path, f"{key} has shape {arrays[key].shape}, expected {shape}")
    if "hands_coeffs" in arrays and (arrays["hands_coeffs"].ndim != 2 or arrays["hands_coeffs"].shape[1] != 45):
        raise DatasetFormatError(path, f"hands_coeffs has shape {arrays['hands_coeffs'].shape}, expected (N, 45)")
    for key, value in arrays.items():
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise DatasetFormatError(path, f"{key} holds NaN or infinite values")
    faces = arrays["f"]
    if faces.min() < 0 or faces.max() >= v:
        raise DatasetFormatError(path, f"f indexes vertices outside 0..{v - 1}")
    parents = arrays["kintree_table"][0]
    if any(not 0 <= parents[k] < k for k in range(1, j)):
        raise DatasetFormatError(path, f"kintree_table is not a tree rooted at joint 0: parents {parents.tolist()}")
    sums = arrays["J_regressor"].sum(axis=1)
    if not np.allclose(sums, 1.0, atol=1e-3):
        raise DatasetFormatError(path, f"J_regressor rows must sum to 1, found {np.round(sums, 4).tolist()}")
    if not np.allclose(arrays["weights"].sum(axis=1), 1.0, atol=1e-3):
        raise DatasetFormatError(path, "skinning weights of some vertex do not sum to 1")
    if "tip_vertex_ids" in arrays and (arrays["tip_vertex_ids"].min() < 0 or arrays["tip_vertex_ids"].max() >= v):
        raise DatasetFormatError(path, "tip_vertex_ids index vertices outside the mesh")


BODY_MODEL = ("a SMPL-H / SMPL-X body model, not the MANO hand model: import MANO_RIGHT.pkl and "
              "MANO_LEFT.pkl (mano_v1_2/models in the MANO download)")


def _refuse_body_model(keys: Any, path: Path) -> None:
    """SMPL-H and SMPL-X files hold both hands' pose spaces (``hands_componentsl`` / ``r``)."""
    if {"hands_componentsl", "hands_componentsr"} & set(keys):
        raise DatasetFormatError(path, BODY_MODEL)


def side_of(path: Path) -> str:
    """"right" or "left" from a file name (``MANO_RIGHT.pkl``); DatasetFormatError otherwise."""
    stem = Path(path).name.lower()
    sides = [s for s in ("right", "left") if s in stem]
    if not sides and stem.startswith("smpl"):  # SMPLH_male.pkl, SMPLX_NEUTRAL.npz beside the MANO files
        raise DatasetFormatError(path, BODY_MODEL)
    if len(sides) != 1:
        raise DatasetFormatError(path, "cannot tell the hand side: the file name must contain RIGHT or LEFT "
                                       "(as the official MANO_RIGHT.pkl / MANO_LEFT.pkl do)")
    return sides[0]


def read_model_file(path: Path, num_verts: int | None = MANO_NUM_VERTS) -> dict[str, np.ndarray]:
    """Read a MANO ``.pkl`` (restricted unpickler) or a pickle-free ``.npz``, checked."""
    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(path, "file not found")
    if path.suffix.lower() == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                _refuse_body_model(data.files, path)
                arrays = {k: data[k] for k in data.files if k in REQUIRED_KEYS + OPTIONAL_KEYS}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile):
            # A truncated or overwritten file. numpy's own message for a non-zip file advises
            # loading it with allow_pickle, which is exactly what must not be done here.
            raise DatasetFormatError(path, "unreadable .npz (damaged, or not a numpy archive); import the "
                                           "MANO file again with `hiu-data mano import`") from None
        arrays = normalise_arrays(arrays, path)
    else:
        arrays = read_mano_pickle(path)
    check_arrays(arrays, path, num_verts=num_verts,
                 num_faces=MANO_NUM_FACES if num_verts == MANO_NUM_VERTS else None)
    return arrays


def _write_atomic(dest: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write ``dest`` through a temporary file beside it and a rename: never half-written."""
    fd, tmp = tempfile.mkstemp(prefix=dest.name, suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the model is not secret once installed
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_manifest(path: Path) -> dict[str, Any]:
    """The import record, or an empty one when it is missing or unreadable (it is rewritten whole)."""
    if not path.is_file():
        return {}
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, OSError):
        manifest = None
    if not isinstance(manifest, dict):
        log.warning("%s is unreadable; writing a new one", path)
        return {}
    return manifest


def import_mano(paths: list[Path] | list[str], out_dir: Path | str | None = None,
                num_verts: int | None = MANO_NUM_VERTS, overwrite: bool = False) -> list[Path]:
    """Convert official MANO files into chumpy-free ``MANO_<SIDE>.npz`` in the asset folder.

    Args:
        paths: one or two model files (``.pkl`` or ``.npz``); the side comes from the name.
        out_dir: destination; default :func:`hiu_model.mano.mano_dir` (``$HIU_MANO_DIR`` or
            ``$HIU_HOME/mano``).
        num_verts: expected vertex count (MANO: 778); None accepts any (tests, other meshes).
        overwrite: replace an installed model that differs from the one given (the same model,
            from its ``.pkl`` or an ``.npz`` of it, is imported again without it).
    Returns:
        the written ``.npz`` paths (an installed MANO_LEFT fixed when MANO_RIGHT comes
        included).
    Raises:
        OutputExistsError: without ``overwrite``, an installed model differs from one given;
            nothing is written. ``manifest.json`` beside them records, per file, its sha256, the source path
        and sha256, and ``shapedirs_x_negated``: whether the left model's x shape directions
        were negated (the known MANO_LEFT sign issue, :func:`hiu_model.mano.fix_left_shapedirs`),
        null while no right model was there to check them against.
    """
    from hiu_model.mano import MANO_FILES, find_mano_file, fix_left_shapedirs, mano_dir, sha256_file

    models: dict[str, tuple[Path, dict[str, np.ndarray]]] = {}
    for p in map(Path, paths):
        if not p.is_file():
            # Checked before the side, which comes from the name: a mistyped path is "not found".
            raise DatasetFormatError(p, "not found" if not p.exists() else "is a folder, expected a MANO .pkl or .npz file")
        side = side_of(p)
        if side in models:
            raise DatasetFormatError(p, f"two {side}-hand files given ({models[side][0]} and {p})")
        models[side] = (p, read_model_file(p, num_verts))
    out = mano_dir(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / MANIFEST
    manifest = _read_manifest(manifest_path)
    # The right model the hand layer pairs the left one with: the one given, else the installed one.
    installed_right = None if "right" in models else find_mano_file("right", out)
    right = models["right"][1] if "right" in models else (
        None if installed_right is None else read_model_file(installed_right, num_verts))
    # shapedirs_x_negated: True (the file holds the fix), False (checked, not needed) or None
    # (no right model to check against; the hand layer checks again when it loads the model).
    negated: dict[str, bool | None] = {side: False for side in models}
    if "left" in models:
        if right is not None:
            negated["left"] = fix_left_shapedirs(models["left"][1], right)
        else:
            negated["left"] = None
            log.warning("importing MANO_LEFT without MANO_RIGHT: its shapedirs sign cannot be checked; "
                        "importing MANO_RIGHT later checks it and fixes the installed file")
    if not overwrite:
        for side, (_, arrays) in models.items():
            _refuse_another_model(out / (MANO_FILES[side] + ".npz"), side, arrays, right, manifest, num_verts)
    written = []
    for side, (src, arrays) in models.items():
        dest = out / (MANO_FILES[side] + ".npz")
        _write_atomic(dest, lambda f, a=arrays: np.savez_compressed(f, **a))
        manifest[dest.name] = {
            "sha256": sha256_file(dest), "source": str(src.resolve()), "source_sha256": sha256_file(src),
            "shapedirs_x_negated": negated[side],
            "imported": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        written.append(dest)
        log.info("imported %s -> %s", src, dest)
    if "left" not in models and right is not None:
        written += _check_installed_left(out, right, manifest, num_verts)
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    _write_atomic(manifest_path, lambda f: f.write(text.encode()))
    return written


def _refuse_another_model(dest: Path, side: str, arrays: dict[str, np.ndarray], right: dict[str, np.ndarray] | None,
                          manifest: dict[str, Any], num_verts: int | None) -> None:
    """Raise OutputExistsError when ``dest`` holds another model than ``arrays`` (as they will be
    written). A checkpoint records the digest of its hand model's arrays and refuses another, so
    a model silently replaced would stop every run trained with it from loading; the same model
    again (from its pickle or from an ``.npz`` of it, its left shape directions fixed or not) is
    harmless, and so is replacing a damaged file, which is what a re-import is for."""
    from hiu_model.mano import fix_left_shapedirs, model_digest

    if not dest.is_file():
        return
    try:
        installed = read_model_file(dest, num_verts)
    except DatasetFormatError:
        log.warning("%s is unreadable; replacing it", dest)
        return
    if side == "left" and right is not None:
        fix_left_shapedirs(installed, right)  # as ``arrays`` are, when it was imported unchecked
    if model_digest(installed) == model_digest(arrays):
        return
    entry = manifest.get(dest.name)
    source = entry.get("source") if isinstance(entry, dict) else None
    raise OutputExistsError(f"{dest}: holds another MANO {side} model" + (f" (imported from {source})" if source else "")
                            + "; pass --overwrite to replace it (runs trained with it load again once it is "
                              "imported back)")


def _check_installed_left(out: Path, right: dict[str, np.ndarray], manifest: dict[str, Any],
                          num_verts: int | None) -> list[Path]:
    """Check the shape directions of a MANO_LEFT imported earlier (alone, or recorded by an older
    version) against a newly imported right model: fix the file when they have the known sign
    issue, which the hand layer would otherwise fix each time it loads the model, so that the
    file and its record say what the layer uses. Returns ``[path]`` when the file was rewritten.
    """
    from hiu_model.mano import MANO_FILES, fix_left_shapedirs, sha256_file

    path = out / (MANO_FILES["left"] + ".npz")
    entry = manifest.get(path.name)
    if not isinstance(entry, dict) or not path.is_file():
        return []  # not a file this command imported: the hand layer checks it when loading
    left = read_model_file(path, num_verts)
    if not fix_left_shapedirs(left, right):
        entry["shapedirs_x_negated"] = entry.get("shapedirs_x_negated") is True
        return []
    _write_atomic(path, lambda f: np.savez_compressed(f, **left))
    entry.update(sha256=sha256_file(path), shapedirs_x_negated=True)
    log.info("negated the x shape directions of %s (known MANO_LEFT sign issue)", path)
    return [path]
