"""A procedural hand model in MANO's file format, generated deterministically from anatomy.

It is the default hand when no MANO files are installed, so training, rendering and the demo
run out of the box. It has MANO's keys, joint tree and joint order (16 joints: wrist, index1-3,
middle1-3, little1-3, ring1-3, thumb1-3) and loads through the same smplx code path; it is not
MANO's mesh (different vertex count and topology), so vertex-level labels of MANO datasets do
not apply to it. Reports name it ``procedural-v1``.

Geometry (template, metres, MANO-like frame): wrist joint at the origin, fingers pointing along
-x, thumb side +z, palm facing -y, back of the hand +y. The mesh is a rounded slab for the palm
and one tube with a rounded tip per finger (the thumb's tube is fat near its base: the thenar
eminence); tubes overlap the palm rather than being stitched to it. Proportions follow published adult
hand anthropometry (bone lengths, finger diameters, palm width).

Skinning: a tube vertex follows the bone it lies on, blended smoothly over half a finger radius
either side of a joint; the palm follows the wrist. Joints are regressed as the centroids of one
vertex ring each, so they follow the shape blend shapes. ``posedirs`` are zero (no pose
correctives). The mean pose ``hands_mean`` is a relaxed slight curl, as MANO's is.

Shape blend shapes (one unit is about one standard deviation of adult hands):
0 overall size (6 %), 1 finger length (6 %), 2 finger thickness (8 %), 3 palm width (6 %),
4 palm length (6 %), 5-9 length of thumb, index, middle, ring, little (6 % each).

Regenerate the shipped files with ``python -m hiu_model.procedural_hand``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hiu_model import procedural_mesh as pm
from hiu_model.hand_pose import THUMB_PAD_TOWARDS_LITTLE, joint_axes

log = logging.getLogger(__name__)

MODEL_NAME: str = "procedural-v1"
ASSET_DIR: Path = Path(__file__).resolve().parent / "assets"
ASSET_FILES: dict[str, str] = {"right": "procedural_hand_right.npz", "left": "procedural_hand_left.npz"}

MM = 1e-3
NUM_AROUND_FINGER = 10
NUM_AROUND_PALM = 20


@dataclass(frozen=True)
class Digit:
    """One finger or the thumb, in the anatomical frame (D distal, L towards the thumb, P palmar), mm.

    Attributes:
        name: finger name.
        joints: the three MANO joint indices from base to tip.
        base: position of the first joint (MCP, or CMC for the thumb), (D, L, P) mm.
        bones: lengths of the bones after each joint; the last includes the fingertip pad.
        yaw, pitch: per bone, degrees towards the thumb (L) and towards the palm (P).
        radii: tube half-width at the tube start, the three joints, and the tip, mm.
        flat: thickness / width ratio of the tube cross-section.
        start: how far before the base joint the tube starts (inside the palm), mm.
    """

    name: str
    joints: tuple[int, int, int]
    base: tuple[float, float, float]
    bones: tuple[float, float, float]
    yaw: tuple[float, float, float]
    pitch: tuple[float, float, float]
    radii: tuple[float, float, float, float, float]
    flat: float
    start: float


# In MANO joint order of the digits' base joints: index, middle, little, ring, thumb.
DIGITS: tuple[Digit, ...] = (
    Digit("index", (1, 2, 3), (84.0, 25.0, 1.0), (40.0, 23.0, 22.0), (6.0,) * 3, (0.0,) * 3,
          (9.4, 9.2, 8.4, 7.7, 7.1), 0.86, 14.0),
    Digit("middle", (4, 5, 6), (86.0, 5.0, 0.0), (45.0, 27.0, 23.0), (1.0,) * 3, (0.0,) * 3,
          (9.7, 9.5, 8.7, 7.9, 7.3), 0.86, 14.0),
    Digit("little", (7, 8, 9), (73.0, -31.0, 3.5), (33.0, 18.0, 20.5), (-11.0,) * 3, (0.0,) * 3,
          (8.2, 8.0, 7.2, 6.6, 6.1), 0.86, 12.0),
    Digit("ring", (10, 11, 12), (80.0, -13.5, 1.5), (42.0, 26.0, 22.5), (-4.5,) * 3, (0.0,) * 3,
          (9.2, 9.0, 8.2, 7.5, 6.9), 0.86, 14.0),
    Digit("thumb", (13, 14, 15), (20.0, 21.0, 9.0), (46.0, 32.0, 27.5), (40.0, 26.0, 20.0),
          (16.0, 6.0, 0.0), (14.5, 16.0, 10.8, 9.8, 8.8), 0.84, 12.0),
)

# Palm slab: (D, half-width, half-thickness, L centre, P centre), mm.
PALM_PROFILE: tuple[tuple[float, float, float, float, float], ...] = (
    (-12.0, 27.0, 14.5, 0.0, 0.0),
    (-5.0, 28.5, 15.2, 0.0, 0.0),
    (0.0, 29.0, 15.3, 0.0, 0.0),
    (10.0, 31.5, 15.5, -0.3, 0.3),
    (22.0, 35.0, 15.3, -0.8, 0.6),
    (34.0, 38.0, 14.8, -1.4, 0.9),
    (46.0, 39.5, 14.0, -2.0, 1.1),
    (57.0, 40.5, 13.3, -2.5, 1.3),
    (66.0, 40.8, 12.6, -2.8, 1.4),
    (73.0, 40.5, 12.0, -3.0, 1.5),
    (79.0, 39.0, 11.3, -3.0, 1.5),
    (84.0, 35.5, 10.2, -3.0, 1.5),
    (87.5, 28.0, 8.2, -3.0, 1.5),
    (89.5, 16.0, 5.0, -3.0, 1.5),
)
PALM_END: float = 90.5
PALM_SQUARENESS = 0.55
"""Exponent of the palm's superellipse cross-section (1 = ellipse, smaller = boxier)."""
KNUCKLE_SLANT_FROM = 60.0
"""Palm rings distal of this D follow the slanted knuckle line (little MCP is proximal)."""

MEAN_POSE_DEG: dict[str, tuple[float, float, float]] = {
    # flexion of the three joints of each digit, degrees (a relaxed hand).
    "index": (10.0, 14.0, 8.0),
    "middle": (12.0, 16.0, 9.0),
    "little": (16.0, 20.0, 10.0),
    "ring": (14.0, 18.0, 10.0),
    "thumb": (8.0, 8.0, 10.0),
}

SHAPE_NAMES: tuple[str, ...] = (
    "size", "finger_length", "finger_thickness", "palm_width", "palm_length",
    "thumb_length", "index_length", "middle_length", "ring_length", "little_length",
)
SHAPE_STEP: tuple[float, ...] = (0.06, 0.06, 0.08, 0.06, 0.06, 0.06, 0.06, 0.06, 0.06, 0.06)


def dlp_to_xyz(v: np.ndarray) -> np.ndarray:
    """Map (..., 3) anatomical (D, L, P) coordinates to the model frame (x, y, z) = (-D, -P, L)."""
    v = np.asarray(v, dtype=np.float64)
    return np.stack([-v[..., 0], -v[..., 2], v[..., 1]], axis=-1)


def _direction(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """Unit (D, L, P) direction turned ``yaw`` towards the thumb and ``pitch`` towards the palm."""
    y, p = np.deg2rad(yaw_deg), np.deg2rad(pitch_deg)
    return np.array([np.cos(p) * np.cos(y), np.cos(p) * np.sin(y), np.sin(p)])


def digit_skeleton(d: Digit) -> tuple[np.ndarray, np.ndarray]:
    """Joint positions of a digit in model coordinates.

    Returns:
        ``(points (5, 3), dirs (3, 3))``: tube start, the three joints and the tip end (metres,
        model frame), and the unit direction of each bone.
    """
    dirs = np.stack([_direction(d.yaw[k], d.pitch[k]) for k in range(3)])
    pts = [np.asarray(d.base, dtype=np.float64)]
    for k in range(3):
        pts.append(pts[-1] + d.bones[k] * dirs[k])
    pts.insert(0, pts[0] - d.start * dirs[0])
    return dlp_to_xyz(np.stack(pts)) * MM, dlp_to_xyz(dirs)


def palm_normal_xyz() -> np.ndarray:
    """Unit palmar normal of the template, (3,) float64 in the model frame."""
    return dlp_to_xyz(np.array([0.0, 0.0, 1.0]))


def _digit_reference(d: Digit) -> np.ndarray:
    """The direction a digit's cross-section calls palmar (its pad side), model frame."""
    if d.name != "thumb":
        return palm_normal_xyz()
    s = THUMB_PAD_TOWARDS_LITTLE
    return dlp_to_xyz(np.array([0.0, -s, np.sqrt(1.0 - s * s)]))


def build_right_hand() -> dict[str, np.ndarray]:
    """Generate the right procedural hand as MANO-format arrays (float64, int64).

    Returns:
        dict with ``v_template (V, 3)`` metres, ``f (F, 3)``, ``J_regressor (16, V)``, ``J (16, 3)``,
        ``kintree_table (2, 16)``, ``weights (V, 16)``, ``posedirs (V, 3, 135)``,
        ``shapedirs (V, 3, 10)``, ``hands_components (45, 45)``, ``hands_mean (45,)``,
        ``tip_vertex_ids (5,)`` (thumb, index, middle, ring, little) and ``model_name``.
    """
    mesh = pm.MeshBuilder(num_joints=16)
    palm_ring_at_wrist = pm.add_palm(mesh, PALM_PROFILE, PALM_END, NUM_AROUND_PALM, PALM_SQUARENESS,
                                     _knuckle_offset, KNUCKLE_SLANT_FROM, dlp_to_xyz, MM)
    mesh.joint_rings[0] = palm_ring_at_wrist
    tips: dict[str, int] = {}
    for d in DIGITS:
        points, dirs = digit_skeleton(d)
        tips[d.name] = pm.add_digit(
            mesh, points, dirs, np.asarray(d.radii) * MM, d.flat, _digit_reference(d),
            d.joints, NUM_AROUND_FINGER, finger_id=1 + DIGITS.index(d),
        )
    arrays = mesh.finish()
    arrays["shapedirs"] = _shape_dirs(mesh)
    arrays["hands_mean"] = mean_pose(arrays["J"])
    arrays["hands_components"] = np.eye(45)
    arrays["tip_vertex_ids"] = np.array([tips[n] for n in ("thumb", "index", "middle", "ring", "little")],
                                        dtype=np.int64)
    arrays["model_name"] = np.array(MODEL_NAME)
    return arrays


def _knuckle_offset(lateral_mm: np.ndarray) -> np.ndarray:
    """Distal shift (mm) of the palm's end along the knuckle line, relative to the middle finger."""
    known_l = np.array([d.base[1] for d in DIGITS[:4]])
    known_d = np.array([d.base[0] for d in DIGITS[:4]])
    order = np.argsort(known_l)
    return np.interp(lateral_mm, known_l[order], known_d[order]) - DIGITS[1].base[0]


def _shape_dirs(mesh: pm.MeshBuilder) -> np.ndarray:
    """The 10 linear shape blend shapes, (V, 3, 10) metres per unit of beta."""
    v = mesh.vertices()
    centre, base, finger = mesh.ring_centre(), mesh.attach_point(), mesh.finger_id()
    along = mesh.along()
    on_digit = (finger > 0)[:, None]
    distal = (on_digit & (along >= 0)[:, None])
    dirs = np.zeros(v.shape + (10,))
    d_axis, l_axis = dlp_to_xyz(np.array([1.0, 0, 0])), dlp_to_xyz(np.array([0, 1.0, 0]))
    dirs[..., 0] = SHAPE_STEP[0] * v
    lengthen = np.where(distal, centre - base, 0.0)
    dirs[..., 1] = SHAPE_STEP[1] * lengthen
    dirs[..., 2] = SHAPE_STEP[2] * np.where(on_digit, v - centre, 0.0)
    # Palm width and length stretch the palm and carry each digit rigidly with its base.
    anchor = np.where(on_digit, base, v)
    dirs[..., 3] = SHAPE_STEP[3] * (anchor @ l_axis)[:, None] * l_axis
    dirs[..., 4] = SHAPE_STEP[4] * np.clip(anchor @ d_axis, 0.0, None)[:, None] * d_axis
    for k, name in enumerate(("thumb", "index", "middle", "ring", "little")):
        fid = 1 + [d.name for d in DIGITS].index(name)
        dirs[..., 5 + k] = SHAPE_STEP[5 + k] * np.where((finger == fid)[:, None], lengthen, 0.0)
    return dirs


def mean_pose(template_joints: np.ndarray) -> np.ndarray:
    """The relaxed mean pose (45,) axis-angle: each joint flexed about its flexion axis."""
    flex_axes, _, _ = joint_axes(template_joints, side="right")
    angles = np.zeros(15)
    for d in DIGITS:
        for k, j in enumerate(d.joints):
            angles[j - 1] = np.deg2rad(MEAN_POSE_DEG[d.name][k])
    return (flex_axes * angles[:, None]).reshape(45)


def mirror_model(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The left hand as the mirror image of a right one: x negated, faces flipped.

    Shape and pose directions mirror with the vertices; the mean pose and the pose PCA basis
    mirror as axis-angle poses (y and z components negated). Works on any MANO-format arrays.
    """
    out = dict(arrays)
    flip = np.array([-1.0, 1.0, 1.0])
    pose_sign = np.tile(np.array([1.0, -1.0, -1.0]), 15)
    out["v_template"] = arrays["v_template"] * flip
    out["J"] = arrays["J"] * flip
    out["f"] = arrays["f"][:, ::-1].copy()
    out["shapedirs"] = arrays["shapedirs"] * flip[None, :, None]
    # A pose-corrective column multiplies an entry (a, b) of some joint's R - I, and mirroring
    # maps R to M R M (M = diag(-1, 1, 1)): entry (a, b) changes sign by flip[a] * flip[b].
    entry_sign = np.tile(np.outer(flip, flip).reshape(9), arrays["posedirs"].shape[-1] // 9)
    out["posedirs"] = arrays["posedirs"] * flip[None, :, None] * entry_sign
    out["hands_mean"] = arrays["hands_mean"] * pose_sign
    out["hands_components"] = arrays["hands_components"] * pose_sign
    return out


def build(side: str) -> dict[str, np.ndarray]:
    """Model arrays for ``side`` ("right" or "left")."""
    right = build_right_hand()
    return right if side == "right" else mirror_model(right)


def write_assets(out_dir: Path = ASSET_DIR) -> list[Path]:
    """Write both sides as compressed ``.npz`` (no pickled objects) and return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    right = build_right_hand()
    paths = []
    for side, arrays in (("right", right), ("left", mirror_model(right))):
        path = out_dir / ASSET_FILES[side]
        np.savez_compressed(path, **arrays)
        paths.append(path)
        log.info("wrote %s (%d vertices, %d faces)", path, len(arrays["v_template"]), len(arrays["f"]))
    return paths


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    write_assets()
