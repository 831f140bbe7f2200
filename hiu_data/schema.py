"""The ``hand_sample`` schema: pyarrow types built from ``hiu_schemas``, the HandSample record,
and conversion between records and Arrow tables.

A :class:`HandSample` is one hand instance. Arrays use these shapes, dtypes and frames
(J = :data:`hiu_data.skeleton.NUM_JOINTS`):

- ``bbox``: (4,) float32, x, y, w, h in image pixels.
- ``keypoints_2d``: (J, 2) float32, image pixels (origin top-left, pixel centres at +0.5),
  NaN where missing; or None when the sample has no 2D labels.
- ``visibility``: (J,) uint8, 0 not labelled / 1 occluded / 2 visible.
- ``keypoints_3d``: (J, 3) float32, metres, camera frame of the stored image (x right,
  y down, z forward), NaN where missing; or None.
- ``camera_K``: (3, 3) float32 intrinsics of the stored image in pixels; or None.
- ``mano_pose`` (48,) / ``mano_betas`` (10,) float32: axis-angle relative to the MANO mean
  pose, and shape coefficients; or None.
- ``mask``: COCO compressed RLE ``{"size": [H, W], "counts": bytes}`` of the full image; or None.
- ``keypoint_confidence``: (J,) float32 in [0, 1] for pseudo-labels; or None.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, fields
from functools import lru_cache
from typing import Any, Iterable

import numpy as np
import pyarrow as pa

import hiu_schemas
from hiu_data.errors import SchemaError
from hiu_data.skeleton import NUM_JOINTS, SKELETON_NAME

SCHEMA_VERSION: int = hiu_schemas.SCHEMA_VERSION
SPLITS: tuple[str, ...] = ("train", "val", "test", "unlabeled")
HAND_SIDES: tuple[str, ...] = ("left", "right")
REVIEW_STATUSES: tuple[str, ...] = ("pending", "accepted", "corrected", "rejected")
METADATA_KEYS = {
    "version": b"hiu.schema_version",
    "skeleton": b"hiu.skeleton",
    "convention": b"hiu.coordinates",
}

IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
RLE_TYPE = pa.struct([("size", pa.list_(pa.int32(), 2)), ("counts", pa.binary())])
_SCALARS = {"string": pa.string(), "int32": pa.int32(), "float32": pa.float32(), "uint8": pa.uint8()}
_LIST = re.compile(r"^(\w+)((?:\[\w+\])+)$")


def _arrow_type(spec: str) -> pa.DataType:
    if spec == "image":
        return IMAGE_TYPE
    if spec == "rle":
        return RLE_TYPE
    if spec == "json":
        return pa.string()
    if spec in _SCALARS:
        return _SCALARS[spec]
    match = _LIST.match(spec)
    if not match:
        raise SchemaError(f"hiu_schemas: unknown column type {spec!r}")
    dtype = _SCALARS[match.group(1)]
    sizes = re.findall(r"\[(\w+)\]", match.group(2))
    for size in reversed(sizes):
        dtype = pa.list_(dtype, NUM_JOINTS if size == "J" else int(size))
    return dtype


def column_specs() -> list[dict[str, Any]]:
    """Column descriptions (name, type, nullable, unit, frame, description) of the schema."""
    return list(hiu_schemas.hand_sample()["columns"])


def schema_conventions() -> dict[str, Any]:
    """What a row is (``row``) and the coordinate conventions of the columns (``coordinates``:
    image, keypoints_2d, keypoints_3d, visibility, mano), as sentences."""
    spec = hiu_schemas.hand_sample()
    return {"row": spec["row"], "coordinates": dict(spec["coordinates"])}


@lru_cache(maxsize=1)
def arrow_schema() -> pa.Schema:
    """The pyarrow schema of ``hand_sample`` with hiu's key-value metadata."""
    spec = hiu_schemas.hand_sample()
    arrow_fields = [
        pa.field(c["name"], _arrow_type(c["type"]), nullable=c["nullable"]) for c in spec["columns"]
    ]
    metadata = {
        METADATA_KEYS["version"]: str(SCHEMA_VERSION).encode(),
        METADATA_KEYS["skeleton"]: SKELETON_NAME.encode(),
        METADATA_KEYS["convention"]: json.dumps(spec["coordinates"]).encode(),
    }
    return pa.schema(arrow_fields, metadata=metadata)


def check_schema(schema: pa.Schema, source: str) -> None:
    """Raise :class:`SchemaError` naming ``source`` unless ``schema`` is this version's."""
    meta = schema.metadata or {}
    version = meta.get(METADATA_KEYS["version"])
    if version is None:
        raise SchemaError(f"{source}: not a hiu hand_sample table (no {METADATA_KEYS['version'].decode()} metadata)")
    if version.decode() != str(SCHEMA_VERSION):
        raise SchemaError(
            f"{source}: schema version {version.decode()} but this hiu reads version {SCHEMA_VERSION}; "
            "re-convert the dataset with this version of hiu"
        )
    expected = arrow_schema()
    if not schema.remove_metadata().equals(expected.remove_metadata()):
        missing = set(expected.names) - set(schema.names)
        detail = f"missing columns {sorted(missing)}" if missing else "column types differ"
        raise SchemaError(f"{source}: does not match the hand_sample v{SCHEMA_VERSION} schema ({detail})")


@dataclass
class HandSample:
    """One hand instance in the unified schema (see the module docstring for arrays)."""

    sample_id: str
    dataset: str
    split: str
    image_id: str
    width: int
    height: int
    hand_side: str
    bbox: np.ndarray
    visibility: np.ndarray
    image_bytes: bytes | None = None
    image_path: str | None = None
    subset: str | None = None
    keypoints_2d: np.ndarray | None = None
    keypoints_3d: np.ndarray | None = None
    camera_K: np.ndarray | None = None
    mano_pose: np.ndarray | None = None
    mano_betas: np.ndarray | None = None
    mask: dict[str, Any] | None = None
    label_source: str = "dataset"
    keypoint_confidence: np.ndarray | None = None
    confidence: float | None = None
    review_status: str | None = None
    extras: dict[str, Any] | None = field(default=None)

    def __post_init__(self) -> None:
        self.bbox = np.asarray(self.bbox, dtype=np.float32).reshape(4)
        self.visibility = np.asarray(self.visibility, dtype=np.uint8).reshape(NUM_JOINTS)
        for name, shape in _ARRAY_SHAPES.items():
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, np.asarray(value, dtype=np.float32).reshape(shape))
        if self.confidence is not None:
            self.confidence = float(self.confidence)

    def equals(self, other: "HandSample", atol: float = 0.0) -> bool:
        """Field-wise equality; arrays compared with NaN == NaN and tolerance ``atol``."""
        return not self.differences(other, atol)

    def differences(self, other: "HandSample", atol: float = 0.0) -> list[str]:
        """Names of the fields that differ (empty when equal), for readable test failures."""
        out = []
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
                if a is None or b is None or a.shape != b.shape:
                    out.append(f.name)
                elif not np.allclose(a.astype(np.float64), b.astype(np.float64), atol=atol, rtol=0, equal_nan=True):
                    out.append(f.name)
            elif isinstance(a, float) and isinstance(b, float):
                if not (math.isclose(a, b, abs_tol=max(atol, 1e-7)) or (math.isnan(a) and math.isnan(b))):
                    out.append(f.name)
            elif a != b:
                out.append(f.name)
        return out


_ARRAY_SHAPES: dict[str, tuple[int, ...]] = {
    "keypoints_2d": (NUM_JOINTS, 2),
    "keypoints_3d": (NUM_JOINTS, 3),
    "camera_K": (3, 3),
    "mano_pose": (48,),
    "mano_betas": (10,),
    "keypoint_confidence": (NUM_JOINTS,),
}


def fixed_list_array(values: np.ndarray, dtype: pa.DataType, valid: np.ndarray | None = None) -> pa.Array:
    """A (nested) fixed-size-list Arrow array of ``dtype`` from numpy values.

    Args:
        values: (N, *shape) array whose trailing shape matches the list sizes of ``dtype``.
        valid: (N,) bool, False for null rows (their values are ignored); None = all valid.
    """
    types = []
    t = dtype
    while pa.types.is_fixed_size_list(t):
        types.append(t)
        t = t.value_type
    flat = np.ascontiguousarray(values, dtype=t.to_pandas_dtype()).reshape(-1)
    array: pa.Array = pa.array(flat, type=t)
    for inner in reversed(types[1:]):
        array = pa.FixedSizeListArray.from_arrays(array, type=inner)
    mask = None if valid is None or np.all(valid) else pa.array(~np.asarray(valid, dtype=bool))
    return pa.FixedSizeListArray.from_arrays(array, type=types[0], mask=mask)


def _fixed_list(values: list[np.ndarray | None], dtype: pa.DataType, np_dtype: type, shape: tuple[int, ...]) -> pa.Array:
    """Fixed-size-list column from per-row arrays of ``shape`` (None = null)."""
    flat = np.zeros((len(values), int(np.prod(shape))), dtype=np_dtype)
    valid = np.ones(len(values), dtype=bool)
    for i, v in enumerate(values):
        if v is None:
            valid[i] = False
        else:
            flat[i] = np.asarray(v, dtype=np_dtype).reshape(-1)
    return fixed_list_array(flat, dtype, valid)


def samples_to_table(samples: Iterable[HandSample]) -> pa.Table:
    """Convert records to an Arrow table of :func:`arrow_schema` (column by column)."""
    samples = list(samples)
    schema = arrow_schema()
    cols: dict[str, pa.Array] = {}
    for f in schema:
        name = f.name
        if name == "image":
            cols[name] = pa.array(
                [{"bytes": s.image_bytes, "path": s.image_path} for s in samples], type=IMAGE_TYPE
            )
        elif name == "mask":
            cols[name] = pa.array(
                [None if s.mask is None else {"size": list(s.mask["size"]), "counts": _counts_bytes(s.mask)} for s in samples],
                type=RLE_TYPE,
            )
        elif name == "extras":
            cols[name] = pa.array(
                [None if s.extras is None else json.dumps(s.extras, sort_keys=True) for s in samples], type=pa.string()
            )
        elif name == "bbox":
            cols[name] = _fixed_list([s.bbox for s in samples], f.type, np.float32, (4,))
        elif name == "visibility":
            cols[name] = _fixed_list([s.visibility for s in samples], f.type, np.uint8, (NUM_JOINTS,))
        elif name in _ARRAY_SHAPES:
            cols[name] = _fixed_list([getattr(s, name) for s in samples], f.type, np.float32, _ARRAY_SHAPES[name])
        else:
            cols[name] = pa.array([getattr(s, name) for s in samples], type=f.type)
    return pa.Table.from_arrays([cols[f.name] for f in schema], schema=schema)


def _counts_bytes(mask: dict[str, Any]) -> bytes:
    counts = mask["counts"]
    return counts.encode("ascii") if isinstance(counts, str) else bytes(counts)


def _column_arrays(table: pa.Table, name: str, shape: tuple[int, ...], np_dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """(values (N, *shape), valid (N,)) of a fixed-size-list column, nulls as zeros."""
    col = table.column(name).combine_chunks()
    valid = ~np.asarray(col.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    flat = col
    while pa.types.is_fixed_size_list(flat.type):
        flat = flat.flatten() if flat.null_count == 0 else flat.values
    values = np.asarray(flat.to_numpy(zero_copy_only=False), dtype=np_dtype)
    return values.reshape((len(table),) + shape), valid


_PLAIN_COLUMNS = ("sample_id", "dataset", "split", "subset", "image_id", "width", "height", "hand_side",
                  "label_source", "confidence", "review_status", "extras", "mask")


def table_columns(table: pa.Table) -> dict[str, Any]:
    """Decode the label columns of a table once, for fast per-row access by :func:`sample_at`.

    Fixed-size-list columns become ``(values (N, *shape), valid (N,))`` numpy pairs; other
    columns Python lists. The image column, when present, is kept as a list of dicts.
    """
    cols: dict[str, Any] = {
        "bbox": _column_arrays(table, "bbox", (4,), np.float32),
        "visibility": _column_arrays(table, "visibility", (NUM_JOINTS,), np.uint8),
    }
    for name, shape in _ARRAY_SHAPES.items():
        cols[name] = _column_arrays(table, name, shape, np.float32)
    for name in _PLAIN_COLUMNS:
        cols[name] = table.column(name).to_pylist()
    if "image" in table.column_names:
        cols["image"] = table.column("image").to_pylist()
    return cols


def sample_at(cols: dict[str, Any], i: int, image: dict[str, Any] | None = None) -> HandSample:
    """Row ``i`` of :func:`table_columns` output as a record (``image`` overrides the image column)."""
    image = image if image is not None else (cols["image"][i] if "image" in cols else None) or {}
    mask = cols["mask"][i]
    extras = cols["extras"][i]
    arrays = {name: (cols[name][0][i].copy() if cols[name][1][i] else None) for name in _ARRAY_SHAPES}
    return HandSample(
        sample_id=cols["sample_id"][i], dataset=cols["dataset"][i], split=cols["split"][i],
        image_id=cols["image_id"][i], width=cols["width"][i], height=cols["height"][i],
        hand_side=cols["hand_side"][i], subset=cols["subset"][i],
        bbox=cols["bbox"][0][i].copy(), visibility=cols["visibility"][0][i].copy(),
        image_bytes=image.get("bytes"), image_path=image.get("path"),
        mask=None if mask is None else {"size": list(mask["size"]), "counts": mask["counts"]},
        label_source=cols["label_source"][i], confidence=cols["confidence"][i],
        review_status=cols["review_status"][i],
        extras=None if extras is None else json.loads(extras),
        **arrays,
    )


def table_to_samples(table: pa.Table) -> list[HandSample]:
    """Convert an Arrow table of :func:`arrow_schema` back into records."""
    cols = table_columns(table)
    return [sample_at(cols, i) for i in range(len(table))]
