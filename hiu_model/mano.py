"""The hand layer: MANO (or the procedural hand) through smplx, returning the 21 HAND21 joints.

Pose convention: 48 axis-angle values, 3 for the root (global orientation) and 3
for each of the 15 finger joints in MANO order, **relative to the model's mean pose** (smplx
``flat_hand_mean=False``: the layer adds ``hands_mean`` before skinning, so a zero pose is the
relaxed mean hand, as FreiHAND and InterHand2.6M store their poses). Rotations are about the
joints in the template frame; 10 shape values ``betas``.

Output frame: the model's frame, metres. The root rotates about the wrist joint of the shaped
template, ``J_regressor @ (v_template + shapedirs @ betas)`` row 0, so the wrist joint is at that
point plus ``transl`` whatever the pose. (MANO's template wrist is about (0.096, 0.006, 0.006) m;
the procedural hand's is at the origin.)

Joints: the 16 kinematic joints come from the kinematic chain (smplx ``lbs``), not re-regressed
from the posed mesh; the 5 fingertips are single mesh vertices. The 21 are returned in HAND21
order through ``hiu_data.skeleton.MANO21_TO_HAND21``.

Models are looked up in ``model_dir`` if given, else ``$HIU_MANO_DIR``, else ``$HIU_HOME/mano``
(:func:`hiu_data.home.hiu_home`, default ``~/.cache/hiu``); ``hiu-data mano import`` puts them there.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import smplx
import torch
from smplx.utils import Struct
from torch import Tensor, nn

from hiu_data.errors import HiuError
from hiu_data.home import hiu_home
from hiu_data.skeleton import MANO21_TO_HAND21
from hiu_model.hand_pose import joint_axes, pose_from_angles
from hiu_model.procedural_hand import ASSET_DIR, ASSET_FILES, mirror_model

log = logging.getLogger(__name__)

MANO_TIP_VERTEX_IDS: tuple[int, int, int, int, int] = (744, 320, 443, 555, 672)
"""MANO fingertip vertices (thumb, index, middle, ring, little) of both sides: the FreiHAND
convention (``utils/mano_utils.py`` ``kpId2vertices``), so joints computed from FreiHAND's MANO
fits reproduce its keypoint labels. smplx / HaMeR use 744, 320, 443, 554, 671."""
MANO_FILES: dict[str, str] = {"right": "MANO_RIGHT", "left": "MANO_LEFT"}
MANO_WEBSITE = "https://mano.is.tue.mpg.de"
KINDS = ("auto", "mano", "procedural")


class MissingModelError(HiuError):
    """The MANO model files are not installed where the layer looks for them."""

    def __init__(self, side: str, searched: Path) -> None:
        super().__init__(
            f"MANO {side}-hand model not found in {searched}: register and download 'Models & Code' "
            f"(mano_v1_2.zip) from {MANO_WEBSITE}, then run 'hiu-data mano import "
            f"mano_v1_2/models/MANO_RIGHT.pkl mano_v1_2/models/MANO_LEFT.pkl' (or set HIU_MANO_DIR)"
        )


def mano_dir(model_dir: str | Path | None = None) -> Path:
    """Folder the MANO files are read from: ``model_dir``, ``$HIU_MANO_DIR`` or ``$HIU_HOME/mano``."""
    if model_dir is not None:
        return Path(model_dir).expanduser()
    env = os.environ.get("HIU_MANO_DIR")
    return Path(env).expanduser() if env else hiu_home() / "mano"


def find_mano_file(side: str, model_dir: str | Path | None = None) -> Path | None:
    """The installed MANO file of ``side`` (``.npz`` from ``mano import``, else an official ``.pkl``)."""
    folder = mano_dir(model_dir)
    for ext in (".npz", ".pkl"):
        path = folder / (MANO_FILES[side] + ext)
        if path.is_file():
            return path
    return None


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_digest(arrays: dict[str, np.ndarray]) -> str:
    """Hex sha256 of the arrays that define a MANO-format model, whatever file holds them.

    A file's own hash would differ between the official ``.pkl`` and the ``.npz`` that
    ``hiu-data mano import`` writes, and between zlib builds compressing that ``.npz``, so a
    checkpoint would refuse the very model it was trained with. The arrays are hashed as
    :func:`load_model_arrays` returns them (float64 / int64, root parent -1), key by key with
    dtype and shape.
    """
    from hiu_model.mano_import import REQUIRED_KEYS

    h = hashlib.sha256()
    for key in sorted(REQUIRED_KEYS):
        value = np.ascontiguousarray(arrays[key])
        h.update(f"{key}:{value.dtype.str}:{value.shape};".encode())
        h.update(value.tobytes())
    return h.hexdigest()


def load_model_arrays(path: Path) -> dict[str, np.ndarray]:
    """Read a MANO-format model (``.npz`` without pickled objects, or an official ``.pkl``).

    Returns:
        dict of numpy arrays with MANO's keys (float64; faces and tree int64, root parent -1),
        checked by :func:`hiu_model.mano_import.check_arrays`.
    Raises:
        DatasetFormatError: the file is unreadable or not a MANO-format model (one line naming it).
    """
    from hiu_model.mano_import import read_model_file

    return read_model_file(path, num_verts=None)


def fix_left_shapedirs(left: dict[str, np.ndarray], right: dict[str, np.ndarray]) -> bool:
    """Negate the left model's x shape directions when they equal the right model's (in place).

    MANO_LEFT ships with ``shapedirs[:, 0, :]`` of the wrong sign (vchoutas/smplx#48): for a
    mirror image they should be the negation of the right model's. Returns True if fixed.
    """
    diff = np.abs(left["shapedirs"][:, 0, :] - right["shapedirs"][:, 0, :]).sum()
    if left["shapedirs"].shape == right["shapedirs"].shape and diff < 1.0:
        left["shapedirs"] = left["shapedirs"].copy()
        left["shapedirs"][:, 0, :] *= -1.0
        return True
    return False


@dataclass
class HandOutput:
    """Posed hand.

    Attributes:
        vertices: (B, V, 3) metres, model frame (plus ``transl``).
        joints: (B, 21, 3) metres, HAND21 order.
        joints_mano: (B, 16, 3) the kinematic joints in MANO order.
    """

    vertices: Tensor
    joints: Tensor
    joints_mano: Tensor


class HandModel(nn.Module):
    """A batched hand layer over smplx's MANO for MANO files or the procedural hand.

    Args:
        side: "right" or "left".
        model_dir: folder of the MANO files (see :func:`mano_dir`).
        kind: "mano" (error if not installed), "procedural", or "auto" (MANO when installed).
            A left hand with only MANO_RIGHT installed is the mirror image of MANO_RIGHT.
        dtype: dtype of the model's buffers.
    Attributes:
        name: what reports print and checkpoints record, e.g. ``procedural-v1`` or
            ``mano sha256:<16 hex>`` (:func:`model_digest` of the arrays, so the same MANO model
            has the same name as an official ``.pkl`` or an imported ``.npz``, on any machine).
        legacy_names: the names earlier versions gave this model (the sha256 of its file).
        kind: "mano" or "procedural"; side: "right" or "left".
        faces: (F, 3) int64 buffer; num_verts: V; tip_vertex_ids: (5,) thumb..little.
        template_joints: (16, 3) float64 numpy, MANO order, mean shape, flat (unposed) template.
    """

    def __init__(self, side: str = "right", model_dir: str | Path | None = None, kind: str = "auto",
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if side not in MANO_FILES:
            raise ValueError(f"side must be 'right' or 'left', not {side!r}")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        path = find_mano_file(side, model_dir) if kind != "procedural" else None
        right = find_mano_file("right", model_dir) if side == "left" and kind != "procedural" else None
        if kind == "mano" and path is None and right is None:
            raise MissingModelError(side, mano_dir(model_dir))
        self.side = side
        self.legacy_names: tuple[str, ...] = ()
        if path is not None:
            arrays = load_model_arrays(path)
            if right is not None and fix_left_shapedirs(arrays, load_model_arrays(right)):
                log.info("negated the x shape directions of %s (known MANO_LEFT sign issue)", path)
            self.kind = "mano"
            self.name = f"mano sha256:{model_digest(arrays)[:16]}"
            self.legacy_names = (f"mano sha256:{sha256_file(path)[:16]}",)
            tips = MANO_TIP_VERTEX_IDS
        elif right is not None:
            # Only MANO_RIGHT installed: its mirror image is the left model (same topology), which
            # keeps both sides on MANO rather than pairing it with the procedural left hand.
            path = right
            right_arrays = load_model_arrays(right)
            arrays = mirror_model(right_arrays)
            self.kind = "mano"
            self.name = f"mano sha256:{model_digest(right_arrays)[:16]} mirrored"
            self.legacy_names = (f"mano sha256:{sha256_file(right)[:16]} mirrored",)
            tips = MANO_TIP_VERTEX_IDS
            log.warning("MANO_LEFT not installed: using the mirror image of %s as the left hand", right)
        else:
            path = ASSET_DIR / ASSET_FILES[side]
            arrays = load_model_arrays(path)
            self.kind = "procedural"
            self.name = str(arrays["model_name"])
            tips = tuple(int(t) for t in arrays["tip_vertex_ids"])
        log.info("hand model %s (%s hand) from %s", self.name, side, path)
        self.path = path
        with contextlib.redirect_stdout(io.StringIO()):  # smplx prints a harmless warning
            self.layer = smplx.MANO(
                str(path), is_rhand=side == "right", data_struct=Struct(**arrays), use_pca=False,
                flat_hand_mean=False, num_betas=10, create_hand_pose=False, create_betas=False,
                create_global_orient=False, create_transl=False, create_body_pose=False, dtype=dtype,
            )
        self._restore_precision(arrays)
        self.register_buffer("faces", torch.as_tensor(np.asarray(arrays["f"], dtype=np.int64)), persistent=False)
        self.register_buffer("tip_ids", torch.tensor(tips, dtype=torch.long), persistent=False)
        self.register_buffer("to_hand21", torch.as_tensor(MANO21_TO_HAND21, dtype=torch.long), persistent=False)
        self.tip_vertex_ids: tuple[int, ...] = tips
        self.num_verts = int(arrays["v_template"].shape[0])
        regressor = np.asarray(arrays["J_regressor"], dtype=np.float64)
        self.template_joints: np.ndarray = regressor @ np.asarray(arrays["v_template"], dtype=np.float64)
        self._axes = joint_axes(self.template_joints, side)

    def _restore_precision(self, arrays: dict[str, np.ndarray]) -> None:
        """smplx rounds the model arrays through float32 (``to_np``); reload them at full precision."""
        num_pose = arrays["posedirs"].shape[-1]
        exact = {
            "v_template": arrays["v_template"], "shapedirs": arrays["shapedirs"][:, :, :10],
            "posedirs": np.reshape(arrays["posedirs"], (-1, num_pose)).T, "J_regressor": arrays["J_regressor"],
            "lbs_weights": arrays["weights"], "hand_mean": arrays["hands_mean"],
        }
        with torch.no_grad():
            for name, value in exact.items():
                buf = getattr(self.layer, name)
                buf.copy_(torch.as_tensor(np.asarray(value, dtype=np.float64)).reshape(buf.shape))
            self.layer.pose_mean[3:] = self.layer.hand_mean

    @property
    def hands_mean(self) -> Tensor:
        """(45,) the mean pose that a zero ``pose[3:]`` stands for (axis-angle, radians)."""
        return self.layer.hand_mean

    def forward(self, pose: Tensor, betas: Tensor, transl: Tensor | None = None) -> HandOutput:
        """Pose the hand.

        Args:
            pose: (B, 48) axis-angle radians relative to the mean pose (root first, MANO order).
            betas: (B, 10) shape coefficients.
            transl: (B, 3) metres added to every vertex and joint; None for zero.
        Returns:
            :class:`HandOutput` in the model frame plus ``transl``, metres, in the buffers' dtype.
        """
        if pose.dim() != 2 or pose.shape[1] != 48 or betas.shape != (pose.shape[0], 10):
            raise ValueError(f"expected pose (B, 48) and betas (B, 10), got {tuple(pose.shape)}, {tuple(betas.shape)}")
        dtype = self.layer.v_template.dtype
        out = self.layer(
            betas=betas.to(dtype), global_orient=pose[:, :3].to(dtype), hand_pose=pose[:, 3:].to(dtype),
            transl=None if transl is None else transl.to(dtype),
        )
        verts, joints16 = out.vertices, out.joints
        joints21 = torch.cat([joints16, verts[:, self.tip_ids]], dim=1)[:, self.to_hand21]
        return HandOutput(vertices=verts, joints=joints21, joints_mano=joints16)

    def pose_from_angles(self, angles: Tensor, global_orient: Tensor | None = None) -> Tensor:
        """(B, 48) pose from (B, 15, 3) anatomical angles; see :mod:`hiu_model.hand_pose`."""
        return pose_from_angles(angles, self._axes, self.hands_mean, global_orient)


def mirror_pose(pose: Tensor | np.ndarray) -> Tensor | np.ndarray:
    """Mirror a pose between the left-hand and right-hand frames (an involution).

    The left MANO model is the right one reflected through the plane x = 0. Reflecting a
    rotation R gives M R M with M = diag(-1, 1, 1), whose axis-angle is (a_x, -a_y, -a_z): so
    each axis-angle triple keeps x and negates y and z. Used with images flipped left-right
    (and 3D points with x negated), a left hand posed with ``pose`` on the left model equals
    the mirror of the right model posed with ``mirror_pose(pose)`` (betas unchanged).

    Args:
        pose: (..., 48) axis-angle (or any (..., 3k)), tensor or array.
    Returns:
        same type, shape and dtype.
    """
    sign = np.tile(np.array([1.0, -1.0, -1.0]), pose.shape[-1] // 3)
    if isinstance(pose, Tensor):
        return pose * torch.as_tensor(sign, dtype=pose.dtype, device=pose.device)
    return np.asarray(pose) * sign.astype(np.asarray(pose).dtype)


@functools.lru_cache(maxsize=2)
def _default_right_mano() -> HandModel:
    return HandModel("right", kind="mano", dtype=torch.float64)


def freihand_to_mesh(mano61: np.ndarray, K: np.ndarray, model: HandModel | None = None) -> tuple[np.ndarray, np.ndarray]:
    """FreiHAND's 61-value MANO annotation -> mesh and 21 joints in the camera frame.

    Recipe of the FreiHAND toolbox: pose ``[0:48]`` (relative to the mean
    pose), betas ``[48:58]``, the root keypoint's pixel ``uv_root = [58:60]`` and
    ``scale = [60]`` (focal / Z_root). The hand is posed with zero translation and then
    translated so that HAND21 joint 9 (middle MCP) lands at
    ``[u - cx, v - cy, f] / scale`` with ``f = (fx + fy) / 2``.

    Args:
        mano61: (61,) float.
        K: (3, 3) intrinsics of the 224x224 FreiHAND image.
        model: the right MANO layer; by default the installed MANO (FreiHAND fits need MANO).
    Returns:
        ``(vertices (778, 3), joints (21, 3))`` float64 metres, camera frame, HAND21 order.
    """
    theta = np.asarray(mano61, dtype=np.float64).reshape(-1)
    if theta.shape != (61,):
        raise ValueError(f"FreiHAND MANO annotation has 61 values, got {theta.shape}")
    model = model if model is not None else _default_right_mano()
    with torch.no_grad():
        out = model(torch.as_tensor(theta[None, :48]), torch.as_tensor(theta[None, 48:58]))
    verts = out.vertices[0].double().numpy()
    joints = out.joints[0].double().numpy()
    K = np.asarray(K, dtype=np.float64)
    focal = 0.5 * (K[0, 0] + K[1, 1])
    root = np.array([theta[58] - K[0, 2], theta[59] - K[1, 2], focal]) / theta[60]
    shift = root - joints[9]
    return verts + shift, joints + shift
