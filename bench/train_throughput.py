"""Wall time per training step of ``tiny`` under ways of using this machine's cores.

Each configuration trains ``tiny`` through the command line for ``--seconds`` of wall time
(``train.max_minutes``) into a scratch run folder and reads the step times from its
``metrics.csv`` (from the second logged step to the last, so start-up is left out). The
first configuration, one process with 2 threads loading in the main process (the default on a
CPU of up to 4 cores), is the baseline of the ratio; every configuration trains the preset's
batch (64 rows in total) and renders the preset's silhouette rows (8), split over the processes.

    python bench/train_throughput.py --data DATA/train/synth [--seconds 120] [--repeats 2]

Alternating the configurations and repeating them shows how much the machine itself varies.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from hiu_model.presets import tiny

# name, processes, threads per process, loader workers per process
CONFIGS: list[tuple[str, int, int, int]] = [
    ("1 process, 2 threads, loading in-process (default)", 1, 2, 0),
    ("1 process, 2 threads, 2 workers", 1, 2, 2),
    ("torchrun 2 processes, 1 thread each, no workers", 2, 1, 0),
    ("torchrun 2 processes, 1 thread each, 1 worker each", 2, 1, 1),
]
TINY = tiny().train
BATCH, SILHOUETTE_ROWS = TINY.batch_size, TINY.silhouette_samples


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ms_per_step(run: Path) -> tuple[float, int]:
    """Mean wall milliseconds per step between the second and the last logged step, and that span."""
    with (run / "metrics.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["tag"] == "train/loss"]
    if len(rows) < 3:
        raise SystemExit(f"{run}: too few logged steps; raise --seconds")
    (s0, t0), (s1, t1) = ((int(r["step"]), float(r["time_s"])) for r in (rows[1], rows[-1]))
    return 1e3 * (t1 - t0) / (s1 - s0), s1 - s0


def run_config(data: Path, out: Path, seconds: float, processes: int, threads: int, workers: int) -> tuple[float, int]:
    """Train for ``seconds`` with this layout; returns (ms per step, steps measured)."""
    hiu = [sys.executable, "-m", "hiu_cli.main"]
    if processes > 1:
        hiu = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
               "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), "-m", "hiu_cli.main"]
    per_process = BATCH // processes
    command = [*hiu, "train", "--preset", "tiny", "--data", str(data), "--steps", "100000", "--out", str(out),
               "--overwrite", "--set", f"train.batch_size={per_process}", "--set", f"train.num_workers={workers}",
               "--set", f"train.max_minutes={seconds / 60.0}", "--set", "train.log_every=20",
               "--set", "train.checkpoint_every=1000000",
               # the silhouette term renders the preset's rows of each batch in every layout
               "--set", f"train.silhouette_samples={max(1, SILHOUETTE_ROWS // processes)}"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return ms_per_step(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a converted training set (e.g. hiu-data synth's)")
    parser.add_argument("--seconds", type=float, default=120.0, help="wall time per configuration and repeat")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="hiu-throughput-"))
    results: dict[str, list[float]] = {name: [] for name, *_ in CONFIGS}
    try:
        for repeat in range(args.repeats):
            for i, (name, processes, threads, workers) in enumerate(CONFIGS):
                ms, steps = run_config(args.data, scratch / f"run{i}", args.seconds, processes, threads, workers)
                results[name].append(ms)
                print(f"repeat {repeat + 1}: {name}: {ms:.0f} ms per step over {steps} steps", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    baseline = sum(results[CONFIGS[0][0]]) / args.repeats
    print(f"\nbatch {BATCH} rows per step in total; ratio = baseline ms / ms (above 1: more steps per minute)")
    for name, values in results.items():
        mean = sum(values) / len(values)
        print(f"{name:52s} {mean:6.0f} ms  ({' / '.join(f'{v:.0f}' for v in values)})  ratio {baseline / mean:.2f}")


if __name__ == "__main__":
    main()
