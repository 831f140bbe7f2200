"""Build ``hand_sample`` Arrow tables column by column: the fast path of readers.

A reader that has its labels as arrays (FreiHAND's JSON lists, STB's ``.mat`` files) can
produce a batch of rows without creating one :class:`~hiu_data.schema.HandSample` per row:
:func:`hand_table` takes whole columns and returns a table of
:func:`~hiu_data.schema.arrow_schema`, the same table :func:`~hiu_data.schema.samples_to_table`
would give for the equivalent records (``table_to_samples`` turns it back into records).
``convert`` writes such batches straight into the shards when a format module defines
``read_tables`` (see :func:`hiu_data.convert.convert`).

Column values (n = number of rows):

- strings (``sample_id``, ``dataset``, ``split``, ``subset``, ``image_id``, ``hand_side``,
  ``label_source``, ``review_status``): a list of n values, or one value for every row;
- ``width``, ``height``: (n,) ints; ``confidence``: a list of n floats (None = null) or None;
- ``image_bytes``, ``image_path``: lists of n bytes / str (None where absent);
- arrays (``bbox`` (n, 4), ``visibility`` (n, J), ``keypoints_2d`` (n, J, 2), ``keypoints_3d``
  (n, J, 3), ``camera_K`` (n, 3, 3), ``mano_pose`` (n, 48), ``mano_betas`` (n, 10),
  ``keypoint_confidence`` (n, J)): an array, or ``(array, valid)`` with a (n,) bool validity
  mask (invalid rows become nulls), or None for an all-null column;
- ``mask``: a list of n RLE dicts or None; ``extras``: a list of n dicts (or their JSON text,
  ``json.dumps(d, sort_keys=True)``) or None.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa

from hiu_data.schema import IMAGE_TYPE, RLE_TYPE, arrow_schema, fixed_list_array

_STRINGS = ("sample_id", "dataset", "split", "subset", "image_id", "hand_side", "label_source", "review_status")
_DEFAULTS = {"label_source": "dataset"}
_REQUIRED = ("sample_id", "dataset", "split", "image_id", "width", "height", "hand_side", "bbox", "visibility")


def _strings(value: Any, n: int) -> pa.Array:
    if value is None or isinstance(value, str):
        return pa.array([value] * n, type=pa.string())
    return pa.array(value, type=pa.string())


def _fixed(value: Any, dtype: pa.DataType, n: int) -> pa.Array:
    """A (nested) fixed-size-list array from (n, *shape) values and an optional validity mask."""
    if value is None:
        return pa.nulls(n, type=dtype)
    values, valid = value if isinstance(value, tuple) else (value, None)
    values = np.asarray(values)
    if values.size != n * _size(dtype):
        raise ValueError(f"column of type {dtype} needs {n} x {_size(dtype)} values, got {values.size}")
    return fixed_list_array(values.reshape(n, -1) if n else values.reshape(0, _size(dtype)), dtype, valid)


def _masks(masks: list[dict[str, Any] | None]) -> pa.Array:
    """RLE struct column from per-row dicts, built from flat arrays (faster than dict conversion)."""
    valid = np.array([m is not None for m in masks], dtype=bool)
    sizes = np.array([m["size"] if m is not None else (0, 0) for m in masks], dtype=np.int32).reshape(-1)
    counts = [None if m is None else (m["counts"].encode("ascii") if isinstance(m["counts"], str) else m["counts"])
              for m in masks]
    size_type, counts_type = RLE_TYPE.field("size").type, RLE_TYPE.field("counts").type
    return pa.StructArray.from_arrays(
        [pa.FixedSizeListArray.from_arrays(pa.array(sizes, type=size_type.value_type), type=size_type),
         pa.array(counts, type=counts_type)],
        fields=list(RLE_TYPE), mask=None if valid.all() else pa.array(~valid))


def _json(extras: dict[str, Any] | str | None) -> str | None:
    """JSON text of one row's extras; a str is taken as JSON text already (readers serialise
    an extras dict shared by several rows once)."""
    if extras is None or isinstance(extras, str):
        return extras
    return json.dumps(extras, sort_keys=True)


def _size(dtype: pa.DataType) -> int:
    size = 1
    while pa.types.is_fixed_size_list(dtype):
        size *= dtype.list_size
        dtype = dtype.value_type
    return size


def hand_table(n: int, **columns: Any) -> pa.Table:
    """A table of :func:`~hiu_data.schema.arrow_schema` from whole columns (see the module docstring).

    Raises:
        TypeError: an unknown column name or a missing required one (sample_id, dataset, split,
            image_id, width, height, hand_side, bbox, visibility). ValueError: a column of the wrong size.
    """
    image_bytes = columns.pop("image_bytes", None)
    image_path = columns.pop("image_path", None)
    schema = arrow_schema()
    unknown = set(columns) - set(schema.names)
    if unknown:
        raise TypeError(f"hand_table: unknown columns {sorted(unknown)}")
    missing = [name for name in _REQUIRED if columns.get(name) is None]
    if missing:
        raise TypeError(f"hand_table: missing required columns {missing}")
    arrays = []
    for f in schema:
        value = columns.get(f.name, _DEFAULTS.get(f.name))
        if f.name == "image":
            arrays.append(pa.StructArray.from_arrays(
                [pa.array(image_bytes if image_bytes is not None else [None] * n, type=pa.binary()),
                 pa.array(image_path if image_path is not None else [None] * n, type=pa.string())],
                fields=list(IMAGE_TYPE)))
        elif f.name in _STRINGS:
            arrays.append(_strings(value, n))
        elif f.name in ("width", "height"):
            arrays.append(pa.array(np.asarray(value, dtype=np.int32), type=pa.int32()))
        elif f.name == "confidence":
            arrays.append(pa.nulls(n, pa.float32()) if value is None else pa.array(
                value if isinstance(value, np.ndarray) else list(value), type=pa.float32()))
        elif f.name == "mask":
            arrays.append(pa.nulls(n, RLE_TYPE) if value is None else _masks(value))
        elif f.name == "extras":
            arrays.append(pa.array([None] * n if value is None else [_json(e) for e in value], type=pa.string()))
        else:
            arrays.append(_fixed(value, f.type, n))
    return pa.Table.from_arrays(arrays, schema=schema)
