"""Mesh building blocks of the procedural hand: vertex-ring tubes with skinning metadata.

A tube is a sequence of rings (a superellipse cross-section around a centre line) closed by a
pole at each end. Faces are wound so their normals point outwards (counter-clockwise seen from
outside). Every vertex carries the metadata the shape blend shapes need: the centre of its ring,
the point its digit is attached at, its digit id (0 for the palm) and its arc position along the
digit (metres from the digit's first joint; negative inside the palm).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hiu_data.skeleton import MANO_PARENTS

CAP_ANGLES_DEG: tuple[float, ...] = (28.0, 52.0, 72.0)
CAP_LENGTH = 1.08
"""Fingertip cap length over its radius (pads are a little longer than a hemisphere)."""


def smoothstep(t: np.ndarray) -> np.ndarray:
    """3t^2 - 2t^3 on t clipped to [0, 1], elementwise (same shape as ``t``, float64)."""
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def superellipse(n: int, squareness: float) -> tuple[np.ndarray, np.ndarray]:
    """(n,) unit cross-section coordinates (c, s); squareness 1 gives a circle."""
    theta = 2.0 * np.pi * np.arange(n) / n
    c, s = np.cos(theta), np.sin(theta)
    return np.sign(c) * np.abs(c) ** squareness, np.sign(s) * np.abs(s) ** squareness


class MeshBuilder:
    """Accumulates vertices, faces, skinning weights and per-vertex metadata."""

    def __init__(self, num_joints: int) -> None:
        self.num_joints = num_joints
        self._v: list[np.ndarray] = []
        self._f: list[np.ndarray] = []
        self._w: list[np.ndarray] = []
        self._centre: list[np.ndarray] = []
        self._attach: list[np.ndarray] = []
        self._finger: list[np.ndarray] = []
        self._along: list[np.ndarray] = []
        self.count = 0
        self.joint_rings: dict[int, np.ndarray] = {}

    def add(self, v: np.ndarray, w: np.ndarray, centre: np.ndarray, attach: np.ndarray,
            finger: int, along: np.ndarray) -> np.ndarray:
        """Append vertices (n, 3) with weights (n, J) and metadata; return their ids (n,)."""
        n = len(v)
        ids = np.arange(self.count, self.count + n)
        self._v.append(v)
        self._w.append(w)
        self._centre.append(centre)
        self._attach.append(np.broadcast_to(attach, (n, 3)))
        self._finger.append(np.full(n, finger))
        self._along.append(np.broadcast_to(along, (n,)))
        self.count += n
        return ids

    def add_faces(self, f: np.ndarray) -> None:
        """Append (n, 3) triangles (vertex ids)."""
        self._f.append(np.asarray(f, dtype=np.int64).reshape(-1, 3))

    def vertices(self) -> np.ndarray:
        """(V, 3) template vertices, metres, model frame."""
        return np.concatenate(self._v)

    def ring_centre(self) -> np.ndarray:
        """(V, 3) centre of each vertex's ring (a pole's: the ring it closes), metres."""
        return np.concatenate(self._centre)

    def attach_point(self) -> np.ndarray:
        """(V, 3) first joint of each vertex's digit (zeros for the palm), metres."""
        return np.concatenate(self._attach)

    def finger_id(self) -> np.ndarray:
        """(V,) int digit id: 0 palm, 1.. the digits in the order they were added."""
        return np.concatenate(self._finger)

    def along(self) -> np.ndarray:
        """(V,) arc position along the digit from its first joint, metres (negative in the palm)."""
        return np.concatenate(self._along)

    def finish(self) -> dict[str, np.ndarray]:
        """MANO-format arrays: v_template, f, weights, J_regressor, J, kintree_table, posedirs."""
        v = self.vertices()
        regressor = np.zeros((self.num_joints, len(v)))
        for j, ring in self.joint_rings.items():
            regressor[j, ring] = 1.0 / len(ring)
        joints = np.stack([v[self.joint_rings[j]].mean(axis=0) for j in range(self.num_joints)])
        kintree = np.stack([np.array(MANO_PARENTS), np.arange(self.num_joints)]).astype(np.int64)
        return {
            "v_template": v,
            "f": np.concatenate(self._f),
            "weights": np.concatenate(self._w),
            "J_regressor": regressor,
            "J": joints,
            "kintree_table": kintree,
            "posedirs": np.zeros((len(v), 3, 9 * (self.num_joints - 1))),
        }


def tube_faces(ring_ids: list[np.ndarray], start_pole: int, end_pole: int) -> np.ndarray:
    """Outward-wound triangles of a closed tube: quads between rings, fans at both poles.

    ``ring_ids``: vertex indices of each ring, (n,) each, first ring first; ``start_pole`` and
    ``end_pole``: the vertices closing the ends. Returns (F, 3) vertex indices. Assumes ring
    vertices go counter-clockwise around the tube's forward direction.
    """
    faces = []
    n = len(ring_ids[0])
    nxt = np.roll(np.arange(n), -1)
    for a, b in zip(ring_ids[:-1], ring_ids[1:]):
        faces.append(np.stack([a, a[nxt], b], axis=1))
        faces.append(np.stack([a[nxt], b[nxt], b], axis=1))
    first, last = ring_ids[0], ring_ids[-1]
    faces.append(np.stack([first[nxt], first, np.full(n, start_pole)], axis=1))
    faces.append(np.stack([last, last[nxt], np.full(n, end_pole)], axis=1))
    return np.concatenate(faces)


def _ring(centre: np.ndarray, e1: np.ndarray, e2: np.ndarray, half_w: float, half_t: float,
          cs: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """(n, 3) ring points: centre + half_w * c * e1 + half_t * s * e2."""
    c, s = cs
    return centre + half_w * c[:, None] * e1 + half_t * s[:, None] * e2


def _frame(direction: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cross-section axes (e1, e2): e2 = reference made orthogonal to direction, e1 = e2 x dir."""
    e2 = reference - np.dot(reference, direction) * direction
    e2 = e2 / np.linalg.norm(e2)
    return np.cross(e2, direction), e2


def add_palm(mesh: MeshBuilder, profile: tuple[tuple[float, float, float, float, float], ...], end_d: float, n_around: int, squareness: float,
             knuckle_offset: Callable[[np.ndarray], np.ndarray], slant_from: float,
             to_xyz: Callable[[np.ndarray], np.ndarray], unit: float) -> np.ndarray:
    """Add the palm slab; return the vertex ids of its ring at the wrist joint (D = 0).

    Args:
        profile: rows (D, half-width, half-thickness, L centre, P centre) in anatomical mm.
        end_d: D of the distal pole, mm.
        knuckle_offset: (n,) lateral mm -> distal shift mm of the palm end along the knuckles.
        slant_from: rings distal of this D blend into the knuckle shift.
        to_xyz: anatomical (D, L, P) -> model frame; ``unit`` mm -> metres.
    """
    cs = superellipse(n_around, squareness)
    last_d = profile[-1][0]
    rings, wrist = [], None
    w_root = np.zeros(mesh.num_joints)
    w_root[0] = 1.0
    for d_mm, hw, ht, lc, pc in profile:
        # Anatomical ring: c across L, s across P (the -s side is dorsal); reversed L keeps the
        # ring counter-clockwise about +D once mapped to the model frame.
        lat = lc - hw * cs[0]
        pal = pc + ht * cs[1]
        blend = smoothstep(np.asarray((d_mm - slant_from) / (last_d - slant_from)))
        dd = d_mm + blend * knuckle_offset(lat)
        pts = to_xyz(np.stack([dd, lat, pal], axis=1)) * unit
        centre = to_xyz(np.array([d_mm, lc, pc])) * unit
        ids = mesh.add(pts, np.tile(w_root, (n_around, 1)), np.tile(centre, (n_around, 1)),
                       np.zeros(3), 0, np.zeros(n_around))
        rings.append(ids)
        if d_mm == 0.0:
            wrist = ids
    first, last = profile[0], profile[-1]
    start = to_xyz(np.array([first[0] - 0.5 * first[2], first[3], first[4]])) * unit
    end_l = last[3]
    end = to_xyz(np.array([end_d + float(knuckle_offset(np.array([end_l]))[0]), end_l, last[4]])) * unit
    sp = mesh.add(start[None], w_root[None], start[None], np.zeros(3), 0, np.zeros(1))[0]
    ep = mesh.add(end[None], w_root[None], end[None], np.zeros(3), 0, np.zeros(1))[0]
    mesh.add_faces(tube_faces(rings, sp, ep))
    if wrist is None:
        raise ValueError("palm profile needs a ring at D = 0 for the wrist joint")
    return wrist


Station = tuple[float, np.ndarray, np.ndarray, float, "int | None", float]


def _digit_stations(points: np.ndarray, dirs: np.ndarray, radii: np.ndarray) -> list[Station]:
    """Rings of a digit as (arc s, centre, direction, radius, joint slot or None, cap fraction)."""
    seg_len = np.linalg.norm(np.diff(points, axis=0), axis=1)  # start->j1, j1->j2, j2->j3, j3->end
    seg_dir = np.stack([dirs[0], dirs[0], dirs[1], dirs[2]])
    knots = np.array([-seg_len[0], 0.0, seg_len[1], seg_len[1] + seg_len[2], seg_len[1:].sum()])
    r_tip = radii[4]
    cap_len = CAP_LENGTH * r_tip
    cap_base = knots[4] - cap_len
    # knots: tube start, joint 1 (s = 0), joint 2, joint 3, tip end.
    s_list: list[tuple[float, int | None]] = [(knots[0], None), (0.55 * knots[0], None), (0.0, 0)]
    s_list += [(knots[2] * k / 5, None) for k in range(1, 5)] + [(knots[2], 1)]
    s_list += [(knots[2] + (knots[3] - knots[2]) * k / 3, None) for k in range(1, 3)] + [(knots[3], 2)]
    s_list += [(knots[3] + (cap_base - knots[3]) * k / 3, None) for k in range(1, 4)]
    stations = []
    radius_knots = np.array([knots[0], 0.0, knots[2], knots[3], cap_base])
    for s, slot in s_list:
        seg = int(np.clip(np.searchsorted(knots, s, side="right") - 1, 0, 3))
        centre = points[seg] + (s - knots[seg]) * seg_dir[seg]
        direction = seg_dir[seg]
        if slot is not None and slot > 0:
            direction = seg_dir[slot] + seg_dir[slot + 1]
            direction = direction / np.linalg.norm(direction)
        stations.append((s, centre, direction, float(np.interp(s, radius_knots, radii)), slot, 0.0))
    base_centre = stations[-1][1]
    for ang in np.deg2rad(CAP_ANGLES_DEG):
        stations.append((cap_base + cap_len * np.sin(ang), base_centre + cap_len * np.sin(ang) * dirs[2],
                         dirs[2], r_tip * np.cos(ang), None, float(ang)))
    return stations


def add_digit(mesh: MeshBuilder, points: np.ndarray, dirs: np.ndarray, radii: np.ndarray,
              flat: float, reference: np.ndarray, joints: tuple[int, int, int], n_around: int,
              finger_id: int) -> int:
    """Add one finger or the thumb as a capped tube; return the id of its fingertip vertex.

    Args:
        points: (5, 3) tube start, the three joints, the tip end; metres, model frame.
        dirs: (3, 3) unit direction of each bone, model frame.
        radii: (5,) half-width at the start, the three joints and the tip, metres.
        flat: thickness / width of the cross-section.
        reference: (3,) the digit's pad direction, model frame.
        joints: MANO joint ids of the three joints, base first.
    """
    cs = superellipse(n_around, 1.0)
    stations = _digit_stations(points, dirs, radii)
    joint_s = np.array([0.0, stations[7][0], stations[10][0]])
    halfwidth = 0.5 * np.array([radii[1], radii[2], radii[3]])
    owners = (0,) + tuple(joints)
    attach = points[1]
    rings = []
    for s, centre, direction, r, slot, _ in stations:
        ramp = smoothstep((s - joint_s + halfwidth) / (2.0 * halfwidth))
        w = np.zeros(mesh.num_joints)
        cum = np.concatenate([[1.0], ramp, [0.0]])
        for k, owner in enumerate(owners):
            w[owner] += cum[k] - cum[k + 1]
        e1, e2 = _frame(direction, reference)
        pts = _ring(centre, e1, e2, r, flat * r, cs)
        ids = mesh.add(pts, np.tile(w, (n_around, 1)), np.tile(centre, (n_around, 1)), attach, finger_id,
                       np.full(n_around, s))
        if slot is not None:
            mesh.joint_rings[joints[slot]] = ids
        rings.append((ids, w))
    first_s, first_c, first_d, first_r = stations[0][:4]
    start = first_c - 0.5 * first_r * first_d
    tip = points[4]
    sp = mesh.add(start[None], rings[0][1][None], first_c[None], attach, finger_id, np.array([first_s]))[0]
    cap_base = stations[-len(CAP_ANGLES_DEG) - 1][1]
    ep = mesh.add(tip[None], rings[-1][1][None], cap_base[None], attach, finger_id,
                  np.array([stations[-1][0]]))[0]
    mesh.add_faces(tube_faces([ids for ids, _ in rings], sp, ep))
    return int(ep)
