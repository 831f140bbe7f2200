"""Interleaved timing shared by the throughput benches.

Each function runs on the same chunk of inputs one after another, chunk by chunk, ``repeat``
times over, so that load from other processes on a shared machine hits every function alike
instead of whichever happened to run during it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any


def interleaved_rates(fns: dict[str, Callable[[Sequence[Any]], Any]], items: Sequence[Any], repeat: int,
                      chunk: int) -> dict[str, tuple[float, float]]:
    """(wall, cpu) items per second of each function, timed interleaved.

    Args:
        fns: name -> function taking a chunk (a slice of ``items``) and handling every item of it.
        items: the inputs, split into chunks of ``chunk`` items.
        repeat: how many times every chunk is timed for every function.
    Returns:
        name -> (wall, cpu): wall is items per second of the fastest of the ``repeat`` runs of
        each chunk, summed over chunks; cpu is items per second of this process's CPU time over
        all runs (time spent waiting for a core is excluded).
    """
    chunks = [items[i:i + chunk] for i in range(0, len(items), chunk)]
    best = {name: [float("inf")] * len(chunks) for name in fns}
    cpu = dict.fromkeys(fns, 0.0)
    for _ in range(repeat):
        for c, part in enumerate(chunks):
            for name, fn in fns.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                fn(part)
                best[name][c] = min(best[name][c], time.perf_counter() - start)
                cpu[name] += time.process_time() - start_cpu
    return {name: (len(items) / sum(times), repeat * len(items) / cpu[name]) for name, times in best.items()}
