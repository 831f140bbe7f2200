"""Contact sheets of synthetic images, for looking at what the generator makes.

``python -m hiu_data.synth.sheet docs/synth_contact_sheet.png`` renders the first 64 scenes of
seed 0 at 224 x 224 and tiles them 8 x 8 (the picture in the README);
``--wild`` does the same for the ``synth-wild`` distribution.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from hiu_data.io import images as image_io


def contact_sheet(images: list[np.ndarray], columns: int = 8, tile: int = 160, gap: int = 2) -> np.ndarray:
    """Tile RGB images (any sizes, resized to ``tile`` pixels high, centre-cropped square).

    Returns:
        (rows * (tile + gap) + gap, columns * (tile + gap) + gap, 3) uint8 RGB on white.
    """
    rows = (len(images) + columns - 1) // columns
    sheet = np.full((rows * (tile + gap) + gap, columns * (tile + gap) + gap, 3), 255, np.uint8)
    for k, image in enumerate(images):
        h, w = image.shape[:2]
        side = min(h, w)
        y0, x0 = (h - side) // 2, (w - side) // 2
        square = cv2.resize(image[y0:y0 + side, x0:x0 + side], (tile, tile), interpolation=cv2.INTER_AREA)
        r, c = divmod(k, columns)
        sheet[gap + r * (tile + gap):gap + r * (tile + gap) + tile, gap + c * (tile + gap):gap + c * (tile + gap) + tile] = square
    return sheet


def make_sheet(out: str | Path, n: int = 64, seed: int = 0, size: int = 224, wild: bool = False, columns: int = 8,
               tile: int = 160, workers: int = 1) -> Path:
    """Render ``n`` scenes and write their contact sheet as PNG to ``out``."""
    from hiu_data.synth.generate import generate_scenes
    from hiu_data.synth.profiles import profile_for

    profile = profile_for("parquet", size, wild=wild)
    images = [image_io.decode(data) for _, data, _ in generate_scenes(n, seed, profile, workers=workers)]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(image_io.encode(contact_sheet(images, columns, tile), ".png"))
    return out


def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--tile", type=int, default=160)
    parser.add_argument("--wild", action="store_true")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    print(make_sheet(args.out, args.n, args.seed, args.size, args.wild, tile=args.tile, workers=args.workers))


if __name__ == "__main__":
    _main()
