"""The face_recognition baseline of ``vigil bench stream``, on real dlib and real frames.

The slice of hamilton.mp4 used here (frames 120 to 159) was picked by running the recipe over
the whole clip once: at full resolution dlib matches Lin-Manuel Miranda on every frame from
120 to 210 (distances 0.31 to 0.60), and at scale 0.25 (160×90) it finds no face anywhere.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from streamer.bench_recipe import (
    RecipeResult,
    encode_people,
    match_face,
    run_recipe,
    video_frames,
)
from tests.conftest import PEOPLE, SHARED_DATA, require
from vigil.errors import ImageError, StreamError
from vigil.typing import FloatArray, ImageRGB

pytest.importorskip("dlib", reason="dlib (the reference extra) is not installed")

CLIP = SHARED_DATA / "clips" / "hamilton.mp4"
CLIP_SHAPE = (360, 640, 3)
STAGE_FRAMES = (120, 160)
"""Frames [start, stop) on which Lin-Manuel Miranda faces the camera on stage."""
ENROLLED = {
    "lin-manuel-miranda": "lin-manuel-miranda.png",
    "obama": "obama.jpg",
    "biden": "biden.jpg",
}


@pytest.fixture(scope="module")
def encodings() -> dict[str, FloatArray]:
    """The three enrolment encodings (about 5 s: biden.jpg is 970×2204, upsampled once)."""
    return encode_people({name: require(PEOPLE / file) for name, file in ENROLLED.items()})


@pytest.fixture(scope="module")
def stage_frames() -> list[ImageRGB]:
    start, stop = STAGE_FRAMES
    return list(itertools.islice(video_frames(require(CLIP), limit=stop), start, None))


def test_enrolment_tells_the_three_people_apart(encodings: dict[str, FloatArray]) -> None:
    # given the enrolment encodings
    for name, encoding in encodings.items():
        assert encoding.shape == (128,) and encoding.dtype == np.float64, name
    # then no two people are within the recipe's tolerance of each other
    for (name_a, a), (name_b, b) in itertools.combinations(encodings.items(), 2):
        distance = float(np.linalg.norm(a - b))
        assert distance > 0.6, f"{name_a} and {name_b} are only {distance:.3f} apart"
    # and another photo of Obama lands within it of his encoding, and only of his
    [other] = encode_people({"obama": require(PEOPLE / "obama2.jpg")}).values()
    distances = {name: float(np.linalg.norm(encoding - other)) for name, encoding in encodings.items()}
    assert distances["obama"] <= 0.6, f"obama2.jpg is {distances} from the enrolled people"
    assert min(distances["biden"], distances["lin-manuel-miranda"]) > 0.6, f"obama2.jpg: {distances}"


def test_full_resolution_finds_lin_manuel_on_stage(
    encodings: dict[str, FloatArray], stage_frames: list[ImageRGB]
) -> None:
    # given 40 full-resolution frames of Lin-Manuel Miranda on stage
    assert len(stage_frames) == 40 and stage_frames[0].shape == CLIP_SHAPE
    # when the recipe runs on them
    result = run_recipe(stage_frames, encodings)
    # then he is named on most frames, and nobody else on any
    assert result.frames == 40
    assert result.names["lin-manuel-miranda"] >= 36, f"found on {result.names} of 40 frames"
    assert result.names["biden"] == 0 and result.names["obama"] == 0, f"false matches: {result.names}"
    assert result.unknown_faces <= 4, f"{result.unknown_faces} unknown faces"
    # and the timing is real and single-core, as the recipe's users get it
    assert result.seconds > 0 and result.fps == pytest.approx(40 / result.seconds)
    assert result.cpu_seconds <= 1.1 * result.seconds + 0.05, (
        f"{result.cpu_seconds:.2f} CPU s in {result.seconds:.2f} s: more than one core was used"
    )
    assert (result.scale, result.upsample, result.tolerance) == (1.0, 1, 0.6)


def test_quarter_scale_finds_no_face(encodings: dict[str, FloatArray], stage_frames: list[ImageRGB]) -> None:
    # given the same frames, shrunk to 160×90 as face_recognition's fast webcam example does
    # when the recipe runs on them
    result = run_recipe(stage_frames, encodings, scale=0.25)
    # then his ~25 px face is below what HOG (upsampled once) can find: nothing is detected
    assert result.frames == 40
    assert result.faces == 0 and result.unknown_faces == 0, f"{result.faces} faces found at 0.25"
    assert result.names == dict.fromkeys(ENROLLED, 0)
    # and it is much cheaper per frame than full resolution
    assert result.cpu_seconds_per_frame < 0.05, f"{result.cpu_seconds_per_frame:.3f} CPU s per frame"


def test_photo_without_a_face_gives_a_one_line_error(tmp_path: Path) -> None:
    # given a plain grey photo
    photo = tmp_path / "wall.png"
    Image.new("RGB", (320, 240), (128, 128, 128)).save(photo)
    # when enrolled, then one line names the person, the file and what to do
    with pytest.raises(ImageError) as caught:
        encode_people({"nobody": photo})
    message = str(caught.value)
    assert "\n" not in message and str(photo) in message and "'nobody'" in message, message
    assert "no face found" in message, message


def test_video_frames_reads_rgb_frames_up_to_the_limit() -> None:
    # given the clip, when three frames are read
    frames = list(video_frames(require(CLIP), limit=3))
    # then three distinct 640×360 RGB frames come back
    assert len(frames) == 3
    assert all(frame.shape == CLIP_SHAPE and frame.dtype == np.uint8 for frame in frames)
    assert all(frame.flags["C_CONTIGUOUS"] for frame in frames), "dlib needs contiguous arrays"
    # and the stage lighting is warm: red above blue, which BGR order would invert
    assert frames[0][..., 0].mean() > frames[0][..., 2].mean(), "frames look BGR, not RGB"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"this is not a video\n" * 100, StreamError),  # text with a video name
        (b"", StreamError),  # empty file
        (None, StreamError),  # no file at all
    ],
)
def test_not_a_video_raises_stream_error(tmp_path: Path, content: bytes | None, expected: type) -> None:
    # given a file that is not a readable video
    path = tmp_path / "clip.mp4"
    if content is not None:
        path.write_bytes(content)
    # when opened, then one line names the file
    with pytest.raises(expected) as caught:
        video_frames(path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value), str(caught.value)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"scale": 0.0}, ValueError),  # nothing left of the frame
        ({"scale": 1.5}, ValueError),  # upscaling is upsample's job
        ({"upsample": -1}, ValueError),  # negative upsampling
        ({"tolerance": -0.1}, ValueError),  # no distance is negative
    ],
)
def test_bad_options_are_refused_before_any_work(options: dict[str, float], expected: type) -> None:
    # given options out of range, when the recipe is asked to run, then it refuses at once
    with pytest.raises(expected):
        run_recipe([], {}, **options)  # type: ignore[arg-type]


def test_empty_run_has_zero_rates() -> None:
    # given no frames, when run, then the result is all zeros rather than a division error
    result = run_recipe([], {})
    assert isinstance(result, RecipeResult)
    assert (result.frames, result.fps, result.cpu_seconds_per_frame) == (0, 0.0, 0.0)


def _unit(index: int, length: float = 1.0) -> FloatArray:
    vector = np.zeros(128)
    vector[index] = length
    return vector


@pytest.mark.parametrize(
    ("encoding", "known", "expected"),
    [
        (_unit(0, 0.6), np.stack([_unit(0, 0.0), _unit(0)]), 1),  # nearest wins: 0.4 beats 0.6
        (_unit(0, 0.6), np.stack([_unit(0, 0.0)]), 0),  # exactly at the tolerance still matches
        (_unit(0, 0.7), np.stack([_unit(0, 0.0)]), None),  # beyond the tolerance: unknown
        (_unit(0, 0.5), np.stack([_unit(0, 0.0), _unit(0, 1.0)]), 0),  # a tie goes to the first
        (_unit(0), np.zeros((0, 128)), None),  # nobody enrolled: unknown
    ],
)
def test_match_face_follows_face_recognitions_argmin_rule(
    encoding: FloatArray, known: FloatArray, expected: int | None
) -> None:
    assert match_face(encoding, known, tolerance=0.6) == expected
