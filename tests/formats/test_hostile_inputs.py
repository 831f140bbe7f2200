"""Inputs no dataset ships but a damaged or hostile file can hold: each gives one error line
naming the file, never a traceback or a value that wraps around."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import pytest

from hiu_cli.main import main
from hiu_data import formats
from hiu_data.errors import CorruptImageError, DatasetFormatError
from hiu_data.formats._common import MAX_IMAGE_SIDE, as_array, image_file, image_size, load_json, load_record_json
from tests.formats.test_freihand import _fresh


def png_header(width: int, height: int) -> bytes:
    """A PNG with a valid IHDR of the given size and an IEND, and no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.mark.parametrize("width", [MAX_IMAGE_SIDE + 1, 2**31, 2**32 - 1])
def test_an_image_header_beyond_any_decodable_size_is_refused(width: int) -> None:
    with pytest.raises(CorruptImageError, match=rf"a.png \(sample s1\): header says {width}x5 pixels"):
        image_size(png_header(width, 5), "a.png", "s1")
    assert image_size(png_header(MAX_IMAGE_SIDE, 5), "a.png") == (MAX_IMAGE_SIDE, 5)


def test_deeply_nested_json_is_a_format_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DatasetFormatError, match="deep.json: JSON nested too deeply"):
        load_json(path)


@pytest.mark.parametrize(("content", "problem"), [
    ("{", r"malformed JSON \(Expecting property name"),
    ("[1, 2]", "expected a JSON object with 'hand_pts' and 'is_left'"),
    ('{"hand_pts": []}', "expected a JSON object with 'hand_pts' and 'is_left'"),
    ("[" * 100_000 + "]" * 100_000, r"malformed JSON \(maximum recursion"),
])
def test_a_per_sample_json_that_is_not_the_expected_object_names_file_and_sample(tmp_path: Path, content: str,
                                                                                  problem: str) -> None:
    path = tmp_path / "0001.json"
    path.write_text(content)
    with pytest.raises(DatasetFormatError, match=rf"0001.json \(sample cmu/train/0001\): {problem}"):
        load_record_json(path, ("hand_pts", "is_left"), "cmu/train/0001")
    path.write_text('{"hand_pts": [], "is_left": 0}')
    assert load_record_json(path, ("hand_pts", "is_left"), "cmu/train/0001") == {"hand_pts": [], "is_left": 0}


def test_a_nul_in_an_image_name_is_a_corrupt_image(tmp_path: Path) -> None:
    with pytest.raises(CorruptImageError, match="not a valid file name"):
        image_file(tmp_path, "a\x00b.jpg", "embed", "s1")


def test_freihand_empty_label_list(tmp_path: Path) -> None:
    root = _fresh(tmp_path)
    (root / "training_K.json").write_text("[]")
    with pytest.raises(DatasetFormatError, match="training_K.json: an empty list"):
        list(formats.get("freihand").read(root, splits=["train"]))


def test_an_unanticipated_reader_error_is_one_line_naming_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    # A reader that meets a value its checks did not foresee (here: a stand-in that raises).
    def reader(root: Path, **_: object):  # noqa: ANN202
        raise TypeError("unhashable type: 'list'")
        yield  # a generator, as readers are

    root = _fresh(tmp_path)
    monkeypatch.setattr(formats.get("freihand"), "read_tables", reader)  # freihand reads column-wise
    monkeypatch.delenv("HIU_DEBUG", raising=False)
    assert main(["convert", "freihand", str(root), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {root}: unexpected content in the freihand files (TypeError: unhashable type: 'list'); "
                   "HIU_DEBUG=1 shows where")
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_values_beyond_float32_are_refused_not_stored_as_inf(tmp_path: Path) -> None:
    with pytest.raises(DatasetFormatError, match="xyz holds a value beyond the float32 range"):
        as_array([1e39, 0.0, 1.0], (3,), "a.json", "xyz")
    assert as_array([3e38, 0.0, 1.0], (3,), "a.json", "xyz")[0] == 3e38
    root = _fresh(tmp_path)
    xyz = json.loads((root / "training_xyz.json").read_text())
    xyz[1][3][2] = 1e39
    (root / "training_xyz.json").write_text(json.dumps(xyz))
    with pytest.raises(DatasetFormatError, match=r"training_xyz.json \(sample freihand/train/00000001\): entry 1: .*beyond"):
        list(formats.get("freihand").read(root, splits=["train"]))


@pytest.mark.parametrize("value", [[True, False, True], ["1.0", "2", "3"], [[1.0, 2.0], [3.0]]])
def test_booleans_text_and_ragged_lists_are_not_numbers(value: object) -> None:
    with pytest.raises(DatasetFormatError, match="uv is not a numeric array of shape"):
        as_array(value, (3,), "a.json", "uv")


def test_a_folder_where_a_mask_belongs_is_skippable_and_named(tmp_path: Path) -> None:
    root = _fresh(tmp_path)
    mask = root / "training" / "mask" / "00000001.jpg"
    mask.unlink()
    mask.mkdir()
    with pytest.raises(CorruptImageError, match=r"00000001.jpg \(sample freihand/train/.*\): expected mask"):
        list(formats.get("freihand").read(root, splits=["train"]))
    items = list(formats.get("freihand").read(root, splits=["train"], on_error="skip"))
    assert any(type(item).__name__ == "Skipped" for item in items)
