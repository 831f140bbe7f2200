"""Pose sampler: limits, coupling, prototypes, and the angle -> MANO rotation conventions."""

from __future__ import annotations

import numpy as np
import pytest

from hiu_data.skeleton import FINGERS, ROOT
from hiu_data.synth import poses


def test_samples_stay_within_the_joint_limits_and_use_every_prototype() -> None:
    rng = np.random.default_rng(0)
    names = set()
    for _ in range(400):
        angles, name = poses.sample_angles(rng)
        names.add(name)
        assert angles.shape == (5, 4)
        assert (angles >= poses.LIMITS_DEG[..., 0] - 1e-9).all() and (angles <= poses.LIMITS_DEG[..., 1] + 1e-9).all()
    assert names == set(poses.PROTOTYPES)


def test_dip_follows_pip_and_fingers_flex_together() -> None:
    rng = np.random.default_rng(1)
    samples = np.stack([poses.sample_angles(rng)[0] for _ in range(600)])
    pip, dip = samples[:, 1:, 2].ravel(), samples[:, 1:, 3].ravel()
    assert np.corrcoef(pip, dip)[0, 1] > 0.8
    # Neighbouring fingers' MCP flexion is strongly correlated (not independent noise).
    assert np.corrcoef(samples[:, 2, 0], samples[:, 3, 0])[0, 1] > 0.6


def test_prototypes_are_within_limits_and_noise_zero_is_deterministic() -> None:
    for name, angles in poses.PROTOTYPES.items():
        assert (angles >= poses.LIMITS_DEG[..., 0]).all() and (angles <= poses.LIMITS_DEG[..., 1]).all(), name
        a, _ = poses.sample_angles(np.random.default_rng(0), noise=0.0, prototypes={name: angles})
        b, _ = poses.sample_angles(np.random.default_rng(1), noise=0.0, prototypes={name: angles})
        assert np.array_equal(a, b)
        assert np.array_equal(a[:, [0, 2, 3]], angles[:, [0, 2, 3]])  # only abduction narrows with flexion


def test_rotation_helpers_round_trip() -> None:
    rng = np.random.default_rng(2)
    aa = rng.normal(size=(500, 3))
    aa *= (rng.uniform(0, np.pi - 1e-3, (500, 1))) / np.linalg.norm(aa, axis=1, keepdims=True)
    assert np.allclose(poses.matrix_to_axis_angle(poses.axis_angle_to_matrix(aa)), aa, atol=1e-9)
    r = poses.random_rotation(rng)
    assert np.allclose(r @ r.T, np.eye(3)) and np.isclose(np.linalg.det(r), 1.0)
    near_pi = np.array([np.pi - 1e-9, 0.0, 0.0])
    assert np.allclose(np.abs(poses.matrix_to_axis_angle(poses.axis_angle_to_matrix(near_pi))), np.abs(near_pi), atol=1e-6)


@pytest.fixture(scope="module")
def right():  # noqa: ANN201 - the rig type lives behind a lazy torch import
    from hiu_data.synth.rig import get_rig

    return get_rig("right")


def _joints(rig, angles: np.ndarray) -> np.ndarray:  # noqa: ANN001
    full = np.zeros((16, 3))
    full[1:] = poses.angles_to_full_pose(angles, rig.rest_joints)[1:]
    pose = full.reshape(48).copy()
    pose[3:] -= rig.hands_mean
    return rig.pose(pose[None], np.zeros((1, 10)))[1][0]


def test_zero_angles_give_the_flat_template(right) -> None:  # noqa: ANN001
    assert np.allclose(poses.angles_to_full_pose(np.zeros((5, 4)), right.rest_joints), 0.0)
    assert np.allclose(_joints(right, np.zeros((5, 4))), right.rest_joints, atol=1e-6)


def test_flexion_curls_towards_the_palm_and_abduction_towards_the_thumb(right) -> None:  # noqa: ANN001
    forward, radial, palmar = poses.palm_frame(right.rest_joints)
    index = FINGERS["index"]
    angles = np.zeros((5, 4))
    angles[1, 0] = 60.0  # index MCP flexion
    bent = _joints(right, angles)
    tip_shift = bent[index[-1]] - right.rest_joints[index[-1]]
    assert tip_shift @ palmar > 0.03  # the tip moved several centimetres towards the palm side
    assert np.allclose(bent[index[0]], right.rest_joints[index[0]], atol=1e-6)  # MCP itself stays
    angles[:] = 0.0
    angles[1, 1] = 15.0  # index abduction
    spread = _joints(right, angles)
    assert (spread[index[-1]] - right.rest_joints[index[-1]]) @ radial > 0.01
    assert np.allclose(spread[ROOT], right.rest_joints[ROOT], atol=1e-9)


def test_pinch_brings_thumb_and_index_tips_together(right) -> None:  # noqa: ANN001
    pinch = _joints(right, poses.PROTOTYPES["pinch"])
    flat = _joints(right, poses.PROTOTYPES["flat"])
    thumb_tip, index_tip = FINGERS["thumb"][-1], FINGERS["index"][-1]
    assert np.linalg.norm(pinch[thumb_tip] - pinch[index_tip]) < 0.015
    assert np.linalg.norm(flat[thumb_tip] - flat[index_tip]) > 0.05
