"""``vigil demo`` (``make demo``): the whole service on a generated video, nothing to download.

scikit-image ships ``astronaut.png`` (Eileen Collins) and matplotlib ships
``grace_hopper.jpg``. The demo enrols both from those photos into a gallery of its own
(``$VIGIL_HOME/demo``, embedded Redis), writes a short video in which each of them, then
both together, move, grow and shrink, turn and change lighting, and runs the real service
on it: camera reader, frame bus, worker, tracker and events, with metrics.
"""

from __future__ import annotations

import logging
import math
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vigil.config import CameraConfig, Settings
from vigil.samples import sample_images
from vigil.typing import ImageRGB

logger = logging.getLogger(__name__)

VIDEO_SIZE = (640, 480)
VIDEO_FPS = 10
# (who is on screen, seconds): gaps end one visit before the next begins.
TIMELINE: tuple[tuple[tuple[str, ...], float], ...] = (
    (("Eileen Collins",), 4.0),
    ((), 2.0),
    (("Grace Hopper",), 4.0),
    ((), 2.0),
    (("Eileen Collins", "Grace Hopper"), 4.0),
)
# Each portrait is scaled to this height before the per-frame scaling.
PORTRAIT_HEIGHT_PX = 220


@dataclass(frozen=True)
class Pose:
    """Where and how a portrait appears in one frame."""

    centre: tuple[float, float]
    scale: float
    angle_deg: float
    gain: float


def poses(progress: float, slot: int, slots: int) -> Pose:
    """A smooth path for a portrait: drifting, growing and shrinking, turning, re-lit."""
    width, height = VIDEO_SIZE
    lane = width * (slot + 1) / (slots + 1)
    return Pose(
        centre=(
            lane + 60 * math.sin(2 * math.pi * progress),
            height / 2 + 40 * math.cos(2 * math.pi * progress),
        ),
        scale=(0.8 if slots == 1 else 0.65) + 0.35 * math.sin(math.pi * progress),
        angle_deg=12 * math.sin(2 * math.pi * progress),
        gain=0.6 + 0.6 * progress,
    )


def render(portraits: dict[str, ImageRGB], people: tuple[str, ...], progress: float) -> ImageRGB:
    """One frame: a grey background with ``people`` at their poses."""
    width, height = VIDEO_SIZE
    frame = np.full((height, width, 3), 96, np.float32)
    for slot, person in enumerate(people):
        portrait = portraits[person]
        pose = poses(progress, slot, len(people))
        ph, pw = portrait.shape[:2]
        matrix = cv2.getRotationMatrix2D((pw / 2, ph / 2), pose.angle_deg, pose.scale)
        matrix[:, 2] += np.array(pose.centre) - np.array([pw / 2, ph / 2])
        warped = cv2.warpAffine(portrait.astype(np.float32), matrix, VIDEO_SIZE, borderValue=(-1, -1, -1))
        inside = warped[..., 0] >= 0
        frame[inside] = np.clip(warped[inside] * pose.gain, 0, 255)
    return frame.astype(np.uint8)


def frames(portraits: dict[str, ImageRGB]) -> Iterator[ImageRGB]:
    for people, seconds in TIMELINE:
        count = round(seconds * VIDEO_FPS)
        for index in range(count):
            yield render(portraits, people, index / max(count - 1, 1))


def write_video(path: Path, images: dict[str, ImageRGB]) -> Path:
    """Write the demo video (MPEG-4) and return its path."""
    portraits = {name: _portrait(image) for name, image in images.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), VIDEO_FPS, VIDEO_SIZE)
    try:
        for frame in frames(portraits):
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return path


def _portrait(image: ImageRGB) -> ImageRGB:
    width = round(image.shape[1] * PORTRAIT_HEIGHT_PX / image.shape[0])
    return np.asarray(cv2.resize(image, (width, PORTRAIT_HEIGHT_PX), interpolation=cv2.INTER_AREA), np.uint8)


def demo_settings(settings: Settings, video: Path) -> Settings:
    """The user's settings in a data directory of the demo's own, watching the demo video."""
    camera = CameraConfig(name="demo", source=str(video))
    streamer = settings.streamer.model_copy(update={"cameras": [camera]})
    return settings.model_copy(update={"home": settings.home / "demo", "streamer": streamer})


def prepare(settings: Settings) -> tuple[Settings, list[str]]:
    """A fresh demo home with both people enrolled and the video written; returns its settings."""
    from indexer.enroll import enroll_person
    from indexer.gallery import Gallery
    from indexer.identify import Identifier
    from vigil.models.pipeline import FacePipeline
    from vigil.streams import connect_redis

    home = settings.home / "demo"
    # Keep converted weights; start the gallery and Redis afresh so the demo is repeatable.
    for stale in ("redis", "metrics", "photos"):
        shutil.rmtree(home / stale, ignore_errors=True)
    images = sample_images()
    photos = home / "photos"
    photos.mkdir(parents=True)
    video = write_video(home / "demo.mp4", images)
    demo = demo_settings(settings, video)
    client = connect_redis(demo.redis, demo.home)
    identifier = Identifier.from_settings(Gallery(client), FacePipeline.from_settings(demo), demo)
    for name, image in images.items():
        photo = photos / f"{name.replace(' ', '_')}.png"
        cv2.imwrite(str(photo), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        enroll_person(identifier, demo.indexer, name, [photo])
    client.close()
    return demo, list(images)
