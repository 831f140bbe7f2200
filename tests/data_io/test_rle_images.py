"""RLE encode/decode and image helpers."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from hiu_data.errors import CorruptImageError
from hiu_data.io import images, rle


def test_rle_round_trip(rng: np.random.Generator) -> None:
    for shape in [(1, 1), (7, 13), (64, 48)]:
        mask = (rng.uniform(size=shape) > 0.6).astype(np.uint8)
        enc = rle.encode(mask)
        assert enc["size"] == list(shape) and isinstance(enc["counts"], bytes)
        np.testing.assert_array_equal(rle.decode(enc), mask)
        assert rle.area(enc) == mask.sum()
        np.testing.assert_array_equal(rle.decode(rle.to_json(enc)), mask)


def test_rle_bbox() -> None:
    mask = np.zeros((20, 30), np.uint8)
    mask[5:9, 10:20] = 1
    np.testing.assert_allclose(rle.to_bbox(rle.encode(mask)), [10, 5, 10, 4])


def test_image_encode_decode_and_probe(rng: np.random.Generator) -> None:
    img = rng.integers(0, 255, (10, 17, 3), dtype=np.uint8)
    png = images.encode(img, ".png")
    np.testing.assert_array_equal(images.decode(png), img)
    assert images.probe_size(png) == (17, 10)
    jpg = images.encode(img, ".jpg")
    assert images.probe_size(jpg) == (17, 10)
    assert images.decode(jpg).shape == (10, 17, 3)



def exif_block(orientation: int, order: bytes) -> bytes:
    """A TIFF header and an IFD0 holding only the orientation tag (SHORT), in either byte order."""
    e = "<" if order == b"II" else ">"
    return (order + struct.pack(e + "HI", 42, 8) + struct.pack(e + "H", 1)
            + struct.pack(e + "HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(e + "I", 0))


def with_exif(data: bytes, tiff: bytes) -> bytes:
    """JPEG: an APP1 Exif segment after SOI; PNG: an eXIf chunk after IHDR."""
    if data[:2] == b"\xff\xd8":
        payload = b"Exif\0\0" + tiff
        return data[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + data[2:]
    chunk = struct.pack(">I", len(tiff)) + b"eXIf" + tiff + struct.pack(">I", zlib.crc32(b"eXIf" + tiff))
    return data[:33] + chunk + data[33:]


@pytest.mark.parametrize("ext", [".jpg", ".png"])
@pytest.mark.parametrize("order", [b"II", b"MM"])
def test_sizes_follow_the_exif_orientation_that_decoding_applies(ext: str, order: bytes,
                                                                   rng: np.random.Generator) -> None:
    stored = rng.integers(0, 255, (10, 24, 3), dtype=np.uint8)
    plain = images.encode(stored, ext)
    for orientation in range(1, 9):
        data = with_exif(plain, exif_block(orientation, order))
        decoded = images.decode(data)
        assert images.probe_size(data) == (decoded.shape[1], decoded.shape[0]), orientation
        assert decoded.shape[:2] == ((24, 10) if orientation >= 5 else (10, 24)), orientation
    if ext == ".png":  # lossless: orientation 6 shows the stored pixels turned clockwise
        np.testing.assert_array_equal(images.decode(with_exif(plain, exif_block(6, order))), np.rot90(stored, -1))
    assert images.exif_orientation(b"not a tiff block") == 1

def test_corrupt_image_names_the_sample() -> None:
    with pytest.raises(CorruptImageError, match=r"a/b.jpg \(sample rhd/train/00001\)"):
        images.decode(b"\xff\xd8 not really a jpeg", "a/b.jpg", "rhd/train/00001")
    with pytest.raises(CorruptImageError, match="missing"):
        images.read_file("/nonexistent/x.png", "s1")


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (pixel data cut short: decoding stops at the size)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def test_an_image_larger_than_opencv_decodes_is_named_with_its_size() -> None:
    from hiu_model.crop import decode_for_crop

    data = _png_header_only(40000, 30000)  # 1.2 gigapixels, over OpenCV's 2^30 limit
    for read in (lambda: images.decode(data, "big.png", "s1"), lambda: images.decode_unchanged(data, "big.png"),
                 lambda: decode_for_crop(data, 40000.0, 64, "big.png")):
        with pytest.raises(CorruptImageError, match=r"^big\.png.*: 40000 x 30000 pixels, more than OpenCV decodes"):
            read()
