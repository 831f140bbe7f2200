"""hiu-data pseudo-label --update: only the images a pseudo-label dataset lacks are labelled,
added as new shards; its rows (reviewed ones included) stay byte-identical; changed, moved and
vanished images are named; interrupted updates resume and never leave the dataset half-written
(untrained tiny checkpoints: these tests check the mechanics)."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from hiu_cli.main import main
from hiu_data.io.parquet import HandDataset, load_manifest, write_dataset
from hiu_data.validate import validate
from hiu_model import pseudo_label as pl
from tests.pseudo.tiny import draw_images, tiny_checkpoint

FIRST = {"a.png": (64, 72), "b/c.jpg": (56, 80), "b/d.png": (48, 48), "k.bmp": (20, 24)}
LATER = {"e.png": (40, 70), "b/f/g.jpg": (66, 50)}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("run"), 0)


@pytest.fixture(scope="module")
def labelled(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``out/pseudo/`` of the images of FIRST (kept read-only: tests copy it)."""
    root = tmp_path_factory.mktemp("first")
    draw_images(root / "images", FIRST, 0)
    pl.pseudo_label(checkpoint, root / "images", root / "out")
    return root


@pytest.fixture
def work(labelled: Path, tmp_path: Path) -> Path:
    """A copy of the labelled folder and dataset, with the images of LATER added to the folder."""
    shutil.copytree(labelled, tmp_path, dirs_exist_ok=True)
    draw_images(tmp_path / "images", LATER, 1)
    return tmp_path


def _files(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones included) -> sha256 of its bytes."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _rows(folder: Path) -> dict:
    return {r.sample_id: r for r in HandDataset(folder)}


def test_only_new_images_are_labelled_and_existing_shards_stay_byte_identical(checkpoint: Path, work: Path) -> None:
    dataset = work / "out" / "pseudo"
    before_files, before_rows = _files(dataset), _rows(dataset)
    before_manifest = load_manifest(dataset)
    result = pl.pseudo_label(checkpoint, work / "images", work / "out", update=True)
    assert result.path == dataset and result.images == len(LATER) and result.kept == len(FIRST)
    diff = result.update
    assert (diff.held, diff.changed, diff.moved, diff.gone) == (len(FIRST), [], [], [])

    rows = _rows(dataset)
    assert len(rows) == len(FIRST) + len(LATER)
    assert sorted(set(rows) - set(before_rows)) == sorted(f"pseudo/unlabeled/{rel}" for rel in LATER)
    for sid, row in before_rows.items():
        assert rows[sid].differences(row) == []
    for rel in LATER:
        new = rows[f"pseudo/unlabeled/{rel}"]
        assert (new.review_status, new.split, new.label_source) == ("pending", "unlabeled", result.label_source)
        assert new.image_bytes == (work / "images" / rel).read_bytes()

    after = _files(dataset)
    for shard in before_manifest["shards"]:  # the same files under the same names: pushed checksums hold
        assert after[shard["file"]] == before_files[shard["file"]]
    manifest = load_manifest(dataset)
    assert manifest["shards"][:len(before_manifest["shards"])] == before_manifest["shards"]
    assert manifest["counts"] == {"unlabeled": len(FIRST) + len(LATER)}
    (addition,) = manifest["options"]["additions"]
    assert addition["rows"] == {"unlabeled": len(LATER)} and addition["label_source"] == result.label_source
    assert [e["file"] for e in manifest["shards"][len(before_manifest["shards"]):]] == addition["shard_files"]
    assert sorted(p.name for p in (work / "out").iterdir()) == ["pseudo"]  # no parts, no staging folder
    assert validate(dataset).ok


def test_a_reviewed_row_survives_an_update(checkpoint: Path, work: Path) -> None:
    # What review pull writes: an accepted hand moved to train with a person's record.
    rows = list(HandDataset(work / "out" / "pseudo"))
    rows[0] = replace(rows[0], split="train", label_source="human", review_status="accepted",
                      extras={**rows[0].extras, "review": {"dataset": "round1", "status": "accepted",
                                                            "tags": ["accepted"], "edited": []}})
    rows[1] = replace(rows[1], review_status="rejected")
    write_dataset(rows, work / "reviewed", "pseudo", options={"review": "round1"})
    before = _rows(work / "reviewed" / "pseudo")
    result = pl.pseudo_label(checkpoint, work / "images", work / "reviewed", update=True)
    after = _rows(work / "reviewed" / "pseudo")
    assert len(after) == len(before) + len(LATER) and result.images == len(LATER)
    for sid, row in before.items():
        assert after[sid].differences(row) == []
    assert after[rows[0].sample_id].review_status == "accepted" and after[rows[0].sample_id].split == "train"
    counts = load_manifest(work / "reviewed" / "pseudo")["counts"]
    assert counts == {"train": 1, "unlabeled": len(FIRST) - 1 + len(LATER)}
    # The accepted row holds an untrained model's 2D and 3D, judged now as a person's labels:
    # the statistical checks may flag it; the dataset's structure must hold.
    (report,) = validate(work / "reviewed" / "pseudo").datasets
    assert [c.name for c in report.checks if c.kind == "hard" and c.status != "ok"] == []


def test_changed_moved_and_vanished_images_keep_their_rows_and_are_named(checkpoint: Path, work: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    images, dataset = work / "images", work / "out" / "pseudo"
    before = _rows(dataset)
    cv2.imwrite(str(images / "a.png"), np.zeros((64, 72, 3), np.uint8))  # another picture under a labelled name
    size = (images / "k.bmp").stat().st_size
    cv2.imwrite(str(images / "k.bmp"), np.full((20, 24, 3), 7, np.uint8))  # the same length: told by its sha256
    assert (images / "k.bmp").stat().st_size == size
    (images / "b" / "c.jpg").unlink()  # gone
    (images / "b" / "d.png").rename(images / "moved.png")  # the same picture under another name
    assert main(["pseudo-label", str(checkpoint), str(images), str(work / "out"), "--update"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert f"warning: 2 images of {images} changed since they were labelled and were not labelled again" in err
    assert err.split("warning:")[1].split("note:")[0].strip().endswith(": a.png, k.bmp")
    assert f"note: 1 images of {dataset} are no longer in {images}; their rows are kept" in err and "b/c.jpg" in err
    assert "moved.png (as b/d.png)" in err
    after = _rows(dataset)
    assert sorted(set(after) - set(before)) == sorted(f"pseudo/unlabeled/{rel}" for rel in LATER)
    for sid, row in before.items():  # the changed image's row keeps the picture it was labelled on
        assert after[sid].differences(row) == []
    assert validate(dataset).ok


def test_nothing_to_add_says_so_and_leaves_the_dataset_untouched(checkpoint: Path, labelled: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copytree(labelled, tmp_path, dirs_exist_ok=True)
    before = _files(tmp_path / "out")
    assert main(["pseudo-label", str(checkpoint), str(tmp_path / "images"), str(tmp_path / "out"), "--update"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert (f"nothing to add: no image of {tmp_path / 'images'} is new to {tmp_path / 'out' / 'pseudo'} "
            f"({len(FIRST)} images held already); it is unchanged") in err
    assert _files(tmp_path / "out") == before


def test_bad_combinations_are_one_error_line(checkpoint: Path, work: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    images, out = work / "images", work / "out"
    before = _files(out)

    def fails(*args: str) -> str:
        assert main(["pseudo-label", str(checkpoint), str(images), *args]) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("error: ")
        return err

    err = fails(str(out), "--update", "--overwrite")
    assert "--update keeps the rows of OUT/NAME and --overwrite replaces them" in err
    assert "pass --update to label only the images it lacks, or --overwrite" in fails(str(out))
    err = fails(str(tmp_path / "none"), "--update")
    assert f"{tmp_path / 'none' / 'pseudo'}: does not exist to update; run pseudo-label without --update" in err
    assert not (tmp_path / "none").exists()
    assert f"{out / 'other'}: does not exist to update" in fails(str(out), "--update", "--name", "other")
    err = fails(str(out / "pseudo"), "--update")
    assert f"{out / 'pseudo'} is a dataset folder: pass the folder holding it, {out}, as OUT (with --name pseudo)" in err
    # A converted image folder is a dataset, but not a pseudo-label one.
    assert main(["convert", "folder", str(images), str(tmp_path / "conv")]) == 0
    capsys.readouterr()
    err = fails(str(tmp_path / "conv"), "--update", "--name", "folder")
    assert (f"{tmp_path / 'conv' / 'folder'}: none of its {len(FIRST) + len(LATER)} rows was written by pseudo-label"
            in err and "not a pseudo-label dataset" in err)
    assert _files(out) == before and not (tmp_path / "conv" / ".folder.parts").exists()


def test_a_dataset_of_another_name_or_without_pseudo_labels_is_refused(work: Path) -> None:
    from hiu_model.pseudo_update import UpdateError, read_inventory

    rows = list(HandDataset(work / "out" / "pseudo"))
    write_dataset([replace(r, extras=None) for r in rows], work / "plain", "pseudo")
    with pytest.raises(UpdateError, match=f"none of its {len(FIRST)} rows was written by pseudo-label"):
        read_inventory(work / "plain", "pseudo")
    shutil.copytree(work / "out" / "pseudo", work / "renamed" / "other")
    with pytest.raises(UpdateError, match="holds dataset 'pseudo', not a pseudo-label dataset named 'other'"):
        read_inventory(work / "renamed", "other")


def test_an_interrupted_update_leaves_the_dataset_whole_and_resumes(checkpoint: Path, work: Path) -> None:
    dataset = work / "out" / "pseudo"
    before = _files(dataset)

    def interrupt(_: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # e.png labelled and kept in the parts
        pl.pseudo_label(checkpoint, work / "images", work / "out", update=True, chunk_images=1, progress=interrupt)
    assert _files(dataset) == before
    plan = json.loads((work / "out" / ".pseudo.parts" / pl.PLAN_FILE).read_text())
    assert plan["images"] == len(LATER)
    assert plan["update_of"] == hashlib.sha256((dataset / "manifest.json").read_bytes()).hexdigest()
    again = pl.pseudo_label(checkpoint, work / "images", work / "out", update=True, chunk_images=1)
    assert (again.chunks_done, again.chunks_resumed, again.path) == (len(LATER), 1, dataset)
    assert len(_rows(dataset)) == len(FIRST) + len(LATER) and validate(dataset).ok


def test_an_update_whose_dataset_changed_meanwhile_is_refused(checkpoint: Path, work: Path) -> None:
    dataset = work / "out" / "pseudo"
    first = pl.pseudo_label(checkpoint, work / "images", work / "out", update=True, shard=(0, 2), chunk_images=1)
    assert first.path is None
    # Meanwhile the dataset was replaced (e.g. pulled into again): the planned rows belong to the old one.
    rows = list(HandDataset(dataset))
    write_dataset([replace(rows[0], review_status="accepted"), *rows[1:]], work / "out", "pseudo", overwrite=True)
    before = _files(dataset)
    with pytest.raises(pl.PseudoLabelError, match="different update_of"):
        pl.pseudo_label(checkpoint, work / "images", work / "out", update=True, shard=(1, 2), chunk_images=1)
    assert _files(dataset) == before


def test_the_merge_refuses_a_dataset_changed_after_the_plan(checkpoint: Path, work: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    dataset = work / "out" / "pseudo"
    merge = pl._merge

    def changed_just_before_the_merge(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        manifest = dataset / "manifest.json"
        manifest.write_text(manifest.read_text().replace('"created"', '"created_"'))
        return merge(*args, **kwargs)

    monkeypatch.setattr(pl, "_merge", changed_just_before_the_merge)
    with pytest.raises(pl.PseudoLabelError, match="changed while rows were being added to it"):
        pl.pseudo_label(checkpoint, work / "images", work / "out", update=True)
    assert len(_rows(dataset)) == len(FIRST)
    assert not (work / "out" / ".pseudo.parts" / pl.MERGE_LOCK).exists()
    assert not [p for p in (work / "out").iterdir() if p.name.startswith(".pseudo.tmp")]


def test_sharded_updates_merge_once_in_folder_order(checkpoint: Path, work: Path) -> None:
    draw_images(work / "images", {"h.png": (30, 30), "i.png": (31, 33)}, 2)
    first = pl.pseudo_label(checkpoint, work / "images", work / "out", update=True, shard=(0, 2), chunk_images=1)
    last = pl.pseudo_label(checkpoint, work / "images", work / "out", update=True, shard=(1, 2), chunk_images=1)
    assert first.path is None and last.path == work / "out" / "pseudo"
    assert first.images + last.images == len(LATER) + 2
    new = [r.image_id for r in HandDataset(work / "out" / "pseudo")][len(FIRST):]
    assert new == ["pseudo/b/f/g.jpg", "pseudo/e.png", "pseudo/h.png", "pseudo/i.png"]  # the folder's sorted order
    assert validate(work / "out" / "pseudo").ok


def test_another_checkpoint_labels_new_images_and_is_recorded(checkpoint: Path, work: Path, tmp_path_factory,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    other = tiny_checkpoint(tmp_path_factory.mktemp("other"), 1)
    first_source = {r.label_source for r in HandDataset(work / "out" / "pseudo")}
    assert main(["pseudo-label", str(other), str(work / "images"), str(work / "out"), "--update"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    rows = list(HandDataset(work / "out" / "pseudo"))
    sources = [r.label_source for r in rows]
    assert set(sources[:len(FIRST)]) == first_source and len(set(sources[len(FIRST):]) | first_source) == 2
    (old,) = first_source
    assert f"note: the new rows are labelled by {sources[-1][:19]}…, other pseudo-labels of" in err
    assert f"by {old[:19]}…; each row's label_source names its checkpoint" in err
    assert f"added the new rows to {work / 'out' / 'pseudo'} beside its {len(FIRST)} rows, which are unchanged" in err
