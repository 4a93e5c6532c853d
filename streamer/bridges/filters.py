"""Which events a bridge passes on: the rule both bridges share (``bridges.filter``)."""

from __future__ import annotations

from streamer.events import Event
from vigil.config.bridges import BridgeFilter


def event_passes(event: Event, rule: BridgeFilter) -> bool:
    """Whether ``event`` meets every condition of ``rule``.

    An event *names a person* when it carries an identity (``recognized``, and ``track_ended``
    of a recognized track); ``unknown`` events and the ends of unknown tracks name nobody.

    - ``types``: the event's type is one of them.
    - ``cameras``: empty, or the event's camera is one of them.
    - ``people``: empty, or the event names one of them (by display name or identity id).
    - ``unknown_only``: the event names nobody.
    - ``min_score``: unset, or the event names nobody, or its score is at least this (an event
      naming a person without a score, which an empty gallery cannot produce, passes).

    Example:
        >>> event_passes(unknown_event, BridgeFilter(unknown_only=True))
        True
    """
    if event.type.value not in rule.types:
        return False
    if rule.cameras and event.camera not in rule.cameras:
        return False
    named = event.identity_id is not None
    if rule.unknown_only and named:
        return False
    if rule.people and not (named and (event.identity_id in rule.people or event.name in rule.people)):
        return False
    return not (
        named and rule.min_score is not None and event.score is not None and event.score < rule.min_score
    )
