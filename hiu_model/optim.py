"""Optimisers of HIU-DMTL training: AdamW, and Muon for the hidden weight matrices.

``train.optimizer``:

- ``adamw``: AdamW on every parameter, weight decay on weights of rank >= 2 only.
- ``muon``: Muon (MomentUm Orthogonalized by Newton-Schulz; K. Jordan et al., 2024) on the
  hidden convolution and linear weights, AdamW on everything else. For a weight of shape
  (out, in, [k, k]), viewed as the matrix G (out, in k k) of its gradient's Nesterov momentum,
  the step is ``-lr * 0.2 * sqrt(max(out, in k k)) * orth(G)``, where ``orth(G)`` replaces
  every singular value of G by about 1 (``U V^T`` of its SVD, approximated by a few
  Newton-Schulz iterations). The factor ``0.2 sqrt(max(...))`` gives the update the RMS of an
  AdamW update (J. Liu et al., "Muon is scalable for LLM training", 2025), so AdamW's learning
  rate and schedule carry over. Orthogonalising makes every direction of a layer's update
  move at the same speed instead of the few dominant ones; on ``tiny`` it reaches AdamW's
  held-out heat-map PCK in about half the steps (bench/RESULTS.md, issue 9).

  Muon is for hidden layers: the first convolution (which reads pixels), the prediction layers
  and 1-D parameters (norms, biases, the regressor's learned start) take AdamW, as in the
  reference recipe. The model names its boundary layers (``boundary_parameters()``).
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import torch
from torch import nn

from hiu_data.errors import HiuError
from hiu_model.distributed import cpu_has_bf16_matmul

OPTIMIZERS: tuple[str, ...] = ("adamw", "muon")
# Quintic Newton-Schulz coefficients (K. Jordan): the fastest rise of small singular values
# towards 1 that stays stable; after 5 steps they lie in about [0.7, 1.2], close enough for Muon.
_NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
_RMS_MATCH = 0.2


def orthogonalise(matrix: torch.Tensor, steps: int = 5, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Approximately ``U V^T`` of a matrix's SVD ``U S V^T``, by Newton-Schulz iterations.

    Args:
        matrix: (m, n) float tensor, or (G, m, n): G matrices, each orthogonalised on its own
            (one batched product per iteration instead of G small ones).
        steps: iterations (5: singular values within about [0.7, 1.2] of 1).
        dtype: precision of the iterations (None: the matrix's); bf16 is enough for Muon.
    Returns:
        tensor of the input's shape and dtype, singular vectors of each matrix with singular
        values near 1 (zero matrix -> zero).
    """
    a, b, c = _NS_COEFFICIENTS
    x = matrix.to(dtype or matrix.dtype)
    # spectral norm <= Frobenius norm <= 1: inside the iteration's basin
    x = x / (torch.linalg.vector_norm(x, dim=(-2, -1), keepdim=True) + 1e-7)
    wide = x.shape[-2] <= x.shape[-1]
    if not wide:
        x = x.mT  # iterate on the smaller Gram matrix
    for _ in range(steps):
        gram = x @ x.mT
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x if wide else x.mT).to(matrix.dtype)


class MuonAdamW(torch.optim.Optimizer):
    """Muon on parameter groups with ``muon=True``, AdamW on the others.

    Args:
        groups: parameter groups; each may set ``muon``, ``weight_decay``, ``lr``.
        lr: learning rate of both (Muon's update is scaled to AdamW's RMS).
        betas, eps: AdamW's.
        momentum: Muon's (Nesterov) momentum.
        ns_steps: Newton-Schulz iterations per Muon update.
        ns_dtype: precision of the iterations (None: the parameter's).
    """

    def __init__(self, groups: Iterable[dict[str, Any]], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, momentum: float = 0.95, ns_steps: int = 5,
                 ns_dtype: torch.dtype | None = None) -> None:
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": 0.0, "momentum": momentum,
                    "ns_steps": ns_steps, "muon": False}
        super().__init__(list(groups), defaults)
        self.ns_dtype = ns_dtype

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        """Update every parameter with a gradient: Muon groups by orthogonalised momentum, the
        others by AdamW. ``closure`` is ignored (accepted for the Optimizer signature)."""
        for group in self.param_groups:
            live = [parameter for parameter in group["params"] if parameter.grad is not None]
            if group["muon"]:
                self._muon_updates(live, group)
            else:
                for parameter in live:
                    self._adamw_update(parameter, group)

    def _muon_updates(self, parameters: list[torch.Tensor], group: dict[str, Any]) -> None:
        """Momentum, then one batched Newton-Schulz per matrix shape (a small network has
        dozens of hidden layers but few distinct shapes), then the scaled updates."""
        by_shape: dict[tuple[int, int], list[tuple[torch.Tensor, torch.Tensor]]] = {}
        for parameter in parameters:
            state = self.state[parameter]
            gradient = parameter.grad
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(gradient)
            buffer = state["momentum_buffer"]
            buffer.mul_(group["momentum"]).add_(gradient)
            matrix = gradient.add(buffer, alpha=group["momentum"]).reshape(gradient.shape[0], -1)
            by_shape.setdefault(tuple(matrix.shape), []).append((parameter, matrix))
        for shape, members in by_shape.items():
            updates = orthogonalise(torch.stack([matrix for _, matrix in members]), group["ns_steps"], self.ns_dtype)
            scale = _RMS_MATCH * math.sqrt(max(shape))
            for (parameter, _), update in zip(members, updates):
                parameter.mul_(1.0 - group["lr"] * group["weight_decay"])
                parameter.add_(update.view_as(parameter), alpha=-group["lr"] * scale)

    def _adamw_update(self, parameter: torch.Tensor, group: dict[str, Any]) -> None:
        state = self.state[parameter]
        gradient = parameter.grad
        if "step" not in state:
            state["step"] = torch.zeros((), dtype=torch.float64)
            state["exp_avg"] = torch.zeros_like(parameter)
            state["exp_avg_sq"] = torch.zeros_like(parameter)
        state["step"] += 1
        step = float(state["step"])
        beta1, beta2 = group["betas"]
        state["exp_avg"].lerp_(gradient, 1.0 - beta1)
        state["exp_avg_sq"].mul_(beta2).addcmul_(gradient, gradient, value=1.0 - beta2)
        denominator = (state["exp_avg_sq"] / (1.0 - beta2 ** step)).sqrt_().add_(group["eps"])
        parameter.mul_(1.0 - group["lr"] * group["weight_decay"])
        parameter.addcdiv_(state["exp_avg"], denominator, value=-group["lr"] / (1.0 - beta1 ** step))


def make_optimizer(model: nn.Module, cfg: Any, device: torch.device | None = None) -> torch.optim.Optimizer:
    """The optimiser of ``cfg.optimizer`` (TrainConfig) over ``model``'s trainable parameters.

    Weight decay (``cfg.weight_decay``) applies to weights of rank >= 2 only. With ``muon``,
    the hidden weights are those of rank >= 2 that ``model.boundary_parameters()`` (if the model
    has it) does not list; its Newton-Schulz iterations run in bf16 on a GPU or on a CPU with
    AMX tiles (``device``), else in float32.
    """
    if cfg.optimizer not in OPTIMIZERS:
        raise HiuError(f"train.optimizer: {cfg.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
    trainable = [p for p in model.parameters() if p.requires_grad]
    boundary = {id(p) for p in getattr(model, "boundary_parameters", lambda: [])()}
    hidden = [p for p in trainable if cfg.optimizer == "muon" and p.ndim >= 2 and id(p) not in boundary]
    chosen = {id(p) for p in hidden}
    decay = [p for p in trainable if p.ndim >= 2 and id(p) not in chosen]
    no_decay = [p for p in trainable if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    groups.insert(0, {"params": hidden, "weight_decay": cfg.weight_decay, "muon": True})
    return MuonAdamW(groups, lr=cfg.lr, ns_dtype=_ns_dtype(device or torch.device("cpu")))


def _ns_dtype(device: torch.device) -> torch.dtype | None:
    if device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16_matmul()):
        return torch.bfloat16
    return None
