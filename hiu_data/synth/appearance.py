"""Skin colour and lighting of synthetic hands, computed per vertex (numpy).

The renderer (:func:`hiu_model.render.render_rgb`) interpolates vertex colours; this
module decides those colours: an albedo per vertex (skin tone, lighter palm, nails, blotchy
variation) lit by an ambient term, a key light, an optional fill light and a Blinn-Phong
sheen. Colours are RGB floats in [0, 1] (display values, no gamma handling: the images are
meant to look like photographs, not to be radiometrically exact).

Skin tones interpolate six reference colours spanning the Fitzpatrick scale; palms are lighter
and pinker than the back of the hand, strongly so for dark tones, as in real hands.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SKIN_TONES: np.ndarray = np.array([
    [246, 214, 190], [232, 186, 152], [212, 158, 118], [176, 118, 80], [126, 82, 54], [82, 54, 38],
], dtype=np.float64) / 255.0
"""Reference skin colours from light to dark (RGB in [0, 1])."""
PALM_TINT: np.ndarray = np.array([232, 176, 156], dtype=np.float64) / 255.0
NAIL_TINT: np.ndarray = np.array([236, 196, 186], dtype=np.float64) / 255.0


@dataclass
class Lighting:
    """One scene's lights, camera frame (x right, y down, z forward).

    Attributes:
        ambient: (3,) RGB ambient light.
        key_dir: (3,) unit direction from the surface towards the key light.
        key_color: (3,) RGB intensity of the key light.
        fill_dir, fill_color: a second, weaker light (color may be zero).
        specular: strength of the sheen; shininess: Blinn-Phong exponent.
    """

    ambient: np.ndarray
    key_dir: np.ndarray
    key_color: np.ndarray
    fill_dir: np.ndarray
    fill_color: np.ndarray
    specular: float
    shininess: float


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True).clip(1e-12)


def _tint(rng: np.random.Generator, strength: float) -> np.ndarray:
    """A colour-temperature tint around white: warm (tungsten) to cool (daylight shade)."""
    t = rng.uniform(-1.0, 1.0) * strength
    return np.array([1.0 + 0.5 * t, 1.0, 1.0 - 0.5 * t]) * rng.uniform(0.97, 1.03, 3)


def sample_lighting(rng: np.random.Generator, environment: np.ndarray | None = None, wild: bool = False) -> Lighting:
    """Random lights; ``environment`` (3,) RGB (e.g. the mean background colour) tints the ambient.

    ``wild`` shifts the distribution: harder side and back light, stronger colour casts, darker
    ambient (the "other lighting" of ``synth-wild``).
    """
    env = np.full(3, 0.6) if environment is None else np.asarray(environment, dtype=np.float64)
    env = env / max(float(env.max()), 1e-3)
    if wild:
        ambient_level, key_level, tint = rng.uniform(0.12, 0.35), rng.uniform(0.7, 1.2), 0.6
        key_dir = _unit(np.array([rng.normal(0, 1.2), rng.normal(0, 1.0), rng.uniform(-1.0, 0.6)]))
    else:
        ambient_level, key_level, tint = rng.uniform(0.3, 0.55), rng.uniform(0.45, 0.8), 0.25
        key_dir = _unit(np.array([rng.normal(0, 0.6), rng.normal(-0.35, 0.5), -1.0]))
    ambient = ambient_level * (0.75 + 0.25 * env) * _tint(rng, tint)
    fill_dir = _unit(np.array([-key_dir[0], rng.normal(0, 0.5), rng.uniform(-1.0, 0.2)]))
    fill_color = rng.uniform(0.0, 0.3) * _tint(rng, tint) * (rng.random() < 0.6)
    return Lighting(ambient, key_dir, key_level * _tint(rng, tint), fill_dir, fill_color,
                    specular=float(rng.uniform(0.02, 0.14)), shininess=float(rng.uniform(6, 30)))


def sample_skin_tone(rng: np.random.Generator) -> np.ndarray:
    """(3,) RGB albedo: a random point on the skin-tone scale with small hue/brightness jitter."""
    t = rng.uniform(0, len(SKIN_TONES) - 1)
    k = min(int(t), len(SKIN_TONES) - 2)
    tone = SKIN_TONES[k] + (t - k) * (SKIN_TONES[k + 1] - SKIN_TONES[k])
    return np.clip(tone * rng.uniform(0.92, 1.06) * rng.uniform(0.96, 1.04, 3), 0, 1)


def skin_albedo(rng: np.random.Generator, tone: np.ndarray, rest_vertices: np.ndarray, rest_normals: np.ndarray,
                palmar: np.ndarray, tip_vertex_ids: np.ndarray) -> np.ndarray:
    """Per-vertex albedo of one hand.

    Args:
        tone: (3,) base skin colour.
        rest_vertices, rest_normals: (V, 3) template vertices (metres) and unit normals, model frame.
        palmar: (3,) unit direction the palm faces in the model frame.
        tip_vertex_ids: (5,) fingertip vertex of each digit (nails sit behind them).
    Returns:
        (V, 3) float64 RGB in [0, 1].
    """
    facing_palm = np.clip(rest_normals @ palmar, 0.0, 1.0)
    darkness = 1.0 - float(tone.mean())
    palm_mix = (0.15 + 0.55 * darkness) * facing_palm[:, None] ** 1.5
    albedo = tone + palm_mix * (PALM_TINT * (0.85 + 0.3 * tone.mean()) - tone)
    # Nails: the back side of each fingertip, within about a nail's length of the tip vertex.
    tips = rest_vertices[tip_vertex_ids]
    dist = np.linalg.norm(rest_vertices[:, None, :] - tips[None], axis=-1).min(axis=1)
    dorsal = np.clip(-(rest_normals @ palmar), 0.0, 1.0)
    nail = np.clip((0.012 - dist) / 0.004, 0.0, 1.0) * np.clip((dorsal - 0.2) / 0.3, 0.0, 1.0)
    albedo = albedo + 0.7 * nail[:, None] * (NAIL_TINT * (0.8 + 0.3 * tone.mean()) - albedo)
    # Low-frequency blotches (veins, redness) from a few random plane waves over the template.
    waves = rng.normal(0, 1, (4, 3)) * 120.0
    phase = rng.uniform(0, 2 * np.pi, 4)
    blotch = np.sin(rest_vertices @ waves.T + phase).mean(axis=1)
    albedo = albedo * (1.0 + 0.05 * blotch[:, None] * np.array([1.0, 0.6, 0.6]))
    return np.clip(albedo, 0.0, 1.0)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3) area-weighted unit vertex normals of a (V, 3) mesh with (F, 3) faces."""
    tri = vertices[faces]
    face_n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(normals, faces[:, k], face_n)
    return _unit(normals)


def shade(albedo: np.ndarray, vertices: np.ndarray, normals: np.ndarray, light: Lighting) -> np.ndarray:
    """Lit vertex colours.

    Args:
        albedo: (V, 3) RGB in [0, 1].
        vertices: (V, 3) camera frame, metres.
        normals: (V, 3) unit normals, camera frame (either orientation: they are turned
            towards the camera, as the renderer does, so thin parts are lit on both sides).
    Returns:
        (V, 3) RGB in [0, 1].
    """
    view = _unit(-vertices)
    normals = np.where((normals * view).sum(-1, keepdims=True) < 0, -normals, normals)
    color = albedo * light.ambient
    for direction, intensity in ((light.key_dir, light.key_color), (light.fill_dir, light.fill_color)):
        lambert = np.clip(normals @ direction, 0.0, None)[:, None]
        half = _unit(direction + view)
        sheen = np.clip((normals * half).sum(-1), 0.0, None)[:, None] ** light.shininess
        color = color + albedo * lambert * intensity + light.specular * sheen * intensity * (lambert > 0)
    return np.clip(color, 0.0, 1.0)
