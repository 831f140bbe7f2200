"""A Ctrl-C reaches every process of the terminal's group, the render workers included."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# Renders three chunks on two workers; after the first scene arrives, every worker gets SIGINT
# (what a terminal's Ctrl-C sends them, while the parent may still be busy elsewhere). The
# parent alone decides what an interrupt means: the workers must neither die with a
# traceback nor lose their chunk (a pool whose worker dies mid-task waits for ever).
_CHILD = textwrap.dedent("""
    import multiprocessing, os, signal, time
    from hiu_data.synth.generate import generate_scenes
    scenes = generate_scenes(40, seed=1, size=48, workers=2)
    first = next(scenes)
    for child in multiprocessing.active_children():
        os.kill(child.pid, signal.SIGINT)
    time.sleep(0.5)
    rest = list(scenes)
    print("scenes", 1 + len(rest))
""")


def test_render_workers_leave_ctrl_c_to_the_parent() -> None:
    done = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "scenes 40" in done.stdout
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
