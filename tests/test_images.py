"""Image cells: every input form, PNG storage, thumbnails, and hostile bytes."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image as PILImage

from embproj_panel import Image


def decode_uri(uri: str) -> PILImage.Image:
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix)
    return PILImage.open(io.BytesIO(base64.b64decode(uri[len(prefix):])))


def test_grayscale_float_in_unit_range_is_scaled_like_the_seed():
    pixels = np.arange(64, dtype=np.float64).reshape(8, 8) % 17  # digits' 0..16 values
    image = Image(pixels / 16.0)
    out = image.to_numpy()
    assert out.shape == (8, 8) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.rint(pixels / 16.0 * 255).astype(np.uint8))


def test_float_outside_unit_range_is_clipped_not_scaled():
    out = Image(np.array([[-5.0, 100.0], [300.0, 1.5]])).to_numpy()
    np.testing.assert_array_equal(out, [[0, 100], [255, 2]])


def test_uint8_rgb_and_rgba_are_pixel_exact():
    rng = np.random.default_rng(0)
    for channels in (3, 4):
        pixels = rng.integers(0, 256, size=(5, 7, channels), dtype=np.uint8)
        image = Image(pixels, caption="c")
        assert (image.width, image.height) == (7, 5)
        np.testing.assert_array_equal(image.to_numpy(), pixels)
        assert image.png_bytes.startswith(b"\x89PNG")
        assert image.caption == "c"


def test_pil_path_and_bytes_inputs(tmp_path):
    pil = PILImage.fromarray(np.full((4, 6, 3), 200, dtype=np.uint8))
    path = tmp_path / "x.png"
    pil.save(path)
    jpeg = io.BytesIO()
    pil.save(jpeg, format="JPEG")
    from_pil, from_path, from_bytes = Image(pil), Image(str(path)), Image(path.read_bytes())
    assert from_pil == from_path == from_bytes
    assert Image(tmp_path / "x.png") == from_pil  # PathLike
    assert Image(jpeg.getvalue()).to_numpy().shape == (4, 6, 3)


def test_from_png_bytes_is_lazy_and_equal():
    image = Image(np.eye(3))
    lazy = Image.from_png_bytes(image.png_bytes, caption=None)
    assert (lazy.width, lazy.height) == (3, 3)
    assert lazy == image


@pytest.mark.parametrize(
    "data, error, message",
    [
        (b"definitely not an image", ValueError, "Could not decode image bytes"),
        (np.zeros((2, 2, 2)), ValueError, "1, 3 or 4 channels"),
        (np.zeros(5), ValueError, "2-D"),
        (np.zeros((0, 3)), ValueError, "empty"),
        (np.array([[np.nan, 1.0]]), ValueError, "NaN"),
        (np.array([["a", "b"]]), TypeError, "numeric"),
        ("/no/such/file.png", ValueError, "does not exist"),
        (12, TypeError, "got int"),
    ],
)
def test_bad_inputs_get_clear_errors(data, error, message):
    with pytest.raises(error, match=message):
        Image(data)


def test_decompression_bomb_is_refused():
    # A PNG header that claims 100,000 x 100,000 pixels: refused before any pixel is decoded.
    big = PILImage.new("L", (1, 1))
    buffer = io.BytesIO()
    big.save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    data[16:20] = (100_000).to_bytes(4, "big")
    data[20:24] = (100_000).to_bytes(4, "big")
    with pytest.raises(ValueError, match="decompression bomb|too large|Could not decode"):
        Image(bytes(data))


def test_tiny_images_scale_up_with_nearest_neighbour():
    pixels = np.zeros((8, 8), dtype=np.uint8)
    pixels[0, 0] = 255
    thumb = decode_uri(Image(pixels).thumbnail_uri(64))
    assert thumb.size == (64, 64)
    out = np.asarray(thumb)
    assert (out[:8, :8] == 255).all() and (out[8:, :] == 0).all()  # crisp, no blur


def test_large_images_are_capped():
    image = Image(np.zeros((300, 150, 3), dtype=np.uint8))
    assert max(decode_uri(image.thumbnail_uri(64)).size) == 64
    with pytest.raises(ValueError):
        image.thumbnail(0)
