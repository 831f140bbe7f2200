"""Label conversions and decision rules of the review loop (no FiftyOne needed)."""

from __future__ import annotations

import numpy as np
import pytest

from hiu_data.io import rle
from hiu_data.review import labels as L
from hiu_data.skeleton import NUM_JOINTS


def test_keypoints_round_trip_through_relative_coordinates_is_exact(rng: np.random.Generator) -> None:
    kp = rng.uniform(-5, 100, (NUM_JOINTS, 2)).astype(np.float32)
    kp[3] = np.nan
    rel = L.keypoints_to_relative(kp, 97, 61)
    assert len(rel) == NUM_JOINTS and np.isnan(rel[3]).all()
    # Corner-origin frames on both sides: a pixel coordinate is the relative one times the size.
    assert rel[0] == pytest.approx([kp[0, 0] / 97, kp[0, 1] / 61])
    back = L.keypoints_from_relative(rel, 97, 61)
    np.testing.assert_array_equal(back, kp)
    assert not L.keypoints_changed(kp, back).any()


def test_missing_labels_push_nan_slots_and_none_reads_as_missing() -> None:
    rel = L.keypoints_to_relative(None, 10, 10)
    assert len(rel) == NUM_JOINTS and np.isnan(rel).all()
    points = [[None, None]] * NUM_JOINTS
    assert np.isnan(L.keypoints_from_relative(points, 10, 10)).all()
    with pytest.raises(ValueError, match="21 keypoints"):
        L.keypoints_from_relative([[0.1, 0.1]] * 5, 10, 10)


def test_keypoints_changed_and_visibility_after_an_edit() -> None:
    before = np.tile(np.array([[10.0, 20.0]], np.float32), (NUM_JOINTS, 1))
    before[5] = np.nan
    after = before.copy()
    after[1, 0] += 0.5          # moved
    after[2, 1] += 1e-5         # float noise, not an edit
    after[5] = [3.0, 4.0]       # placed where the model had none
    after[7] = np.nan           # removed
    changed = L.keypoints_changed(before, after)
    assert np.flatnonzero(changed).tolist() == [1, 5, 7]
    vis = np.full(NUM_JOINTS, 2, np.uint8)
    vis[1], vis[5] = 1, 0
    out = L.corrected_visibility(vis, after, changed)
    assert out[1] == 1 and out[5] == 2 and out[7] == 0 and out[0] == 2
    assert L.keypoints_changed(None, after).sum() == NUM_JOINTS - 1


def test_mask_instance_round_trip_is_exact_and_edits_paste_with_resize() -> None:
    full = np.zeros((40, 50), np.uint8)
    full[5:17, 20:33] = 1
    full[9, 40] = 1
    inst = L.mask_to_instance(rle.encode(full), 50, 40)
    assert inst is not None and inst.mask.shape == (12, 21)
    assert inst.bounding_box == pytest.approx([20 / 50, 5 / 40, 21 / 50, 12 / 40])
    np.testing.assert_array_equal(L.instance_to_full_mask(inst.bounding_box, inst.mask, 50, 40), full.astype(bool))
    # An editor's mask at another resolution fills its box; the part outside the image is clipped.
    pasted = L.instance_to_full_mask([0.8, 0.5, 0.4, 0.25], np.ones((3, 3), np.uint8), 50, 40)
    assert pasted[20:30, 40:50].all() and pasted.sum() == 100
    assert L.mask_to_instance(None, 50, 40) is None
    assert L.mask_to_instance(rle.encode(np.zeros((4, 4))), 4, 4) is None
    assert not L.full_mask_of(None, 5, 4).any()


@pytest.mark.parametrize(("sample_tags", "label_tags", "edited", "deleted", "status", "human"), [
    ([], [], False, False, None, False),
    (["low_confidence"], [], False, False, None, False),
    (["accepted"], [], False, False, "accepted", True),
    (["accepted"], ["rejected"], False, False, "rejected", False),   # a hand's tag overrides its image's
    (["rejected"], ["accepted"], False, False, "accepted", True),
    (["accepted", "rejected"], [], False, False, "rejected", False),  # the most cautious tag of a level wins
    (["fix"], [], False, False, "pending", False),
    (["fix"], [], True, False, "corrected", True),
    ([], [], True, False, "corrected", True),                        # editing is reviewing
    (["accepted"], ["rejected"], True, False, "rejected", False),
    (["accepted"], [], False, True, "rejected", False),              # a deleted hand label
])
def test_decision_rules(sample_tags: list[str], label_tags: list[str], edited: bool, deleted: bool,
                        status: str | None, human: bool) -> None:
    decision = L.decide(sample_tags, label_tags, edited, deleted)
    assert (decision.status, decision.human) == (status, human)
