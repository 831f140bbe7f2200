"""HIU-DMTL cost: parameters, multiply-adds, forward and forward+backward time per image.

    python bench/model.py [--presets tiny paper] [--batches 1 16] [--repeats 3] [--device cpu]

A preset may carry configuration overrides after a colon, comma-separated, to compare a variant
with its preset in one run: ``--presets tiny-fp32 tiny-fp32:model.first_block_zeros=true``
(list values keep their commas: ``tiny-fp32:model.encoder_blocks=[1,1,3,3],train.lr=0.01``). The
last column is each row's forward + backward time over the first preset's at the same batch.

For each preset and batch size: parameters, multiply-adds per image (convolutions, matrix
products and the MANO layer, counted by ``torch.utils.flop_counter``; the renderer's
elementwise work is not counted), forward time per image (eval mode, no gradients), and
forward + backward time per image (train mode, the full loss of :mod:`hiu_model.losses` on a
synthetic batch with every label). Ratios against baselines measured in the same run:
forward+backward / forward, and the share of the mesh branch after the regressor's
convolutions (regressor iterations, hand model, projection, soft silhouette), timed alone on
the inputs captured from the same forward pass, in the forward and in the forward+backward
time. Times are the best of ``--repeats`` runs after a warm-up at batch 1.
"""

from __future__ import annotations

import argparse
import re
import time
from typing import Any, Callable

import torch

from hiu_data.skeleton import NUM_BONES, NUM_JOINTS
from hiu_model.config import Config, load_config
from hiu_model.losses import compute_losses
from hiu_model.model import HIUDMTL, HIUOutput


def synthetic_batch(cfg: Config, batch: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Random inputs and targets of the preset's shapes (all labels present)."""
    g = torch.Generator().manual_seed(0)
    size, hm, m = cfg.model.input_size, cfg.model.heatmap_size, cfg.model.mask_size
    items = {
        "image": torch.randn(batch, 3, size, size, generator=g),
        "keypoints_2d": torch.rand(batch, NUM_JOINTS, 2, generator=g) * size,
        "visibility": torch.full((batch, NUM_JOINTS), 2),
        "heatmaps": torch.rand(batch, NUM_JOINTS, hm, hm, generator=g), "heatmap_weights": torch.ones(batch, NUM_JOINTS),
        "pof": torch.rand(batch, 3 * NUM_BONES, hm, hm, generator=g), "pof_weights": torch.ones(batch, 3 * NUM_BONES),
        "mask": (torch.rand(batch, m, m, generator=g) > 0.5).float(),
        "keypoints_3d": torch.randn(batch, NUM_JOINTS, 3, generator=g) * 0.05,
        "camera_K": torch.tensor([[500.0, 0, size / 2], [0, 500.0, size / 2], [0, 0, 1]]).repeat(batch, 1, 1),
        "mano_pose": torch.randn(batch, 48, generator=g) * 0.2, "mano_betas": torch.randn(batch, 10, generator=g),
        **{flag: torch.ones(batch) for flag in ("has_2d", "has_3d", "has_mask", "has_mano")},
    }
    return {key: value.to(device) for key, value in items.items()}


def multiply_adds(model: HIUDMTL, batch: dict[str, torch.Tensor]) -> float:
    """Multiply-adds of one image's forward pass (matrix products and convolutions)."""
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(batch["image"][:1], batch["camera_K"][:1])
    return counter.get_total_flops() / 2.0


def seconds(fn: Callable[[], Any], repeats: int, device: torch.device) -> float:
    """Best wall time of ``repeats`` calls (the caller warms up at batch 1 first)."""
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def measure(cfg: Config, batch_size: int, repeats: int, device: torch.device) -> dict[str, float]:
    """Parameters, multiply-adds per image and seconds per image of the forward pass, forward +
    backward, and the mesh branch alone in both (keys of the printed table; NaN without the
    mesh task)."""
    torch.manual_seed(0)
    model = HIUDMTL(cfg.model).to(device)
    batch = synthetic_batch(cfg, batch_size, device)
    single = {key: value[:1] for key, value in batch.items()}
    mesh_inputs: dict[str, object] = {}
    mesh_branch = model._mesh_branch

    def capture(summary, output, camera_K, heatmap_keypoints, silhouette_rows=None,  # noqa: ANN001, ANN202
                heatmap_peaks=None):  # noqa: ANN001
        mesh_inputs.update(summary=summary.detach(), camera_K=camera_K,
                           keypoints=None if heatmap_keypoints is None else heatmap_keypoints.detach(),
                           peaks=heatmap_peaks)
        return mesh_branch(summary, output, camera_K, heatmap_keypoints, silhouette_rows, heatmap_peaks)

    model._mesh_branch = capture

    def forward(items: dict[str, torch.Tensor]) -> None:
        model.eval()
        with torch.no_grad():
            model(items["image"], items["camera_K"])

    def forward_backward(items: dict[str, torch.Tensor]) -> None:
        model.train()
        model.zero_grad(set_to_none=True)
        total, _ = compute_losses(model(items["image"], items["camera_K"]), items, cfg.loss)
        total.backward()

    def mesh_only(backward: bool) -> None:
        """The mesh branch after the regressor's convolutions (iterations, hand model,
        projection, silhouette) on the captured inputs of the last full-batch forward."""
        model.train(backward)
        summary = mesh_inputs["summary"].clone().requires_grad_(backward)
        output = HIUOutput()
        with torch.set_grad_enabled(backward):
            mesh_branch(summary, output, mesh_inputs["camera_K"], mesh_inputs["keypoints"], None,
                        mesh_inputs["peaks"])
            if backward:
                (output.silhouette.mean() + output.joints_2d.mean() + output.joints_3d.mean()).backward()

    forward(single)  # warm-up (allocations, kernel selection) at batch 1
    forward_backward(single)
    result = {
        "params": sum(p.numel() for p in model.parameters()),
        "macs": multiply_adds(model, batch),
        "forward": seconds(lambda: forward(batch), repeats, device) / batch_size,
        "train": seconds(lambda: forward_backward(batch), repeats, device) / batch_size,
    }
    if not mesh_inputs:  # a network without the mesh task: nothing to time alone
        return {**result, "mesh_forward": float("nan"), "mesh_train": float("nan")}
    mesh_repeats = max(repeats, 3)
    result["mesh_forward"] = seconds(lambda: mesh_only(False), mesh_repeats, device) / batch_size
    result["mesh_train"] = seconds(lambda: mesh_only(True), mesh_repeats, device) / batch_size
    return result


def split_overrides(text: str) -> list[str]:
    """``section.key=value,...`` -> one ``section.key=value`` string each; a comma inside a value
    (``model.encoder_blocks=[1,1,2,2]``) stays in it: only a comma before the next ``key=`` splits."""
    return [part for part in re.split(r",(?=\s*[A-Za-z_][\w.]*=)", text) if part.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["tiny", "paper"],
                        help="presets, each optionally with overrides: PRESET:section.key=value,...")
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 16])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--paper-repeats", type=int, default=1, help="repeats for the paper preset (slow on CPU)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    header = (f"{'preset':<8}{'batch':>6}{'params':>11}{'GMACs/img':>11}{'fwd ms/img':>12}{'fwd+bwd ms/img':>16}"
              f"{'bwd/fwd':>9}{'mesh fwd ms':>13}{'mesh f+b ms':>13}{'mesh share':>12}{'f+b / first':>13}")
    print(header)
    first: dict[int, float] = {}
    for spec in args.presets:
        preset, _, overrides = spec.partition(":")
        repeats = args.paper_repeats if preset == "paper" else args.repeats
        for batch_size in args.batches:
            cfg = load_config(preset=preset, overrides=split_overrides(overrides))
            r = measure(cfg, batch_size, repeats, device)
            first.setdefault(batch_size, r["train"])
            print(f"{preset:<8}{batch_size:>6}{r['params'] / 1e6:>10.2f}M{r['macs'] / 1e9:>11.3f}"
                  f"{r['forward'] * 1e3:>12.1f}{r['train'] * 1e3:>16.1f}{r['train'] / r['forward']:>9.2f}"
                  f"{r['mesh_forward'] * 1e3:>13.2f}{r['mesh_train'] * 1e3:>13.2f}"
                  f"{r['mesh_forward'] / r['forward']:>6.0%} /{r['mesh_train'] / r['train']:>4.0%}"
                  f"{r['train'] / first[batch_size]:>13.2f}{'  ' + overrides if overrides else ''}", flush=True)

if __name__ == "__main__":
    main()
