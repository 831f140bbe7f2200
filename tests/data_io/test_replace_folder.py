"""Moving a finished output into place leaves the old output or the new one, never neither."""

from __future__ import annotations

from pathlib import Path

import pytest

from hiu_data.io import manifest
from hiu_data.io.manifest import replace_folder, staging_path


def _folder(path: Path, text: str) -> Path:
    path.mkdir(parents=True)
    (path / "file.txt").write_text(text)
    return path


def test_the_new_folder_replaces_the_old_one(tmp_path: Path) -> None:
    final = _folder(tmp_path / "out", "old")
    replace_folder(_folder(staging_path(final), "new"), final)
    assert (final / "file.txt").read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_failed_rename_puts_the_old_folder_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    final = _folder(tmp_path / "out", "old")
    staging = _folder(staging_path(final), "new")
    real_rename = Path.rename

    def refuse_the_new_one(self: Path, target: Path) -> Path:
        if self == staging:
            raise OSError("no space left on device")
        return real_rename(self, target)

    monkeypatch.setattr(manifest.Path, "rename", refuse_the_new_one)
    with pytest.raises(OSError, match="no space"):
        replace_folder(staging, final)
    assert (final / "file.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out", staging.name])


def test_a_staged_folder_replaces_on_success_and_vanishes_on_failure(tmp_path: Path) -> None:
    from hiu_data.io.manifest import staged_folder

    final = _folder(tmp_path / "deep" / "out", "old")
    with pytest.raises(RuntimeError):
        with staged_folder(final) as staging:
            (staging / "file.txt").write_text("half")
            raise RuntimeError("writer failed")
    assert (final / "file.txt").read_text() == "old" and [p.name for p in final.parent.iterdir()] == ["out"]
    with staged_folder(tmp_path / "new" / "out") as staging:
        (staging / "file.txt").write_text("new")
    assert (tmp_path / "new" / "out" / "file.txt").read_text() == "new"
    assert [p.name for p in (tmp_path / "new").iterdir()] == ["out"]
