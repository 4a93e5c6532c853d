"""The frame bus: sampled frames on a Redis Stream, shared by a consumer group of workers.

Readers ``XADD`` JPEG-encoded frames; the stream is capped at ``bus.max_frames`` entries,
so under back-pressure the oldest frames are trimmed (live video wants the newest frame;
the tracker counts the gaps as dropped frames). Workers on any machine join the consumer
group and ``XREADGROUP`` batches. A worker acknowledges a frame in the same transaction
that writes its result (``ack_in``), so a frame is either done or still pending; frames
left pending by a dead worker are re-claimed by another (``XAUTOCLAIM``) while fresh, and
dropped as stale after ``bus.stale_after_s`` (never a batch job's: see below).

Frames a worker has finished are deleted with their acknowledgement (they are transient),
so the stream holds only frames waiting for a worker or pending with one. Entries nobody can
use (malformed, or trimmed while pending with a worker that died) are poison: counted in
``vigil_bus_poison_entries_total``, logged once, acknowledged and skipped, never retried.

Files read as fast as possible (``realtime: false``) have flow control instead of trimming:
their reader waits for room (``wait_for_room``) while half the bus is taken, so no frame of
a batch job is dropped. ``backlog`` counts from the consumer group's counters (``XINFO
GROUPS``: lag and pending, or on Redis 6.2 the stream's length less the pending), never by
reading the frames.

A reader that reaches the end of a file sends an end-of-stream marker carrying the
number of frames it sent, so the tracker can close that camera's tracks; it makes sure a
worker took it (``end_delivered``) and sends it again if it was trimmed first.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, cast

import cv2
import redis
from redis.client import Pipeline

from streamer import metrics
from streamer.analysis import decode_jpeg
from vigil.config.streamer import BusConfig
from vigil.stop import StopFlag, pause
from vigil.streams import StreamEntry, StreamResponse, ensure_group, redis_errors, stream_id_key, text
from vigil.typing import ImageRGB

logger = logging.getLogger(__name__)

# Flow control keeps a batch job's backlog under this share of ``bus.max_frames``: the rest is
# headroom for several readers that see room at once and for live cameras on the same bus.
FLOW_CONTROL_SHARE = 0.5
# How often a reader waiting for room looks again: a worker batch takes tens of milliseconds.
_ROOM_POLL_S = 0.02


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
        paced: From a file read as fast as possible (a batch job): never dropped as stale.
    """

    entry_id: str
    camera: str
    number: int
    captured_at: float
    image: ImageRGB | None
    read_at: float
    paced: bool = False

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
        self,
        camera: str,
        number: int,
        captured_at: float,
        image: ImageRGB,
        read_at: float | None = None,
        *,
        paced: bool = False,
    ) -> str:
        """Append a frame, JPEG-encoded; the oldest frames beyond ``max_frames`` are trimmed.

        ``read_at`` (when the reader got the frame) defaults to now. A ``paced`` frame (a file
        read as fast as possible) is never dropped as stale when re-claimed: a batch job waits.
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
        if paced:
            fields["paced"] = 1
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
        """Take over frames a dead worker left pending: ``(fresh, stale)``; the stale are ACKed, dropped.

        Frames trimmed from the bus while pending are released (acknowledged) and counted as poison.
        """
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
        present = [(entry_id, fields) for entry_id, fields in entries if entry_id is not None and fields]
        if len(claimed) > 2 and claimed[2]:
            # Redis 7 drops trimmed entries from the pending list itself and names them.
            self._count_trimmed(len(claimed[2]))
        elif len(present) < len(entries):
            # Redis 6.2 hands them over as nil entries and keeps them pending: release them.
            self._release_trimmed(consumer, {text(entry_id) for entry_id, _ in present})
        frames = self._decode_all(present)
        now = time.time()
        # A batch job's frames wait for the workers, however long they have sat on the bus.
        stale = [
            f
            for f in frames
            if not f.end_of_stream and not f.paced and now - f.read_at > self.config.stale_after_s
        ]
        if stale:
            self.ack([f.entry_id for f in stale])
            logger.warning("dropped %d stale frames left by a stopped worker", len(stale))
        fresh = [f for f in frames if f not in stale]
        if fresh:
            logger.info("re-claimed %d frames left by a stopped worker", len(fresh))
        return fresh, stale

    def _release_trimmed(self, consumer: str, present: set[str]) -> None:
        """Acknowledge the entries pending with ``consumer`` that no longer exist (Redis 6.2)."""
        with redis_errors():
            pending = self._client.xpending_range(
                self.config.stream, self.config.group, min="-", max="+", count=1000, consumername=consumer
            )
            held = [text(cast(bytes, p["message_id"])) for p in pending]
            candidates = [entry_id for entry_id in held if entry_id not in present]
            # Rare (a trimmed frame was handed over), and only the entries not handed over are read.
            gone = [i for i in candidates if not self._client.xrange(self.config.stream, min=i, max=i)]
            if gone:
                self._client.xack(self.config.stream, self.config.group, *gone)
        self._count_trimmed(len(gone))

    def _count_trimmed(self, count: int) -> None:
        if not count:
            return
        metrics.POISON_ENTRIES.labels(stream=self.config.stream, reason="trimmed").inc(count)
        logger.warning("released %d frames trimmed from the bus while a stopped worker held them", count)

    def _decode_all(self, entries: list[StreamEntry]) -> list[BusFrame]:
        """Decode entries; a poison entry is counted, logged, acknowledged and skipped, never retried."""
        frames, broken = [], []
        for (entry_id, _), decoded in zip(entries, self._decode_in_parallel(entries), strict=True):
            if isinstance(decoded, BusFrame):
                frames.append(decoded)
            else:
                broken.append(text(entry_id))
                logger.warning(
                    "skipping unreadable bus entry %s (%s: %s)",
                    text(entry_id),
                    type(decoded).__name__,
                    decoded,
                )
        if broken:
            metrics.POISON_ENTRIES.labels(stream=self.config.stream, reason="malformed").inc(len(broken))
            self.ack(broken)
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

    def ack(self, entry_ids: list[str]) -> None:
        """Acknowledge (and delete) done frames in a transaction of their own.

        For a worker whose results go to another server than the frames (the frame bus has a
        server of its own, ``vigil.streams.connect_frames_redis``), so one transaction cannot hold both.
        """
        if entry_ids:
            with redis_errors(), self._client.pipeline(transaction=True) as pipe:
                self.ack_in(pipe, entry_ids)
                pipe.execute()

    def ack_in(self, pipe: Pipeline, entry_ids: list[str]) -> None:
        """Queue the acknowledgement of frames on ``pipe`` (the transaction that stores their results).

        Done frames are deleted too: frames are transient, and the stream's length is then the
        backlog, which is what Redis 6.2 can count without reading them.
        """
        if entry_ids:
            pipe.xack(self.config.stream, self.config.group, *entry_ids)
            pipe.xdel(self.config.stream, *entry_ids)

    def backlog(self) -> tuple[int, int]:
        """``(waiting, pending)``: frames not yet delivered to a worker, and delivered but not done.

        Counted from the group's counters in one round trip, whatever the frames weigh.
        """
        with redis_errors(), self._client.pipeline(transaction=False) as pipe:
            pipe.xinfo_groups(self.config.stream)
            pipe.xlen(self.config.stream)
            try:
                groups, length = pipe.execute()
            except redis.ResponseError:  # no stream yet
                return 0, 0
        group = next((g for g in groups if text(g["name"]) == self.config.group), None)
        if group is None:
            return 0, 0
        pending = int(group["pending"])
        lag = group.get("lag")  # Redis >= 7; None when it cannot tell
        if lag is not None:
            # Undelivered entries trimmed away still count in the lag until the group passes them.
            return min(int(lag), int(length)), pending
        return max(int(length) - pending, 0), pending

    def wait_for_room(self, stop: StopFlag) -> bool:
        """Flow control for batch jobs: wait until the backlog is under ``FLOW_CONTROL_SHARE`` of the bus.

        Returns:
            False when ``stop`` was set while waiting.
        """
        limit = max(1, int(self.config.max_frames * FLOW_CONTROL_SHARE))
        while sum(self.backlog()) >= limit:
            if pause(stop, _ROOM_POLL_S):
                return False
        return True

    def end_delivered(self, entry_id: str) -> bool | None:
        """Whether a worker took the end-of-stream marker ``entry_id``: True; False when it was
        trimmed before any did (send it again); None while it waits."""
        with redis_errors():
            groups = self._client.xinfo_groups(self.config.stream)
            group = next((g for g in groups if text(g["name"]) == self.config.group), None)
            delivered = None if group is None else stream_id_key(text(group["last-delivered-id"]))
            if delivered is not None and delivered >= stream_id_key(entry_id):
                return True
            waiting = self._client.xrange(self.config.stream, min=entry_id, max=entry_id)
        return None if waiting else False

    def _add(self, fields: dict[str, Any]) -> str:
        with redis_errors():
            entry_id = self._client.xadd(
                self.config.stream, cast(Any, fields), maxlen=self.config.max_frames, approximate=False
            )
        return text(cast(bytes, entry_id))


def _decode_or_error(entry: StreamEntry) -> BusFrame | Exception:
    try:
        return _decode(*entry)
    except (KeyError, ValueError, cv2.error) as exc:  # OpenCV raises on an empty JPEG
        return exc


def _decode(entry_id: bytes | str, fields: dict[bytes, bytes]) -> BusFrame:
    camera = fields[b"camera"].decode()
    number = int(fields[b"number"])
    captured_at = float(fields[b"captured_at"])
    read_at = float(fields.get(b"read_at", fields[b"captured_at"]))
    if b"end" in fields:
        return BusFrame(text(entry_id), camera, number, captured_at, None, read_at)
    image = decode_jpeg(fields[b"jpeg"])
    if image is None:
        raise ValueError(f"frame {number} of camera {camera} is not a decodable JPEG")
    return BusFrame(text(entry_id), camera, number, captured_at, image, read_at, fields.get(b"paced") == b"1")
