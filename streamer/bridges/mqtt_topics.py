"""The MQTT bridge's topic names, and the one rule that turns a person's name into a topic level.

Topics (``prefix`` is ``bridges.mqtt.topic_prefix``, default ``vigil``)::

    {prefix}/events                     every event passing the filter (the event's JSON)
    {prefix}/<camera>/<slug|unknown>    the same event, by camera and person
    {prefix}/<camera>/present           retained: who is on that camera now
    {prefix}/person/<slug>              retained: a person's presence, last camera, last seen
    {prefix}/bridge/status              retained: ``online``, or ``offline`` (the last will)

Camera names are already topic-safe (``[A-Za-z0-9_.-]``, ``vigil.config.streamer``). Names of
people are not: MQTT forbids the wildcards ``+`` and ``#`` (and NUL) in a published topic, and a
``/`` would open a new level. :func:`slug` maps a name to lower-case ASCII letters and digits
joined by single hyphens (``Barack Obama`` -> ``barack-obama``, ``José Núñez`` -> ``jose-nunez``);
a name with none of them (``李雷``) becomes ``person-<first 8 hex digits of the identity id>``.
Two people whose names give the same slug both get ``-<first 8 hex digits of the id>`` appended,
so no topic ever mixes two people; so does a slug that is a reserved level (``present``,
``unknown``, ``status``), which would collide with the state topics. Cameras named ``person`` or
``bridge`` would collide too: the bridge refuses them (:data:`RESERVED_CAMERAS`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from indexer.records import Identity

UNKNOWN_LEVEL = "unknown"
"""The person level of events of faces the gallery does not know."""
PERSON_LEVEL = "person"
BRIDGE_LEVEL = "bridge"
ONLINE = "online"
OFFLINE = "offline"
RESERVED_SLUGS = frozenset({"present", UNKNOWN_LEVEL, "status"})
"""Person levels that would land on another topic: such slugs get the id suffix."""
RESERVED_CAMERAS = frozenset({PERSON_LEVEL, BRIDGE_LEVEL})
"""Camera names whose topics would land on the person and status topics."""
# Identity ids are uuid4 hex: 8 digits tell apart people whose names share a slug.
_ID_DIGITS = 8
_NOT_SLUG = re.compile(r"[^a-z0-9]+")
# Home Assistant object ids (the discovery topic's level) allow these only.
_NOT_OBJECT_ID = re.compile(r"[^A-Za-z0-9_-]")


def slug(name: str, identity_id: str = "") -> str:
    """``name`` as one topic level: lower-case ASCII letters and digits joined by ``-``.

    Accents are dropped (NFKD, then ASCII); every other run of characters becomes one ``-``.

    Args:
        name: A person's display name.
        identity_id: Their id, for a name with no letter or digit left (``person-<id prefix>``).

    Example:
        >>> slug("Barack Obama")
        'barack-obama'
        >>> slug("O'Neil / Smith #2")
        'o-neil-smith-2'
    """
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    level = _NOT_SLUG.sub("-", ascii_name.lower()).strip("-")
    if not level:
        level = f"{PERSON_LEVEL}-{identity_id[:_ID_DIGITS] or 'unnamed'}"
    return level


def person_slugs(identities: Iterable[Identity]) -> dict[str, str]:
    """Each enrolled person's topic level (identity id -> slug), unique among them.

    People whose names give the same slug, or a reserved one (``RESERVED_SLUGS``), get
    ``-<first 8 hex digits of their id>`` appended.
    """
    people = list(identities)
    plain = {person.identity_id: slug(person.name, person.identity_id) for person in people}
    counts: dict[str, int] = {}
    for level in plain.values():
        counts[level] = counts.get(level, 0) + 1
    return {
        identity_id: level
        if counts[level] == 1 and level not in RESERVED_SLUGS
        else f"{level}-{identity_id[:_ID_DIGITS]}"
        for identity_id, level in plain.items()
    }


def object_id(text: str) -> str:
    """``text`` with every character Home Assistant refuses in an object id replaced by ``_``."""
    return _NOT_OBJECT_ID.sub("_", text)


@dataclass(frozen=True)
class Topics:
    """The topic names under one prefix.

    Attributes:
        prefix: ``bridges.mqtt.topic_prefix`` (validated: no wildcards, no empty levels).
    """

    prefix: str

    @property
    def events(self) -> str:
        return f"{self.prefix}/events"

    @property
    def status(self) -> str:
        """The bridge's availability: ``online`` (retained) while it runs, ``offline`` (its last will)."""
        return f"{self.prefix}/{BRIDGE_LEVEL}/status"

    def event(self, camera: str, person_level: str | None) -> str:
        """Where an event of ``camera`` goes by person (``None``: an unknown face)."""
        return f"{self.prefix}/{camera}/{person_level or UNKNOWN_LEVEL}"

    def present(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/present"

    def person(self, person_level: str) -> str:
        return f"{self.prefix}/{PERSON_LEVEL}/{person_level}"
