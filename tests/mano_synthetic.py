"""Synthetic MANO-format models for tests: MANO's keys, shapes and joint tree, random values.

The real MANO files are licensed and absent here. These arrays have exactly the official
shapes (778 vertices, 1538 faces, 16 joints, 135 pose and 10 shape directions) and a valid
kinematic tree; each joint is regressed from one known vertex so tests can name joints.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hiu_data.skeleton import MANO_PARENTS

NUM_VERTS, NUM_FACES = 778, 1538
JOINT_VERTS = np.array([10, 100, 110, 120, 200, 210, 220, 300, 310, 330, 400, 410, 420, 500, 510, 520])
"""Vertex each MANO joint is regressed from (none of them a fingertip vertex)."""


def synthetic_mano_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """MANO-format arrays as the official pickle holds them (kintree root 2**32 - 1, uint32 faces)."""
    rng = np.random.default_rng(seed)
    v = rng.normal(0.0, 0.03, (NUM_VERTS, 3))
    first = rng.integers(0, NUM_VERTS, NUM_FACES)
    faces = np.stack([first, (first + 1 + rng.integers(0, 50, NUM_FACES)) % NUM_VERTS,
                      (first + 60 + rng.integers(0, 50, NUM_FACES)) % NUM_VERTS], axis=1).astype(np.uint32)
    regressor = np.zeros((16, NUM_VERTS))
    regressor[np.arange(16), JOINT_VERTS] = 1.0
    weights = rng.dirichlet(np.ones(16) * 0.3, NUM_VERTS)
    parents = np.array(MANO_PARENTS, dtype=np.int64)
    parents[0] = 2**32 - 1
    components, _ = np.linalg.qr(rng.normal(size=(45, 45)))
    return {
        "v_template": v,
        "f": faces,
        "J_regressor": regressor,
        "J": regressor @ v,
        "kintree_table": np.stack([parents, np.arange(16)]),
        "weights": weights,
        "posedirs": rng.normal(0.0, 1e-3, (NUM_VERTS, 3, 135)),
        "shapedirs": rng.normal(0.0, 1e-3, (NUM_VERTS, 3, 10)),
        "hands_components": components,
        "hands_mean": rng.normal(0.0, 0.15, 45),
        "hands_coeffs": rng.normal(0.0, 1.0, (20, 45)),
    }


def write_mano_npz(folder: Path, side: str = "right", seed: int = 0,
                   arrays: dict[str, np.ndarray] | None = None) -> Path:
    """Write ``MANO_<SIDE>.npz`` (as ``hiu-data mano import`` would) and return its path."""
    arrays = dict(arrays if arrays is not None else synthetic_mano_arrays(seed))
    arrays["f"] = arrays["f"].astype(np.int64)
    arrays["kintree_table"] = arrays["kintree_table"].astype(np.int64)
    arrays["kintree_table"][0, 0] = -1
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"MANO_{side.upper()}.npz"
    np.savez(path, **arrays)
    return path
