"""The numpy fast path for JSON number lists: exact structure or None."""

from __future__ import annotations

import json

import numpy as np

from hiu_data.io.json_numbers import number_lists


def test_parses_nested_lists_like_json() -> None:
    values = np.random.default_rng(0).normal(size=(5, 21, 3))
    values[2, 3, 1] = np.nan
    text = json.dumps(values.tolist()).encode()
    got = number_lists(text, [(21, 3)], None)
    assert got.shape == (5, 63) and np.array_equal(got.reshape(values.shape), values, equal_nan=True)
    mano = json.dumps([[list(range(61))]] * 3).encode()
    assert number_lists(mano, [(61,), (1, 61)], 3).shape == (3, 61)
    assert number_lists(b"[]", [(3, 3)], None).shape == (0, 9)


def test_anything_else_is_left_to_json() -> None:
    assert number_lists(b"[[1, 2, 3], [4, 5]]", [(3,)], None) is None  # ragged
    assert number_lists(b"[[1, 2, 3], [4, 5, 6]]", [(3,)], 3) is None  # wrong count
    assert number_lists(b"[[1, null, 3]]", [(3,)], None) is None
    assert number_lists(b"[[1, 2.2.2, 3]]", [(3,)], None) is None
    assert number_lists(b"[[1, 2, 3]", [(3,)], None) is None  # truncated
    assert number_lists(b'{"a": [1, 2, 3]}', [(3,)], None) is None
