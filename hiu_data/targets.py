"""Training targets: Gaussian heat-maps, part orientation fields (POF) and masks (numpy).

Coordinates are continuous map pixels, the HAND21 convention at the map's resolution: origin
at the top-left corner, x right, y down, and map pixel ``(row i, column j)`` has its centre at
``(j + 0.5, i + 0.5)``. Crop pixel coordinates become map coordinates by multiplying with
``map_size / input_size`` (no half-pixel shift: continuous coordinates scale).

Everything is vectorised over joints, bones and pixels; there is no Python loop over pixels
and none over joints or bones either. ``torch`` is imported only inside :func:`soft_argmax`.

Decisions where the specification is silent:

- Heat-maps are untruncated Gaussians (computed separably as an outer product), so that the
  log-parabola refinement of :func:`decode_heatmaps` is exact on targets.
- A joint is dropped (zero map, weight 0) when it is missing or its centre lies more than
  ``HEATMAP_REACH`` sigmas outside the map: nothing of its Gaussian would be visible.
- The POF band is a capsule: the pixels whose centre lies within ``band`` map pixels of the
  bone *segment* (rounded at the joints), so strongly foreshortened bones still mark a disc
  that carries their z. Bones shorter than ``MIN_BONE_PIXELS`` in 2D have no direction and
  get weight 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from scipy import ndimage

from hiu_data.skeleton import BONES, NUM_BONES

if TYPE_CHECKING:  # pragma: no cover
    import torch

HEATMAP_REACH: float = 3.0
"""A joint whose centre is more than this many sigmas outside the map gets weight 0."""
MIN_BONE_PIXELS: float = 1e-3
"""2D bones shorter than this (map pixels) have no direction: their POF weights are 0."""
DEFAULT_SOFTARGMAX_BETA: float = 20.0
"""Default inverse temperature of :func:`soft_argmax`, chosen for heat-maps with peak 1.

``softmax(beta * G)`` of a Gaussian with peak 1 and sigma ``s`` is close to a Gaussian of
sigma ``s / sqrt(beta)`` around the peak. beta = 20 keeps it wider than half a pixel for
sigma >= 2.2 (no snapping to pixel centres) while the flat background of a 64 x 64 map
(weight exp(0) per pixel against exp(20) at the peak) moves the result by under 0.01 px.
"""

_BONE_PARENTS = np.array([parent for parent, _ in BONES], dtype=np.int64)
_BONE_CHILDREN = np.array([child for _, child in BONES], dtype=np.int64)
_BONE_ENDS = np.stack([_BONE_PARENTS, _BONE_CHILDREN], axis=1)
"""(NUM_BONES, 2) joint indices (parent, child) of every bone."""


def pixel_centres(n: int) -> np.ndarray:
    """(n,) float32 continuous coordinates of the centres of ``n`` pixels: 0.5, 1.5, ..."""
    return np.arange(n, dtype=np.float32) + np.float32(0.5)


def encode_heatmaps(keypoints: np.ndarray, valid: np.ndarray, size: tuple[int, int],
                    sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian heat-maps with sub-pixel centres.

    Args:
        keypoints: (J, 2) float, map pixels (continuous, see the module docstring); NaN allowed
            where ``valid`` is False.
        valid: (J,) bool, which joints are labelled.
        size: (H, W) of the maps in pixels.
        sigma: Gaussian standard deviation in map pixels.
    Returns:
        heatmaps: (J, H, W) float32, ``exp(-d^2 / (2 sigma^2))`` with ``d`` the distance from
            the pixel centre to the keypoint; peak 1 at the keypoint (not rounded); all zero
            for dropped joints.
        weights: (J,) float32, 1 for kept joints, 0 for missing joints and for centres more
            than ``HEATMAP_REACH * sigma`` outside the map.
    """
    height, width = int(size[0]), int(size[1])
    kp = np.asarray(keypoints, dtype=np.float32).reshape(-1, 2)
    reach = HEATMAP_REACH * sigma
    # Comparisons with NaN are False, so missing coordinates drop out here as well.
    keep = np.asarray(valid, dtype=bool).reshape(-1) & (kp > -reach).all(axis=1)
    keep &= (kp < np.array([width + reach, height + reach], np.float32)).all(axis=1)
    weights = keep.astype(np.float32)
    centres = np.where(keep[:, None], kp, np.float32(0.0))
    scale = np.float32(-0.5 / (sigma * sigma))
    gx = pixel_centres(width)[None, :] - centres[:, :1]
    gx = np.exp(gx * gx * scale) * weights[:, None]
    gy = pixel_centres(height)[None, :] - centres[:, 1:]
    gy = np.exp(gy * gy * scale)
    return gy[:, :, None] * gx[:, None, :], weights


def decode_heatmaps(heatmaps: np.ndarray, smoothing: float = 0.0, eps: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints from heat-maps: arg-max plus sub-pixel refinement, optionally of the smoothed maps.

    The refinement fits a parabola to the logarithm of the peak and its two neighbours along
    each axis. The log of a Gaussian is a parabola, so this is exact on :func:`encode_heatmaps`
    targets; on predictions it is the usual Gaussian-peak estimate. Offsets are kept within
    half a pixel and skipped on the border, at non-positive peaks, and where the log-profile is
    not concave.

    ``smoothing`` blurs each map with a Gaussian of that standard deviation first (DARK's
    distribution modulation, Zhang et al., CVPR 2020). A Gaussian blurred by a Gaussian is a
    Gaussian about the same centre, so targets still decode exactly (away from the border); a
    predicted map with a narrow spike beside a broad bump, or a ragged peak, decodes to where its
    mass is rather than to its single highest pixel.

    Args:
        heatmaps: (J, H, W) or (B, J, H, W) float.
        smoothing: standard deviation of the blur in map pixels; 0 = none.
    Returns:
        keypoints: (..., J, 2) float32 map pixels (continuous coordinates).
        peaks: (..., J) float32 maximum of each map as given (not smoothed): the confidence.
    """
    hm = np.asarray(heatmaps, dtype=np.float32)
    lead, (height, width) = hm.shape[:-2], hm.shape[-2:]
    peaks = hm.reshape(-1, height * width).max(axis=1)
    if smoothing > 0:
        hm = ndimage.gaussian_filter(hm, sigma=(0.0,) * len(lead) + (smoothing, smoothing))
    flat = hm.reshape(-1, height * width)
    rows = np.arange(flat.shape[0])
    index = flat.argmax(axis=1)
    positive = flat[rows, index] > 0
    iy, ix = np.divmod(index, width)

    def log_at(y: np.ndarray, x: np.ndarray) -> np.ndarray:
        return np.log(np.maximum(flat[rows, y * width + x], eps))

    centre = log_at(iy, ix)
    offsets = []
    for coord, limit, step in ((ix, width, (0, 1)), (iy, height, (1, 0))):
        inner = (coord > 0) & (coord < limit - 1) & positive
        lo_y, lo_x = np.clip(iy - step[0], 0, height - 1), np.clip(ix - step[1], 0, width - 1)
        hi_y, hi_x = np.clip(iy + step[0], 0, height - 1), np.clip(ix + step[1], 0, width - 1)
        lo, hi = log_at(lo_y, lo_x), log_at(hi_y, hi_x)
        curvature = lo - 2 * centre + hi
        ok = inner & (curvature < 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            off = np.where(ok, 0.5 * (lo - hi) / np.where(ok, curvature, -1.0), 0.0)
        offsets.append(np.clip(off, -0.5, 0.5))
    keypoints = np.stack([ix + 0.5 + offsets[0], iy + 0.5 + offsets[1]], axis=-1).astype(np.float32)
    return keypoints.reshape(lead + (2,)), peaks.reshape(lead)


def soft_argmax(heatmaps: "torch.Tensor", beta: float = DEFAULT_SOFTARGMAX_BETA) -> "torch.Tensor":
    """Differentiable keypoints from heat-maps: the integral of the paper's Eq. 1.

    ``J_k = sum_p p * exp(beta H_k(p)) / sum_p exp(beta H_k(p))`` over the pixel centres ``p``
    (a spatial softmax, then the expected pixel-centre coordinate).

    Args:
        heatmaps: (B, J, H, W) tensor (any float dtype, any device).
        beta: inverse temperature; see :data:`DEFAULT_SOFTARGMAX_BETA`.
    Returns:
        (B, J, 2) tensor of map-pixel coordinates (x, y), continuous convention.
    """
    import torch

    batch, joints, height, width = heatmaps.shape
    prob = torch.softmax(beta * heatmaps.reshape(batch, joints, height * width), dim=-1)
    prob = prob.reshape(batch, joints, height, width)
    xs = torch.arange(width, dtype=prob.dtype, device=prob.device) + 0.5
    ys = torch.arange(height, dtype=prob.dtype, device=prob.device) + 0.5
    x = (prob.sum(dim=2) * xs).sum(dim=-1)
    y = (prob.sum(dim=3) * ys).sum(dim=-1)
    return torch.stack([x, y], dim=-1)


def bone_directions(keypoints_2d: np.ndarray, keypoints_3d: np.ndarray | None,
                    valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-bone POF values: the unit 2D direction and the z of the unit 3D direction.

    Args:
        keypoints_2d: (J, 2) float pixels (any resolution; directions are scale-free).
        keypoints_3d: (J, 3) float metres, camera frame (x right, y down, z forward), or None.
        valid: (J,) bool, which 2D joints are labelled.
    Returns:
        directions: (NUM_BONES, 3) float32 ``[dx, dy, dz]`` parent -> child, with ``(dx, dy)``
            of unit length and ``dz`` in [-1, 1]; zeros where the weight is 0.
        weights: (NUM_BONES, 3) float32: the 2D weight (both endpoints labelled, 2D length at
            least ``MIN_BONE_PIXELS``) on ``dx, dy``; on ``dz`` additionally both 3D endpoints
            finite and distinct.
    """
    kp = np.where(np.asarray(valid, dtype=bool).reshape(-1, 1), np.asarray(keypoints_2d, dtype=np.float64).reshape(-1, 2),
                  np.nan)
    ends = kp[_BONE_ENDS]
    vec = ends[:, 1] - ends[:, 0]  # NaN for bones with a missing endpoint
    length = np.hypot(vec[:, 0], vec[:, 1])
    ok2d = length >= MIN_BONE_PIXELS
    directions = np.zeros((NUM_BONES, 3), dtype=np.float64)
    np.divide(vec, length[:, None], out=directions[:, :2], where=ok2d[:, None])
    weights = np.zeros((NUM_BONES, 3), dtype=np.float32)
    weights[:, 0] = weights[:, 1] = ok2d
    if keypoints_3d is not None:
        ends3 = np.asarray(keypoints_3d, dtype=np.float64).reshape(-1, 3)[_BONE_ENDS]
        vec3 = ends3[:, 1] - ends3[:, 0]
        norm3 = np.sqrt(np.einsum("ij,ij->i", vec3, vec3))
        ok3d = ok2d & (norm3 > 1e-9)
        np.divide(vec3[:, 2], norm3, out=directions[:, 2], where=ok3d)
        weights[:, 2] = ok3d
    return directions.astype(np.float32), weights


def encode_pof(keypoints_2d: np.ndarray, keypoints_3d: np.ndarray | None, valid: np.ndarray,
               size: tuple[int, int], band: float) -> tuple[np.ndarray, np.ndarray]:
    """Part orientation fields (paper Eq. 2): per bone, 3 channels on a band around the bone.

    Args:
        keypoints_2d: (J, 2) float, map pixels (continuous convention).
        keypoints_3d: (J, 3) float metres, camera frame of the *same* (cropped, rotated,
            mirrored) view, or None when the sample has no 3D.
        valid: (J,) bool, which 2D joints are labelled.
        size: (H, W) of the maps.
        band: half-width of the band in map pixels: a pixel is on bone ``b`` when its centre
            is within ``band`` of the segment parent -> child.
    Returns:
        pof: (3 * NUM_BONES, H, W) float32; bone ``b`` uses channels ``3b, 3b+1, 3b+2`` =
            ``[dx, dy, dz]`` (unit 2D direction, z of the unit 3D direction) on its band, zero
            elsewhere.
        weights: (3 * NUM_BONES,) float32 per channel (see :func:`bone_directions`): the z
            channels are 0 without 3D so a loss can mask them out.
    """
    height, width = int(size[0]), int(size[1])
    directions, weights = bone_directions(keypoints_2d, keypoints_3d, valid)
    pof = np.zeros(NUM_BONES * 3 * height * width, dtype=np.float32)
    bones = np.flatnonzero(weights[:, 0])
    if len(bones):
        ends = np.asarray(keypoints_2d, dtype=np.float32).reshape(-1, 2)[_BONE_ENDS[bones]]  # (n, 2, 2)
        # Each bone is evaluated on its own box (the pixels whose centre can be within the band),
        # all boxes padded to one common size so that every bone is done in the same arrays.
        lo = np.maximum(np.ceil(ends.min(axis=1) - (band + 0.5)), 0).astype(np.int64)
        hi = np.minimum(np.floor(ends.max(axis=1) + (band + 0.5)), (width, height)).astype(np.int64)
        extent = (hi - lo).max(axis=0)  # at most the map: bones reaching far outside stay cheap
        if extent.min() > 0:
            cols = lo[:, :1] + np.arange(extent[0])  # (n, w) pixel columns of each box
            rows = lo[:, 1:] + np.arange(extent[1])  # (n, h)
            mid = ends.mean(axis=1)
            dirs = directions[bones]
            dx = cols + np.float32(0.5) - mid[:, :1]
            dy = rows + np.float32(0.5) - mid[:, 1:]
            along = np.abs((dy * dirs[:, 1:2])[:, :, None] + (dx * dirs[:, :1])[:, None, :])
            along -= np.float32(0.5) * np.hypot(*(ends[:, 1] - ends[:, 0]).T)[:, None, None]
            np.maximum(along, 0, out=along)
            across = (dx * dirs[:, 1:2])[:, None, :] - (dy * dirs[:, :1])[:, :, None]
            inside = across * across + along * along <= np.float32(band * band)
            inside &= (cols < width)[:, None, :] & (rows < height)[:, :, None]
            which, i, j = np.nonzero(inside)
            plane = height * width
            flat = bones[which] * (3 * plane) + rows[which, i] * width + cols[which, j]
            values = dirs[which].astype(np.float32)
            pof[flat] = values[:, 0]
            pof[flat + plane] = values[:, 1]
            pof[flat + 2 * plane] = values[:, 2]
    return pof.reshape(3 * NUM_BONES, height, width), weights.reshape(-1)


def decode_pof(pof: np.ndarray, keypoints_2d: np.ndarray, samples: int = 9) -> np.ndarray:
    """Bone directions back from a POF map, read along each bone's 2D segment.

    Each bone's three channels are averaged over ``samples`` points spread over the inner 80 %
    of its segment (nearest pixel); the 2D part is then renormalised to unit length.

    Args:
        pof: (3 * NUM_BONES, H, W) float, channels as in :func:`encode_pof`.
        keypoints_2d: (J, 2) float map pixels of the joints (e.g. decoded heat-maps).
    Returns:
        (NUM_BONES, 3) float32 ``[dx, dy, dz]``; NaN for bones with a missing endpoint or
        nothing but zeros under their segment.
    """
    maps = np.asarray(pof, dtype=np.float32)
    height, width = maps.shape[-2:]
    maps = maps.reshape(NUM_BONES, 3, height, width)
    kp = np.asarray(keypoints_2d, dtype=np.float32).reshape(-1, 2)
    t = np.linspace(0.1, 0.9, samples, dtype=np.float32)
    start, end = kp[_BONE_PARENTS], kp[_BONE_CHILDREN]
    points = start[:, None, :] + t[None, :, None] * (end - start)[:, None, :]  # (NB, S, 2)
    finite = np.isfinite(points).all(axis=(1, 2))
    points = np.nan_to_num(points)
    col = np.clip(np.floor(points[..., 0]).astype(np.int64), 0, width - 1)
    row = np.clip(np.floor(points[..., 1]).astype(np.int64), 0, height - 1)
    bones = np.arange(NUM_BONES)[:, None]
    values = maps[bones[:, :, None], np.arange(3)[None, None, :], row[:, :, None], col[:, :, None]]  # (NB, S, 3)
    mean = values.mean(axis=1)
    norm = np.hypot(mean[:, 0], mean[:, 1])
    ok = finite & (norm > 1e-6)
    out = np.full((NUM_BONES, 3), np.nan, dtype=np.float32)
    out[ok, :2] = mean[ok, :2] / norm[ok, None]
    out[ok, 2] = mean[ok, 2]
    return out


def to_cv2_affine(affine: np.ndarray) -> np.ndarray:
    """Convert a 2x3 affine between continuous coordinates into OpenCV's convention.

    OpenCV puts pixel centres at integer coordinates; hiu puts them at +0.5. The same map in
    OpenCV's coordinates is ``T(-0.5) A T(+0.5)``.

    Args:
        affine: (2, 3) float mapping source continuous pixels to destination continuous pixels.
    Returns:
        (2, 3) float64 for ``cv2.warpAffine`` (which takes the forward map).
    """
    a = np.asarray(affine, dtype=np.float64).reshape(2, 3)
    out = a.copy()
    out[:, 2] = a[:, 2] + a[:, :2] @ np.array([0.5, 0.5]) - 0.5
    return out


def mask_target(mask: np.ndarray | dict[str, Any], size: tuple[int, int],
                affine: np.ndarray | None = None) -> np.ndarray:
    """A hand mask resampled to the network's output resolution.

    Args:
        mask: full-image hand mask, an (H, W) array (nonzero = hand) or a COCO RLE dict.
        size: (h, w) of the target.
        affine: (2, 3) map from continuous image pixels to continuous target pixels (crop,
            rotation, mirroring and resize folded together); None resizes the whole image.
    Returns:
        (h, w) float32 of 0 / 1: bilinear sample of the mask at each target pixel centre,
        thresholded at one half; outside the image is background.
    """
    if isinstance(mask, dict):
        from hiu_data.io import rle

        source = rle.decode(mask)  # uint8 0 / 1 already, column-major
    else:
        source = (np.asarray(mask) != 0).astype(np.uint8)
    height, width = int(size[0]), int(size[1])
    if affine is None:
        affine = np.array([[width / source.shape[1], 0, 0], [0, height / source.shape[0], 0]])
    affine = np.asarray(affine, dtype=np.float64)
    if not source.flags.c_contiguous and source.flags.f_contiguous:
        # pycocotools decodes column-major: warp the transpose (a free view) with x and y swapped.
        source, affine = source.T, affine[:, [1, 0, 2]]
    # Bilinear on 0 / 1 values rounds to the nearest integer: the threshold at one half.
    warped = cv2.warpAffine(source, to_cv2_affine(affine), (width, height), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return warped.astype(np.float32)
