"""Shard I/O throughput: write, sequential read and random-access read of N records with
~20 KB images, next to reading the same image bytes from plain files in the same run.

    python bench/io.py [--n 50000] [--image-kb 20] [--random 20000]

Goal (issue 2): random access >= 5,000 rows/s on one core.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from hiu_data.io.parquet import HandDataset, write_dataset
from hiu_data.schema import HandSample
from hiu_data.skeleton import NUM_JOINTS


def records(n: int, image_bytes: int, seed: int = 0) -> Iterator[HandSample]:
    """``n`` right-hand records whose embedded image bytes are ``image_bytes`` long slices of one random payload."""
    rng = np.random.default_rng(seed)
    payload = rng.integers(0, 255, image_bytes + 4096, dtype=np.uint8).tobytes()
    for i in range(n):
        start = i % 4096
        yield HandSample(
            sample_id=f"bench/train/{i:08d}", dataset="bench", split="train", image_id=f"{i:08d}",
            image_bytes=payload[start:start + image_bytes], width=224, height=224, hand_side="right",
            bbox=[10, 20, 100, 120], keypoints_2d=rng.uniform(0, 224, (NUM_JOINTS, 2)),
            visibility=np.full(NUM_JOINTS, 2), keypoints_3d=rng.normal(size=(NUM_JOINTS, 3)),
            camera_K=np.eye(3), mano_pose=rng.normal(size=48), mano_betas=rng.normal(size=10),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--image-kb", type=int, default=20)
    parser.add_argument("--random", type=int, default=20_000, help="random-access reads to time")
    args = parser.parse_args()
    size = args.image_kb * 1024
    work = Path(tempfile.mkdtemp(prefix="hiu-bench-io-"))
    try:
        t = time.perf_counter()
        folder = write_dataset(records(args.n, size), work, "bench")
        write_s = time.perf_counter() - t

        # Baseline: the same image bytes as one plain file per sample.
        plain = work / "plain"
        plain.mkdir()
        for i, rec in enumerate(records(args.n, size)):
            (plain / f"{i:08d}.jpg").write_bytes(rec.image_bytes)  # type: ignore[arg-type]
        os.sync()

        ds = HandDataset(folder)
        t = time.perf_counter()
        rows = sum(len(batch) for batch in ds.iter_tables(batch_size=1024))
        seq_table_s = time.perf_counter() - t
        t = time.perf_counter()
        n_seq = sum(len(batch) for batch in ds.iter_batches(batch_size=512))
        seq_records_s = time.perf_counter() - t
        assert rows == n_seq == args.n

        rng = np.random.default_rng(1)
        order = rng.integers(0, args.n, args.random)
        ds = HandDataset(folder)
        t = time.perf_counter()
        for i in order:
            ds[int(i)]
        random_s = time.perf_counter() - t

        files = sorted(plain.iterdir())
        t = time.perf_counter()
        for i in order:
            files[int(i)].read_bytes()
        plain_random_s = time.perf_counter() - t
        t = time.perf_counter()
        for f in files:
            f.read_bytes()
        plain_seq_s = time.perf_counter() - t

        print(f"records: {args.n}, image bytes: {size}, shards: {len(ds.shards)}")
        print(f"write                      {args.n / write_s:10.0f} rows/s")
        print(f"sequential read (tables)   {args.n / seq_table_s:10.0f} rows/s")
        print(f"sequential read (records)  {args.n / seq_records_s:10.0f} rows/s")
        print(f"random access (records)    {args.random / random_s:10.0f} rows/s")
        print(f"plain files, sequential    {args.n / plain_seq_s:10.0f} files/s")
        print(f"plain files, random        {args.random / plain_random_s:10.0f} files/s")
        print(f"ratio random access / plain random files: {plain_random_s / random_s:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
