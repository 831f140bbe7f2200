"""The upright search's passes: the last heat-maps alone against a full forward pass.

    python bench/upright_search.py [--preset tiny] [--batch 64] [--repeats 5] [--threads 2]

``eval``, ``predict`` and ``pseudo-label`` of an upright model (the ``tiny`` preset) run the
network 13 times per hand to choose its angle (:func:`hiu_model.upright.search_upright`: 12
turned passes and a check pass) and once more for the outputs. Those 13 passes read only the
last stack's heat-maps:
:meth:`hiu_model.model.HIUDMTL.last_heatmaps` computes them without the last block's other
decoders and fusion and without the mesh branch. This prints the seconds per hand of both ways
of a search pass (the baseline: the full forward pass without the silhouette, as before) on
random crops, best of ``--repeats`` interleaved runs, their ratio, and checks that both give
the same maps.
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import torch

from hiu_model.config import load_config
from hiu_model.model import HIUDMTL


def wall_seconds(fn: Callable[[], torch.Tensor]) -> float:
    """Wall seconds of one call of ``fn``."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--batch", type=int, default=64, help="crops per pass (eval's default batch)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(preset=args.preset)
    torch.manual_seed(0)
    model = HIUDMTL(cfg.model).eval()
    size = cfg.model.input_size
    image = torch.randn(args.batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    no_rows = torch.zeros(0, dtype=torch.long)

    def full() -> torch.Tensor:
        return model(image, None, no_rows).heatmaps[-1]

    def alone() -> torch.Tensor:
        return model.last_heatmaps(image)

    with torch.no_grad():
        same = torch.equal(full(), alone())  # also the warm-up
        timed: dict[str, list[float]] = {"full pass": [], "last heat-maps": []}
        for _ in range(args.repeats):  # interleaved, so that a busy moment hits both
            timed["full pass"].append(wall_seconds(full))
            timed["last heat-maps"].append(wall_seconds(alone))
    best = {name: min(values) for name, values in timed.items()}
    for name, value in best.items():
        print(f"{name:15s} {1000 * value / args.batch:7.2f} ms / hand  ({args.batch / value:6.1f} hands/s)")
    print(f"speed-up of a search pass: {best['full pass'] / best['last heat-maps']:.2f}x; same maps: {same}")


if __name__ == "__main__":
    main()
