"""Procedural textured backgrounds for synthetic hand scenes (numpy + OpenCV, no files).

Every generator takes a ``numpy.random.Generator`` and returns an (H, W, 3) uint8 RGB image;
the same generator state gives the same image. Two families of styles exist so that the
"wild" folder (``hiu-data synth-wild``) comes from a shifted distribution: the labeled scenes
use :data:`LABELED_STYLES`, the wild images :data:`WILD_STYLES`, and no style is shared.

The textures imitate what surrounds hands in photographs at the level a pose network sees:
smooth colour fields (walls, skies), clutter of overlapping objects ("dead leaves"), regular
patterns (fabric, tiles), grain (wood), out-of-focus highlights (bokeh). Skin-like colours
appear in the palettes on purpose, so that a network cannot find hands by colour alone.
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

Image = np.ndarray

# Skin-like colours mixed into background palettes (RGB); see the module docstring.
_SKIN_DISTRACTORS = np.array([[224, 172, 140], [198, 134, 96], [141, 95, 66], [240, 200, 170]], dtype=np.float32)


def random_colors(rng: np.random.Generator, n: int, skin_like: float = 0.1) -> np.ndarray:
    """(n, 3) float32 RGB colours in [0, 255]: random hues and values, some skin-like."""
    hsv = np.stack([rng.uniform(0, 180, n), rng.uniform(0, 255, n) ** 0.9, rng.uniform(30, 255, n)], axis=1)
    rgb = cv2.cvtColor(hsv.astype(np.uint8)[None], cv2.COLOR_HSV2RGB)[0].astype(np.float32)
    swap = rng.random(n) < skin_like
    if swap.any():
        picks = _SKIN_DISTRACTORS[rng.integers(0, len(_SKIN_DISTRACTORS), int(swap.sum()))]
        rgb[swap] = np.clip(picks * rng.uniform(0.7, 1.15, (int(swap.sum()), 1)), 0, 255)
    return rgb


def value_noise(rng: np.random.Generator, height: int, width: int, octaves: int = 4, base_cells: int = 3,
                persistence: float = 0.55) -> np.ndarray:
    """(H, W) float32 fractal value noise in [0, 1]: random grids upsampled bicubically and summed."""
    total = np.zeros((height, width), np.float32)
    amplitude, norm = 1.0, 0.0
    for octave in range(octaves):
        cells = base_cells * 2**octave
        grid = rng.random((cells + 1, cells + 1)).astype(np.float32)
        total += amplitude * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        norm += amplitude
        amplitude *= persistence
    total /= norm
    lo, hi = float(total.min()), float(total.max())
    return (total - lo) / max(hi - lo, 1e-6)


def _colorize(field: np.ndarray, colors: np.ndarray) -> Image:
    """Map a [0, 1] field through a piecewise-linear ramp over ``colors`` (k, 3)."""
    stops = np.linspace(0.0, 1.0, len(colors))
    channels = [np.interp(field, stops, colors[:, c]) for c in range(3)]
    return np.clip(np.stack(channels, axis=-1), 0, 255).astype(np.uint8)


def _coords(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    return xs / max(width, height), ys / max(width, height)


def noise_texture(rng: np.random.Generator, height: int, width: int) -> Image:
    """Fractal noise coloured with 2-4 random colours (plaster, foliage, stone)."""
    field = value_noise(rng, height, width, octaves=int(rng.integers(2, 6)), base_cells=int(rng.integers(2, 6)))
    return _colorize(field, random_colors(rng, int(rng.integers(2, 5))))


def gradient(rng: np.random.Generator, height: int, width: int) -> Image:
    """A linear two-colour gradient with faint noise (walls, studio backdrops)."""
    xs, ys = _coords(height, width)
    angle = rng.uniform(0, 2 * np.pi)
    t = xs * np.cos(angle) + ys * np.sin(angle)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    t = np.clip(t + 0.15 * (value_noise(rng, height, width, octaves=3) - 0.5), 0, 1)
    return _colorize(t, random_colors(rng, 2))


def stripes(rng: np.random.Generator, height: int, width: int) -> Image:
    """Oriented stripes or a checker board, slightly warped (fabric, blinds, tiles)."""
    xs, ys = _coords(height, width)
    angle = rng.uniform(0, np.pi)
    freq = rng.uniform(6, 40)
    u = xs * np.cos(angle) + ys * np.sin(angle)
    warp = 0.03 * (value_noise(rng, height, width, octaves=2) - 0.5)
    wave = np.sin(2 * np.pi * freq * (u + warp))
    if rng.random() < 0.35:
        v = -xs * np.sin(angle) + ys * np.cos(angle)
        wave = wave * np.sin(2 * np.pi * freq * (v + warp))
    sharpness = rng.uniform(1, 8)
    field = 0.5 + 0.5 * np.tanh(sharpness * wave)
    return _colorize(field.astype(np.float32), random_colors(rng, 2))


def dead_leaves(rng: np.random.Generator, height: int, width: int) -> Image:
    """Clutter of overlapping filled shapes on a noise field (desks, shelves, rooms)."""
    image = noise_texture(rng, height, width)
    n_shapes = int(rng.integers(15, 60))
    colors = random_colors(rng, n_shapes, skin_like=0.12)
    scale = max(height, width)
    for i in range(n_shapes):
        color = tuple(float(c) for c in colors[i])
        cx, cy = int(rng.integers(0, width)), int(rng.integers(0, height))
        size = int(scale * rng.uniform(0.03, 0.3) * rng.random() ** 0.5) + 2
        kind = rng.random()
        if kind < 0.4:
            axes = (size, int(size * rng.uniform(0.3, 1.0)) + 1)
            cv2.ellipse(image, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, color, -1, cv2.LINE_AA)
        elif kind < 0.75:
            w, h = size, int(size * rng.uniform(0.3, 1.5)) + 1
            box = cv2.boxPoints(((cx, cy), (2 * w, 2 * h), float(rng.uniform(0, 180))))
            cv2.fillPoly(image, [box.astype(np.int32)], color, cv2.LINE_AA)
        else:
            end = (cx + int(rng.normal(0, size * 2)), cy + int(rng.normal(0, size * 2)))
            cv2.line(image, (cx, cy), end, color, max(1, size // 4), cv2.LINE_AA)
    return image


def bokeh(rng: np.random.Generator, height: int, width: int) -> Image:
    """Dark smooth field with soft bright discs (out-of-focus lights, night scenes)."""
    image = (noise_texture(rng, height, width).astype(np.float32) * rng.uniform(0.2, 0.6))
    layer = np.zeros_like(image)
    scale = max(height, width)
    for color in random_colors(rng, int(rng.integers(10, 40))):
        center = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        cv2.circle(layer, center, int(scale * rng.uniform(0.02, 0.1)) + 1, tuple(float(c) for c in color * 0.6), -1, cv2.LINE_AA)
    layer = cv2.GaussianBlur(layer, (0, 0), sigmaX=scale * rng.uniform(0.005, 0.02) + 0.5)
    return np.clip(image + layer, 0, 255).astype(np.uint8)


def tiles(rng: np.random.Generator, height: int, width: int) -> Image:
    """Perspective-free tiled wall: coloured cells separated by grout lines."""
    cell = int(max(height, width) * rng.uniform(0.06, 0.25)) + 4
    colors = random_colors(rng, 3)
    rows, cols = height // cell + 2, width // cell + 2
    pick = rng.integers(0, len(colors), (rows, cols))
    shade = rng.uniform(0.85, 1.1, (rows, cols, 1))
    grid = (colors[pick] * shade).astype(np.float32)
    image = cv2.resize(grid, (cols * cell, rows * cell), interpolation=cv2.INTER_NEAREST)[:height, :width]
    grout = tuple(float(c) for c in random_colors(rng, 1)[0])
    thickness = max(1, cell // 12)
    for k in range(rows + 1):
        cv2.line(image, (0, k * cell), (width, k * cell), grout, thickness)
    for k in range(cols + 1):
        cv2.line(image, (k * cell, 0), (k * cell, height), grout, thickness)
    return np.clip(image, 0, 255).astype(np.uint8)


def wood(rng: np.random.Generator, height: int, width: int) -> Image:
    """Wood grain: warped rings in brown or painted tones (tables, floors)."""
    xs, ys = _coords(height, width)
    angle = rng.uniform(0, np.pi)
    u = xs * np.cos(angle) + ys * np.sin(angle)
    warp = value_noise(rng, height, width, octaves=3, base_cells=2)
    field = 0.5 + 0.5 * np.sin(2 * np.pi * (rng.uniform(8, 25) * u + rng.uniform(2, 6) * warp))
    if rng.random() < 0.7:
        base = np.array([[60, 35, 15], [150, 100, 55], [200, 150, 95]], np.float32) * rng.uniform(0.8, 1.2)
    else:
        base = random_colors(rng, 3)
    return _colorize(field.astype(np.float32), base)


def scribbles(rng: np.random.Generator, height: int, width: int) -> Image:
    """Paper-like field with random curves and text-like marks (posters, whiteboards)."""
    image = _colorize(value_noise(rng, height, width, octaves=2), random_colors(rng, 2) * 0.3 + 170)
    scale = max(height, width)
    for color in random_colors(rng, int(rng.integers(8, 30))):
        points = np.cumsum(rng.normal(0, scale * 0.05, (int(rng.integers(3, 9)), 2)), axis=0)
        points += rng.uniform(0, [width, height])
        cv2.polylines(image, [points.astype(np.int32)], False, tuple(float(c) for c in color),
                      int(rng.integers(1, 4)), cv2.LINE_AA)
    return image


StyleFn = Callable[[np.random.Generator, int, int], Image]
LABELED_STYLES: dict[str, StyleFn] = {"noise": noise_texture, "gradient": gradient, "stripes": stripes,
                                      "clutter": dead_leaves}
WILD_STYLES: dict[str, StyleFn] = {"bokeh": bokeh, "tiles": tiles, "wood": wood, "scribbles": scribbles}


def random_background(rng: np.random.Generator, height: int, width: int, styles: dict[str, StyleFn] | None = None,
                      blur: float = 0.5) -> tuple[Image, str]:
    """A background of a random style.

    Args:
        styles: the style family (default :data:`LABELED_STYLES`).
        blur: probability of a depth-of-field blur.
    Returns:
        ((H, W, 3) uint8 RGB image, style name).
    """
    styles = styles or LABELED_STYLES
    names = sorted(styles)
    name = names[int(rng.integers(0, len(names)))]
    image = styles[name](rng, height, width)
    if rng.random() < blur:
        sigma = rng.uniform(0.5, 2.5) * max(height, width) / 224
        image = cv2.GaussianBlur(image, (0, 0), sigmaX=sigma)
    return np.ascontiguousarray(image), name
