"""The restricted unpickler: allow-list by dotted name, stand-ins, numpy across protocols."""

from __future__ import annotations

import collections
import pickle

import numpy as np
import pytest

from hiu_data.errors import DatasetFormatError, UnsafePickleError
from hiu_data.io.safe_pickle import NUMPY_ARRAYS, load


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_numpy_arrays_and_scalars_load(protocol: int) -> None:
    value = {0: {"xyz": np.arange(6, dtype=np.float32).reshape(2, 3), "n": np.int64(3)}, "name": "x", 1: [1.5, None]}
    got = load(pickle.dumps(value, protocol=protocol), NUMPY_ARRAYS)
    assert got[0]["xyz"].dtype == np.float32 and got[0]["xyz"].tolist() == value[0]["xyz"].tolist()
    assert got[0]["n"] == 3 and got["name"] == "x" and got[1] == [1.5, None]


def test_anything_else_is_refused_and_stand_ins_replace_globals() -> None:
    data = pickle.dumps(collections.OrderedDict(a=1), protocol=2)
    with pytest.raises(UnsafePickleError, match="collections.OrderedDict"):
        load(data, NUMPY_ARRAYS)
    assert load(data, {"collections.OrderedDict": dict}) == {"a": 1}
    assert load(pickle.dumps({"a": 1}), []) == {"a": 1}  # plain containers need no global


def test_missing_file(tmp_path) -> None:
    with pytest.raises(DatasetFormatError, match="pickle file not found"):
        load(tmp_path / "nope.pickle", NUMPY_ARRAYS)
