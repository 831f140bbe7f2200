"""A Ctrl-C reaches every process of the terminal's group, conversion workers included."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# Two workers map a slow function; after the first result every worker gets SIGINT (what a
# terminal's Ctrl-C sends them). The parent alone decides what an interrupt means: a worker
# must neither die with a traceback nor lose its chunk (the pool would wait for it for ever).
_CHILD = textwrap.dedent("""
    import multiprocessing, os, signal, time
    from hiu_data.formats._common import parallel_map

    def slow(x):
        time.sleep(0.02)
        return x * x

    results = parallel_map(slow, range(60), workers=2, chunksize=4)
    first = next(results)
    for child in multiprocessing.active_children():
        os.kill(child.pid, signal.SIGINT)
    rest = list(results)
    print("results", [first, *rest] == [x * x for x in range(60)])
""")


def test_conversion_workers_leave_ctrl_c_to_the_parent() -> None:
    done = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "results True" in done.stdout
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
