"""``hiu-data mano import``: official-format pickles read without chumpy; hostile pickles refused."""

from __future__ import annotations

import json
import os
import pickle
import sys
import types

import numpy as np
import pytest
import scipy.sparse
import torch

from hiu_cli.main import main
from hiu_data.errors import DatasetFormatError, UnsafePickleError
from hiu_model.mano import HandModel, sha256_file
from hiu_model.mano_import import import_mano, read_mano_pickle
from tests.mano_synthetic import synthetic_mano_arrays, write_mano_npz


def _stand_in_class(module: str, name: str) -> type:
    cls = type(name, (), {})
    cls.__module__, cls.__qualname__ = module, name
    return cls


def _instance(cls: type, **state: object) -> object:
    obj = cls.__new__(cls)
    obj.__dict__.update(state)
    return obj


@pytest.fixture(autouse=True)
def _isolated_asset_dirs(tmp_path, monkeypatch):
    """Never touch the user's ~/.cache/hiu: the default asset folder is a temporary one."""
    monkeypatch.setenv("HIU_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HIU_MANO_DIR", raising=False)


@pytest.fixture()
def official_pickle():
    """Bytes of a pickle laid out like MANO_RIGHT.pkl, with chumpy / scipy objects as the original has."""

    def make(arrays: dict[str, np.ndarray], seed: int = 0) -> bytes:
        with pytest.MonkeyPatch.context() as monkeypatch:
            return _dump(arrays, seed, monkeypatch)

    def _dump(arrays: dict[str, np.ndarray], seed: int, monkeypatch: pytest.MonkeyPatch) -> bytes:
        Ch = _stand_in_class("chumpy.ch", "Ch")
        Select = _stand_in_class("chumpy.reordering", "Select")
        Csc = _stand_in_class("scipy.sparse.csc", "csc_matrix")
        for name, attrs in (("chumpy", {}), ("chumpy.ch", {"Ch": Ch}), ("chumpy.reordering", {"Select": Select}),
                            ("scipy.sparse.csc", {"csc_matrix": Csc})):
            module = types.ModuleType(name)
            module.__dict__.update(attrs)
            monkeypatch.setitem(sys.modules, name, module)
        rng = np.random.default_rng(seed)
        flat = arrays["shapedirs"].ravel()
        idxs = rng.permutation(flat.size)
        storage = np.empty_like(flat)
        storage[idxs] = flat  # Select's value is a.ravel()[idxs]
        sparse = scipy.sparse.csc_matrix(arrays["J_regressor"])
        raw = dict(arrays)
        raw["shapedirs"] = _instance(Select, a=_instance(Ch, x=storage), idxs=idxs,
                                     preferred_shape=arrays["shapedirs"].shape)
        raw["J_regressor"] = _instance(Csc, data=sparse.data, indices=sparse.indices, indptr=sparse.indptr,
                                       _shape=sparse.shape, maxprint=50)
        raw["bs_style"], raw["bs_type"], raw["extra"] = "lbs", "lrotmin", {1, 2}
        data = pickle.dumps(raw, protocol=3)
        # The official file was written by Python 2 and an older numpy: use their global names.
        data = data.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
        data = data.replace(b"cbuiltins\nset\n", b"c__builtin__\nset\n")
        assert b"chumpy.reordering\nSelect" in data and b"numpy.core.multiarray" in data
        return data  # leaving the context removes the fake chumpy before the file is read

    return make


def test_reads_official_layout_without_chumpy(official_pickle, tmp_path):
    arrays = synthetic_mano_arrays(0)
    path = tmp_path / "MANO_RIGHT.pkl"
    path.write_bytes(official_pickle(arrays))
    assert "chumpy" not in sys.modules
    got = read_mano_pickle(path)
    for key in ("v_template", "J_regressor", "weights", "posedirs", "shapedirs", "hands_components", "hands_mean",
                "hands_coeffs", "J"):
        np.testing.assert_array_equal(got[key], arrays[key], err_msg=key)
    assert got["f"].dtype == np.int64 and np.array_equal(got["f"], arrays["f"])
    assert got["kintree_table"][0, 0] == -1 and np.array_equal(got["kintree_table"][:, 1:], arrays["kintree_table"][:, 1:])


def test_import_writes_npz_with_sha256_and_fixes_left(official_pickle, tmp_path):
    arrays = synthetic_mano_arrays(0)
    left = dict(arrays, v_template=arrays["v_template"] * np.array([-1.0, 1.0, 1.0]))  # shapedirs not mirrored: the bug
    (tmp_path / "MANO_RIGHT.pkl").write_bytes(official_pickle(arrays))
    (tmp_path / "MANO_LEFT.pkl").write_bytes(official_pickle(left, seed=1))
    written = import_mano([tmp_path / "MANO_RIGHT.pkl", tmp_path / "MANO_LEFT.pkl"])
    folder = tmp_path / "home" / "mano"
    assert sorted(written) == [folder / "MANO_LEFT.npz", folder / "MANO_RIGHT.npz"]
    manifest = json.loads((folder / "manifest.json").read_text())
    for path in written:
        assert manifest[path.name]["sha256"] == sha256_file(path)
    assert manifest["MANO_LEFT.npz"]["shapedirs_x_negated"] and not manifest["MANO_RIGHT.npz"]["shapedirs_x_negated"]
    with np.load(folder / "MANO_LEFT.npz", allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["shapedirs"][:, 0], -arrays["shapedirs"][:, 0])
        np.testing.assert_array_equal(npz["shapedirs"][:, 1:], arrays["shapedirs"][:, 1:])
    model = HandModel("right", kind="mano")
    assert model.name.startswith("mano sha256:") and model.kind == "mano"
    assert model(torch.zeros(1, 48), torch.zeros(1, 10)).joints.shape == (1, 21, 3)


def test_pickle_naming_os_system_is_refused_unrun(tmp_path):
    marker = tmp_path / "ran"
    hostile = tmp_path / "MANO_RIGHT.pkl"
    hostile.write_bytes(b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")
    with pytest.raises(UnsafePickleError, match=r"os\.system"):
        read_mano_pickle(hostile)

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    hostile.write_bytes(pickle.dumps({"v_template": Payload()}, protocol=2))
    with pytest.raises(UnsafePickleError):
        read_mano_pickle(hostile)
    assert not marker.exists()


def test_wrong_shapes_are_rejected(official_pickle, tmp_path):
    arrays = synthetic_mano_arrays(0)
    arrays["posedirs"] = arrays["posedirs"][:, :, :100]
    path = tmp_path / "MANO_RIGHT.pkl"
    path.write_bytes(official_pickle(arrays))
    with pytest.raises(DatasetFormatError, match=r"posedirs has shape \(778, 3, 100\)"):
        import_mano([path], tmp_path / "out")
    assert not (tmp_path / "out" / "MANO_RIGHT.npz").exists()


def test_cli_import_and_one_line_errors(official_pickle, tmp_path, capsys):
    (tmp_path / "MANO_RIGHT.pkl").write_bytes(official_pickle(synthetic_mano_arrays(0)))
    out = tmp_path / "assets"
    assert main(["mano", "import", str(tmp_path / "MANO_RIGHT.pkl"), "--mano-dir", str(out)]) == 0
    assert (out / "MANO_RIGHT.npz").is_file()
    capsys.readouterr()
    (tmp_path / "evil_RIGHT.pkl").write_bytes(b"cos\nsystem\n(S'true'\ntR.")
    assert main(["mano", "import", str(tmp_path / "evil_RIGHT.pkl"), "--mano-dir", str(out)]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error:") and "os.system" in err[0] and "evil_RIGHT.pkl" in err[0]


def test_a_mistyped_model_path_is_not_found_before_its_name_is_read(tmp_path, capsys):
    # "mano_right.pkl" would name a side; "MANO.pkl" would not: both are simply missing.
    for name in ("MANO.pkl", "mano_right.pkl"):
        assert main(["mano", "import", str(tmp_path / name), "--mano-dir", str(tmp_path / "assets")]) == 1
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert err == [f"error: {tmp_path / name}: not found"]
    assert not (tmp_path / "assets").exists()


@pytest.mark.parametrize("damage", ["text", "truncated"])
def test_a_damaged_installed_model_is_one_line_naming_it(damage, tmp_path, capsys):
    from tests.mano_synthetic import write_mano_npz

    path = write_mano_npz(tmp_path / "assets", "right")
    if damage == "text":
        path.write_text("not a model\n")
    else:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DatasetFormatError, match="mano import"):
        HandModel("right", model_dir=tmp_path / "assets", kind="auto")
    assert main(["mano", "info", "--mano-dir", str(tmp_path / "assets")]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error") or "Traceback" in line]
    assert err == [f"error: {path}: unreadable .npz (damaged, or not a numpy archive); import the MANO file "
                   "again with `hiu-data mano import`"]


def test_an_unreadable_import_record_is_rewritten_not_a_traceback(official_pickle, tmp_path, capsys):
    # manifest.json is hiu's own record; a damaged one must not stop the import that rewrites it.
    out = tmp_path / "assets"
    out.mkdir()
    (out / "manifest.json").write_text('{"MANO_RIGHT.npz": {"sha256": "ab')
    (tmp_path / "MANO_RIGHT.pkl").write_bytes(official_pickle(synthetic_mano_arrays(0)))
    assert main(["mano", "import", str(tmp_path / "MANO_RIGHT.pkl"), "--mano-dir", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["MANO_RIGHT.npz"]["sha256"] == sha256_file(out / "MANO_RIGHT.npz")
    assert sorted(p.name for p in out.iterdir()) == ["MANO_RIGHT.npz", "manifest.json"]  # no temporary files


def test_the_same_model_has_one_name_as_official_pickle_or_imported_npz(official_pickle, tmp_path, capsys):
    """A run trained with the official files in a folder evaluates after `mano import`, and back."""
    from tests.targets.handmade import write_hands

    arrays = synthetic_mano_arrays(0)
    official = tmp_path / "mano_v1_2" / "models"
    official.mkdir(parents=True)
    (official / "MANO_RIGHT.pkl").write_bytes(official_pickle(arrays))
    (official / "MANO_LEFT.pkl").write_bytes(
        official_pickle(dict(arrays, v_template=arrays["v_template"] * np.array([-1.0, 1.0, 1.0])), seed=1))
    imported = tmp_path / "imported"
    import_mano([official / "MANO_RIGHT.pkl", official / "MANO_LEFT.pkl"], imported)
    for side in ("right", "left"):  # the left's shapedirs fixed at import time vs. when loaded
        assert HandModel(side, model_dir=official, kind="mano").name == HandModel(side, model_dir=imported, kind="mano").name
    other = tmp_path / "other"
    write_mano_npz(other, "right", seed=1)
    assert HandModel("right", model_dir=other, kind="mano").name != HandModel("right", model_dir=official, kind="mano").name

    data = write_hands(tmp_path / "data", 2, seed=7)
    small = ["--set", "model.input_size=32", "--set", "model.num_stacks=1", "--set", "model.decoder_channels=16",
             "--set", "model.regressor_hidden=64"]
    code = main(["train", "--preset", "tiny", *small, "--set", "model.hand_model=mano", "--set",
                 f"model.mano_dir={official}", "--data", str(data), "--steps", "1", "--batch-size", "2",
                 "--workers", "0", "--out", str(tmp_path / "run")])
    assert code == 0, capsys.readouterr().err
    from hiu_model.checkpoint import load_checkpoint, read_meta, resolve_checkpoint

    folder = resolve_checkpoint(tmp_path / "run")
    meta = read_meta(folder)
    meta["config"]["model"]["mano_dir"] = str(imported)  # the same model, imported, as on another machine
    (folder / "config.json").write_text(json.dumps(meta))
    _, cfg, info = load_checkpoint(folder)
    assert cfg.model.mano_dir == str(imported) and info["hand_model"]["name"].startswith("mano sha256:")

    # Checkpoints written before the name was the arrays' digest recorded the file's sha256.
    meta["hand_model"]["name"] = f"mano sha256:{sha256_file(imported / 'MANO_RIGHT.npz')[:16]}"
    (folder / "config.json").write_text(json.dumps(meta))
    load_checkpoint(folder)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_a_chumpy_free_resave_from_python3_imports(protocol, tmp_path):
    # Scripts that drop chumpy re-pickle the dict with Python 3: protocol 2 names _codecs.encode for
    # bytes, protocol 5 numpy's _frombuffer, and stray numpy scalars name multiarray.scalar.
    arrays = synthetic_mano_arrays(0)
    resave = dict(arrays, J_regressor=scipy.sparse.csc_matrix(arrays["J_regressor"]), bs_style="lbs",
                  bs_type="lrotmin", scale=np.float64(1.0), note=b"py3")
    path = tmp_path / "MANO_RIGHT.pkl"
    path.write_bytes(pickle.dumps(resave, protocol=protocol))
    got = read_mano_pickle(path)
    for key in ("v_template", "J_regressor", "posedirs", "shapedirs", "hands_mean"):
        np.testing.assert_array_equal(got[key], arrays[key], err_msg=key)


def test_a_smplh_or_smplx_body_model_is_named_as_such(official_pickle, tmp_path, capsys):
    # Both sit beside the MANO files (mano_v1_2/models/SMPLH_*.pkl, smplx's models/smplx/*.npz).
    arrays = synthetic_mano_arrays(0)
    body = {k: v for k, v in arrays.items() if not k.startswith("hands_")}
    body.update(hands_componentsl=arrays["hands_components"], hands_componentsr=arrays["hands_components"],
                hands_meanl=arrays["hands_mean"], hands_meanr=arrays["hands_mean"])
    (tmp_path / "SMPLH_male.pkl").write_bytes(official_pickle(body))
    np.savez(tmp_path / "SMPLX_NEUTRAL.npz", **body)
    (tmp_path / "smplh_RIGHT.pkl").write_bytes(official_pickle(body))  # renamed to get past the side check
    for name in ("SMPLH_male.pkl", "SMPLX_NEUTRAL.npz", "smplh_RIGHT.pkl"):
        assert main(["mano", "import", str(tmp_path / name), "--mano-dir", str(tmp_path / "out")]) == 1
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert err == [f"error: {tmp_path / name}: a SMPL-H / SMPL-X body model, not the MANO hand model: import "
                       "MANO_RIGHT.pkl and MANO_LEFT.pkl (mano_v1_2/models in the MANO download)"]
    assert not (tmp_path / "out").exists()


def test_mano_info_answers_on_stdout(official_pickle, tmp_path, capsys):
    (tmp_path / "MANO_RIGHT.pkl").write_bytes(official_pickle(synthetic_mano_arrays(0)))
    assert main(["mano", "import", str(tmp_path / "MANO_RIGHT.pkl"), "--mano-dir", str(tmp_path / "m")]) == 0
    capsys.readouterr()
    assert main(["mano", "info", "--mano-dir", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out.splitlines()
    name = HandModel("right", model_dir=tmp_path / "m", kind="mano").name
    assert out[0] == f"MANO folder: {tmp_path / 'm'}"
    assert out[1] == f"right: {name} (778 vertices, 1538 faces) from {tmp_path / 'm' / 'MANO_RIGHT.npz'}"
    assert out[2].startswith(f"left: {name} mirrored (778 vertices")


@pytest.mark.parametrize("side", ["right", "left"])
def test_imported_model_poses_as_smplx_own_mano_layer(side, official_pickle, tmp_path):
    """smplx reads a chumpy-free pickle of the same arrays with its own loader; hiu imports the official layout."""
    import smplx

    arrays = synthetic_mano_arrays(3)
    name = f"MANO_{side.upper()}.pkl"
    (tmp_path / name).write_bytes(official_pickle(arrays))
    import_mano([tmp_path / name], tmp_path / "imported")
    (tmp_path / "ref").mkdir()
    plain = dict(arrays, J_regressor=scipy.sparse.csc_matrix(arrays["J_regressor"]), bs_style="lbs", bs_type="lrotmin")
    (tmp_path / "ref" / name).write_bytes(pickle.dumps(plain))
    torch.manual_seed(0)
    pose, betas, transl = torch.randn(3, 48) * 0.6, torch.randn(3, 10), torch.randn(3, 3) * 0.1
    ours = HandModel(side, model_dir=tmp_path / "imported", kind="mano")(pose, betas, transl)
    ref = smplx.MANO(str(tmp_path / "ref"), is_rhand=side == "right", use_pca=False, flat_hand_mean=False,
                     num_betas=10)(betas=betas, global_orient=pose[:, :3], hand_pose=pose[:, 3:], transl=transl)
    torch.testing.assert_close(ours.vertices, ref.vertices, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours.joints_mano, ref.joints, rtol=0, atol=1e-6)


def _left_with_the_sign_issue(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A left model as MANO_LEFT ships: mirrored template, but shapedirs x not negated."""
    return dict(arrays, v_template=arrays["v_template"] * np.array([-1.0, 1.0, 1.0]))


def _loaded_left_shapedirs() -> np.ndarray:
    """(V, 3, 10): the left model's shape directions as the hand layer uses them (float32 buffer as float64)."""
    return HandModel("left", kind="mano").layer.shapedirs.detach().double().numpy()


def test_left_imported_alone_is_recorded_unchecked_and_fixed_when_right_is_imported(official_pickle, tmp_path):
    arrays = synthetic_mano_arrays(0)
    (tmp_path / "MANO_RIGHT.pkl").write_bytes(official_pickle(arrays))
    (tmp_path / "MANO_LEFT.pkl").write_bytes(official_pickle(_left_with_the_sign_issue(arrays), seed=1))
    folder = tmp_path / "home" / "mano"

    # Without a right model the sign cannot be checked: not "false" (checked, not needed).
    assert import_mano([tmp_path / "MANO_LEFT.pkl"]) == [folder / "MANO_LEFT.npz"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["MANO_LEFT.npz"]["shapedirs_x_negated"] is None
    with np.load(folder / "MANO_LEFT.npz", allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["shapedirs"], arrays["shapedirs"])

    # Importing the right model then fixes the installed left file, and its record says so:
    # the left model loaded afterwards is the file the manifest describes.
    written = import_mano([tmp_path / "MANO_RIGHT.pkl"])
    assert sorted(written) == [folder / "MANO_LEFT.npz", folder / "MANO_RIGHT.npz"]
    manifest = json.loads((folder / "manifest.json").read_text())
    left = manifest["MANO_LEFT.npz"]
    assert left["shapedirs_x_negated"] is True and left["sha256"] == sha256_file(folder / "MANO_LEFT.npz")
    assert left["source_sha256"] == sha256_file(tmp_path / "MANO_LEFT.pkl")
    assert manifest["MANO_RIGHT.npz"]["shapedirs_x_negated"] is False
    with np.load(folder / "MANO_LEFT.npz", allow_pickle=False) as npz:
        stored = npz["shapedirs"]
    np.testing.assert_array_equal(stored[:, 0], -arrays["shapedirs"][:, 0])
    np.testing.assert_allclose(_loaded_left_shapedirs(), stored, rtol=0, atol=1e-8)  # float32 buffers

    # A second import of the right model finds the left already fixed and leaves it alone.
    assert import_mano([tmp_path / "MANO_RIGHT.pkl"]) == [folder / "MANO_RIGHT.npz"]
    assert json.loads((folder / "manifest.json").read_text())["MANO_LEFT.npz"]["sha256"] == left["sha256"]


def test_left_imported_beside_an_installed_right_pickle_is_fixed_and_recorded(official_pickle, tmp_path):
    arrays = synthetic_mano_arrays(0)
    folder = tmp_path / "home" / "mano"
    folder.mkdir(parents=True)
    # The official right file copied into the MANO folder, which the hand layer reads as it is.
    (folder / "MANO_RIGHT.pkl").write_bytes(official_pickle(arrays))
    (tmp_path / "MANO_LEFT.pkl").write_bytes(official_pickle(_left_with_the_sign_issue(arrays), seed=1))
    import_mano([tmp_path / "MANO_LEFT.pkl"])
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["MANO_LEFT.npz"]["shapedirs_x_negated"] is True
    with np.load(folder / "MANO_LEFT.npz", allow_pickle=False) as npz:
        stored = npz["shapedirs"]
    np.testing.assert_array_equal(stored[:, 0], -arrays["shapedirs"][:, 0])
    np.testing.assert_allclose(_loaded_left_shapedirs(), stored, rtol=0, atol=1e-8)  # float32 buffers


def test_a_correct_left_imported_alone_is_recorded_as_checked_once_right_is_there(official_pickle, tmp_path):
    arrays = synthetic_mano_arrays(0)
    fixed = _left_with_the_sign_issue(arrays)
    fixed["shapedirs"] = arrays["shapedirs"] * np.array([-1.0, 1.0, 1.0])[None, :, None]
    (tmp_path / "MANO_LEFT.pkl").write_bytes(official_pickle(fixed, seed=1))
    (tmp_path / "MANO_RIGHT.pkl").write_bytes(official_pickle(arrays))
    import_mano([tmp_path / "MANO_LEFT.pkl"])
    folder = tmp_path / "home" / "mano"
    before = sha256_file(folder / "MANO_LEFT.npz")
    assert import_mano([tmp_path / "MANO_RIGHT.pkl"]) == [folder / "MANO_RIGHT.npz"]
    left = json.loads((folder / "manifest.json").read_text())["MANO_LEFT.npz"]
    assert left["shapedirs_x_negated"] is False and left["sha256"] == before == sha256_file(folder / "MANO_LEFT.npz")


def test_another_model_replaces_an_installed_one_only_with_overwrite(official_pickle, tmp_path, capsys):
    """Runs trained with the installed model refuse another one: importing a different file over it
    takes --overwrite, as every command that would replace its output; the same model imports again."""
    arrays = synthetic_mano_arrays(0)
    (tmp_path / "MANO_RIGHT.pkl").write_bytes(official_pickle(arrays))
    (tmp_path / "MANO_LEFT.pkl").write_bytes(official_pickle(_left_with_the_sign_issue(arrays), seed=1))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "MANO_RIGHT.pkl").write_bytes(official_pickle(synthetic_mano_arrays(1)))
    out = tmp_path / "assets"
    right = out / "MANO_RIGHT.npz"
    assert main(["mano", "import", str(tmp_path / "MANO_LEFT.pkl"), "--mano-dir", str(out)]) == 0
    assert main(["mano", "import", str(tmp_path / "MANO_RIGHT.pkl"), "--mano-dir", str(out)]) == 0
    installed = sha256_file(right)
    capsys.readouterr()

    assert main(["mano", "import", str(tmp_path / "other" / "MANO_RIGHT.pkl"), "--mano-dir", str(out)]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == [f"error: {right}: holds another MANO right model (imported from {tmp_path / 'MANO_RIGHT.pkl'}); "
                   "pass --overwrite to replace it (runs trained with it load again once it is imported back)"]
    assert sha256_file(right) == installed

    # The same files again (the left one now checked against the installed right): no --overwrite needed.
    assert main(["mano", "import", str(tmp_path / "MANO_RIGHT.pkl"), str(tmp_path / "MANO_LEFT.pkl"),
                 "--mano-dir", str(out)]) == 0
    assert main(["mano", "import", str(tmp_path / "other" / "MANO_RIGHT.pkl"), "--mano-dir", str(out),
                 "--overwrite"]) == 0
    assert sha256_file(right) != installed
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["MANO_RIGHT.npz"]["source"] == str(tmp_path / "other" / "MANO_RIGHT.pkl")
