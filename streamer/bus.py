"""The frame bus: sampled frames on a Redis Stream, shared by a consumer group of workers.

Readers ``XADD`` JPEG-encoded frames; the stream is capped at ``bus.max_frames`` entries,
so under back-pressure the oldest frames are trimmed (live video wants the newest frame;
the tracker counts the gaps as dropped frames). Workers on any machine join the consumer
group and ``XREADGROUP`` batches. A worker acknowledges a frame in the same transaction
that writes its result (``ack_in``), so a frame is either done or still pending; frames
left pending by a dead worker are re-claimed by another (``XAUTOCLAIM``) while fresh, and
dropped as stale after ``bus.stale_after_s``.

A reader that reaches the end of a file sends an end-of-stream marker carrying the
number of frames it sent, so the tracker can close that camera's tracks.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, cast

import cv2
import numpy as np
import redis
from redis.client import Pipeline

from vigil.config.streamer import BusConfig
from vigil.streams import StreamEntry, StreamResponse, ensure_group, redis_errors, text
from vigil.typing import ImageRGB

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BusFrame:
    """A frame (or an end-of-stream marker) as a worker receives it.

    Attributes:
        entry_id: The stream entry id, for acknowledging.
        camera: Camera name.
        number: Frame number; for an end-of-stream marker, how many frames the camera sent.
        captured_at: Capture time (Unix seconds): when a camera saw it, or for a file the
            reading start plus the frame's position in the file.
        image: RGB pixels; None for an end-of-stream marker.
        read_at: When the reader got it (Unix seconds): latency is measured from here.
    """

    entry_id: str
    camera: str
    number: int
    captured_at: float
    image: ImageRGB | None
    read_at: float

    @property
    def end_of_stream(self) -> bool:
        return self.image is None


class FrameBus:
    """Frames in, batches out, over one Redis Stream and consumer group."""

    def __init__(self, client: redis.Redis, config: BusConfig) -> None:
        self._client = client
        self.config = config
        self._decoders: ThreadPoolExecutor | None = None

    def ensure_group(self) -> None:
        """Create the stream and the workers' group if missing (new groups start at new frames)."""
        ensure_group(self._client, self.config.stream, self.config.group)

    def publish(
        self, camera: str, number: int, captured_at: float, image: ImageRGB, read_at: float | None = None
    ) -> str:
        """Append a frame, JPEG-encoded; the oldest frames beyond ``max_frames`` are trimmed.

        ``read_at`` (when the reader got the frame) defaults to now.
        """
        ok, jpeg = cv2.imencode(
            ".jpg",
            cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
            [cv2.IMWRITE_JPEG_QUALITY, self.config.jpeg_quality],
        )
        if not ok:
            raise ValueError(f"cannot JPEG-encode a frame of shape {image.shape}")
        fields = {
            "camera": camera,
            "number": number,
            "captured_at": repr(captured_at),
            "read_at": repr(time.time() if read_at is None else read_at),
            "jpeg": jpeg.tobytes(),
        }
        return self._add(fields)

    def publish_end(self, camera: str, frames: int) -> str:
        """Announce that ``camera`` (a file) ended after ``frames`` frames."""
        now = repr(time.time())
        return self._add({"camera": camera, "number": frames, "captured_at": now, "read_at": now, "end": 1})

    def read(self, consumer: str, count: int, block_ms: int | None) -> list[BusFrame]:
        """Up to ``count`` new frames for this consumer (waits up to ``block_ms``; None: no wait)."""
        with redis_errors():
            response = cast(
                StreamResponse,
                self._client.xreadgroup(
                    self.config.group, consumer, {self.config.stream: ">"}, count=count, block=block_ms
                ),
            )
        return self._decode_all([entry for _, entries in response or [] for entry in entries])

    def reclaim(self, consumer: str, count: int) -> tuple[list[BusFrame], list[BusFrame]]:
        """Take over frames a dead worker left pending: ``(fresh, stale)``; the stale are ACKed, dropped."""
        with redis_errors():
            claimed = self._client.xautoclaim(
                self.config.stream,
                self.config.group,
                consumer,
                min_idle_time=self.config.claim_idle_ms,
                start_id="0-0",
                count=count,
            )
        entries = cast(list[StreamEntry], claimed[1])
        frames = self._decode_all([(entry_id, fields) for entry_id, fields in entries if fields])
        now = time.time()
        stale = [f for f in frames if not f.end_of_stream and now - f.read_at > self.config.stale_after_s]
        if stale:
            with redis_errors():
                self._client.xack(self.config.stream, self.config.group, *[f.entry_id for f in stale])
            logger.warning("dropped %d stale frames left by a stopped worker", len(stale))
        fresh = [f for f in frames if f not in stale]
        if fresh:
            logger.info("re-claimed %d frames left by a stopped worker", len(fresh))
        return fresh, stale

    def _decode_all(self, entries: list[StreamEntry]) -> list[BusFrame]:
        """Decode entries; one that cannot be decoded is acknowledged and skipped, never retried forever."""
        frames, broken = [], []
        for (entry_id, _), decoded in zip(entries, self._decode_in_parallel(entries), strict=True):
            if isinstance(decoded, BusFrame):
                frames.append(decoded)
            else:
                broken.append(text(entry_id))
                logger.warning("dropping unreadable bus entry %s: %s", text(entry_id), decoded)
        if broken:
            with redis_errors():
                self._client.xack(self.config.stream, self.config.group, *broken)
        return frames

    def _decode_in_parallel(self, entries: list[StreamEntry]) -> list[BusFrame | Exception]:
        """Each entry decoded, or the error that stopped it; a batch's JPEGs on several threads.

        OpenCV releases the GIL while it decodes, so threads scale: 8 frames of 1280×720 took
        40 ms one after the other on a GPU machine's CPU, a third of a batch's time.
        """
        if len(entries) < 2:
            return [_decode_or_error(entry) for entry in entries]
        if self._decoders is None:
            self._decoders = ThreadPoolExecutor(
                max_workers=min(8, os.cpu_count() or 1), thread_name_prefix="jpeg"
            )
        return list(self._decoders.map(_decode_or_error, entries))

    def ack_in(self, pipe: Pipeline, entry_ids: list[str]) -> None:
        """Queue the acknowledgement of frames on ``pipe`` (the transaction that stores their results)."""
        if entry_ids:
            pipe.xack(self.config.stream, self.config.group, *entry_ids)

    def backlog(self) -> tuple[int, int]:
        """``(waiting, pending)``: frames not yet delivered to a worker, and delivered but not done."""
        with redis_errors():
            groups = self._client.xinfo_groups(self.config.stream)
            group = next((g for g in groups if text(g["name"]) == self.config.group), None)
            if group is None:
                return 0, 0
            last = text(group["last-delivered-id"])
            waiting = len(
                cast(list[StreamEntry], self._client.xrange(self.config.stream, min=f"({last}", max="+"))
            )
        return waiting, int(group["pending"])

    def _add(self, fields: dict[str, Any]) -> str:
        with redis_errors():
            entry_id = self._client.xadd(
                self.config.stream, cast(Any, fields), maxlen=self.config.max_frames, approximate=False
            )
        return text(cast(bytes, entry_id))


def _decode_or_error(entry: StreamEntry) -> BusFrame | Exception:
    try:
        return _decode(*entry)
    except (KeyError, ValueError) as exc:
        return exc


def _decode(entry_id: bytes | str, fields: dict[bytes, bytes]) -> BusFrame:
    camera = fields[b"camera"].decode()
    number = int(fields[b"number"])
    captured_at = float(fields[b"captured_at"])
    read_at = float(fields.get(b"read_at", fields[b"captured_at"]))
    if b"end" in fields:
        return BusFrame(text(entry_id), camera, number, captured_at, None, read_at)
    bgr = cv2.imdecode(np.frombuffer(fields[b"jpeg"], np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"frame {number} of camera {camera} is not a decodable JPEG")
    image = np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)
    return BusFrame(text(entry_id), camera, number, captured_at, image, read_at)
