"""The hand models behind synthetic scenes: :class:`hiu_model.mano.HandModel` seen through numpy.

A :class:`HandRig` wraps one side's model (MANO when its files are installed, else the
procedural hand, as ``HandModel(kind="auto")`` decides) and exposes what scene generation
needs: batched posing from MANO-format parameters, the faces, the fingertip vertices, the
mean pose, and the rest (flat, zero full pose) joints, vertices and normals the pose sampler
and the skin shader work from. torch is imported here only, when a rig is built.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from hiu_data.synth.appearance import vertex_normals
from hiu_data.synth.poses import palm_frame

SIDES: tuple[str, ...] = ("right", "left")


class HandRig:
    """One side's hand model (numpy in, numpy out).

    Attributes:
        side: "right" or "left".
        name: the model's name (e.g. ``procedural-v1`` or ``mano``), recorded in the samples.
        faces: (F, 3) int64.
        tip_vertex_ids: (5,) int64 fingertip vertices (thumb, index, middle, ring, little).
        hands_mean: (45,) float64 mean finger pose; MANO-format poses are relative to it.
        rest_joints: (21, 3) HAND21 joints of the flat hand (zero full pose, mean shape), metres.
        rest_vertices, rest_normals: (V, 3) the flat hand's vertices and unit normals.
        forward_dir, palmar_dir: (3,) wrist -> fingers and palm-facing unit directions at rest
            (for a left rig, those of the mirror image it is).
    """

    def __init__(self, side: str, kind: str = "auto") -> None:
        import torch

        from hiu_model.mano import HandModel

        self.side = side
        self.model = HandModel(side=side, kind=kind).eval()
        self.name = str(self.model.name)
        self.faces = np.asarray(_as_numpy(self.model.faces), dtype=np.int64)
        self.tip_vertex_ids = np.asarray(_as_numpy(self.model.tip_vertex_ids), dtype=np.int64)
        self.hands_mean = _hands_mean(self.model)
        self._torch = torch
        flat = np.zeros((1, 48))
        flat[0, 3:] = -self.hands_mean
        vertices, joints = self.pose(flat, np.zeros((1, 10)))
        self.rest_vertices, self.rest_joints = vertices[0], joints[0]
        self.rest_normals = vertex_normals(self.rest_vertices, self.faces)
        mirrored = self.rest_joints * np.array([-1.0, 1.0, 1.0]) if side == "left" else self.rest_joints
        forward, _, palmar = palm_frame(mirrored)
        flip = np.array([-1.0, 1.0, 1.0]) if side == "left" else np.ones(3)
        self.forward_dir, self.palmar_dir = forward * flip, palmar * flip

    def pose(self, pose: np.ndarray, betas: np.ndarray, transl: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Posed meshes.

        Args:
            pose: (N, 48) MANO-format axis-angle, relative to the mean pose.
            betas: (N, 10) shape coefficients.
            transl: (N, 3) metres, or None.
        Returns:
            ``(vertices (N, V, 3), joints (N, 21, 3))`` float64 metres, HAND21 order.
        """
        torch = self._torch
        with torch.no_grad():
            out = self.model(torch.as_tensor(pose, dtype=torch.float32), torch.as_tensor(betas, dtype=torch.float32),
                             None if transl is None else torch.as_tensor(transl, dtype=torch.float32))
        return out.vertices.double().numpy(), out.joints.double().numpy()


def _as_numpy(value: object) -> np.ndarray:
    detach = getattr(value, "detach", None)
    return detach().cpu().numpy() if detach is not None else np.asarray(value)


def _hands_mean(model: object) -> np.ndarray:
    """The model's (45,) mean finger pose, wherever the model keeps it."""
    for name in ("hands_mean", "hand_mean"):
        value = getattr(model, name, None)
        if value is not None:
            return np.asarray(_as_numpy(value), dtype=np.float64).reshape(-1)[-45:]
    value = getattr(model, "pose_mean", None)
    if value is not None:
        return np.asarray(_as_numpy(value), dtype=np.float64).reshape(-1)[-45:]
    raise AttributeError(f"{type(model).__name__} exposes no mean pose (hands_mean / pose_mean)")


@lru_cache(maxsize=4)
def get_rig(side: str, kind: str = "auto") -> HandRig:
    """A cached rig per (side, kind): models are built once per process."""
    return HandRig(side, kind)
