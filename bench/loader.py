"""Data pipeline throughput: full training items per second per worker, from embedded-image shards.

    python bench/loader.py [--n 400] [--width 320 --height 240] [--input-size 256] [--workers 2]

Writes ``n`` hand-made hands (JPEG, embedded) as a converted dataset in a temporary folder,
then measures on one core, interleaved in the same run:

- ``pipeline``: ``HandCropDataset`` items with training augmentation (read the row, decode,
  crop + rotate + scale, colour jitter and blur, normalise, heat-maps + POF + mask, tensors);
- ``pipeline, loop targets``: the same with the reference per-joint / per-bone loop targets
  of bench/targets.py swapped in (the baseline);
- ``decode only``: decoding the same JPEG bytes at full resolution (a ceiling).

Then a DataLoader with ``--workers`` worker processes (batch 32) end to end. Goal (issue 5):
>= 300 samples/s per core at 256 x 256 input.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hiu_model.data as data_module  # noqa: E402
from bench.targets import reference_heatmaps, reference_pof  # noqa: E402
from bench.timing import interleaved_rates  # noqa: E402
from hiu_data.io.images import decode  # noqa: E402
from hiu_model.data import DataOptions, HandCropDataset, MixedSampler, build_loader  # noqa: E402
from tests.targets.handmade import write_hands  # noqa: E402

cv2.setNumThreads(1)


def _loop_heatmaps(kp, valid, size, sigma):  # noqa: ANN001, ANN202
    return reference_heatmaps(kp, valid, size[0], sigma)


def _loop_pof(kp2, kp3, valid, size, band):  # noqa: ANN001, ANN202
    pof = reference_pof(kp2, kp3 if kp3 is not None else np.zeros((len(kp2), 3)), valid, size[0], band)
    return pof, np.ones(pof.shape[0], np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--input-size", type=int, default=256)
    parser.add_argument("--heatmap-size", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    options = DataOptions(input_size=args.input_size, heatmap_size=args.heatmap_size, mask_size=args.heatmap_size)
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_hands(Path(tmp), args.n, size=(args.width, args.height))
        shard_mb = sum(p.stat().st_size for p in folder.glob("*.parquet")) / 2**20
        dataset = HandCropDataset(folder, options=options, train=True, seed=0)
        keys = list(MixedSampler([len(dataset)], num_samples=len(dataset), seed=0, keys=True))
        blobs = [dataset.records[i].image_bytes for i in range(len(dataset))]

        def with_loop_targets(key: tuple[int, int, bool]) -> None:
            saved = data_module.encode_heatmaps, data_module.encode_pof
            data_module.encode_heatmaps, data_module.encode_pof = _loop_heatmaps, _loop_pof
            try:
                dataset[key]
            finally:
                data_module.encode_heatmaps, data_module.encode_pof = saved

        dataset[keys[0]]  # open the shards, warm the caches
        per_key = {"pipeline": dataset.__getitem__, "pipeline, loop targets": with_loop_targets,
                   "decode only": lambda key: decode(blobs[key[0]])}
        result = interleaved_rates({name: (lambda part, fn=fn: [fn(key) for key in part]) for name, fn in per_key.items()},
                                   keys, args.repeat, chunk=4)
        loader = build_loader([folder], options, batch_size=32, num_samples=4 * len(dataset), num_workers=args.workers)
        start = time.perf_counter()
        count, first = 0, None
        for batch in loader:
            if first is None:
                first, first_count = time.perf_counter(), len(batch["index"])
            count += len(batch["index"])
        end = time.perf_counter()
        loader_rate, steady_rate = count / (end - start), (count - first_count) / (end - first)

    print(f"loader: {args.n} hands {args.width}x{args.height} JPEG embedded ({shard_mb:.1f} MB shards), "
          f"input {args.input_size}, maps {args.heatmap_size}, training augmentation")
    print(f"  {'samples/s on one core':32s} {'wall (best)':>12s} {'CPU time':>10s}")
    for name, (wall, cpu) in result.items():
        print(f"  {name:32s} {wall:12.0f} {cpu:10.0f}")
    for k, label in ((0, "wall"), (1, "CPU time")):
        ratio = result["pipeline"][k] / result["pipeline, loop targets"][k]
        print(f"  ratio pipeline / loop-target pipeline ({label}) {ratio:.2f} x")
    print(f"  DataLoader, {args.workers} workers, batch 32, {count} samples: {loader_rate:.0f} samples/s "
          f"({steady_rate:.0f} after the first batch)")


if __name__ == "__main__":
    main()
