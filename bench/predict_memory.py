"""Peak memory of ``hiu-data predict`` on one large image, per pixel.

Writes a ``tiny`` checkpoint (random weights: the memory does not depend on what the model
learnt, only on the image size and how much of it the predicted mask covers; the mask head's
last bias is raised so that the mask covers the whole crop, here the whole image: the worst
case for the overlay's tint) and a photo-like JPEG of the given size with a hand-coloured
shape over about a third of it, then runs
``hiu-data predict`` on a small and on the large image, each in its own process, and prints
their peak resident memory (maximum RSS, as ``/usr/bin/time -v`` reports it). The difference
over the difference in pixels is what a pixel costs; the small run is the fixed cost (the
interpreter, torch, the model).

    python bench/predict_memory.py WORK --width 10800 --height 7500
    /usr/bin/time -v hiu-data predict WORK/run WORK/large.jpg --out WORK/out --overwrite --device cpu
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

PREDICT = "import sys; from hiu_cli.main import main; sys.exit(main())"


def write_photo(path: Path, width: int, height: int) -> None:
    """A (height, width) JPEG: a grey-blue gradient with a skin-coloured palm and five fingers
    drawn over about a third of it."""
    image = np.empty((height, width, 3), np.uint8)
    image[:] = np.linspace(60, 180, width, dtype=np.float32).astype(np.uint8)[None, :, None]
    image[..., 0] = 200
    skin = (150, 190, 230)  # BGR
    cx, cy, unit = width // 2, height // 2 + height // 8, min(width, height) // 8
    cv2.ellipse(image, (cx, cy), (int(1.3 * unit), int(1.5 * unit)), 0, 0, 360, skin, -1)
    for k, angle in enumerate(np.radians([-70, -35, -12, 10, 32])):
        length = (2.2 if k else 1.6) * unit
        tip = (int(cx + length * 1.6 * np.sin(angle)), int(cy - unit - length * np.cos(angle)))
        cv2.line(image, (cx + int(0.9 * unit * np.sin(angle)), cy - unit // 2), tip, skin, max(1, int(0.45 * unit)))
    if not cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 90]):
        raise OSError(f"{path}: cannot write the image")


def write_checkpoint(run: Path) -> None:
    """A ``tiny`` checkpoint with seeded random weights, its mask covering the whole crop."""
    import torch

    from hiu_model.checkpoint import save_checkpoint
    from hiu_model.config import load_config
    from hiu_model.model import HIUDMTL

    cfg = load_config(None, "tiny", [])
    torch.manual_seed(0)
    model = HIUDMTL(cfg.model).eval()
    with torch.no_grad():
        model.blocks[-1].decoders["mask"].head[-1].bias.fill_(20.0)
    save_checkpoint(run, 1, model, cfg.to_dict())


def peak_rss(args: list[str]) -> int:
    """Run ``hiu-data ARGS`` in a new process; its maximum resident memory in bytes."""
    process = subprocess.Popen([sys.executable, "-c", PREDICT, *args], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    error = process.stderr.read().decode() if process.stderr else ""
    if process.returncode != 0:
        raise SystemExit(f"hiu-data {' '.join(args)} failed:\n{error}")
    return usage.ru_maxrss * 1024  # kilobytes on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("work", type=Path, help="Folder for the checkpoint, the images and the overlays.")
    parser.add_argument("--width", type=int, default=10800, help="Width of the large image in pixels.")
    parser.add_argument("--height", type=int, default=7500, help="Height of the large image in pixels.")
    args = parser.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "run").exists():
        write_checkpoint(work / "run")
    small = (640, 480)
    sizes = {"small": small, "large": (args.width, args.height)}
    peaks = {}
    for name, (width, height) in sizes.items():
        image = work / f"{name}.jpg"
        write_photo(image, width, height)
        peaks[name] = peak_rss(["predict", str(work / "run"), str(image), "--out", str(work / f"out-{name}"),
                                "--overwrite", "--device", "cpu"])
        print(f"{name}: {width} x {height} pixels, peak RSS {peaks[name] / 2**20:.0f} MiB", flush=True)
    pixels = args.width * args.height - small[0] * small[1]
    print(f"per pixel: {(peaks['large'] - peaks['small']) / pixels:.1f} bytes")


if __name__ == "__main__":
    main()
