"""Losses: zero for a perfect prediction, positive otherwise, masked by the availability flags."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from hiu_data.skeleton import NUM_BONES, NUM_JOINTS
from hiu_model.config import LossConfig
from hiu_model.losses import compute_losses
from hiu_model.model import HIUOutput

CROP, MAP, MASK, STACKS, VERTS = 64, 16, 16, 2, 30
SUPERVISED = {"heatmap": "has_2d", "pof": "has_2d", "mask": "has_mask", "bone_orientation": "has_3d",
              "reprojection": "has_2d", "mask_reprojection": "has_mask", "mano_pose": "has_mano",
              "mano_betas": "has_mano"}


def make_batch(batch: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """A batch with every label present, shaped like HandCropDataset's items."""
    g = torch.Generator().manual_seed(seed)
    heatmaps = torch.rand(batch, NUM_JOINTS, MAP, MAP, generator=g)
    keypoints_3d = torch.randn(batch, NUM_JOINTS, 3, generator=g) * 0.05
    keypoints_3d[:, 0] = 0
    return {
        "image": torch.zeros(batch, 3, CROP, CROP),
        "keypoints_2d": torch.rand(batch, NUM_JOINTS, 2, generator=g) * CROP,
        "visibility": torch.full((batch, NUM_JOINTS), 2, dtype=torch.uint8),
        "heatmaps": heatmaps, "heatmap_weights": torch.ones(batch, NUM_JOINTS),
        "pof": torch.rand(batch, 3 * NUM_BONES, MAP, MAP, generator=g) * 2 - 1,
        "pof_weights": torch.ones(batch, 3 * NUM_BONES),
        "mask": (torch.rand(batch, MASK, MASK, generator=g) > 0.5).float(),
        "keypoints_3d": keypoints_3d, "root_3d": torch.tensor([[0.0, 0.0, 0.5]]).repeat(batch, 1),
        "camera_K": torch.eye(3).repeat(batch, 1, 1),
        # Non-zero MANO labels; the priors are switched off where a perfect prediction is tested.
        "mano_pose": torch.randn(batch, 48, generator=g) * 0.3, "mano_betas": torch.randn(batch, 10, generator=g),
        **{flag: torch.ones(batch) for flag in ("has_2d", "has_3d", "has_mask", "has_mano")},
    }


def perfect_output(batch: dict[str, torch.Tensor]) -> HIUOutput:
    """The prediction that matches every label (mask logits saturated at +-100)."""
    size = batch["image"].shape[0]
    logits = (batch["mask"][:, None] * 2 - 1) * 100.0
    return HIUOutput(
        heatmaps=[batch["heatmaps"].clone() for _ in range(STACKS)],
        masks=[logits.clone() for _ in range(STACKS)],
        pofs=[batch["pof"].clone() for _ in range(STACKS)],
        heatmap_keypoints=batch["keypoints_2d"].clone(),
        mano_pose=batch["mano_pose"].clone(), mano_betas=batch["mano_betas"].clone(),
        camera=torch.tensor([[500.0, 32.0, 32.0]]).repeat(size, 1),
        vertices=torch.zeros(size, VERTS, 3), joints_3d=batch["keypoints_3d"].clone(),
        joints_2d=batch["keypoints_2d"].clone(), silhouette=batch["mask"].clone())


NO_PRIORS = LossConfig(pose_prior=0.0, betas_prior=0.0)


def test_perfect_prediction_gives_zero_for_every_term() -> None:
    batch = make_batch()
    total, terms = compute_losses(perfect_output(batch), batch, dataclasses.replace(NO_PRIORS, self_supervised_on_labeled=True))
    expected = set(SUPERVISED) | {"self_mask", "self_keypoints"}
    assert set(terms) == expected
    for name, value in terms.items():
        assert value.item() == pytest.approx(0.0, abs=1e-7), name
    assert total.item() == pytest.approx(0.0, abs=1e-6)


def test_priors_are_zero_at_the_mean_hand_only() -> None:
    batch = make_batch()
    output = perfect_output(batch)
    output.mano_pose, output.mano_betas = torch.zeros_like(output.mano_pose), torch.zeros_like(output.mano_betas)
    _, terms = compute_losses(output, batch, LossConfig())
    assert terms["pose_prior"].item() == 0.0 and terms["betas_prior"].item() == 0.0
    _, terms = compute_losses(perfect_output(batch), batch, LossConfig())
    assert terms["pose_prior"].item() > 0 and terms["betas_prior"].item() > 0


PERTURBATIONS = {
    "heatmap": lambda o: o.heatmaps[0].add_(0.1),
    "pof": lambda o: o.pofs[1].mul_(-1),
    "mask": lambda o: o.masks[0].mul_(-1),
    "bone_orientation": lambda o: o.joints_3d[:, 5:].add_(0.01),
    "reprojection": lambda o: o.joints_2d.add_(1.0),
    "mask_reprojection": lambda o: o.silhouette.mul_(0.5),
    "mano_pose": lambda o: o.mano_pose[:, :3].add_(0.2),
    "mano_betas": lambda o: o.mano_betas.add_(0.2),
    "self_mask": lambda o: o.silhouette.mul_(0.5),
    "self_keypoints": lambda o: o.joints_2d.add_(1.0),
}


@pytest.mark.parametrize("name", sorted(PERTURBATIONS))
def test_each_term_is_positive_for_a_wrong_prediction(name: str) -> None:
    batch = make_batch()
    output = perfect_output(batch)
    PERTURBATIONS[name](output)
    total, terms = compute_losses(output, batch, dataclasses.replace(NO_PRIORS, self_supervised_on_labeled=True))
    assert terms[name].item() > 1e-4
    assert total.item() > 0


@pytest.mark.parametrize("name", sorted(SUPERVISED))
def test_a_sample_without_the_label_contributes_nothing(name: str) -> None:
    batch = make_batch()
    batch[SUPERVISED[name]][1] = 0.0
    output = perfect_output(batch)
    PERTURBATIONS[name](output)  # every sample is now wrong
    reference = compute_losses(output, batch, NO_PRIORS)[1][name]

    # Making the unlabeled sample even more wrong changes neither the term nor gives it gradient.
    for tensor in _prediction_tensors(output):
        tensor.requires_grad_(True)
    worse = dataclasses.replace(output)
    worse_tensors = {}
    for field in ("joints_3d", "joints_2d", "silhouette", "mano_pose", "mano_betas"):
        value = getattr(output, field)
        noise = torch.zeros_like(value)
        noise[1] = 0.7
        worse_tensors[field] = value + noise
    worse = dataclasses.replace(output, **worse_tensors,
                                heatmaps=[h + _only_second(h, 0.7) for h in output.heatmaps],
                                pofs=[p + _only_second(p, 0.7) for p in output.pofs],
                                masks=[m + _only_second(m, 5.0) for m in output.masks])
    value = compute_losses(worse, batch, NO_PRIORS)[1][name]
    assert value.item() == pytest.approx(reference.item(), rel=1e-6)
    value.backward()
    for tensor in _prediction_tensors(output):
        if tensor.grad is not None:
            assert torch.all(tensor.grad[1] == 0), name
            assert torch.any(tensor.grad[0] != 0) or tensor.grad.abs().sum() == 0


def test_a_batch_without_any_label_of_a_kind_gives_zero_terms() -> None:
    batch = make_batch()
    for flag in ("has_2d", "has_3d", "has_mask", "has_mano"):
        batch[flag][:] = 0
    output = perfect_output(batch)
    for perturb in PERTURBATIONS.values():
        perturb(output)
    _, terms = compute_losses(output, batch, NO_PRIORS)
    for name in SUPERVISED:
        assert terms[name].item() == 0.0 and torch.isfinite(terms[name])
    # ... and the self-supervised pair now sees every sample as unlabeled.
    assert terms["self_mask"].item() > 0 and terms["self_keypoints"].item() > 0


def test_self_supervised_terms_only_on_unlabeled_samples_and_teach_the_mesh() -> None:
    batch = make_batch()
    output = perfect_output(batch)
    output.joints_2d.add_(3.0)
    labeled = torch.tensor([1.0, 1.0, 0.0, 1.0])
    heatmap_keypoints = output.heatmap_keypoints.requires_grad_(True)
    joints_2d = output.joints_2d.requires_grad_(True)
    _, terms = compute_losses(output, batch, NO_PRIORS, labeled=labeled)
    assert terms["self_keypoints"].item() == pytest.approx(6.0 / CROP, rel=1e-5)
    terms["self_keypoints"].backward()
    assert heatmap_keypoints.grad is None  # detached teacher
    assert torch.all(joints_2d.grad[[0, 1, 3]] == 0) and torch.any(joints_2d.grad[2] != 0)
    _, terms = compute_losses(perfect_output(batch), batch, NO_PRIORS, labeled=torch.ones(4))
    assert terms["self_keypoints"].item() == 0.0


def test_mismatched_sizes_are_reported() -> None:
    batch = make_batch()
    output = perfect_output(batch)
    output.heatmaps = [torch.zeros(4, NUM_JOINTS, MAP * 2, MAP * 2)]
    with pytest.raises(ValueError, match="model and data sizes differ"):
        compute_losses(output, batch, NO_PRIORS)


def _only_second(tensor: torch.Tensor, amount: float) -> torch.Tensor:
    noise = torch.zeros_like(tensor)
    noise[1] = amount
    return noise


def _prediction_tensors(output: HIUOutput) -> list[torch.Tensor]:
    return [*output.heatmaps, *output.masks, *output.pofs, output.joints_3d, output.joints_2d,
            output.silhouette, output.mano_pose, output.mano_betas]


def test_heatmap_integral_is_the_crop_normalised_l1_of_visible_joints() -> None:
    batch = make_batch()
    config = dataclasses.replace(NO_PRIORS, heatmap_integral=1.0)
    assert compute_losses(perfect_output(batch), batch, config)[1]["heatmap_integral"].item() == 0.0
    assert "heatmap_integral" not in compute_losses(perfect_output(batch), batch, NO_PRIORS)[1]

    output = perfect_output(batch)
    output.heatmap_keypoints[..., 0] += 2.0  # 2 px off in x, every joint
    output.heatmap_keypoints[:, 3] += 50.0  # far off, but joint 3 is not labelled
    batch["visibility"][:, 3] = 0
    output.heatmap_keypoints.requires_grad_(True)
    _, terms = compute_losses(output, batch, config)
    assert terms["heatmap_integral"].item() == pytest.approx(2.0 / CROP, rel=1e-5)
    terms["heatmap_integral"].backward()
    assert torch.all(output.heatmap_keypoints.grad[:, 3] == 0)
    assert torch.all(output.heatmap_keypoints.grad[:, 4, 0] > 0)


def test_heatmap_foreground_weights_each_pixel_by_its_target() -> None:
    batch = make_batch(batch=1)
    target = torch.zeros(1, NUM_JOINTS, MAP, MAP)
    target[:, :, 5, 7] = 1.0
    target[:, :, 5, 8] = 0.5
    batch["heatmaps"] = target
    output = perfect_output(batch)
    output.heatmaps = [target + 0.1, target + 0.1]  # 0.01 squared error on every pixel
    plain = compute_losses(output, batch, NO_PRIORS)[1]["heatmap"].item()
    weighted = compute_losses(output, batch, dataclasses.replace(NO_PRIORS, heatmap_foreground=4.0))[1]["heatmap"].item()
    assert plain == pytest.approx(0.01 * MAP * MAP, rel=1e-5)
    # Two foreground pixels gain 4 * 1.0 and 4 * 0.5 extra weight.
    assert weighted == pytest.approx(0.01 * (MAP * MAP + 4.0 * 1.5), rel=1e-5)


def test_heatmap_hard_joints_average_only_each_samples_largest_errors() -> None:
    batch = make_batch(batch=2)
    batch["heatmap_weights"][1, 0] = 0.0  # sample 1's worst joint is unlabelled: never chosen
    output = perfect_output(batch)
    offsets = torch.zeros(2, NUM_JOINTS)
    offsets[0, :3] = torch.tensor([0.3, 0.2, 0.1])
    offsets[1, :3] = torch.tensor([0.9, 0.4, 0.2])
    output.heatmaps = [batch["heatmaps"] + offsets[:, :, None, None] for _ in range(STACKS)]
    config = dataclasses.replace(NO_PRIORS, heatmap_hard_joints=2)
    hard = compute_losses(output, batch, config)[1]["heatmap"].item()
    pixels = MAP * MAP
    # Sample 0 keeps 0.3 and 0.2; sample 1 keeps 0.4 and 0.2 (0.9 is on an unlabelled joint).
    assert hard == pytest.approx(pixels * (0.09 + 0.04 + 0.16 + 0.04) / 4, rel=1e-5)
    every = compute_losses(output, batch, NO_PRIORS)[1]["heatmap"].item()
    assert every == pytest.approx(pixels * (0.09 + 0.04 + 0.01 + 0.16 + 0.04) / (2 * NUM_JOINTS - 1), rel=1e-5)


def test_silhouette_terms_cover_only_the_rendered_rows() -> None:
    batch = make_batch(batch=4, seed=3)
    labeled = torch.tensor([1.0, 0.0, 1.0, 1.0])
    full = perfect_output(batch)
    full.silhouette = torch.rand(4, MASK, MASK, generator=torch.Generator().manual_seed(4))
    rows = torch.tensor([1, 2])
    subset = perfect_output(batch)
    subset.silhouette, subset.silhouette_rows = full.silhouette[rows].clone(), rows
    _, on_all = compute_losses(full, batch, NO_PRIORS, labeled=labeled)
    _, on_rows = compute_losses(subset, batch, NO_PRIORS, labeled=labeled)
    expected = ((full.silhouette[rows] - batch["mask"][rows]) ** 2).mean()
    assert on_rows["mask_reprojection"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert on_rows["mask_reprojection"].item() != pytest.approx(on_all["mask_reprojection"].item(), rel=1e-3)
    # Row 1 is the only unlabeled row and is rendered in both: the self-supervised term agrees.
    assert on_rows["self_mask"].item() == pytest.approx(on_all["self_mask"].item(), rel=1e-6)
