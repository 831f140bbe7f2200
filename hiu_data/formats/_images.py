"""Raw image files as the format readers store them: the bytes (or a root-relative path) and
the size from the file header, without decoding (:func:`image_file`), with every way a file can
be unusable named with its sample (:class:`~hiu_data.errors.CorruptImageError`).

Re-exported by :mod:`hiu_data.formats._common`, where the readers import their helpers from.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hiu_data.errors import CorruptImageError


@dataclass(frozen=True)
class ImageFile:
    """An image as a record stores it: bytes (embed) or a root-relative POSIX path (reference)."""

    data: bytes | None
    path: str | None
    width: int
    height: int


# OpenCV refuses to decode an image wider or taller than this (CV_IO_MAX_IMAGE_WIDTH); a header
# beyond it is damaged or hostile, and would not fit the schema's int32 sizes either.
MAX_IMAGE_SIDE = 1 << 20


def image_size(data: bytes, path: str | Path, sample_id: str | None = None) -> tuple[int, int]:
    """(width, height) of encoded image bytes, checking that the file is complete.

    PNG and JPEG are read from the header and checked for their end marker (IEND / EOI), so a
    truncated file is caught without decoding; other encodings (webp, bmp) are decoded.

    Raises:
        CorruptImageError: not an image, a broken header, or a truncated file.
    """
    from hiu_data.io.images import decode, probe_size

    size = probe_size(data) if data else None
    is_png, is_jpeg = data[:8] == b"\x89PNG\r\n\x1a\n", data[:2] == b"\xff\xd8"
    if size is not None:
        if is_png and b"IEND" not in data[-12:]:
            raise CorruptImageError(path, "truncated PNG (no IEND chunk at the end)", sample_id)
        if is_jpeg and b"\xff\xd9" not in data[-64:]:
            raise CorruptImageError(path, "truncated JPEG (no end-of-image marker)", sample_id)
        if max(size) > MAX_IMAGE_SIDE:
            raise CorruptImageError(path, f"header says {size[0]}x{size[1]} pixels, more than any image that decodes "
                                          f"(at most {MAX_IMAGE_SIDE} a side)", sample_id)
        if size[0] > 0 and size[1] > 0:
            return size
    if is_png or is_jpeg or not data:
        raise CorruptImageError(path, "image cannot be decoded (corrupt header or empty file)", sample_id)
    image = decode(data, str(path), sample_id)  # the size training sees (EXIF orientation applied)
    return int(image.shape[1]), int(image.shape[0])


def read_image_bytes(path: str | Path, sample_id: str | None = None, what: str = "image") -> bytes:
    """The bytes of an image (or mask) file a sample names.

    Raises:
        CorruptImageError: the file is missing, is a folder, or its name is not valid (all name
            the sample, so ``--on-error skip`` can skip it).
    """
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise CorruptImageError(path, f"missing {what} file", sample_id) from None
    except IsADirectoryError:
        raise CorruptImageError(path, f"expected {what} file, found a folder", sample_id) from None
    except ValueError:  # a NUL character in a name read from an annotation file
        raise CorruptImageError(repr(str(path)), "not a valid file name", sample_id) from None


def image_file(root: str | Path, relative: str, images: str, sample_id: str | None = None) -> ImageFile:
    """Read ``root/relative`` as a record stores it; the size comes from the header (no decode).

    Raises:
        CorruptImageError: the file is missing, truncated or not an image.
    """
    path = os.path.join(root, relative)  # plain strings: pathlib costs more than the read here
    data = read_image_bytes(path, sample_id)
    width, height = image_size(data, path, sample_id)
    if images == "embed":
        return ImageFile(data, None, width, height)
    return ImageFile(None, relative.replace(os.sep, "/"), width, height)
