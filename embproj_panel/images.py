"""Image cells: the ``Image`` type that W&B users put in table cells.

An :class:`Image` keeps its pixels as PNG bytes (lossless, compact, what the run store writes)
and decodes lazily: a table of a million images loaded from disk costs one ``bytes`` object
per row until something asks for pixels. Thumbnails for tooltips and table cells are
size-capped ``data:image/png;base64,...`` URIs; tiny images such as the 8x8 digits are scaled
*up* with nearest-neighbour so that they are visible at all.
"""

from __future__ import annotations

import base64
import io
import os
from typing import Any

import numpy as np

# Pillow's own guard is a warning up to 2x this and an error beyond; we want an error for any
# image that decodes to more pixels than a projector could ever need (~ 8k x 8k RGBA).
MAX_IMAGE_PIXELS = 64_000_000
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _pil():
    from PIL import Image as PILImage

    return PILImage


def _array_to_uint8(array: np.ndarray) -> np.ndarray:
    """Convert a 2-D/3-D numeric array to uint8 the way ``wandb.Image`` does.

    Floats whose range lies within [0, 1] are scaled by 255 (the seed passes
    ``pixels.reshape(8, 8) / 16.0``); any other numeric array is clipped to 0-255.
    """
    if array.dtype == object:
        # pandas hands rows of mixed frames over as object arrays (the seed's
        # ``row[1:].values``); wandb.Image accepts them when every cell is a number.
        try:
            array = array.astype(np.float64)
        except (TypeError, ValueError):
            raise TypeError(
                "Image arrays must be numeric; got an object array holding non-numbers"
            ) from None
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise ValueError(
            f"Image arrays must be 2-D (grayscale) or 3-D with 1, 3 or 4 channels; "
            f"got shape {array.shape}"
        )
    if array.size == 0:
        raise ValueError(f"Image array is empty (shape {array.shape})")
    if array.dtype == np.uint8:
        out = array
    elif array.dtype == bool:
        out = array.astype(np.uint8) * 255
    elif np.issubdtype(array.dtype, np.number):
        values = array.astype(np.float64, copy=False)
        if not np.isfinite(values).all():
            raise ValueError("Image array contains NaN or infinite values")
        if np.issubdtype(array.dtype, np.floating) and values.min() >= 0 and values.max() <= 1:
            values = values * 255.0
        out = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    else:
        raise TypeError(f"Image arrays must be numeric; got dtype {array.dtype}")
    if out.ndim == 3 and out.shape[2] == 1:
        out = out[:, :, 0]
    return np.ascontiguousarray(out)


def _encode_png(pil_image: Any) -> bytes:
    buffer = io.BytesIO()
    pil_image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def _decode(data: bytes) -> Any:
    """Decode encoded image bytes with Pillow, refusing decompression bombs."""
    PILImage = _pil()
    try:
        with PILImage.open(io.BytesIO(data)) as probe:
            width, height = probe.size
            if width * height > MAX_IMAGE_PIXELS:
                raise ValueError(
                    f"Image is too large to decode safely: {width}x{height} pixels "
                    f"(limit {MAX_IMAGE_PIXELS:,}); it may be a decompression bomb"
                )
            probe.load()
            image = probe.copy()
    except ValueError:
        raise
    except PILImage.DecompressionBombError as exc:
        raise ValueError(f"Image rejected as a decompression bomb: {exc}") from None
    except Exception as exc:  # Pillow raises many types for corrupt input
        raise ValueError(f"Could not decode image bytes ({type(exc).__name__}: {exc})") from None
    if image.mode not in ("L", "RGB", "RGBA", "LA"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    return image


class Image:
    """An image cell, as ``wandb.Image``.

    Parameters
    ----------
    data
        A 2-D (grayscale) or 3-D (RGB/RGBA) numpy array (floats in [0, 1] are scaled to 0-255),
        a PIL image, a path to an image file, or encoded image bytes (PNG, JPEG, ...).
    caption
        Optional caption, kept as plain text.
    """

    __slots__ = ("_png", "_size", "_mode", "caption")

    def __init__(self, data: Any, caption: str | None = None) -> None:
        if caption is not None and not isinstance(caption, str):
            caption = str(caption)
        self.caption = caption
        PILImage = _pil()
        if isinstance(data, Image):
            self._png, self._size, self._mode = data._png, data._size, data._mode
            if caption is None:
                self.caption = data.caption
            return
        if isinstance(data, np.ndarray):
            pil_image = PILImage.fromarray(_array_to_uint8(data))
        elif isinstance(data, PILImage.Image):
            pil_image = data
            if pil_image.width * pil_image.height > MAX_IMAGE_PIXELS:
                raise ValueError(f"Image is too large: {pil_image.width}x{pil_image.height}")
            if pil_image.mode not in ("L", "RGB", "RGBA", "LA"):
                pil_image = pil_image.convert("RGBA" if "A" in pil_image.getbands() else "RGB")
        elif isinstance(data, (bytes, bytearray, memoryview)):
            pil_image = _decode(bytes(data))
        elif isinstance(data, (str, os.PathLike)):
            path = os.fspath(data)
            if not os.path.isfile(path):
                raise ValueError(f"Image path does not exist or is not a file: {path!r}")
            with open(path, "rb") as handle:
                pil_image = _decode(handle.read())
        else:
            raise TypeError(
                "Image data must be a numpy array, a PIL image, a file path or encoded bytes; "
                f"got {type(data).__name__}"
            )
        self._png = _encode_png(pil_image)
        self._size = pil_image.size
        self._mode = pil_image.mode

    @classmethod
    def from_png_bytes(cls, png: bytes, caption: str | None = None) -> Image:
        """Wrap PNG bytes written by this package without decoding them.

        Width and height come from the PNG header, so loading a stored table is cheap.
        Bytes that are not a PNG fall back to a full decode (and its validation).
        """
        png = bytes(png)
        if png[:8] != _PNG_MAGIC or len(png) < 33:
            return cls(png, caption=caption)
        image = cls.__new__(cls)
        image.caption = caption
        image._png = png
        width = int.from_bytes(png[16:20], "big")
        height = int.from_bytes(png[20:24], "big")
        image._size = (width, height)
        image._mode = None  # decoded on demand
        return image

    @property
    def png_bytes(self) -> bytes:
        """The image encoded as PNG."""
        return self._png

    @property
    def width(self) -> int:
        return self._size[0]

    @property
    def height(self) -> int:
        return self._size[1]

    def to_pil(self) -> Any:
        """Decode to a PIL image."""
        return _decode(self._png)

    def to_numpy(self) -> np.ndarray:
        """Decode to a uint8 array: (h, w) for grayscale, (h, w, 3|4) for colour."""
        return np.asarray(self.to_pil())

    def thumbnail(self, max_size: int = 64) -> Any:
        """A PIL image whose longer side is ``max_size``.

        Larger images shrink with Lanczos; smaller ones grow by an integer factor with
        nearest-neighbour so their pixels stay crisp (an 8x8 digit becomes 64x64).
        """
        if max_size < 1:
            raise ValueError(f"max_size must be positive, got {max_size}")
        PILImage = _pil()
        image = self.to_pil()
        longer = max(image.size)
        if longer > max_size:
            image = image.copy()
            image.thumbnail((max_size, max_size), PILImage.Resampling.LANCZOS)
        elif longer * 2 <= max_size:
            factor = max_size // longer
            image = image.resize(
                (image.width * factor, image.height * factor), PILImage.Resampling.NEAREST
            )
        return image

    def thumbnail_uri(self, max_size: int = 64) -> str:
        """The thumbnail as a ``data:image/png;base64,...`` URI, safe to use as an ``src``."""
        encoded = base64.b64encode(_encode_png(self.thumbnail(max_size))).decode("ascii")
        return "data:image/png;base64," + encoded

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Image):
            return NotImplemented
        if self.caption != other.caption or self._size != other._size:
            return False
        return self._png == other._png or np.array_equal(self.to_numpy(), other.to_numpy())

    __hash__ = None  # mutable caption; equality is by pixels

    def __repr__(self) -> str:
        caption = f", caption={self.caption!r}" if self.caption else ""
        return f"Image({self.width}x{self.height}{caption})"
