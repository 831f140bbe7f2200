"""The procedural hand: regenerated = shipped, MANO format and tree, anatomy, shapes, looks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hiu_data.skeleton import JOINT_INDEX, MANO_JOINT_NAMES, MANO_PARENTS
from hiu_model.hand_pose import matrix_to_axis_angle, prototype_angles
from hiu_model.mano import HandModel
from hiu_model.mano_import import check_arrays
from hiu_model.procedural_hand import ASSET_DIR, ASSET_FILES, build
from hiu_model.render import soft_silhouette


@pytest.fixture(scope="module")
def right() -> dict[str, np.ndarray]:
    return build("right")


@pytest.mark.parametrize("side", ["right", "left"])
def test_shipped_files_equal_the_generator(side):
    fresh = build(side)
    with np.load(ASSET_DIR / ASSET_FILES[side], allow_pickle=False) as shipped:
        assert sorted(shipped.files) == sorted(fresh)
        for key in fresh:
            if fresh[key].dtype.kind in "US":
                assert str(shipped[key]) == str(fresh[key])
            else:
                np.testing.assert_allclose(shipped[key], fresh[key], rtol=0, atol=1e-12, err_msg=key)


def test_mano_format_and_tree(right):
    check_arrays(right, ASSET_DIR / ASSET_FILES["right"], num_verts=None)
    assert right["kintree_table"][0].tolist() == [-1] + list(MANO_PARENTS[1:])
    joints = right["J"] * 1000.0  # mm; fingers along -x, thumb side +z, palm towards -y
    j = {name: joints[i] for i, name in enumerate(MANO_JOINT_NAMES)}
    for finger in ("index", "middle", "ring", "little", "thumb"):
        chain = [j["wrist"]] + [j[f"{finger}{k}"] for k in (1, 2, 3)]
        reach = [np.linalg.norm(p - j["wrist"]) for p in chain]
        assert reach == sorted(reach), f"{finger} joints must go away from the wrist in MANO order"
    lateral = [j[f"{f}2"][2] for f in ("thumb", "index", "middle", "ring", "little")]
    assert lateral == sorted(lateral, reverse=True), "thumb, index, middle, ring, little across the hand"
    tips = right["v_template"][right["tip_vertex_ids"]] * 1000.0
    for k, finger in enumerate(("thumb", "index", "middle", "ring", "little")):
        finger_verts = right["weights"][:, MANO_JOINT_NAMES.index(f"{finger}3")] > 0.99
        dist = np.linalg.norm(right["v_template"][finger_verts] * 1000.0 - j[f"{finger}3"], axis=1)
        assert np.linalg.norm(tips[k] - j[f"{finger}3"]) == pytest.approx(dist.max()), f"{finger} tip vertex"


def test_anatomical_proportions(right):
    """Adult bone lengths (mm), hand length about 185 mm, palm about 85 mm wide."""
    j = {name: right["J"][i] * 1000.0 for i, name in enumerate(MANO_JOINT_NAMES)}
    table = {"index": (40, 23), "middle": (45, 27), "ring": (42, 26), "little": (33, 18)}
    for finger, (proximal, middle) in table.items():
        assert np.linalg.norm(j[f"{finger}2"] - j[f"{finger}1"]) == pytest.approx(proximal, abs=0.5)
        assert np.linalg.norm(j[f"{finger}3"] - j[f"{finger}2"]) == pytest.approx(middle, abs=0.5)
    assert np.linalg.norm(j["thumb2"] - j["thumb1"]) == pytest.approx(46, abs=0.5)
    assert np.linalg.norm(j["thumb3"] - j["thumb2"]) == pytest.approx(32, abs=0.5)
    middle_tip = right["v_template"][right["tip_vertex_ids"][2]] * 1000.0
    assert 175 < np.linalg.norm(middle_tip - j["wrist"]) < 195
    palm = right["v_template"][right["weights"][:, 0] > 0.99] * 1000.0
    width = np.ptp(palm[np.abs(palm[:, 0] + 60) < 5, 2])  # across the palm, 60 mm from the wrist
    assert 75 < width < 90


def test_shape_blend_shapes(right):
    hand = HandModel("right", kind="procedural", dtype=torch.float64)
    pose = torch.zeros(4, 48, dtype=torch.float64)
    betas = torch.zeros(4, 10, dtype=torch.float64)
    betas[1, 0], betas[2, 1], betas[3, 2] = 1.0, 1.0, 1.0  # size, finger length, finger thickness
    out = hand(pose, betas)
    tip, mcp, wrist = JOINT_INDEX["middle_tip"], JOINT_INDEX["middle_mcp"], JOINT_INDEX["wrist"]
    length = (out.joints[:, tip] - out.joints[:, wrist]).norm(dim=-1)
    finger = (out.joints[:, tip] - out.joints[:, mcp]).norm(dim=-1)
    assert length[1] / length[0] == pytest.approx(1.06, rel=1e-6)
    assert finger[2] / finger[0] > 1.04 and (out.joints[2, mcp] - out.joints[0, mcp]).norm() < 1e-9
    # Thickness moves no joint but widens the fingers around them.
    assert torch.allclose(out.joints_mano[3], out.joints_mano[0], atol=1e-12)
    ring = torch.as_tensor(right["J_regressor"][MANO_JOINT_NAMES.index("middle2")] > 0)  # the PIP's vertex ring

    def spread(v: torch.Tensor) -> torch.Tensor:
        return (v[ring] - v[ring].mean(0)).norm(dim=-1).mean()

    assert spread(out.vertices[3]) / spread(out.vertices[0]) == pytest.approx(1.08, rel=1e-6)


@pytest.mark.parametrize("side", ["right", "left"])
def test_mesh_is_closed_and_outward(side):
    arrays = build(side)
    v, f = arrays["v_template"], arrays["f"]
    edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    assert (counts == 2).all(), "every edge is shared by exactly two faces (closed parts)"
    volume = np.einsum("ij,ij->i", v[f[:, 0]], np.cross(v[f[:, 1]], v[f[:, 2]])).sum() / 6.0
    assert 2e-4 < volume < 6e-4  # cubic metres, outward winding; adult hands are 3e-4 to 4.5e-4


def test_renders_as_a_hand():
    """Palm view of the flat hand: four separate fingers across the proximal phalanges, thumb apart."""
    hand = HandModel("right", kind="procedural")
    palm_to_camera = torch.tensor([[[0.0, 0, 1], [1, 0, 0], [0, 1, 0]]])  # fingers up, thumb right
    pose = hand.pose_from_angles(torch.as_tensor(prototype_angles("spread"), dtype=torch.float32)[None],
                                 matrix_to_axis_angle(palm_to_camera))
    out = hand(pose, torch.zeros(1, 10))
    centre = out.vertices[0].mean(0)
    verts, joints = out.vertices - centre + torch.tensor([0, 0, 0.6]), out.joints - centre + torch.tensor([0, 0, 0.6])
    K = torch.tensor([[300.0, 0, 64], [0, 300.0, 64], [0, 0, 1]])
    mask = soft_silhouette(verts, hand.faces, K, (128, 128), hard=True)[0] > 0.5
    uv = joints[0, :, :2] / joints[0, :, 2:] * 300.0 + 64
    row = int(uv[[JOINT_INDEX[f"{f}_pip"] for f in ("index", "middle", "ring", "little")], 1].mean())
    runs = np.flatnonzero(np.diff(np.concatenate([[0], mask[row].numpy().astype(int), [0]])) == 1)
    assert len(runs) == 4, f"expected four fingers across row {row}, found {len(runs)} runs"
    assert uv[JOINT_INDEX["thumb_tip"], 0] > uv[JOINT_INDEX["index_tip"], 0] + 10  # right hand, palm view
    for tip in ("thumb_tip", "index_tip", "middle_tip", "ring_tip", "little_tip"):
        x, y = uv[JOINT_INDEX[tip]].long().tolist()
        assert mask[max(y - 2, 0):y + 3, max(x - 2, 0):x + 3].any(), f"{tip} lies on the silhouette"
    assert 0.1 < mask.float().mean() < 0.5
