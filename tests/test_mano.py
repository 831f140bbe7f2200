"""The hand layer on synthetic MANO-format files and on the procedural hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from smplx.lbs import lbs

from hiu_data.skeleton import JOINT_INDEX, MANO_JOINT_NAMES
from hiu_model.mano import (
    MANO_TIP_VERTEX_IDS,
    HandModel,
    MissingModelError,
    freihand_to_mesh,
    mirror_pose,
)
from tests.mano_synthetic import JOINT_VERTS, synthetic_mano_arrays, write_mano_npz


@pytest.fixture(autouse=True)
def _isolated_asset_dirs(tmp_path, monkeypatch):
    """Never read the user's ~/.cache/hiu: the default asset folder is a temporary one."""
    monkeypatch.setenv("HIU_HOME", str(tmp_path / "default_home"))
    monkeypatch.delenv("HIU_MANO_DIR", raising=False)


@pytest.fixture()
def mano_dir(tmp_path):
    write_mano_npz(tmp_path, "right", seed=0)
    return tmp_path


def _flat_pose(model: HandModel, batch: int = 1) -> torch.Tensor:
    """The pose (relative to the mean) whose full pose is zero: the unposed template."""
    pose = torch.zeros(batch, 48, dtype=torch.float64)
    pose[:, 3:] = -model.hands_mean
    return pose


def test_named_joints_and_tip_vertices(mano_dir):
    model = HandModel("right", model_dir=mano_dir, kind="mano", dtype=torch.float64)
    arrays = synthetic_mano_arrays(0)
    out = model(_flat_pose(model), torch.zeros(1, 10, dtype=torch.float64))
    verts, joints = out.vertices[0].numpy(), out.joints[0].numpy()
    assert out.joints.shape == (1, 21, 3) and verts.shape == (778, 3)
    np.testing.assert_allclose(verts, arrays["v_template"], atol=1e-12)
    # FreiHAND's tip convention: thumb 744, index 320, middle 443, ring 555, little 672.
    for name, vid in zip(("thumb_tip", "index_tip", "middle_tip", "ring_tip", "little_tip"), (744, 320, 443, 555, 672)):
        np.testing.assert_allclose(joints[JOINT_INDEX[name]], arrays["v_template"][vid], atol=1e-12)
    assert model.tip_vertex_ids == MANO_TIP_VERTEX_IDS
    pairs = {"wrist": "wrist", "thumb_cmc": "thumb1", "thumb_mcp": "thumb2", "thumb_ip": "thumb3",
             "index_mcp": "index1", "index_dip": "index3", "middle_pip": "middle2", "ring_mcp": "ring1",
             "ring_dip": "ring3", "little_mcp": "little1", "little_pip": "little2"}
    for hand21, mano in pairs.items():
        vid = JOINT_VERTS[MANO_JOINT_NAMES.index(mano)]
        np.testing.assert_allclose(joints[JOINT_INDEX[hand21]], arrays["v_template"][vid], atol=1e-12,
                                   err_msg=f"{hand21} should be MANO joint {mano}")


def test_pose_is_relative_to_the_mean_pose(mano_dir):
    model = HandModel("right", model_dir=mano_dir, kind="mano", dtype=torch.float64)
    arrays = synthetic_mano_arrays(0)
    g = torch.Generator().manual_seed(1)
    pose = torch.randn(3, 48, generator=g, dtype=torch.float64) * 0.4
    betas = torch.randn(3, 10, generator=g, dtype=torch.float64)
    out = model(pose, betas)
    t = {k: torch.as_tensor(np.asarray(v, dtype=np.float64)) for k, v in arrays.items()}
    full = pose + torch.cat([torch.zeros(3, dtype=torch.float64), t["hands_mean"]])
    parents = torch.tensor([-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14])
    verts, joints = lbs(betas, full, t["v_template"], t["shapedirs"], t["posedirs"].reshape(-1, 135).T,
                        t["J_regressor"], parents, t["weights"])
    assert torch.allclose(out.vertices, verts, atol=1e-10)
    assert torch.allclose(out.joints_mano, joints, atol=1e-10)
    # Batching: each row is its own hand.
    one = model(pose[1:2], betas[1:2])
    assert torch.allclose(one.joints[0], out.joints[1], atol=1e-12)


def test_wrist_stays_at_template_wrist_plus_transl(mano_dir):
    model = HandModel("right", model_dir=mano_dir, kind="mano", dtype=torch.float64)
    pose = torch.randn(2, 48, dtype=torch.float64)
    transl = torch.tensor([[0.1, -0.2, 0.5], [0.0, 0.0, 1.0]], dtype=torch.float64)
    out = model(pose, torch.zeros(2, 10, dtype=torch.float64), transl)
    wrist = torch.as_tensor(model.template_joints[0])
    assert torch.allclose(out.joints[:, JOINT_INDEX["wrist"]], wrist + transl, atol=1e-12)


def test_left_model_shapedirs_sign_fixed(tmp_path):
    arrays = synthetic_mano_arrays(0)
    write_mano_npz(tmp_path, "right", arrays=arrays)
    mirrored = dict(arrays, v_template=arrays["v_template"] * np.array([-1.0, 1.0, 1.0]))
    write_mano_npz(tmp_path, "left", arrays=mirrored)  # x shapedirs equal to the right's: the MANO bug
    left = HandModel("left", model_dir=tmp_path, kind="mano", dtype=torch.float64)
    right = HandModel("right", model_dir=tmp_path, kind="mano", dtype=torch.float64)
    assert torch.allclose(left.layer.shapedirs[:, 0], -right.layer.shapedirs[:, 0])
    assert torch.allclose(left.layer.shapedirs[:, 1:], right.layer.shapedirs[:, 1:])
    assert left.name.startswith("mano sha256:") and left.name != right.name


def test_missing_mano_says_where_to_get_it(tmp_path):
    with pytest.raises(MissingModelError) as err:
        HandModel("right", model_dir=tmp_path, kind="mano")
    message = str(err.value)
    assert "mano.is.tue.mpg.de" in message and "hiu-data mano import" in message and str(tmp_path) in message


def test_auto_uses_mano_when_installed_else_procedural(tmp_path, mano_dir):
    assert HandModel("right", model_dir=tmp_path / "empty", kind="auto").name == "procedural-v1"
    assert HandModel("right", model_dir=mano_dir, kind="auto").kind == "mano"


def test_model_dir_from_environment(mano_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("HIU_MANO_DIR", str(mano_dir))
    assert HandModel("right").kind == "mano"
    monkeypatch.delenv("HIU_MANO_DIR")
    monkeypatch.setenv("HIU_HOME", str(tmp_path / "home"))
    write_mano_npz(tmp_path / "home" / "mano", "right")
    assert HandModel("right").kind == "mano"


def test_one_home_folder_holds_the_mano_files_and_the_review_images(monkeypatch, tmp_path):
    from hiu_data.review.push import default_cache_dir
    from hiu_model.mano import mano_dir

    monkeypatch.setenv("HIU_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HIU_CACHE_DIR", str(tmp_path / "elsewhere"))  # the old name moves nothing
    assert mano_dir() == tmp_path / "home" / "mano"
    assert default_cache_dir("round1") == tmp_path / "home" / "review" / "round1"
    monkeypatch.delenv("HIU_HOME")
    assert mano_dir().parent == default_cache_dir("round1").parent.parent


def test_mirror_pose_maps_left_model_onto_mirrored_right():
    right = HandModel("right", kind="procedural", dtype=torch.float64)
    left = HandModel("left", kind="procedural", dtype=torch.float64)
    g = torch.Generator().manual_seed(2)
    pose = torch.randn(2, 48, generator=g, dtype=torch.float64) * 0.5
    betas = torch.randn(2, 10, generator=g, dtype=torch.float64)
    flip = torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    out_left = left(pose, betas)
    out_right = right(mirror_pose(pose), betas)
    assert torch.allclose(out_left.vertices, out_right.vertices * flip, atol=1e-10)
    assert torch.allclose(out_left.joints, out_right.joints * flip, atol=1e-10)
    assert np.allclose(mirror_pose(mirror_pose(pose.numpy())), pose.numpy())
    assert mirror_pose(pose.numpy())[0, 4] == -pose[0, 4].item() and mirror_pose(pose)[0, 3] == pose[0, 3]


def test_freihand_annotation_to_camera_frame(mano_dir):
    model = HandModel("right", model_dir=mano_dir, kind="mano", dtype=torch.float64)
    rng = np.random.default_rng(4)
    K = np.array([[480.0, 0, 112.0], [0, 470.0, 112.0], [0, 0, 1]])
    mano61 = np.concatenate([rng.normal(0, 0.3, 48), rng.normal(0, 1, 10), [130.0, 95.0], [950.0]])
    verts, joints = freihand_to_mesh(mano61, K, model)
    assert verts.shape == (778, 3) and joints.shape == (21, 3)
    root = joints[JOINT_INDEX["middle_mcp"]]
    assert root[2] == pytest.approx(475.0 / 950.0)  # Z = mean focal / scale
    uv = K @ root / root[2]
    assert uv[0] == pytest.approx(130.0 + (480 - 475) * (130 - 112) / 475, rel=1e-9)
    # The rigid shift keeps the shape of the posed hand.
    with torch.no_grad():
        posed = model(torch.as_tensor(mano61[None, :48]), torch.as_tensor(mano61[None, 48:58]))
    np.testing.assert_allclose(verts - joints[9], (posed.vertices[0] - posed.joints[0, 9]).numpy(), atol=1e-12)


def test_left_from_mirrored_right_when_only_right_installed(mano_dir):
    left = HandModel("left", model_dir=mano_dir, kind="auto", dtype=torch.float64)
    right = HandModel("right", model_dir=mano_dir, kind="mano", dtype=torch.float64)
    assert left.kind == "mano" and left.name.endswith("mirrored")
    pose = torch.randn(2, 48, dtype=torch.float64) * 0.4
    betas = torch.randn(2, 10, dtype=torch.float64)
    flip = torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    assert torch.allclose(left(pose, betas).joints, right(mirror_pose(pose), betas).joints * flip, atol=1e-10)
