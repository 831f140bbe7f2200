"""Crop geometry and photometric augmentation of the data pipeline (numpy + OpenCV).

A :class:`CropTransform` takes a stored image to the network's square input: a similarity
(crop, resize, in-plane rotation) possibly followed by a horizontal flip that turns a left
hand into a right hand. Every label moves with it so that projections stay consistent:

- 2D: ``p_crop = A p_image`` with ``A`` the (2, 3) affine between continuous pixel
  coordinates (origin at the top-left corner, pixel centres at +0.5).
- 3D: ``X_crop = R X_camera`` with ``R = Mx^m Rz(theta)``: the in-plane rotation is a
  rotation about the camera's optical axis and the flip is the reflection ``x -> -x``.
- Intrinsics: ``K_crop = A3 K R^T`` (``A3`` = ``A`` with the row ``[0, 0, 1]``), so that
  ``K_crop X_crop ~ A3 K X``: projecting the new 3D with the new K gives the new 2D exactly.
  With ``fx == fy`` and no skew, ``K_crop`` is again upper-triangular with positive focal
  lengths; with ``fx != fy`` and a rotation it gets a small off-diagonal term (still exact).
- MANO pose: a flipped left hand gets :func:`mirror_pose`, then the global orientation is
  rotated by the proper part of ``R`` (``Rz(+-theta)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from hiu_data.io.images import imdecode
from hiu_data.targets import to_cv2_affine
from hiu_model.mano import mirror_pose as mano_mirror_pose

_MIRROR_X = np.diag([-1.0, 1.0, 1.0])


def mirror_pose(pose: np.ndarray) -> np.ndarray:
    """Mirror a MANO pose (..., 48) axis-angle between the left and the right hand.

    :func:`hiu_model.mano.mirror_pose`: keeps x and negates y and z of every axis-angle
    triplet. Returns float32 of the same shape.
    """
    return np.asarray(mano_mirror_pose(np.asarray(pose, dtype=np.float32)), dtype=np.float32)


def rotation_z(theta: float) -> np.ndarray:
    """(3, 3) rotation by ``theta`` radians about the camera's z axis (x right, y down)."""
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class CropTransform:
    """Image -> crop transform of one sample (see the module docstring).

    Attributes:
        affine: (2, 3) float64, continuous image pixels -> continuous crop pixels.
        rotation: (3, 3) float64, camera frame -> crop camera frame (``Mx^m Rz(theta)``).
        mirrored: the crop is flipped horizontally (a left hand shown as a right hand).
        size: side of the square crop in pixels.
    """

    affine: np.ndarray
    rotation: np.ndarray
    mirrored: bool
    size: int

    @property
    def matrix(self) -> np.ndarray:
        """(3, 3) homogeneous form of :attr:`affine`."""
        return np.vstack([self.affine, [0.0, 0.0, 1.0]])

    def points_to_crop(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) image pixels -> (N, 2) float32 crop pixels (NaN stays NaN)."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        return (p @ self.affine[:, :2].T + self.affine[:, 2]).astype(np.float32)

    def points_to_image(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) crop pixels -> (N, 2) float32 image pixels (inverse of :meth:`points_to_crop`)."""
        inverse = np.linalg.inv(self.matrix)[:2]
        p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        return (p @ inverse[:, :2].T + inverse[:, 2]).astype(np.float32)

    def scaled(self, size: int) -> np.ndarray:
        """(2, 3) affine from image pixels to a map of ``size`` pixels over the same crop."""
        return self.affine * (size / self.size)

    def rotate_3d(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) camera-frame metres -> (N, 3) float32 crop camera frame."""
        return (np.asarray(points, dtype=np.float64).reshape(-1, 3) @ self.rotation.T).astype(np.float32)

    def unrotate_3d(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) crop camera frame -> (N, 3) float32 original camera frame."""
        return (np.asarray(points, dtype=np.float64).reshape(-1, 3) @ self.rotation).astype(np.float32)

    def intrinsics_to_crop(self, camera_K: np.ndarray) -> np.ndarray:
        """(3, 3) intrinsics of the stored image -> (3, 3) float32 intrinsics of the crop."""
        return (self.matrix @ np.asarray(camera_K, dtype=np.float64) @ self.rotation.T).astype(np.float32)

    def intrinsics_to_image(self, crop_K: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`intrinsics_to_crop`: (3, 3) crop intrinsics -> (3, 3) float32 of the stored image."""
        return (np.linalg.inv(self.matrix) @ np.asarray(crop_K, dtype=np.float64) @ self.rotation).astype(np.float32)

    def _proper_rotation(self) -> np.ndarray:
        return self.rotation @ _MIRROR_X if self.mirrored else self.rotation

    def pose_to_crop(self, pose: np.ndarray) -> np.ndarray:
        """(48,) MANO axis-angle of the stored hand -> (48,) float32 of the crop's right hand."""
        out = mirror_pose(pose) if self.mirrored else np.array(pose, dtype=np.float32, copy=True)
        global_matrix = cv2.Rodrigues(out[:3].astype(np.float64).reshape(3, 1))[0]
        out[:3] = cv2.Rodrigues(self._proper_rotation() @ global_matrix)[0].ravel()
        return out

    def pose_to_image(self, pose: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`pose_to_crop`: (48,) MANO axis-angle of the crop's right hand -> (48,)
        float32 of the stored hand's side and camera."""
        out = np.array(pose, dtype=np.float32, copy=True)
        global_matrix = cv2.Rodrigues(out[:3].astype(np.float64).reshape(3, 1))[0]
        out[:3] = cv2.Rodrigues(self._proper_rotation().T @ global_matrix)[0].ravel()
        return mirror_pose(out) if self.mirrored else out


def make_crop_transform(center: np.ndarray, side: float, size: int, rotation_deg: float = 0.0,
                        mirror: bool = False) -> CropTransform:
    """The transform cropping a square of ``side`` image pixels around ``center``.

    Args:
        center: (2,) image pixels, centre of the crop (continuous coordinates).
        side: side of the square in image pixels before rotation.
        size: output side in pixels.
        rotation_deg: in-plane rotation about the crop centre, degrees; positive turns the
            content clockwise on screen (y points down), i.e. ``Rz(+theta)`` in 3D.
        mirror: flip horizontally after cropping.
    """
    theta = math.radians(rotation_deg)
    c, s = math.cos(theta), math.sin(theta)
    zoom = size / max(float(side), 1e-6)
    linear = zoom * np.array([[c, -s], [s, c]])
    cx, cy = float(center[0]), float(center[1])
    offset = np.array([size / 2.0, size / 2.0]) - linear @ np.array([cx, cy])
    affine = np.hstack([linear, offset[:, None]])
    rotation = rotation_z(theta)
    if mirror:
        affine = np.array([[-1.0, 0.0, float(size)], [0.0, 1.0, 0.0]]) @ np.vstack([affine, [0, 0, 1]])
        rotation = _MIRROR_X @ rotation
    return CropTransform(affine=affine, rotation=rotation, mirrored=mirror, size=size)


def decode_for_crop(data: bytes, side: float, size: int, source: str = "<bytes>",
                    sample_id: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Decode an image at the coarsest power-of-two reduction the crop allows.

    A crop that shrinks the image by 2x or more is taken from a reduced decode: JPEGs are
    decoded directly at 1/2, 1/4 or 1/8 (faster, and the DCT scaling averages like an area
    filter, so no aliasing); other formats are decoded and area-resized.

    Args:
        data: encoded image bytes.
        side: crop side in stored-image pixels; size: crop output side in pixels.
    Returns:
        image: (h, w, 3) uint8 RGB.
        scale: (2,) float64, stored-image pixels -> decoded pixels per axis (multiply
            continuous coordinates).
    """
    factor = 1
    while factor < 8 and side / (2 * factor) >= size:
        factor *= 2
    is_jpeg = data[:2] == b"\xff\xd8"
    flag = cv2.IMREAD_COLOR
    if is_jpeg and factor > 1:
        flag = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}[factor]
    image = imdecode(data, flag, source, sample_id)
    scale = np.ones(2)
    if is_jpeg:
        scale /= factor  # libjpeg's scaled IDCT maps blocks of factor x factor pixels exactly
    elif factor > 1:
        new_w = max(1, round(image.shape[1] / factor))
        new_h = max(1, round(image.shape[0] / factor))
        scale = np.array([new_w / image.shape[1], new_h / image.shape[0]])
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), scale


def warp_image(image: np.ndarray, affine: np.ndarray, size: int,
               border: tuple[int, int, int]) -> np.ndarray:
    """Resample ``image`` (h, w, 3) uint8 through the (2, 3) continuous-pixel ``affine``.

    Returns (size, size, 3) uint8; bilinear; outside the image is filled with ``border``.
    """
    return cv2.warpAffine(image, to_cv2_affine(affine), (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=tuple(int(v) for v in border))


@dataclass(frozen=True)
class PhotometricParams:
    """One draw of colour jitter and blur (identity values leave the image unchanged)."""

    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0
    hue_deg: float = 0.0
    blur_sigma: float = 0.0


_LUMA = np.array([0.299, 0.587, 0.114])


def _colour_matrix(p: PhotometricParams, mean_gray: float) -> np.ndarray:
    """(3, 4) affine colour map on RGB values: hue, saturation, contrast, brightness."""
    axis = np.ones(3) / math.sqrt(3.0)
    hue = cv2.Rodrigues((axis * math.radians(p.hue_deg)).reshape(3, 1))[0]
    saturation = p.saturation * np.eye(3) + (1.0 - p.saturation) * np.outer(np.ones(3), _LUMA)
    linear = p.brightness * p.contrast * saturation @ hue
    offset = p.brightness * (1.0 - p.contrast) * mean_gray * np.ones(3)
    return np.hstack([linear, offset[:, None]])


def apply_photometric(image: np.ndarray, params: PhotometricParams) -> np.ndarray:
    """Colour jitter then Gaussian blur of an (S, S, 3) uint8 RGB crop; returns uint8 (clipped)."""
    out = image
    if (params.brightness, params.contrast, params.saturation, params.hue_deg) != (1.0, 1.0, 1.0, 0.0):
        # The contrast pivot: mean grey of every 4th pixel is as good as of all of them.
        mean_gray = float(np.dot(image[::4, ::4].reshape(-1, 3).mean(axis=0), _LUMA))
        out = cv2.transform(image, _colour_matrix(params, mean_gray))
    if params.blur_sigma > 0:
        out = cv2.GaussianBlur(out, (0, 0), params.blur_sigma)
    return out


@dataclass(frozen=True)
class EraseParams:
    """One random-erasing draw: a rectangle of the crop painted over in one colour.

    ``box`` is (x0, y0, x1, y1) in fractions of the crop side (0 = left / top edge, 1 = right /
    bottom), in the crop's final frame (after the turn and the mirror); ``colour`` RGB 0-255.
    """

    box: tuple[float, float, float, float]
    colour: tuple[int, int, int]


def box_pixels(box: tuple[float, float, float, float], side: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) integer pixel bounds, end exclusive and within ``[0, side]``, of a box in
    fractions of a map of ``side`` pixels (a pixel is inside when its centre is)."""
    return tuple(int(min(max(round(v * side), 0), side)) for v in box)  # type: ignore[return-value]


def erase(image: np.ndarray, params: EraseParams) -> np.ndarray:
    """An (S, S, 3) uint8 crop with ``params.box`` painted in ``params.colour`` (a copy)."""
    x0, y0, x1, y1 = box_pixels(params.box, image.shape[1])
    out = image.copy()
    out[y0:y1, x0:x1] = np.asarray(params.colour, np.uint8)
    return out


def sample_erase(rng: np.random.Generator, probability: float,
                 area_range: tuple[float, float]) -> EraseParams | None:
    """A random-erasing rectangle within the crop, or None with probability ``1 - probability``.

    Its area is drawn uniformly in ``area_range`` (fractions of the crop's area), its aspect
    ratio log-uniformly in 1/3-3, its place uniformly where it fits; the colour uniformly. Always
    eight draws of ``rng``, so what is drawn after it does not depend on the outcome.
    """
    gate, area_u, aspect_u, x_u, y_u = rng.random(5).tolist()
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    if gate >= probability:
        return None
    lo, hi = area_range
    area = lo + (hi - lo) * area_u
    aspect = math.exp(math.log(3.0) * (2.0 * aspect_u - 1.0))
    width, height = min(math.sqrt(area * aspect), 1.0), min(math.sqrt(area / aspect), 1.0)
    x0, y0 = (1.0 - width) * x_u, (1.0 - height) * y_u
    return EraseParams((x0, y0, x0 + width, y0 + height), colour)  # type: ignore[arg-type]


def normalise(image: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """(S, S, 3) uint8 RGB -> (3, S, S) float32 ``(x / 255 - mean) / std`` per channel."""
    scale = 1.0 / (255.0 * np.asarray(std, dtype=np.float64))
    shift = np.asarray(mean, dtype=np.float64) / np.asarray(std, dtype=np.float64)
    out = np.empty((3,) + image.shape[:2], dtype=np.float32)
    for c, plane in enumerate(cv2.split(image)):  # contiguous planes: faster than a strided transpose
        np.multiply(plane, np.float32(scale[c]), out=out[c])
        out[c] -= np.float32(shift[c])
    return out


def denormalise(image: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """Inverse of :func:`normalise`: (3, S, S) float -> (S, S, 3) uint8 RGB (for previews)."""
    chw = np.asarray(image, dtype=np.float32) * np.asarray(std, np.float32)[:, None, None]
    chw += np.asarray(mean, np.float32)[:, None, None]
    return np.clip(chw.transpose(1, 2, 0) * 255.0 + 0.5, 0, 255).astype(np.uint8)
