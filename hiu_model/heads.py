"""Task decoders, the task attention module and the iterative mesh regressor of HIU-DMTL.

- :class:`TaskDecoder`: top-down decoder with lateral skip connections from every encoder
  stage (FPN-like: upsample, add the 1x1-projected skip, 3x3 conv). It returns its task
  feature map at the finest encoder resolution (the heat-map resolution; 256 channels in the
  paper) and its intermediate prediction through a small head. A head at another resolution
  (the mask at ``mask_size``) resizes the features bilinearly first.
- :class:`TaskAttention`: the paper's task attention module, "SKNet-like selection with global
  pooling and concatenation instead of addition". SKNet sums its branches, pools the sum, and
  selects with a softmax over branches per channel. Here each task feature is globally pooled
  on its own and the pooled vectors are concatenated (so the descriptor keeps which task said
  what); a bottleneck MLP maps the descriptor to one logit per task and channel; a softmax
  over the tasks gives per-channel selection weights; the fused feature is the weighted sum
  of the task features. (The paper gives no layer sizes: the bottleneck width is
  ``max(channels // reduction, 32)`` as in SKNet.)
- :class:`ConcatFusion`: the ablation without TAM: concatenation + 3x3 conv.
- :class:`MeshRegressor`: HMR/HAMR-style iterative regression with parameters shared across
  iterations: ``theta <- theta + MLP([features, extra, theta])`` starting from a learned mean
  (initialised at the identity pose, zero betas and the default camera).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from hiu_model.backbone import conv_bn_relu


class TaskDecoder(nn.Module):
    """Decoder of one task over the encoder stages.

    Args:
        encoder_widths: channels of the encoder stages, finest first.
        channels: channels of the task feature map at the finest level (paper: 256).
        out_channels: channels of the intermediate prediction (21 heat-maps, 1 mask logit,
            60 POF values).
        out_size: side of the prediction in pixels; ``None`` keeps the finest encoder size.
        small_init: start the prediction near zero (for heat-maps and POF).
        level_widths: decoder channels at each encoder level, finest first (the first is
            ``channels``); ``None`` = ``channels`` at every level. Where a level is wider than
            the next finer one, a 1x1 convolution narrows it before upsampling (at the coarse
            size, where it is cheap).
        head_conv: a 3x3 convolution (norm, ReLU) before the 1x1 prediction; off = the 1x1
            prediction reads the decoder's features directly.
    Forward: encoder features (finest first) -> (features (B, channels, h, h),
    prediction (B, out_channels, out_size, out_size)).
    """

    def __init__(self, encoder_widths: Sequence[int], channels: int, out_channels: int,
                 out_size: int | None = None, small_init: bool = False,
                 level_widths: Sequence[int] | None = None, head_conv: bool = True) -> None:
        super().__init__()
        widths = list(level_widths) if level_widths else [channels] * len(encoder_widths)
        if len(widths) != len(encoder_widths) or widths[0] != channels:
            raise ValueError(f"decoder level widths {widths} need one entry per encoder stage "
                             f"({len(encoder_widths)}) and {channels} first")
        self.laterals = nn.ModuleList(conv_bn_relu(width, out, 1) for width, out in zip(encoder_widths, widths))
        self.narrow = nn.ModuleList(
            conv_bn_relu(coarse, fine, 1) if coarse != fine else nn.Identity()
            for fine, coarse in zip(widths[:-1], widths[1:]))
        self.smooth = nn.ModuleList(conv_bn_relu(width, width, 3) for width in widths[:-1])
        hidden = [conv_bn_relu(channels, channels, 3)] if head_conv else []
        self.head = nn.Sequential(*hidden, nn.Conv2d(channels, out_channels, 1))
        if small_init:
            # Regression maps that are zero almost everywhere (heat-maps, POF) start near zero
            # (SimpleBaselines' head init): with the default init the head first spends hundreds
            # of steps suppressing large random maps before the small Gaussian peaks emerge
            # (measured: 29 px vs 0.8 px mean error after 100 steps of overfitting 16 crops).
            # Mask logits keep the default init, which learns faster than from zero.
            nn.init.normal_(self.head[-1].weight, std=1e-3)
            nn.init.zeros_(self.head[-1].bias)
        self.out_size = out_size

    def forward(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder stages (finest first) -> (features (B, channels, h, h), prediction
        (B, out_channels, out_size, out_size))."""
        x = self.laterals[-1](features[-1])
        for level in range(len(features) - 2, -1, -1):
            skip = features[level]
            x = F.interpolate(self.narrow[level](x), size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = self.smooth[level](x + self.laterals[level](skip))
        head_input = x
        if self.out_size is not None and self.out_size != x.shape[-1]:
            head_input = F.interpolate(x, size=(self.out_size, self.out_size), mode="bilinear", align_corners=False)
        return x, self.head(head_input)


class TaskAttention(nn.Module):
    """Fuse T task feature maps (B, C, h, w) into one (B, C, h, w) by per-channel selection.

    Weights: ``softmax_t(MLP(concat_t(mean_hw(F_t))))``, shape (B, T, C); output
    ``sum_t a_t * F_t``. With a single task the weights are all one.
    """

    def __init__(self, channels: int, num_tasks: int, reduction: int = 4, min_hidden: int = 32) -> None:
        super().__init__()
        hidden = max(channels // reduction, min_hidden)
        # No normalisation in the MLP: BatchNorm1d fails on a batch of one in training mode.
        self.squeeze = nn.Sequential(nn.Linear(num_tasks * channels, hidden), nn.ReLU(inplace=True))
        self.select = nn.Linear(hidden, num_tasks * channels)
        self.num_tasks = num_tasks
        self.channels = channels

    def forward(self, task_features: list[torch.Tensor]) -> torch.Tensor:
        """T maps (B, C, h, w) -> their attention-weighted sum (B, C, h, w)."""
        pooled = torch.cat([feature.mean(dim=(2, 3)) for feature in task_features], dim=1)
        logits = self.select(self.squeeze(pooled)).view(-1, self.num_tasks, self.channels)
        # In the features' dtype and without stacking them: under bf16 autocast the softmax is
        # float32, and a stacked float32 product cost as much as a task decoder (``tiny``, CPU).
        weights = logits.softmax(dim=1).to(task_features[0].dtype)
        fused = weights[:, 0, :, None, None] * task_features[0]
        for task in range(1, self.num_tasks):
            fused = fused + weights[:, task, :, None, None] * task_features[task]
        return fused


class ConcatFusion(nn.Module):
    """Ablation of the TAM: concatenate the T task features and apply a 3x3 conv to C channels."""

    def __init__(self, channels: int, num_tasks: int) -> None:
        super().__init__()
        self.fuse = conv_bn_relu(num_tasks * channels, channels, 3)

    def forward(self, task_features: list[torch.Tensor]) -> torch.Tensor:
        """T maps (B, C, h, w) -> one fused map (B, C, h, w)."""
        return self.fuse(torch.cat(task_features, dim=1))


class MeshRegressor(nn.Module):
    """Iterative regressor of the parameter vector theta (pose, betas, camera), shared weights.

    Args:
        in_channels: channels of the input map (fused features + the last predictions).
        map_size: side of the input map.
        channels: width of the stride-2 convolutions that shrink the map to ``grid``.
        grid: side of the map that is flattened; keeping a small grid (rather than a global
            average) keeps where the hand is, which the camera translation needs.
        extra_dim: length of an extra input vector (the heat-maps' soft-arg-max), 0 for none.
        hidden, layers, dropout: the MLP (paper defaults from HMR/HAMR: 1024, 2, 0.5).
        iterations: regression iterations (HMR/HAMR: 3).
        theta_init: (P,) initial parameter vector (learned afterwards).
    ``summarise``: map (B, in_channels, map_size, map_size) -> features (B, channels * grid**2)
    (the convolutions; they may run under autocast). Forward: (features, extra (B, extra_dim) or
    None) -> list of theta (B, P) after each iteration; the last one is the prediction.
    """

    def __init__(self, in_channels: int, map_size: int, channels: int, grid: int, extra_dim: int,
                 hidden: int, layers: int, dropout: float, iterations: int, theta_init: torch.Tensor) -> None:
        super().__init__()
        downs: list[nn.Module] = [conv_bn_relu(in_channels, channels, 1)]
        size = map_size
        while size >= 2 * grid:
            downs.append(conv_bn_relu(channels, channels, 3, 2))
            size = (size + 1) // 2
        downs.append(nn.AdaptiveAvgPool2d(grid))
        self.down = nn.Sequential(*downs)
        theta_dim = theta_init.numel()
        width = channels * grid * grid + extra_dim + theta_dim
        mlp: list[nn.Module] = []
        for _ in range(layers):
            mlp += [nn.Linear(width, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = hidden
        last = nn.Linear(width, theta_dim)
        # Small updates at the start, so the first forward passes stay near the mean hand.
        nn.init.xavier_uniform_(last.weight, gain=0.01)
        nn.init.zeros_(last.bias)
        self.mlp = nn.Sequential(*mlp, last)
        self.theta_init = nn.Parameter(theta_init.clone().float())
        self.iterations = iterations

    def summarise(self, feature_map: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, map_size, map_size) -> (B, channels * grid * grid) flattened grid."""
        return self.down(feature_map).flatten(1)

    def forward(self, features: torch.Tensor, extra: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Features (B, channels * grid**2) from :meth:`summarise` and ``extra`` (B, extra_dim) or
        None -> theta (B, P) after each iteration, the last one the prediction."""
        if extra is not None:
            features = torch.cat([features, extra], dim=1)
        theta = self.theta_init.expand(features.shape[0], -1)
        thetas = []
        for _ in range(self.iterations):
            theta = theta + self.mlp(torch.cat([features, theta], dim=1))
            thetas.append(theta)
        return thetas
