"""Finding a dataset under the RAW_ROOT a user gives: the folder itself, the one folder below
it, or an error naming what to give instead."""

from __future__ import annotations

from pathlib import Path

import pytest

from hiu_data.errors import DatasetFormatError
from hiu_data.formats._layout import dataset_folder, one_folder, relative_prefix


def _holds(folder: Path) -> bool:
    return (folder / "marker.json").is_file()


def _dataset(path: Path) -> Path:
    (path / "inner").mkdir(parents=True)
    (path / "marker.json").write_text("{}")
    return path


def test_the_root_itself_or_the_one_folder_below_it(tmp_path: Path) -> None:
    top = _dataset(tmp_path / "Archive_v2")
    assert dataset_folder(top, _holds, "X", "not X") == top
    (tmp_path / ".hidden").mkdir()
    _dataset(tmp_path / ".hidden" / "copy")  # hidden folders are not candidates
    assert dataset_folder(tmp_path, _holds, "X", "not X") == top
    assert relative_prefix(tmp_path, top) == "Archive_v2/" and relative_prefix(top, top) == ""


def test_two_candidates_or_none_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(DatasetFormatError, match=r"not X \(or in a folder directly below it\)"):
        dataset_folder(tmp_path, _holds, "X", "not X")
    _dataset(tmp_path / "a")
    _dataset(tmp_path / "b")
    with pytest.raises(DatasetFormatError, match=r"2 folders here hold X \(a, b\); give one of them as RAW_ROOT"):
        dataset_folder(tmp_path, _holds, "X", "not X")
    with pytest.raises(DatasetFormatError, match=r"inner: a folder inside the X dataset; give .*a as RAW_ROOT"):
        dataset_folder(tmp_path / "a" / "inner", _holds, "X", "not X")
    with pytest.raises(DatasetFormatError, match=r"2 folders here hold part"):
        one_folder(tmp_path, _holds, "part")
    assert one_folder(tmp_path / "a" / "inner", _holds, "part") is None
