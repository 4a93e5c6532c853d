"""Event thumbnails: a small JPEG of the face behind each event, only when the user opts in.

Vigil keeps embeddings and metadata, not face images, unless told otherwise. With
``streamer.events.thumbnails`` on (off by default), workers crop every face they publish
(``face_crop_jpeg``: at most 128 px a side), and the tracker keeps the crop of the face each
event rests on (the face whose box the event carries) under ``StreamKeys.thumbnail(event_id)``,
expiring after ``streamer.events.max_age_s`` like the events. The commit script that publishes
the event writes its thumbnail (``thumbnail_section``), so a thumbnail exists only beside a
published event; ``event_thumbnail`` reads it back.

Erasure must find a person's thumbnails without looking at images: each thumbnail's key, with
those of its track's earlier events (an ``unknown`` event's face is the person's too once the
track is named), goes into a set per person a frame of the track was matched to
(``StreamKeys.thumbnails_of``), expiring with them. A track never matched to anyone (a
stranger, however near to somebody) is no one's: its thumbnails expire with its events.
``indexer.erase`` deletes every key that set names.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import redis

from indexer.erase import StreamKeys
from streamer.feedback import check_event_id
from streamer.tracking import EventThumbnail
from vigil.config import Settings
from vigil.streams import redis_errors

logger = logging.getLogger(__name__)


@dataclass
class ThumbnailSection:
    """The thumbnails of one tracker commit, as the commit script takes them.

    Attributes:
        count: Thumbnails in ``arguments``.
        first_set_key: Index (1-based, in the script's KEYS) of the first per-person set; every
            key from there on is one (the script checks their type before writing anything).
        arguments: Per thumbnail: the event's number in the commit (1-based), the index of its
            key in KEYS, the JPEG ('' for none: links only), how many thumbnail keys and how many
            sets follow, the thumbnail keys, the indices of the sets in KEYS.
    """

    count: int = 0
    first_set_key: int = 0
    arguments: list[str | int | bytes] = field(default_factory=list)


def event_thumbnail(client: redis.Redis, settings: Settings, event_id: str) -> bytes | None:
    """The JPEG of the face behind an event, or None when none is kept.

    None is kept with ``streamer.events.thumbnails`` off (the default), once the event is older
    than ``streamer.events.max_age_s``, or after its person was erased.

    Raises:
        EventError: ``event_id`` is not 32 hex digits.
        RedisUnavailableError: Redis does not answer.
    """
    wanted = check_event_id(event_id)
    with redis_errors():
        return cast(bytes | None, client.get(StreamKeys.from_settings(settings).thumbnail(wanted)))


def thumbnail_section(
    keys: list[str], stream_keys: StreamKeys, thumbnails: Sequence[tuple[int, EventThumbnail]]
) -> ThumbnailSection:
    """The commit script's arguments for ``thumbnails`` (each with its event's number, from 1).

    Appends the keys it names to ``keys``: the thumbnails' own, then the per-person sets.
    """
    section = ThumbnailSection(count=len(thumbnails))
    own = []
    for _, thumbnail in thumbnails:
        keys.append(stream_keys.thumbnail(thumbnail.event_id))
        own.append(len(keys))
    people = sorted({identity for _, thumbnail in thumbnails for identity in thumbnail.identity_ids})
    section.first_set_key = len(keys) + 1
    set_index = {identity: section.first_set_key + n for n, identity in enumerate(people)}
    keys += [stream_keys.thumbnails_of(identity) for identity in people]
    for (number, thumbnail), key_index in zip(thumbnails, own, strict=True):
        members = [stream_keys.thumbnail(event_id) for event_id in thumbnail.track_event_ids]
        sets = [set_index[identity] for identity in sorted(thumbnail.identity_ids)]
        section.arguments += [number, key_index, thumbnail.jpeg or b"", len(members), len(sets)]
        section.arguments += [*members, *sets]
    return section
