"""Which configurations leave a trainable parameter without a gradient in a training step:
what DDP's ``find_unused_parameters`` is set from (:func:`hiu_model.losses.unused_parameters_possible`)."""

from __future__ import annotations

import pytest
import torch

from hiu_model.config import load_config
from hiu_model.losses import compute_losses, unused_parameters_possible
from hiu_model.model import HIUDMTL
from hiu_model.train import silhouette_rows
from tests.model_batches import synthetic_batch

SMALL = ["model.input_size=32", "model.decoder_channels=16", "model.regressor_hidden=64"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _unused(overrides: list[str], labeled: list[float]) -> tuple[list[str], bool]:
    """Names of the trainable parameters one training step leaves without a gradient (as the
    training loop runs it: unlabeled rows' flags cleared, the configured silhouette rows), and
    what the rule says of the configuration."""
    cfg = load_config(None, "tiny", [*SMALL, *overrides])
    torch.manual_seed(0)
    model = HIUDMTL(cfg.model).train()
    batch = synthetic_batch(cfg, len(labeled))
    rows = torch.tensor(labeled)
    for flag in ("has_2d", "has_3d", "has_mask", "has_mano"):
        batch[flag] = batch[flag] * rows
    output = model(batch["image"], batch["camera_K"], silhouette_rows(rows, cfg.train.silhouette_samples))
    total, _ = compute_losses(output, batch, cfg.loss, rows)
    total.backward()
    unused = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    return unused, unused_parameters_possible(cfg.model, cfg.loss)


# Task subsets, the silhouette subset, unlabeled rows and the camera / keypoint options:
# every trainable parameter gets a gradient, so DDP need not search the graph for unused ones.
@pytest.mark.parametrize("overrides", [
    [], ["model.num_stacks=1"], ["train.silhouette_samples=0"], ["train.silhouette_samples=1"],
    ["model.tasks=[heatmap]"], ["model.tasks=[mask]", "data.upright=false"], ["model.tasks=[pof]", "data.upright=false"], ["model.tasks=[heatmap,mask,pof]"],
    ["model.tasks=[heatmap,mesh]"], ["model.tasks=[mask,mesh]", "data.upright=false"], ["model.tasks=[pof,mesh]", "data.upright=false"],
    ["model.camera_from_keypoints=false", "model.regressor_uses_keypoints=false", "model.use_tam=false"],
    ["loss.self_mask=0", "loss.self_keypoints=0", "loss.mask_reprojection=0", "loss.detach_self_targets=false"],
], ids=lambda overrides: " ".join(overrides) or "tiny")
@pytest.mark.parametrize("labeled", [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 1.0]], ids=["labeled", "unlabeled", "mixed"])
def test_every_parameter_gets_a_gradient_and_the_rule_says_so(overrides: list[str], labeled: list[float]) -> None:
    unused, possible = _unused(overrides, labeled)
    assert unused == []
    assert not possible


# A task whose loss weight is 0 (its heads of the earlier stacks, or of every stack when
# nothing else reads them), a mesh branch no loss term reads: parameters without a gradient.
@pytest.mark.parametrize("overrides", [
    ["loss.pof=0"], ["loss.heatmap=0"], ["loss.mask=0"], ["model.num_stacks=1", "model.tasks=[heatmap,pof]", "loss.pof=0"],
    ["model.tasks=[heatmap,mask,mesh]", *(f"loss.{name}=0" for name in (
        "bone_orientation", "reprojection", "mask_reprojection", "mano_pose", "mano_betas", "pose_prior",
        "betas_prior", "self_mask", "self_keypoints"))],
], ids=lambda overrides: " ".join(overrides))
def test_configurations_that_leave_parameters_unused_are_recognised(overrides: list[str]) -> None:
    unused, possible = _unused(overrides, [1.0, 0.0])
    assert unused != []
    assert possible


def test_the_rule_of_the_paper_preset() -> None:
    cfg = load_config(None, "paper")
    assert not unused_parameters_possible(cfg.model, cfg.loss)
