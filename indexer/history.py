"""A person's gallery history: every template and hard negative added or removed, and why.

Each identity has an append-only Redis list ``{namespace}:identity:{identity_id}:history``
of JSON entries, written in the same transaction as the change it records, so the
history can never miss a change. Entries are numbered from 1 in list order; the number
is what ``vigil people history NAME --undo ENTRY`` takes. Erasing the person deletes the
list with everything else. A gallery export carries the list, and an import restores it with
the same numbers, its item ids mapped to the new ones (``indexer.backup``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Literal, TypeAlias

from redis.client import Pipeline

from indexer.records import now

HistoryAction: TypeAlias = Literal["added", "removed"]
HistoryItem: TypeAlias = Literal["template", "negative"]
HistoryOrigin: TypeAlias = Literal["enrol", "aging", "feedback", "unknowns", "undo"]


@dataclass(frozen=True)
class HistoryEntry:
    """One change to a person's templates or hard negatives.

    Attributes:
        entry: Number in the person's history, from 1 (0 until written).
        at: ISO-8601 UTC time of the change.
        action: ``added`` or ``removed``.
        item: ``template`` or ``negative``.
        item_id: The template's or negative's id.
        origin: Who made the change (``undo`` for a reversal).
        event_id: The stream event behind it, if any.
        note: Free text (e.g. which entry an undo reverses).
    """

    entry: int
    at: str
    action: HistoryAction
    item: HistoryItem
    item_id: int
    origin: HistoryOrigin
    event_id: str | None = None
    note: str = ""


def history_entry(
    action: HistoryAction,
    item: HistoryItem,
    item_id: int,
    origin: HistoryOrigin,
    event_id: str | None = None,
    note: str = "",
) -> HistoryEntry:
    """A new entry, timed now (its number is given when it is read back)."""
    return HistoryEntry(0, now(), action, item, item_id, origin, event_id, note)


def queue_entry(pipe: Pipeline, key: str, entry: HistoryEntry) -> None:
    """Append ``entry`` inside a MULTI that makes the change it records."""
    record = asdict(entry)
    del record["entry"]  # the list position is the number
    pipe.rpush(key, json.dumps(record, sort_keys=True))


def parse_entries(raw: list[bytes]) -> list[HistoryEntry]:
    """The entries of a history list, numbered from 1."""
    return [HistoryEntry(entry=number, **json.loads(line)) for number, line in enumerate(raw, start=1)]
