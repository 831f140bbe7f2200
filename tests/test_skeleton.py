"""HAND21 and the per-dataset gather tables: permutations onto the right slots, named joints."""

from __future__ import annotations

import numpy as np
import pytest

from hiu_data import skeleton as sk


def test_skeleton_is_a_tree_of_twenty_bones() -> None:
    assert sk.NUM_JOINTS == len(sk.JOINT_NAMES) == 21
    assert sk.NUM_BONES == 20
    children = sorted(child for _, child in sk.BONES)
    assert children == list(range(1, sk.NUM_JOINTS))
    for parent, child in sk.BONES:
        assert sk.PARENTS[child] == parent
        assert parent < child
    assert sk.PARENTS[sk.ROOT] == -1
    assert [sk.JOINT_NAMES[t] for t in sk.TIPS] == ["thumb_tip", "index_tip", "middle_tip", "ring_tip", "little_tip"]
    assert len(sk.bone_colors()) == sk.NUM_BONES and len(sk.joint_colors()) == sk.NUM_JOINTS


@pytest.mark.parametrize(
    "table, num_raw, offset",
    [
        (sk.FREIHAND_TO_HAND21, 21, 0),
        (sk.CMU_TO_HAND21, 21, 0),
        (sk.RHD_LEFT_TO_HAND21, 42, 0),
        (sk.RHD_RIGHT_TO_HAND21, 42, 21),
        (sk.STB_TO_HAND21, 21, 0),
        (sk.INTERHAND_RIGHT_TO_HAND21, 42, 0),
        (sk.INTERHAND_LEFT_TO_HAND21, 42, 21),
        (sk.MANO21_TO_HAND21, 21, 0),
    ],
)
def test_tables_are_permutations_onto_one_hand_block(table: np.ndarray, num_raw: int, offset: int) -> None:
    assert table.shape == (sk.NUM_JOINTS,)
    assert sorted(table.tolist()) == list(range(offset, offset + sk.NUM_JOINTS))
    assert table.max() < num_raw


def test_rhd_named_joints() -> None:
    # RHD raw: wrist, then per finger tip -> MCP.  Raw 4 is the thumb MCP ("thumb1").
    assert sk.RHD_LEFT_TO_HAND21[sk.JOINT_INDEX["thumb_cmc"]] == 4
    assert sk.RHD_LEFT_TO_HAND21[sk.JOINT_INDEX["thumb_tip"]] == 1
    assert sk.RHD_LEFT_TO_HAND21[sk.JOINT_INDEX["little_mcp"]] == 20
    assert sk.RHD_RIGHT_TO_HAND21[sk.JOINT_INDEX["wrist"]] == 21
    assert sk.RHD_RIGHT_TO_HAND21[sk.JOINT_INDEX["index_tip"]] == 21 + 5


def test_stb_named_joints() -> None:
    # STB raw: palm, then little, ring, middle, index, thumb, each MCP -> tip.
    assert sk.STB_TO_HAND21[sk.JOINT_INDEX["little_mcp"]] == 1
    assert sk.STB_TO_HAND21[sk.JOINT_INDEX["little_tip"]] == 4
    assert sk.STB_TO_HAND21[sk.JOINT_INDEX["thumb_tip"]] == 20
    assert sk.STB_TO_HAND21[sk.JOINT_INDEX["index_mcp"]] == 13


def test_interhand_named_joints_and_not_an_involution() -> None:
    # InterHand2.6M raw: per finger tip -> base, wrist last (20); left block +21.
    assert sk.INTERHAND_RIGHT_TO_HAND21[sk.JOINT_INDEX["wrist"]] == 20
    assert sk.INTERHAND_RIGHT_TO_HAND21[sk.JOINT_INDEX["thumb_tip"]] == 0
    assert sk.INTERHAND_RIGHT_TO_HAND21[sk.JOINT_INDEX["thumb_cmc"]] == 3
    assert sk.INTERHAND_LEFT_TO_HAND21[sk.JOINT_INDEX["wrist"]] == 41
    table = sk.INTERHAND_TO_HAND21
    assert not np.array_equal(table[table], np.arange(21))


def test_rhd_and_stb_are_involutions() -> None:
    for table in (sk.RHD_TO_HAND21, sk.STB_TO_HAND21):
        assert np.array_equal(table[table], np.arange(21))


def test_mano_table_named_joints() -> None:
    # cat(16 MANO joints, 5 tips thumb..little): MANO 13 = thumb1, 4 = middle1, 16 = thumb tip.
    assert sk.MANO_JOINT_NAMES[sk.MANO21_TO_HAND21[sk.JOINT_INDEX["thumb_cmc"]]] == "thumb1"
    assert sk.MANO_JOINT_NAMES[sk.MANO21_TO_HAND21[sk.JOINT_INDEX["middle_mcp"]]] == "middle1"
    assert sk.MANO_JOINT_NAMES[sk.MANO21_TO_HAND21[sk.JOINT_INDEX["ring_dip"]]] == "ring3"
    assert sk.MANO_JOINT_NAMES[sk.MANO21_TO_HAND21[sk.JOINT_INDEX["little_pip"]]] == "little2"
    assert sk.MANO21_TO_HAND21[sk.JOINT_INDEX["thumb_tip"]] == 16
    assert sk.MANO21_TO_HAND21[sk.JOINT_INDEX["little_tip"]] == 20
    for child, parent in enumerate(sk.MANO_PARENTS):
        assert parent < child


def test_dexter_tips_land_on_tip_slots() -> None:
    assert [sk.JOINT_NAMES[i] for i in sk.DEXTER_TIPS_TO_HAND21_SLOTS] == [
        "thumb_tip", "index_tip", "middle_tip", "ring_tip", "little_tip"]


def test_gather_then_scatter_restores_raw(rng: np.random.Generator) -> None:
    raw = rng.normal(size=(3, 42, 3))
    canon = sk.gather(raw, sk.INTERHAND_LEFT_TO_HAND21)
    back = sk.scatter(canon, sk.INTERHAND_LEFT_TO_HAND21, 42)
    np.testing.assert_array_equal(back[:, 21:], raw[:, 21:])
    assert np.isnan(back[:, :21]).all()
