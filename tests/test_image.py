"""Image loading: every kind of bad file gives an ImageError with a message, never a crash."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from tests.conftest import PEOPLE, require
from vigil.errors import ImageError, VigilError
from vigil.image import MIN_IMAGE_SIDE_PX, decode_image, load_image


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _png(array: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", array)
    assert ok
    return encoded.tobytes()


@pytest.mark.parametrize(
    ("make_file", "message"),
    [
        # a path that does not exist
        (lambda tmp: tmp / "missing.jpg", "file not found"),
        # a directory given where a file is expected
        (lambda tmp: tmp, "is a directory"),
        # an empty file
        (lambda tmp: _write(tmp / "empty.jpg", b""), "file is empty"),
        # text pretending to be a JPEG
        (
            lambda tmp: _write(tmp / "notes.jpg", b"these are not the pixels you are looking for" * 10),
            "not an image",
        ),
        # a JPEG cut off in the middle of its data
        (
            lambda tmp: _write(tmp / "cut.jpg", (require(PEOPLE / "obama.jpg")).read_bytes()[:20_000]),
            "truncated",
        ),
        # a single pixel
        (lambda tmp: _write(tmp / "dot.png", _png(np.zeros((1, 1, 3), np.uint8))), "at least"),
    ],
    ids=["missing", "directory", "empty", "not-an-image", "truncated-jpeg", "one-pixel"],
)
def test_bad_files_raise_image_error(tmp_path: Path, make_file, message: str) -> None:
    # given a bad file
    path = make_file(tmp_path)
    # when it is loaded, then an ImageError names the file and the problem
    with pytest.raises(ImageError, match=message) as caught:
        load_image(path)
    assert str(path) in str(caught.value), "the message must name the file"
    assert isinstance(caught.value, VigilError)


def test_grayscale_becomes_three_equal_channels() -> None:
    # given an 8-bit grayscale PNG
    gray = (np.arange(40 * 30) % 256).astype(np.uint8).reshape(40, 30)
    # when decoded
    rgb = decode_image(_png(gray))
    # then it is RGB with the gray value in every channel
    assert rgb.shape == (40, 30, 3) and rgb.dtype == np.uint8
    assert np.array_equal(rgb[:, :, 0], gray) and np.array_equal(rgb[:, :, 2], gray)


def test_sixteen_bit_png_is_scaled_by_type_range() -> None:
    # given a 16-bit grayscale PNG at half range
    wide = np.full((20, 20), 32768, dtype=np.uint16)
    # when decoded
    rgb = decode_image(_png(wide))
    # then it is 8-bit mid-gray, not saturated white
    assert rgb.dtype == np.uint8
    assert int(rgb.max()) == 128, f"expected 128, got {rgb.max()}"


def test_sixteen_bit_colour_png_is_read() -> None:
    # given a 16-bit colour PNG (OpenCV writes BGR)
    wide = np.zeros((20, 20, 3), dtype=np.uint16)
    wide[:, :, 2] = 65535  # red
    # when decoded
    rgb = decode_image(_png(wide))
    # then red comes out red at full 8-bit range
    assert rgb.shape == (20, 20, 3)
    assert tuple(rgb[0, 0]) == (255, 0, 0), f"got {tuple(rgb[0, 0])}"


def test_rgba_is_composited_on_white() -> None:
    # given an RGBA image, left half opaque red, right half fully transparent
    rgba = np.zeros((20, 20, 4), dtype=np.uint8)
    rgba[:, :10] = (255, 0, 0, 255)
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, format="PNG")
    # when decoded
    rgb = decode_image(buffer.getvalue())
    # then transparency becomes white background
    assert tuple(rgb[5, 2]) == (255, 0, 0)
    assert tuple(rgb[5, 15]) == (255, 255, 255)


def test_real_rgba_photo_loads() -> None:
    # given face_recognition's 32-bit PNG
    image = load_image(require(PEOPLE / "32bit.png"))
    # then it is plain RGB
    assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    # given a 30×20 JPEG whose EXIF says "rotate 90°"
    img = Image.fromarray(np.zeros((20, 30, 3), np.uint8))
    exif = img.getexif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    path = tmp_path / "rotated.jpg"
    img.save(path, exif=exif)
    # when loaded, then width and height are swapped as displayed
    assert load_image(path).shape[:2] == (30, 20)


def test_minimum_size_is_accepted() -> None:
    side = MIN_IMAGE_SIDE_PX
    assert decode_image(_png(np.zeros((side, side, 3), np.uint8))).shape == (side, side, 3)


def test_decompression_bomb_is_an_image_error(tmp_path: Path) -> None:
    # given a tiny PNG that declares 20,000 × 20,000 pixels (400 Mpx)
    big = Image.new("1", (20_000, 20_000))
    path = tmp_path / "bomb.png"
    big.save(path, optimize=True)
    # then it is refused with our error, not PIL's
    with pytest.raises(ImageError, match="too large"):
        load_image(path)
