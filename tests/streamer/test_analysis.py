"""What travels from a worker to the tracker: the small face JPEG of an unmatched face.

Geometry on a synthetic frame (each pixel says where it came from); that the JPEG of a real
face is that face is checked through the real worker in ``tests/streamer/test_learning.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamer.analysis import FACE_CROP_MAX_SIDE_PX, FaceResult, FrameResult, face_crop_jpeg
from vigil.image import decode_image
from vigil.typing import ImageRGB

FRAME_W, FRAME_H = 640, 480


def coordinate_frame() -> ImageRGB:
    """Red rises with x, green with y (in steps of 4 px), so a crop shows where it was cut."""
    ys, xs = np.mgrid[0:FRAME_H, 0:FRAME_W]
    return np.stack([xs // 4 % 256, ys // 4 % 256, np.full_like(xs, 128)], axis=2).astype(np.uint8)


@pytest.mark.parametrize(
    ("box", "expected_wh", "expected_left_top"),
    [
        # a 100×120 face: 150×180 with the margin, scaled to 107×128
        ([200, 100, 300, 220], (107, 128), (175, 70)),
        # a 40×40 face is not enlarged: 60×60 with the margin
        ([300, 300, 340, 340], (60, 60), (290, 290)),
        # a face at the top-left corner: the margin is cut at the frame's edge
        ([-10, -20, 70, 60], (90, 80), (0, 0)),
        # a box entirely outside the frame: nothing to keep
        ([700, 10, 760, 70], None, None),
    ],
    ids=["scaled-down", "small-kept-as-is", "clipped-at-edge", "outside"],
)
def test_face_crop_has_a_margin_fits_128_px_and_stays_in_the_frame(
    box: list[float], expected_wh: tuple[int, int] | None, expected_left_top: tuple[int, int] | None
) -> None:
    # when a face is cropped from a frame
    jpeg = face_crop_jpeg(coordinate_frame(), box)
    if expected_wh is None:
        assert jpeg is None, "a box outside the frame has no crop"
        return
    # then it is a JPEG of the expected size, at most 128 px a side
    assert jpeg is not None and jpeg.startswith(b"\xff\xd8")
    crop = decode_image(jpeg)
    assert (crop.shape[1], crop.shape[0]) == expected_wh
    assert max(crop.shape[:2]) <= FACE_CROP_MAX_SIDE_PX
    # and its top-left pixel comes from where the margin starts (JPEG blurs a few levels)
    assert expected_left_top is not None
    red, green = (int(v) for v in crop[1, 1, :2])
    assert math.isclose(red, expected_left_top[0] // 4, abs_tol=3), (red, expected_left_top)
    assert math.isclose(green, expected_left_top[1] // 4, abs_tol=3), (green, expected_left_top)


def test_a_face_crop_travels_with_its_result_and_is_absent_otherwise() -> None:
    # given a result with an unmatched face carrying a crop, and a named face without one
    jpeg = face_crop_jpeg(coordinate_frame(), [200, 100, 300, 220])
    embedding = np.ones(4, np.float32) / 2
    faces = [
        FaceResult(
            [200, 100, 300, 220], [[0.0, 0.0]] * 5, 0.99, embedding, None, None, 0.2, "x", crop_jpeg=jpeg
        ),
        FaceResult([10, 10, 60, 60], [[0.0, 0.0]] * 5, 0.98, embedding, "id-ada", "Ada", 0.95, "id-ada"),
    ]
    result = FrameResult("door", 3, 1_795_341_600.0, faces)
    # when it goes through the faces stream's fields (bytes, as Redis returns them)
    copy = FrameResult.from_fields({k.encode(): v.encode() for k, v in result.to_fields().items()})
    # then the crop comes back byte for byte, and the named face still has none
    assert [face.crop_jpeg for face in copy.faces] == [jpeg, None]
