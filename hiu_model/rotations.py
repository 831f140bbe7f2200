"""Rotation conversions used by the mesh regressor and its losses (pure torch, batched).

The regressor predicts rotations in the continuous 6D representation (Zhou et al., CVPR 2019:
the first two columns of the rotation matrix), because axis-angle and quaternions have
discontinuities that slow regression down. MANO wants axis-angle, so the model converts 6D ->
matrix -> axis-angle. The matrix -> axis-angle step goes through a quaternion and a series
expansion near the identity, so that its gradient stays finite at the identity: the regressor
starts exactly there (the mean pose).

Conventions: every matrix is (..., 3, 3) and rotates column vectors (``y = R @ x``); axis-angle
vectors are (..., 3) with the angle in radians as their length; 6D vectors are (..., 6) holding
the first column of R in ``[..., :3]`` and the second in ``[..., 3:]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IDENTITY_6D = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
"""The 6D vector of the identity rotation."""

# Below this squared half-angle sine the axis-angle is taken from a series expansion: it is
# exact to float32 precision there and has a finite gradient at zero.
_SMALL_SQUARED = 1e-8


def rot6d_to_matrix(rot6d: torch.Tensor) -> torch.Tensor:
    """6D rotation representation (..., 6) -> rotation matrices (..., 3, 3) by Gram-Schmidt.

    The first column is the normalised first 3-vector; the second is the second 3-vector made
    orthogonal to it and normalised; the third is their cross product. Any 6D input with two
    non-parallel halves gives a proper rotation.
    """
    first = F.normalize(rot6d[..., :3], dim=-1)
    second = rot6d[..., 3:] - (first * rot6d[..., 3:]).sum(-1, keepdim=True) * first
    second = F.normalize(second, dim=-1)
    third = torch.cross(first, second, dim=-1)
    return torch.stack([first, second, third], dim=-1)


def matrix_to_rot6d(matrix: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (..., 3, 3) -> 6D vectors (..., 6) (the first two columns)."""
    return torch.cat([matrix[..., :, 0], matrix[..., :, 1]], dim=-1)


def matrix_to_quaternion(matrix: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (..., 3, 3) -> unit quaternions (..., 4) as (w, x, y, z) with w >= 0.

    Each of the four components has its own closed form that divides by that component; the
    one with the largest magnitude is used, which keeps the division well conditioned for every
    rotation (Shepperd's method).
    """
    m = matrix
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    # 4 * q_i^2 for each component; clamped so that the square root has a finite gradient in
    # the candidates that are not selected.
    four_sq = torch.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22,
                           1 - m00 + m11 - m22, 1 - m00 - m11 + m22], dim=-1)
    two_abs = torch.sqrt(four_sq.clamp_min(1e-8))
    # Row i: 4 * q_i * q, from the diagonal term of i and the (anti)symmetric off-diagonals.
    candidates = torch.stack([
        torch.stack([two_abs[..., 0] ** 2, m21 - m12, m02 - m20, m10 - m01], dim=-1),
        torch.stack([m21 - m12, two_abs[..., 1] ** 2, m10 + m01, m02 + m20], dim=-1),
        torch.stack([m02 - m20, m10 + m01, two_abs[..., 2] ** 2, m12 + m21], dim=-1),
        torch.stack([m10 - m01, m20 + m02, m21 + m12, two_abs[..., 3] ** 2], dim=-1),
    ], dim=-2)
    candidates = candidates / (2.0 * two_abs[..., None])
    best = two_abs.argmax(dim=-1)
    index = best[..., None, None].expand(*best.shape, 1, 4)
    quaternion = torch.gather(candidates, -2, index).squeeze(-2)
    quaternion = F.normalize(quaternion, dim=-1)
    return torch.where(quaternion[..., :1] < 0, -quaternion, quaternion)


def quaternion_to_axis_angle(quaternion: torch.Tensor) -> torch.Tensor:
    """Unit quaternions (..., 4) as (w, x, y, z) -> axis-angle (..., 3), angle in [0, pi].

    Uses ``angle = 2 atan2(|v|, w)``; near the identity ``atan(t)/t`` is replaced by its series
    ``1 - t^2/3`` so that the value and gradient are finite at exactly zero rotation.
    """
    quaternion = torch.where(quaternion[..., :1] < 0, -quaternion, quaternion)
    w, v = quaternion[..., :1], quaternion[..., 1:]
    sin_sq = (v * v).sum(-1, keepdim=True)
    sin_half = torch.sqrt(sin_sq.clamp_min(_SMALL_SQUARED))
    exact = 2.0 * torch.atan2(sin_half, w) / sin_half
    w_safe = w.clamp_min(1e-6)
    series = 2.0 / w_safe * (1.0 - sin_sq / (3.0 * w_safe * w_safe))
    factor = torch.where(sin_sq > _SMALL_SQUARED, exact, series)
    return v * factor


def matrix_to_axis_angle(matrix: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (..., 3, 3) -> axis-angle vectors (..., 3), angle in [0, pi]."""
    return quaternion_to_axis_angle(matrix_to_quaternion(matrix))


def axis_angle_to_matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    """Axis-angle vectors (..., 3), radians -> rotation matrices (..., 3, 3) (Rodrigues).

    Near zero angle the coefficients ``sin(a)/a`` and ``(1 - cos a)/a^2`` use their series, so
    the gradient is finite at the identity.
    """
    angle_sq = (axis_angle * axis_angle).sum(-1, keepdim=True)[..., None]
    angle = torch.sqrt(angle_sq.clamp_min(1e-12))
    small = angle_sq < 1e-6
    sin_coef = torch.where(small, 1.0 - angle_sq / 6.0, torch.sin(angle) / angle)
    cos_coef = torch.where(small, 0.5 - angle_sq / 24.0, (1.0 - torch.cos(angle)) / angle_sq.clamp_min(1e-12))
    x, y, z = axis_angle.unbind(-1)
    zero = torch.zeros_like(x)
    skew = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(*axis_angle.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device).expand_as(skew)
    return eye + sin_coef * skew + cos_coef * (skew @ skew)


def rot6d_to_axis_angle(rot6d: torch.Tensor) -> torch.Tensor:
    """6D rotations (..., 6) -> axis-angle (..., 3), radians."""
    return matrix_to_axis_angle(rot6d_to_matrix(rot6d))
