"""RLE encode/decode and image helpers."""

from __future__ import annotations

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


def test_corrupt_image_names_the_sample() -> None:
    with pytest.raises(CorruptImageError, match=r"a/b.jpg \(sample rhd/train/00001\)"):
        images.decode(b"\xff\xd8 not really a jpeg", "a/b.jpg", "rhd/train/00001")
    with pytest.raises(CorruptImageError, match="missing"):
        images.read_file("/nonexistent/x.png", "s1")
