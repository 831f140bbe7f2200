"""JSON label lists: the numpy fast path (exact structure or None) and the file reader with its errors."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

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


def test_read_number_list_names_the_entries_of_another_shape(tmp_path) -> None:  # noqa: ANN001
    from hiu_data.io.json_numbers import read_number_list

    path = tmp_path / "xyz.json"
    path.write_text(json.dumps([[[1, 2, 3]] * 2, [[1, 2]] * 2, [[[4, 5, 6]] * 2]]))
    values, problems = read_number_list(path, (2, 3), "xyz", n=3)
    assert values.shape == (3, 2, 3) and np.isnan(values[1]).all()
    np.testing.assert_array_equal(values[2], [[4, 5, 6]] * 2)  # a leading axis of 1 is taken
    assert problems == {1: "entry 1: xyz has shape (2, 2), expected (2, 3)"}


@pytest.mark.parametrize("text, n, message", [
    ('{"a": 1}', None, "expected a JSON list of xyz, found dict"),
    ("[[1, 2, 3]]", 2, "expected a list of 2 entries like the K file, got 1"),
    ("[[1, 2, 3]", None, "truncated JSON"),
])
def test_read_number_list_errors_name_the_file(tmp_path, text: str, n, message: str) -> None:  # noqa: ANN001
    from hiu_data.errors import DatasetFormatError
    from hiu_data.io.json_numbers import read_number_list

    path = tmp_path / "xyz.json"
    path.write_text(text)
    with pytest.raises(DatasetFormatError, match=re.escape(message)) as info:
        read_number_list(path, (3,), "xyz", n=n, n_from="the K file")
    assert str(path) in str(info.value)
