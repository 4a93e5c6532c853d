"""Camera readers on real sources: the shared clip as a file and over a real RTSP server."""

from __future__ import annotations

import contextlib
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamer.reader import CameraReader, SourceState
from streamer.rtsp_clip_server import free_port
from tests.conftest import PEOPLE, require
from tests.streamer.conftest import (
    CLIP,
    CLIP_FRAMES,
    CLIP_LAST_FRAME_S,
    ReaderThread,
    RtspServer,
    make_camera,
    wait_for,
)
from vigil.errors import StreamError

# --- files -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fps", "expected"),
    [
        # every 6th frame of 29.97 fps: slots 0, 0.2, ..., 9.0 s
        (5.0, 46),
        # every 30th frame: 0, 1.001, ..., 9.009 s
        (1.0, 10),
        # not a divisor of the native rate: slots every 0.25 s get the first frame after them
        (4.0, 37),
        # at or above the native rate every frame is kept, none repeated
        (30.0, CLIP_FRAMES),
        (120.0, CLIP_FRAMES),
    ],
)
def test_file_is_sampled_by_timestamp(fps: float, expected: int) -> None:
    # given the clip, read as fast as possible
    reader = CameraReader(make_camera(require(CLIP), fps=fps))
    before = time.time()

    # when
    frames = list(reader.frames())

    # then one frame per sampling slot, numbered 0.., timestamps on the slot grid
    assert len(frames) == expected, f"{len(frames)} frames at {fps} fps, expected {expected}"
    assert [frame.number for frame in frames] == list(range(expected)), "numbers must be 0, 1, 2, ..."
    positions = np.array([frame.position_s for frame in frames])
    assert positions[0] == 0.0, "the first frame is at 0 s"
    assert positions[-1] == pytest.approx(CLIP_LAST_FRAME_S, abs=1 / fps), "sampling must reach the end"
    steps = np.diff(positions)
    native_period_s = 1 / 29.97
    assert steps.min() >= min(1 / fps, native_period_s) - 1e-3, (
        f"frames closer than the period: {steps.min()}"
    )
    assert steps.max() <= max(1 / fps, native_period_s) + native_period_s, (
        f"a slot was skipped: {steps.max()}"
    )
    assert all(before <= frame.captured_at <= time.time() for frame in frames), "captured_at is wall clock"
    assert {frame.camera for frame in frames} == {"test-cam"}
    assert reader.state is SourceState.FINISHED


def test_file_frames_are_rgb_and_match_opencv() -> None:
    # given the clip's first frame as OpenCV decodes it (BGR)
    capture = cv2.VideoCapture(str(require(CLIP)), cv2.CAP_FFMPEG)
    ok, bgr = capture.read()
    capture.release()
    assert ok

    # when the reader reads it
    with contextlib.closing(CameraReader(make_camera(CLIP)).frames()) as frames:
        first = next(frames)

    # then it is the same picture, in RGB order
    assert first.image.shape == (360, 640, 3) and first.image.dtype == np.uint8
    assert first.image.flags["C_CONTIGUOUS"], "consumers encode the array directly"
    np.testing.assert_array_equal(first.image, bgr[:, :, ::-1], err_msg="image must be RGB of the same frame")


def test_file_url_is_read_as_a_file() -> None:
    # given the clip as a file:// URL
    reader = CameraReader(make_camera(f"file://{require(CLIP)}"))

    # when / then it reads like the path (not as a live stream that would reconnect forever)
    assert len(list(reader.frames())) == 46
    assert reader.state is SourceState.FINISHED


def test_file_as_fast_as_possible_beats_real_time() -> None:
    # given the 9 s clip with realtime off
    reader = CameraReader(make_camera(require(CLIP), realtime=False))

    # when
    started = time.monotonic()
    count = sum(1 for _ in reader.frames())
    elapsed_s = time.monotonic() - started

    # then it takes a fraction of the clip's length (decoding 640×360 H.264 is ~1 ms a frame)
    assert count == 46
    assert elapsed_s < CLIP_LAST_FRAME_S / 3, f"took {elapsed_s:.2f} s for a {CLIP_LAST_FRAME_S} s clip"


def test_file_in_real_time_is_paced_like_a_camera() -> None:
    # given the clip with realtime on
    reader = CameraReader(make_camera(require(CLIP), realtime=True, fps=10))
    arrivals: list[tuple[float, float]] = []  # (seconds since reading began, position)

    # when reading its first 1.5 s
    began = time.monotonic()
    with contextlib.closing(reader.frames()) as frames:
        for frame in frames:
            arrivals.append((time.monotonic() - began, frame.position_s))
            if frame.position_s >= 1.5:
                break

    # then no frame comes before its time, and 1.5 s of video takes about 1.5 s
    early = [(round(elapsed, 3), position) for elapsed, position in arrivals if elapsed < position]
    assert not early, f"frames yielded before their time (elapsed, position): {early}"
    last_elapsed_s, last_position_s = arrivals[-1]
    assert last_position_s <= last_elapsed_s < last_position_s + 1.0, (
        f"1.5 s of video took {last_elapsed_s:.2f} s"
    )
    assert reader.state is SourceState.FINISHED, "closing frames() early finishes the reader"


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _jpeg_bytes() -> bytes:
    image = np.zeros((64, 64, 3), np.uint8)
    image[16:48, 16:48] = 200
    ok, encoded = cv2.imencode(".jpg", image)
    assert ok
    return encoded.tobytes()


@pytest.mark.parametrize(
    ("make_source", "message"),
    [
        # a path that does not exist
        (lambda tmp: tmp / "missing.mp4", "does not exist; check the path"),
        # a directory
        (lambda tmp: tmp, "is not a file"),
        # a zero-byte file
        (lambda tmp: _write(tmp / "empty.mp4", b""), "is not a readable video"),
        # text renamed .mp4
        (lambda tmp: _write(tmp / "notes.mp4", b"not a video at all\n" * 100), "is not a readable video"),
        # a JPEG renamed .mp4: FFmpeg decodes it as a one-frame "video"
        (lambda tmp: _write(tmp / "photo.mp4", _jpeg_bytes()), "single image, not a video"),
        # a real PNG from the shared data, renamed
        (lambda tmp: shutil.copy(require(PEOPLE / "alex-lacamoire.png"), tmp / "face.mp4"), "single image"),
    ],
)
def test_bad_file_raises_stream_error(
    make_source: Callable[[Path], Path | str], message: str, tmp_path: Path
) -> None:
    # given a source that is not a video
    source = make_source(tmp_path)
    states: list[SourceState] = []
    reader = CameraReader(make_camera(source, name="door"), on_state=lambda state, _: states.append(state))

    # when / then: a one-line StreamError naming the camera, after state failed
    with pytest.raises(StreamError) as caught:
        list(reader.frames())
    text = str(caught.value)
    assert message in text, text
    assert text.startswith(f"camera 'door': {source}"), text
    assert "\n" not in text, "messages are one line"
    assert caught.value.camera == "door"
    assert states == [SourceState.CONNECTING, SourceState.FAILED]
    assert reader.state is SourceState.FAILED


def test_corrupt_middle_of_file_does_not_end_it(tmp_path: Path) -> None:
    # given a copy of the clip with 20 kB of garbage (~9 frames' worth) in the middle
    damaged = Path(shutil.copy(require(CLIP), tmp_path / "damaged.mp4"))
    size = damaged.stat().st_size
    with damaged.open("r+b") as file:
        file.seek(size // 2)
        file.write(random.Random(0).randbytes(20_000))

    # when
    reader = CameraReader(make_camera(damaged, fps=5))
    frames = list(reader.frames())

    # then the reader skips the damage and finishes the file
    assert len(frames) >= 0.8 * 46, f"only {len(frames)} of 46 frames: the damage ended the file"
    assert frames[-1].position_s == pytest.approx(CLIP_LAST_FRAME_S, abs=0.2), "must read to the end"
    assert [frame.number for frame in frames] == list(range(len(frames)))
    assert reader.state is SourceState.FINISHED


# --- back-off --------------------------------------------------------------------------------


# The delays themselves are vigil.retry's: tests/test_retry.py.


# --- live sources ----------------------------------------------------------------------------


def test_unreachable_stream_backs_off_then_fails() -> None:
    # given an RTSP URL (with a password) where nothing listens, and two reconnects allowed
    camera = make_camera(f"rtsp://admin:s3cret@127.0.0.1:{free_port()}/x", name="gate", max_reconnects=2)
    states: list[SourceState] = []
    reader = CameraReader(camera, on_state=lambda state, _: states.append(state))

    # when / then: three attempts, backing off between them, then failed
    with pytest.raises(StreamError) as caught:
        list(reader.frames())
    connecting, backing_off = SourceState.CONNECTING, SourceState.BACKING_OFF
    assert states == [connecting, backing_off, connecting, backing_off, connecting, SourceState.FAILED]
    assert reader.reconnects == 2
    text = str(caught.value)
    assert text.startswith("camera 'gate': rtsp://admin:***@127.0.0.1") and "failed 3 times" in text, text
    assert "s3cret" not in text, "passwords must not reach messages or logs"
    assert "\n" not in text


def test_stop_interrupts_back_off() -> None:
    # given an unreachable stream with a long back-off and no reconnect limit
    camera = make_camera(f"rtsp://127.0.0.1:{free_port()}/x", reconnect_initial_s=30, reconnect_max_s=60)
    with ReaderThread(camera) as reader:
        assert wait_for(lambda: SourceState.BACKING_OFF in reader.states, 10), reader.states

        # when
        took_s = reader.stop()

    # then it returns at once, cleanly
    assert took_s < 1.0, f"stop() took {took_s:.2f} s during a 15-30 s back-off"
    assert reader.error is None
    assert reader.states[-1] is SourceState.FINISHED


def test_stop_ends_a_hung_live_read_within_the_read_timeout(rtsp_server: RtspServer) -> None:
    # given a reader live on the RTSP stream
    camera = make_camera(rtsp_server.url, read_timeout_s=1.0)
    with ReaderThread(camera) as reader:
        assert wait_for(lambda: len(reader.frames) >= 3, 20), f"no frames; states {reader.states}"

        # when the camera hangs (connection open, no packets) and the reader is stopped
        rtsp_server.freeze()
        time.sleep(0.3)
        took_s = reader.stop()

    # then the blocked read gives up within the read timeout, and frames() ends cleanly
    assert took_s < camera.read_timeout_s + 2.0, f"stop() took {took_s:.2f} s"
    assert reader.error is None
    assert reader.states[:2] == [SourceState.CONNECTING, SourceState.LIVE]
    assert reader.states[-1] is SourceState.FINISHED


def test_hung_stream_is_dropped_after_the_read_timeout(rtsp_server: RtspServer) -> None:
    # given a reader live on the RTSP stream
    camera = make_camera(rtsp_server.url, read_timeout_s=1.0, open_timeout_s=1.0)
    with ReaderThread(camera) as reader:
        assert wait_for(lambda: len(reader.frames) >= 3, 20), f"no frames; states {reader.states}"

        # when the camera hangs: the connection stays open, no packet comes
        rtsp_server.freeze()
        hung_at = time.monotonic()

        # then the blocked read gives up after about the read timeout, and the reader backs off
        assert wait_for(lambda: SourceState.BACKING_OFF in reader.states, camera.read_timeout_s + 5), (
            f"the reader is stuck on a hung stream; states {reader.states}"
        )
        noticed_s = time.monotonic() - hung_at
        # reconnecting to the hung server is bounded by the open timeout, so stop() is too
        took_s = reader.stop()
    assert noticed_s < camera.read_timeout_s + 1.5, f"took {noticed_s:.2f} s to notice"
    assert took_s < camera.open_timeout_s + 1.5, f"stop() took {took_s:.2f} s"
    assert reader.error is None


def test_rtsp_reconnects_after_the_server_restarts(rtsp_server: RtspServer) -> None:
    # given a reader live on the RTSP stream
    camera = make_camera(rtsp_server.url, fps=10, read_timeout_s=1.0)
    with ReaderThread(camera) as reader:
        assert wait_for(lambda: len(reader.frames) >= 5, 20), f"no frames; states {reader.states}"

        # when the server dies mid-stream ...
        rtsp_server.kill()
        assert wait_for(lambda: SourceState.BACKING_OFF in reader.states, camera.read_timeout_s + 5), (
            f"the reader did not notice the server died; states {reader.states}"
        )
        frames_before = len(reader.frames)
        # ... and comes back on the same port
        rtsp_server.start()
        assert wait_for(lambda: len(reader.frames) >= frames_before + 5, 20), (
            f"no frames after the restart; states {reader.states}"
        )
        reconnects = reader.reader.reconnects

    # then: live, backing off, live again; numbers carry on; nothing raised
    assert reader.error is None, reader.error
    lost_at = reader.states.index(SourceState.BACKING_OFF)
    assert reader.states[:2] == [SourceState.CONNECTING, SourceState.LIVE]
    assert SourceState.LIVE in reader.states[lost_at:], reader.states
    assert reconnects >= 1
    assert [frame.number for frame in reader.frames] == list(range(len(reader.frames))), (
        "frame numbers must keep increasing by one across the reconnect"
    )
    assert reader.frames[-1].image.shape == (360, 640, 3)
