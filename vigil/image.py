"""Reading images into RGB arrays, with one clear error for every way a file can be bad.

Everything downstream takes ``ImageRGB`` (``(H, W, 3)`` uint8, RGB): grayscale, alpha,
palette and 16-bit images are converted here, at the edge, and nowhere else.
"""

from __future__ import annotations

import io
import logging
import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vigil.errors import ImageError
from vigil.typing import ImageRGB

logger = logging.getLogger(__name__)

# MTCNN's first network looks at 12×12 windows: nothing smaller can hold a face.
MIN_IMAGE_SIDE_PX = 12
# Largest image decoded: 60 megapixels (180 MB as RGB) takes a 50-megapixel camera's photos and
# 8K video frames (33 MP); anything bigger is refused from its header, before a pixel is decoded
# (a 12000×8000 file would otherwise take over a gigabyte on its way to RGB).
MAX_IMAGE_PIXELS = 60_000_000


def load_image(path: Path, max_pixels: int = MAX_IMAGE_PIXELS) -> ImageRGB:
    """Read an image file as RGB.

    EXIF orientation is applied, so a phone photo comes out the way it was held.

    Args:
        path: The image file.
        max_pixels: Largest width × height accepted, checked from the file's header.

    Raises:
        ImageError: The file is missing, unreadable, not an image, truncated, smaller
            than ``MIN_IMAGE_SIDE_PX`` on a side, or over ``max_pixels``.
    """
    source = str(path)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ImageError("file not found; check the path", source) from None
    except IsADirectoryError:
        raise ImageError("is a directory, not an image file", source) from None
    except OSError as exc:
        raise ImageError(f"cannot read file ({exc.strerror})", source) from None
    return decode_image(data, source, max_pixels)


def decode_image(data: bytes, source: str = "image", max_pixels: int = MAX_IMAGE_PIXELS) -> ImageRGB:
    """Decode encoded image bytes (JPEG, PNG, WebP, BMP, TIFF, ...) to RGB.

    Args:
        data: The encoded file contents.
        source: Names the image in error messages.
        max_pixels: Largest width × height decoded; PIL reads the size from the header
            (``Image.open`` is lazy), so a bigger image costs nothing but the check.

    Raises:
        ImageError: As for ``load_image``.
    """
    if not data:
        raise ImageError("file is empty", source)
    try:
        with warnings.catch_warnings():
            # PIL warns from 89 megapixels; our own check below is the stricter one.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
        with img:
            _check_size(img.size, max_pixels, source)  # from the header: nothing is decoded yet
            img.load()  # decoding happens here: truncated files fail now, not later
            rgb = _to_rgb(_upright(img, source))
    except Image.DecompressionBombError:
        # PIL's decompression-bomb guard: over ~179 megapixels (twice Image.MAX_IMAGE_PIXELS).
        raise ImageError(
            "image is too large to decode safely (over ~179 megapixels); downscale it", source
        ) from None
    except UnidentifiedImageError:
        raise ImageError(
            "not an image file (unknown format); use JPEG, PNG, WebP, BMP or TIFF", source
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        # PIL reports truncated or corrupt data as OSError ("image file is truncated").
        raise ImageError(f"corrupt or truncated image data ({exc})", source) from None
    height, width = rgb.shape[:2]
    if min(height, width) < MIN_IMAGE_SIDE_PX:
        raise ImageError(
            f"image is {width}×{height} pixels; at least {MIN_IMAGE_SIDE_PX}×{MIN_IMAGE_SIDE_PX} is needed",
            source,
        )
    return rgb


def crop_with_margin(image: ImageRGB, box_xyxy: Sequence[float], margin: float) -> ImageRGB | None:
    """The box grown by ``margin`` (a fraction of its size) on each side, clipped to the image.

    Returns:
        The crop (a view), or None when the box lies outside the image.
    """
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    pad_x, pad_y = (x2 - x1) * margin, (y2 - y1) * margin
    height, width = image.shape[:2]
    left, top = max(math.floor(x1 - pad_x), 0), max(math.floor(y1 - pad_y), 0)
    right, bottom = min(math.ceil(x2 + pad_x), width), min(math.ceil(y2 + pad_y), height)
    if right <= left or bottom <= top:
        return None
    return image[top:bottom, left:right]


def _check_size(size: tuple[int, int], max_pixels: int, source: str) -> None:
    width, height = size
    if width * height > max_pixels:
        raise ImageError(
            f"image is {width}×{height} pixels ({width * height / 1e6:.0f} megapixels), over the "
            f"{max_pixels / 1e6:g} megapixels Vigil decodes; downscale it",
            source,
        )


def _upright(img: Image.Image, source: str) -> Image.Image:
    """Apply the EXIF orientation; a corrupt EXIF block only costs the rotation, not the image."""
    try:
        return ImageOps.exif_transpose(img)
    except Exception as exc:  # PIL raises struct.error, KeyError, ... on malformed EXIF
        logger.warning("%s: ignoring unreadable EXIF orientation (%s)", source, exc)
        return img


def _to_rgb(img: Image.Image) -> ImageRGB:
    """Convert any PIL mode to an ``(H, W, 3)`` uint8 RGB array."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit (or 32-bit integer) grayscale: scale by the type's range, not by the image's
        # own maximum, so a dark image stays dark.
        wide = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or wide.max(initial=0) > 255 else 255.0
        gray = np.clip(wide / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Composite on white: transparent regions are background, not black.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))
