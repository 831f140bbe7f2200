"""Losses of HIU-DMTL, every term weighted by the batch's availability flags.

A batch (see :mod:`hiu_model.data`) carries per-sample flags ``has_2d``, ``has_3d``,
``has_mask``, ``has_mano`` (float 0/1). Each supervised term is a weighted mean over the
samples (and joints / channels) that have its label, so a batch mixing FreiHAND (3D + MANO +
mask), CMU (2D only) and unlabeled crops needs no special case: a sample without a label
contributes exactly zero to that term and to its gradient, and a term with no labeled sample
in the batch is zero.

Terms (weights in :class:`hiu_model.config.LossConfig`; forms are CHOICES where the paper is
silent):

- ``heatmap`` (every stack, mean over stacks): squared error summed over the map's pixels
  (each weighted ``1 + heatmap_foreground * target``), mean over joints with
  ``heatmap_weights * has_2d`` (with ``heatmap_hard_joints`` k > 0, over each sample's k joints
  of largest error only);
- ``heatmap_integral``: L1 of the last heat-maps' soft-arg-max against the 2D labels, in units
  of the crop side, joints with ``visibility > 0`` and ``has_2d``;
- ``pof`` (every stack): the same per POF channel with ``pof_weights * has_2d`` (the z channel
  carries weight only with 3D labels; the data pipeline sets that);
- ``mask`` (every stack): binary cross-entropy of the logits, mean over pixels, ``has_mask``;
- ``bone_orientation``: squared distance of the unit 3D bone directions of the mesh branch and
  the label, mean over the 20 bones, ``has_3d`` (3D labels are complete per hand in every
  supported dataset, so visibility does not gate it);
- ``reprojection``: L1 of the mesh branch's projected joints, in units of the crop side,
  joints with ``visibility > 0`` and ``has_2d``;
- ``mask_reprojection``: squared error of the rendered silhouette against the mask, ``has_mask``;
- ``mano_pose`` / ``mano_betas``: squared Frobenius distance of the 16 joint rotation matrices
  (free of the axis-angle ambiguity) / squared error of the betas, ``has_mano``;
- ``pose_prior`` / ``betas_prior``: squared finger pose offset from the mean pose / squared
  betas, every sample (label-free regularisers: zero at the mean hand);
- ``self_mask`` / ``self_keypoints`` (unlabeled samples, or all with
  ``self_supervised_on_labeled``): rendered silhouette vs. the last predicted mask
  probability (squared error), and projected joints vs. the last heat-maps' soft-arg-max (L1 in
  crop units). With ``detach_self_targets`` the dense predictions are the teacher.

The silhouette terms average over the rows the silhouette was rendered for
(``output.silhouette_rows``; every row unless training renders a subset).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hiu_data.skeleton import BONES
from hiu_model.config import LossConfig, ModelConfig
from hiu_model.model import DENSE_TASKS, HIUOutput
from hiu_model.rotations import axis_angle_to_matrix

_PARENTS = [parent for parent, _ in BONES]
_CHILDREN = [child for _, child in BONES]


def compute_losses(output: HIUOutput, batch: dict[str, torch.Tensor], cfg: LossConfig,
                   labeled: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """All loss terms of one batch.

    Args:
        output: the model's :class:`HIUOutput`.
        batch: collated items of :class:`hiu_model.data.HandCropDataset` (keys ``image``,
            ``keypoints_2d``, ``visibility``, ``heatmaps``, ``heatmap_weights``, ``pof``,
            ``pof_weights``, ``mask``, ``keypoints_3d``, ``mano_pose``, ``mano_betas`` and the
            ``has_*`` flags); only the keys of the enabled terms are read.
        cfg: loss weights and options.
        labeled: (B,) which samples count as labeled for the self-supervised terms; ``None``
            = samples with any label (any ``has_*`` flag set).
    Returns:
        (total, terms): the weighted sum (scalar tensor) and each unweighted term by name.
        Terms with weight 0 or whose prediction is absent are left out.
    """
    device = _first_tensor(output).device
    flags = {name: batch[name].to(device=device, dtype=torch.float32).reshape(-1)
             for name in ("has_2d", "has_3d", "has_mask", "has_mano") if name in batch}
    if labeled is None:
        labeled = sum(flags.values()) > 0 if flags else torch.zeros(0, device=device)
    labeled = labeled.to(device=device, dtype=torch.float32).reshape(-1)
    terms: dict[str, torch.Tensor] = {}

    if output.heatmaps and cfg.heatmap:
        weights = batch["heatmap_weights"] * flags["has_2d"][:, None]
        target = batch["heatmaps"]
        pixel_weight = 1.0 + cfg.heatmap_foreground * target if cfg.heatmap_foreground else 1.0
        errors = [(pixel_weight * (prediction - target) ** 2).sum(dim=(2, 3))
                  for prediction in _check_shapes(output.heatmaps, target, "heatmaps")]
        terms["heatmap"] = _mean_over_stacks([
            _weighted_mean(error, hardest_joints(error, weights, cfg.heatmap_hard_joints)) for error in errors])
    if output.heatmap_keypoints is not None and cfg.heatmap_integral:
        terms["heatmap_integral"] = _labelled_keypoint_l1(output.heatmap_keypoints, batch, flags)
    if output.pofs and cfg.pof:
        weights = batch["pof_weights"] * flags["has_2d"][:, None]
        terms["pof"] = _mean_over_stacks([
            _weighted_mean(((prediction - batch["pof"]) ** 2).sum(dim=(2, 3)), weights)
            for prediction in _check_shapes(output.pofs, batch["pof"], "pof")])
    if output.masks and cfg.mask:
        target = batch["mask"][:, None]
        terms["mask"] = _mean_over_stacks([
            _weighted_mean(F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(dim=(1, 2, 3)),
                           flags["has_mask"])
            for logits in _check_shapes(output.masks, target, "masks")])

    if output.joints_3d is not None:
        _mesh_terms(output, batch, cfg, flags, terms)
        _self_supervised_terms(output, batch, cfg, labeled, terms)

    weights = {name: getattr(cfg, name) for name in terms}
    total = sum((weights[name] * value for name, value in terms.items()),
                start=torch.zeros((), device=device))
    return total, terms


class TrainingLoss(nn.Module):
    """The model and its losses as one module: what training runs, and what DDP wraps.

    DDP's search for parameters without a gradient (``find_unused_parameters``) walks back from
    the module's outputs. From the model's outputs it would count a head whose prediction no
    term reads (a loss weight of 0) as used and then wait for its gradient in vain; from the
    loss it finds exactly the parameters a step reaches.

    Forward: ``(batch, labeled, silhouette_rows)`` -> ``(total, terms)`` of
    :func:`compute_losses` for ``model(batch["image"], batch["camera_K"], silhouette_rows)``.
    """

    def __init__(self, model: nn.Module, cfg: LossConfig) -> None:
        super().__init__()
        self.model = model
        self.cfg = cfg

    def forward(self, batch: dict[str, torch.Tensor], labeled: torch.Tensor,
                silhouette_rows: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        output = self.model(batch["image"], batch["camera_K"], silhouette_rows)
        return compute_losses(output, batch, self.cfg, labeled)


MESH_TERMS: tuple[str, ...] = ("bone_orientation", "reprojection", "mask_reprojection", "mano_pose", "mano_betas",
                               "pose_prior", "betas_prior")
"""The terms on the mesh branch's outputs (the self-supervised pair besides)."""


def unused_parameters_possible(model: ModelConfig, loss: LossConfig) -> bool:
    """Whether a training step of this model under these loss weights may leave a trainable
    parameter without a gradient (DDP must then search each step's graph for such parameters:
    ``find_unused_parameters``).

    Which parameters a step reaches depends on the configuration only: a term without labels
    in the batch, an unlabeled row or the silhouette subset still reaches its outputs with a
    zero weight. The model leaves out what no output needs, so parameters go unused only where
    a loss weight of 0 leaves an output unread: a dense task's heads (of the earlier stacks;
    the last stack's may still feed the mesh branch) or a mesh branch no term reads. Erring on
    the side of True costs only the search (and torch's note that it found nothing); the
    search needs :class:`TrainingLoss` as the module DDP wraps.
    """
    tasks = set(model.tasks)
    if any(getattr(loss, task) == 0 for task in DENSE_TASKS if task in tasks):
        return True
    if "mesh" not in tasks:
        return False
    mesh_terms = list(MESH_TERMS)
    mesh_terms += ["self_mask"] if "mask" in tasks else []
    mesh_terms += ["self_keypoints"] if "heatmap" in tasks else []
    return all(getattr(loss, name) == 0 for name in mesh_terms)


def _mesh_terms(output: HIUOutput, batch: dict[str, torch.Tensor], cfg: LossConfig,
                flags: dict[str, torch.Tensor], terms: dict[str, torch.Tensor]) -> None:
    assert output.joints_3d is not None and output.joints_2d is not None
    if cfg.bone_orientation:
        predicted = _bone_directions(output.joints_3d)
        target = _bone_directions(batch["keypoints_3d"])
        terms["bone_orientation"] = _weighted_mean(((predicted - target) ** 2).sum(-1).mean(-1), flags["has_3d"])
    if cfg.reprojection:
        terms["reprojection"] = _labelled_keypoint_l1(output.joints_2d, batch, flags)
    if cfg.mask_reprojection and output.silhouette is not None:
        error = ((output.silhouette - _silhouette_rows(output, batch["mask"])) ** 2).mean(dim=(1, 2))
        terms["mask_reprojection"] = _weighted_mean(error, _silhouette_rows(output, flags["has_mask"]))
    if cfg.mano_pose and output.mano_pose is not None:
        predicted = axis_angle_to_matrix(output.mano_pose.reshape(-1, 16, 3))
        target = axis_angle_to_matrix(batch["mano_pose"].reshape(-1, 16, 3))
        terms["mano_pose"] = _weighted_mean(((predicted - target) ** 2).sum(dim=(-1, -2)).mean(-1), flags["has_mano"])
    if cfg.mano_betas and output.mano_betas is not None:
        error = ((output.mano_betas - batch["mano_betas"]) ** 2).mean(-1)
        terms["mano_betas"] = _weighted_mean(error, flags["has_mano"])
    if cfg.pose_prior and output.mano_pose is not None:
        terms["pose_prior"] = (output.mano_pose[:, 3:] ** 2).mean()
    if cfg.betas_prior and output.mano_betas is not None:
        terms["betas_prior"] = (output.mano_betas ** 2).mean()


def _self_supervised_terms(output: HIUOutput, batch: dict[str, torch.Tensor], cfg: LossConfig,
                           labeled: torch.Tensor, terms: dict[str, torch.Tensor]) -> None:
    assert output.joints_2d is not None
    weights = torch.ones_like(labeled) if cfg.self_supervised_on_labeled else 1.0 - labeled
    if cfg.self_mask and output.masks and output.silhouette is not None:
        teacher = torch.sigmoid(_silhouette_rows(output, output.masks[-1][:, 0]))
        teacher = teacher.detach() if cfg.detach_self_targets else teacher
        if teacher.shape[-2:] != output.silhouette.shape[-2:]:
            raise ValueError(f"mask {tuple(teacher.shape[-2:])} and silhouette "
                             f"{tuple(output.silhouette.shape[-2:])} sizes differ")
        error = ((output.silhouette - teacher) ** 2).mean(dim=(1, 2))
        terms["self_mask"] = _weighted_mean(error, _silhouette_rows(output, weights))
    if cfg.self_keypoints and output.heatmap_keypoints is not None:
        teacher = output.heatmap_keypoints.detach() if cfg.detach_self_targets else output.heatmap_keypoints
        crop = batch["image"].shape[-1]
        error = ((output.joints_2d - teacher).abs().sum(-1) / crop).mean(-1)
        terms["self_keypoints"] = _weighted_mean(error, weights)


def _labelled_keypoint_l1(predicted: torch.Tensor, batch: dict[str, torch.Tensor],
                          flags: dict[str, torch.Tensor]) -> torch.Tensor:
    """L1 of (B, 21, 2) predicted crop pixels against the 2D labels, in units of the crop side,
    mean over joints with ``visibility > 0`` of samples with ``has_2d``."""
    crop = batch["image"].shape[-1]
    error = (predicted - batch["keypoints_2d"]).abs().sum(-1) / crop
    weights = (batch["visibility"] > 0).float() * flags["has_2d"][:, None]
    return _weighted_mean(error, weights)


def hardest_joints(errors: torch.Tensor, weights: torch.Tensor, count: int) -> torch.Tensor:
    """The (B, J) joint weights restricted to each sample's ``count`` largest (B, J) errors.

    Joints of weight 0 never count as hard; ``count`` 0 (or at least J) keeps ``weights``.
    The selection carries no gradient: it only decides which joints' errors are averaged.
    """
    if count <= 0 or count >= errors.shape[1]:
        return weights
    ranked = errors.detach().float().masked_fill(weights <= 0, float("-inf"))
    chosen = torch.zeros_like(ranked).scatter_(1, ranked.topk(count, dim=1).indices, 1.0)
    return weights * chosen


def _bone_directions(joints: torch.Tensor) -> torch.Tensor:
    """(B, 21, 3) joints -> (B, 20, 3) unit child-minus-parent directions (zero for zero bones)."""
    return F.normalize(joints[:, _CHILDREN] - joints[:, _PARENTS], dim=-1, eps=1e-8)


def _silhouette_rows(output: HIUOutput, values: torch.Tensor) -> torch.Tensor:
    """The rows of a per-sample tensor (B, ...) that ``output.silhouette`` covers."""
    return values if output.silhouette_rows is None else values[output.silhouette_rows]


def _weighted_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum(w * v) / sum(w) over all elements; zero (with a graph) when every weight is zero."""
    weights = weights.to(values.dtype).expand_as(values)
    total = weights.sum()
    return (weights * values).sum() / total.clamp_min(1e-8) * (total > 0)


def _mean_over_stacks(values: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(values).mean()


def _check_shapes(predictions: list[torch.Tensor], target: torch.Tensor, name: str) -> list[torch.Tensor]:
    if predictions[0].shape != target.shape:
        raise ValueError(f"predicted {name} {tuple(predictions[0].shape)} do not match the batch's "
                         f"{tuple(target.shape)}: model and data sizes differ")
    return predictions


def _first_tensor(output: HIUOutput) -> torch.Tensor:
    for candidate in (output.heatmaps, output.masks, output.pofs):
        if candidate:
            return candidate[0]
    if output.joints_3d is not None:
        return output.joints_3d
    raise ValueError("the model output holds no prediction")
