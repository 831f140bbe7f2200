"""What a synthetic scene looks like for each output: image size, cameras, hands, encoding.

``hiu-data synth --format NAME`` writes scenes in a dataset's raw layout, so the scenes must
be ones that dataset could contain: its image size, its fixed cameras, its hand sides, its
image encoding (writers keep the bytes they are given). A :class:`Profile` holds those
choices; :func:`profile_for` builds it, reading a format module's constants where the module
fixes them (``IMAGE_SIZE`` or ``IMAGE_SIZES`` as (width, height), ``CAMERA`` K (3, 3) or a
dict of streams, ``PRINCIPAL_POINT``, ``SPLITS``) and falling back to the datasets'
published calibration otherwise.

Decisions where the datasets leave freedom: FreiHAND and RHD keep their per-sample focal
lengths (random here) with the fixed principal point of the format; CMU, HIU-Data and
parquet images are ``size`` x ``size``; STB scenes use its RealSense colour camera (one view per
scene; a Bumblebee frame would need its stereo partner); the "wild" profile is 4:3 landscape with smaller,
off-centre hands, as photographs are framed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hiu_data.errors import HiuError

PARQUET = "parquet"
FORMATS: tuple[str, ...] = (PARQUET, "freihand", "rhd", "stb", "cmu", "dexter", "hiu", "interhand26m")


@dataclass(frozen=True)
class Profile:
    """Scene parameters of one output kind.

    Attributes:
        name: ``parquet`` or a format name.
        width, height: image size in pixels.
        image_ext: ``.jpg`` or ``.png`` (what the format stores).
        sides: hand sides a scene may contain.
        two_hands: probability of a scene with a left and a right hand (needs both sides).
        fixed_K: (3, 3) camera of every image, or None for random cameras.
        principal_point: fixed (cx, cy) with a random focal length, or None.
        fov_deg: range of the horizontal field of view of random cameras.
        extent: range of the hand box's larger side, as a fraction of the image's smaller side.
        truncation: probability that a hand is allowed to leave the image partly.
        occluders: probability of occluders in a scene (1-2 of them).
        splits: the unified splits the output can hold (the held-out share goes to the last).
        wild: draw from the shifted "wild" distribution (backgrounds, lighting, framing).
        extras: entries added to every record's ``extras`` (e.g. STB's camera stream).
    """

    name: str
    width: int
    height: int
    image_ext: str = ".jpg"
    sides: tuple[str, ...] = ("right", "left")
    two_hands: float = 0.15
    fixed_K: np.ndarray | None = None
    principal_point: tuple[float, float] | None = None
    fov_deg: tuple[float, float] = (35.0, 75.0)
    extent: tuple[float, float] = (0.5, 0.85)
    truncation: float = 0.05
    occluders: float = 0.3
    splits: tuple[str, ...] = ("train", "test")
    wild: bool = False
    extras: dict = field(default_factory=dict)


def _format_module(name: str) -> Any:
    """The format module (its writer and constants), or None when it is not available."""
    from hiu_data import formats

    try:
        return formats.get(name)
    except HiuError:
        return None


def _image_size(module: Any, fallback: tuple[int, int]) -> tuple[int, int]:
    """(width, height) a format fixes: ``IMAGE_SIZE``, else the first of ``IMAGE_SIZES``."""
    size = getattr(module, "IMAGE_SIZE", None)
    if size is None and getattr(module, "IMAGE_SIZES", None):
        size = module.IMAGE_SIZES[0]
    return (int(size[0]), int(size[1])) if size is not None else fallback


def _camera(module: Any, stream: str | None, fallback: np.ndarray) -> np.ndarray:
    """A format's fixed K: ``CAMERA`` (an array, or a dict of streams), else ``fallback``."""
    camera = getattr(module, "CAMERA", None)
    if isinstance(camera, dict):
        camera = camera.get(stream) if stream else None
    return np.asarray(camera if camera is not None else fallback, dtype=np.float64).reshape(3, 3)


def _splits(module: Any, fallback: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(getattr(module, "SPLITS", ())) or fallback


# The datasets' published calibration, used when a format module does not define its constants.
_STB_SK_COLOR_K = np.array([[607.92271, 0.0, 314.78337], [0.0, 607.88192, 236.42484], [0.0, 0.0, 1.0]])
_DEXTER_K = np.array([[587.45209, 0.0, 325.0], [0.0, 600.67456, 249.0], [0.0, 0.0, 1.0]])


def profile_for(name: str, size: int = 224, wild: bool = False) -> Profile:
    """The profile of an output kind (``parquet`` or a format name); ``size`` is used where the
    format does not fix the image size. ``wild`` gives the shifted unlabeled-folder profile."""
    if wild:
        return Profile("wild", width=int(round(size * 4 / 3)), height=size, fov_deg=(50.0, 90.0),
                       extent=(0.3, 0.75), truncation=0.15, two_hands=0.3, occluders=0.4, splits=("unlabeled",),
                       wild=True)
    if name == PARQUET:
        return Profile(PARQUET, size, size)
    if name not in FORMATS:
        raise HiuError(f"no synthetic profile for {name!r}; choose one of {', '.join(FORMATS)}")
    module = _format_module(name)
    if name == "freihand":
        w, h = _image_size(module, (224, 224))
        return Profile(name, w, h, sides=("right",), two_hands=0.0,
                       principal_point=tuple(getattr(module, "PRINCIPAL_POINT", (w / 2, h / 2))),
                       fov_deg=(12.0, 55.0), extent=(0.6, 0.9), truncation=0.0, splits=_splits(module, ("train", "test")))
    if name == "rhd":
        w, h = _image_size(module, (320, 320))
        return Profile(name, w, h, image_ext=".png", two_hands=0.6,
                       principal_point=tuple(getattr(module, "PRINCIPAL_POINT", (w / 2, h / 2))),
                       fov_deg=(50.0, 65.0), extent=(0.25, 0.6), splits=_splits(module, ("train", "test")))
    if name == "stb":
        # One view per scene: the RealSense colour stream (a BB frame needs its stereo partner).
        w, h = _image_size(module, (640, 480))
        return Profile(name, w, h, image_ext=".png", sides=("left",), two_hands=0.0,
                       fixed_K=_camera(module, "SK_color", _STB_SK_COLOR_K), extent=(0.35, 0.7), truncation=0.0,
                       splits=_splits(module, ("train", "test")), extras={"camera": "SK_color"})
    if name == "dexter":
        w, h = _image_size(module, (640, 480))
        return Profile(name, w, h, image_ext=".png", sides=("left",), two_hands=0.0,
                       fixed_K=_camera(module, None, _DEXTER_K), extent=(0.3, 0.6), truncation=0.0,
                       splits=_splits(module, ("test",)))
    if name == "interhand26m":
        w, h = _image_size(module, (334, 512))
        return Profile(name, w, h, two_hands=0.4, principal_point=(w / 2, h / 2), fov_deg=(12.0, 20.0),
                       extent=(0.3, 0.6), splits=_splits(module, ("train", "val", "test")))
    w, h = (size, size)  # cmu, hiu: images of any size
    return Profile(name, w, h, two_hands=0.3, splits=_splits(module, ("train", "test")))
