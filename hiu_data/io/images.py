"""Image helpers over OpenCV: decode embedded or referenced images, read sizes, encode.

Decoded images are (H, W, 3) uint8 RGB (OpenCV's BGR is converted once, here), turned upright
by their EXIF orientation as every viewer shows them (phone photos store the sensor's pixels
and a rotation tag); sizes read from headers follow the same rule. A file that cannot be
decoded raises :class:`~hiu_data.errors.CorruptImageError` naming the sample.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import cv2
import numpy as np

from hiu_data.errors import CorruptImageError

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
"""File types every command takes as images (compared lower-case): what OpenCV decodes here,
what :func:`image_suffix` names again when the stored bytes are written back out (COCO export,
review push), and what the FiftyOne App shows in a browser. TIFF decodes but is left out:
browsers do not show it, so a pseudo-labelled TIFF could not be reviewed."""

cv2.setNumThreads(1)
# A corrupt image is reported once, as a CorruptImageError naming the file and the sample;
# OpenCV's own warning lines on stderr would only come before that message.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def imdecode(data: bytes, flag: int, source: str | Path = "<bytes>", sample_id: str | None = None) -> np.ndarray:
    """``cv2.imdecode`` with its failures as :class:`CorruptImageError` naming the file.

    Returns:
        the decoded array as OpenCV gives it for ``flag`` (BGR order).
    Raises:
        CorruptImageError: the bytes are not a decodable image, or one larger than OpenCV
            decodes (``CV_IO_MAX_IMAGE_PIXELS``, 2^30 pixels unless set), which says so.
    """
    buf = np.frombuffer(data, dtype=np.uint8) if data else np.zeros(0, np.uint8)
    try:
        image = cv2.imdecode(buf, flag) if buf.size else None
    except cv2.error:  # raised rather than returning None for some inputs, oversized ones included
        image = None
    if image is None:
        size = probe_size(data) if data else None
        limit = int(os.environ.get("CV_IO_MAX_IMAGE_PIXELS", "0") or 0) or 1 << 30
        if size is not None and size[0] * size[1] > limit:
            raise CorruptImageError(source, f"{size[0]} x {size[1]} pixels, more than OpenCV decodes ({limit} "
                                    "pixels; the CV_IO_MAX_IMAGE_PIXELS environment variable raises it)", sample_id)
        raise CorruptImageError(source, "image cannot be decoded (corrupt or not an image)", sample_id)
    return image


def decode(data: bytes, source: str = "<bytes>", sample_id: str | None = None, grayscale: bool = False) -> np.ndarray:
    """Decode encoded image bytes.

    Returns:
        (H, W, 3) uint8 RGB, or (H, W) uint8 when ``grayscale``.
    Raises:
        CorruptImageError: the bytes are not a decodable image.
    """
    image = imdecode(data, cv2.IMREAD_GRAYSCALE if grayscale else cv2.IMREAD_COLOR, source, sample_id)
    return image if grayscale else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def decode_unchanged(data: bytes, source: str = "<bytes>", sample_id: str | None = None) -> np.ndarray:
    """Decode keeping depth and channels as stored (e.g. 16-bit or label PNGs); BGR order kept,
    EXIF orientation not applied (for label maps, which carry none)."""
    return imdecode(data, cv2.IMREAD_UNCHANGED, source, sample_id)


def read_file(path: str | Path, sample_id: str | None = None, grayscale: bool = False) -> np.ndarray:
    """Read and decode an image file (RGB or grayscale)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CorruptImageError(path, "image file is missing", sample_id) from None
    return decode(data, str(path), sample_id, grayscale)


def encode(image: np.ndarray, ext: str = ".png", quality: int = 95) -> bytes:
    """Encode an (H, W, 3) RGB or (H, W) grey uint8 image as PNG or JPEG bytes."""
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext.lower() in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext, image, params)
    if not ok:
        raise ValueError(f"cannot encode image as {ext}")
    return buf.tobytes()


EXIF_ORIENTATION_TAG = 0x0112
# Orientations 5-8 display the stored pixels turned by 90 degrees: width and height swap.
_SWAPPING_ORIENTATIONS = (5, 6, 7, 8)


def exif_orientation(tiff: bytes) -> int:
    """The orientation tag (1-8) of an EXIF block (a TIFF header and IFD0); 1 (as stored) when
    the block has none or cannot be read."""
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return 1
    (ifd,) = struct.unpack(order + "I", tiff[4:8])
    if ifd + 2 > len(tiff):
        return 1
    (count,) = struct.unpack(order + "H", tiff[ifd:ifd + 2])
    for entry in range(ifd + 2, min(ifd + 2 + 12 * count, len(tiff) - 11), 12):
        tag, kind = struct.unpack(order + "HH", tiff[entry:entry + 4])
        if tag == EXIF_ORIENTATION_TAG and kind == 3:  # SHORT
            (value,) = struct.unpack(order + "H", tiff[entry + 8:entry + 10])
            return value if 1 <= value <= 8 else 1
    return 1


def _png_header_size(data: bytes) -> tuple[int, int, int]:
    """(width, height, EXIF orientation) of a PNG from its IHDR and eXIf chunks."""
    w, h = struct.unpack(">II", data[16:24])
    orientation, i = 1, 8
    while i + 8 <= len(data):
        length, kind = struct.unpack(">I", data[i:i + 4])[0], data[i + 4:i + 8]
        if kind == b"eXIf":
            orientation = exif_orientation(data[i + 8:i + 8 + length])
        if kind == b"IEND":
            break
        i += 12 + length
    return int(w), int(h), orientation


def _jpeg_header_size(data: bytes) -> tuple[int, int, int] | None:
    """(width, height, EXIF orientation) of a JPEG from its APP1 and start-of-frame segments."""
    orientation, i = 1, 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker == 0xE1 and data[i + 4:i + 10] == b"Exif\0\0":
            orientation = exif_orientation(data[i + 10:i + 2 + length])
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return int(w), int(h), orientation
        i += 2 + length
    return None


def probe_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a PNG or JPEG as :func:`decode` returns it, from the headers without
    decoding; None if unknown.

    An EXIF orientation that turns the image by 90 degrees swaps the stored width and height:
    decoding applies the orientation (as viewers, browsers and the FiftyOne App do), so labels
    live in the displayed frame.
    """
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        header = _png_header_size(data)
    elif data[:2] == b"\xff\xd8":
        header = _jpeg_header_size(data)
    else:
        return None
    if header is None:
        return None
    w, h, orientation = header
    return (h, w) if orientation in _SWAPPING_ORIENTATIONS else (w, h)


def sample_image_bytes(image_bytes: bytes | None, image_path: str | None, source_root: str | Path | None,
                       sample_id: str | None = None) -> bytes:
    """The encoded image of a sample: embedded bytes, or the referenced file.

    Reference-mode paths are relative to the raw dataset root recorded as ``source_root``
    in the dataset's manifest.
    """
    if image_bytes is not None:
        return image_bytes
    if image_path is None:
        raise CorruptImageError("<no image>", "sample has neither embedded bytes nor a path", sample_id)
    path = Path(image_path)
    if not path.is_absolute() and source_root is not None:
        path = Path(source_root) / path
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CorruptImageError(path, "referenced image file is missing", sample_id) from None


def image_suffix(data: bytes) -> str:
    """File suffix of encoded image bytes from their magic number (.jpg, .png, .webp, .bmp, else .img)."""
    if data[:2] == b"\xff\xd8":
        return ".jpg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return ".png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    return ".bmp" if data[:2] == b"BM" else ".img"
