"""HIU-DMTL cost: parameters, multiply-adds, forward and forward+backward time per image.

    python bench/model.py [--presets tiny paper] [--batches 1 16] [--repeats 3] [--device cpu]

For each preset and batch size: parameters, multiply-adds per image (convolutions, matrix
products and the MANO layer, counted by ``torch.utils.flop_counter``; the renderer's
elementwise work is not counted), forward time per image (eval mode, no gradients), forward +
backward time per image (train mode, the full loss of :mod:`hiu_model.losses` on a synthetic
batch with every label). Baselines measured in the same run: the same network without the
mesh branch (``model.tasks=[heatmap,mask,pof]``), whose ratio is the cost share of the
regressor, hand model and silhouette; and forward+backward / forward.
"""

from __future__ import annotations

import argparse
import time

import torch

from hiu_data.skeleton import NUM_BONES, NUM_JOINTS
from hiu_model.config import Config, load_config
from hiu_model.losses import compute_losses
from hiu_model.model import HIUDMTL

DENSE_ONLY = "model.tasks=[heatmap,mask,pof]"


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
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(batch["image"][:1], batch["camera_K"][:1])
    return counter.get_total_flops() / 2.0


def seconds(fn, repeats: int, device: torch.device) -> float:  # noqa: ANN001
    fn()  # warm-up
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
    torch.manual_seed(0)
    model = HIUDMTL(cfg.model).to(device)
    batch = synthetic_batch(cfg, batch_size, device)

    def forward() -> None:
        model.eval()
        with torch.no_grad():
            model(batch["image"], batch["camera_K"])

    def forward_backward() -> None:
        model.train()
        model.zero_grad(set_to_none=True)
        total, _ = compute_losses(model(batch["image"], batch["camera_K"]), batch, cfg.loss)
        total.backward()

    return {
        "params": sum(p.numel() for p in model.parameters()),
        "macs": multiply_adds(model, batch),
        "forward": seconds(forward, repeats, device) / batch_size,
        "train": seconds(forward_backward, repeats, device) / batch_size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["tiny", "paper"])
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
              f"{'bwd/fwd':>9}{'mesh share fwd':>16}{'mesh share f+b':>16}")
    print(header)
    for preset in args.presets:
        repeats = args.paper_repeats if preset == "paper" else args.repeats
        for batch_size in args.batches:
            full = measure(load_config(preset=preset), batch_size, repeats, device)
            dense = measure(load_config(preset=preset, overrides=[DENSE_ONLY]), batch_size, repeats, device)
            print(f"{preset:<8}{batch_size:>6}{full['params'] / 1e6:>10.2f}M{full['macs'] / 1e9:>11.3f}"
                  f"{full['forward'] * 1e3:>12.1f}{full['train'] * 1e3:>16.1f}{full['train'] / full['forward']:>9.2f}"
                  f"{1 - dense['forward'] / full['forward']:>16.0%}{1 - dense['train'] / full['train']:>16.0%}",
                  flush=True)


if __name__ == "__main__":
    main()
