"""`make demo`'s main job: the service on a generated video of two people, package images only."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from streamer.demo import TIMELINE, VIDEO_FPS, VIDEO_SIZE, write_video
from tests.test_cli import run_vigil
from vigil.samples import sample_images


def test_sample_images_ship_in_packages() -> None:
    images = sample_images()
    assert set(images) == {"Eileen Collins", "Grace Hopper"}
    assert all(image.ndim == 3 and image.shape[2] == 3 for image in images.values())


def test_the_demo_video_follows_its_timeline(tmp_path: Path) -> None:
    video = write_video(tmp_path / "demo.mp4", sample_images())
    capture = cv2.VideoCapture(str(video))
    try:
        frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        ok, first = capture.read()
    finally:
        capture.release()
    assert frames == sum(round(seconds * VIDEO_FPS) for _, seconds in TIMELINE)
    assert size == VIDEO_SIZE
    # someone is on screen in the first frame: it is not the flat grey background
    assert ok and float(np.std(first)) > 10


@pytest.mark.slow
@pytest.mark.redis
def test_make_demo_recognises_both_people(tmp_path: Path) -> None:
    result = run_vigil("demo", home=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Eileen Collins: recognized" in result.stdout
    assert "Grace Hopper: recognized" in result.stdout
    assert "metrics at http://" in result.stderr
