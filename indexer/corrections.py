"""Corrections from users: hard negatives of a person, and the audit log of feedback.

``vigil feedback EVENT_ID --not NAME`` stores the event's face as a *hard negative* of
that person; ``--is NAME`` makes it a template (``Gallery.add_templates``, origin
``feedback``). Either way a ``Feedback`` record is kept, so corrections stay auditable and
the calibration can use them (:func:`feedback_pairs`).

How negatives act (``indexer.search.veto_by_negatives``): a face accepted as a person is
turned back to *unknown* when one of that person's negatives is as similar to it as the
person's best template, less the margin in force. A negative therefore competes like a
runner-up identity would: the corrected face itself (similarity 1 to its negative) is
never taken for that person again, while photos that resemble the person's templates
much more than the wrong face still are.

Keys, under the gallery's namespace (negatives change matching, so they are written in
the gallery's versioned transaction and searchers reload them)::

    negative:{negative_id}             hash   identity_id, embedder_version, embedding, event_id, created_at
    identity:{identity_id}:negatives   set    negative ids of the identity
    negatives:{embedder_version}       zset   negative ids of that embedder, score = id
    negative:next_id                   string INCR counter for negative ids
    feedback:{feedback_id}             hash   one Feedback record (embedding as float32 bytes)
    feedback                           zset   feedback ids, score = Unix time of created_at
    identity:{identity_id}:feedback    set    feedback ids about the identity
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, TypeAlias, cast

import numpy as np
import numpy.typing as npt
from redis.client import Pipeline

from indexer.deletions import Deletions
from indexer.gallery import Gallery
from indexer.history import HistoryEntry, history_entry, queue_entry
from indexer.records import NewTemplate, blob, check_embedding, now
from vigil.errors import GalleryError
from vigil.streams import text
from vigil.typing import Embedding, Embeddings

logger = logging.getLogger(__name__)

Verdict: TypeAlias = Literal["is", "not"]


@dataclass(frozen=True)
class Feedback:
    """One user correction of an event.

    Attributes:
        feedback_id: uuid4 hex.
        event_id: The corrected event.
        verdict: ``is`` (the face is this person) or ``not`` (it is not).
        identity_id: The person named in the correction.
        name: Their name at the time.
        embedder_version: Space of ``embedding``.
        embedding: ``(D,)`` float32, the event's face.
        created_at: ISO-8601 UTC time of the correction.
        item_id: The template (``is``) or negative (``not``) it created.
    """

    feedback_id: str
    event_id: str
    verdict: Verdict
    identity_id: str
    name: str
    embedder_version: str
    embedding: Embedding = field(repr=False)
    created_at: str
    item_id: int


@dataclass(frozen=True)
class Negative:
    """A stored hard negative: a face that is *not* this person.

    Attributes:
        negative_id: Gallery-wide id.
        identity_id: Whose negative it is.
        embedder_version: Space of ``embedding``.
        embedding: ``(D,)`` float32.
        event_id: The corrected event, if any.
        created_at: ISO-8601 UTC time it was stored.
    """

    negative_id: int
    identity_id: str
    embedder_version: str
    embedding: Embedding = field(repr=False)
    event_id: str | None
    created_at: str


@dataclass(frozen=True)
class FeedbackPair:
    """A labelled probe for calibration: this face is (``same``) or is not this person.

    ``item_id`` is the template (``same``) or negative the correction created: a genuine
    probe must not be scored against the template made from itself.
    """

    embedding: Embedding
    identity_id: str
    same: bool
    item_id: int


class Corrections:
    """Hard negatives and feedback records of one gallery."""

    def __init__(self, gallery: Gallery) -> None:
        self.gallery = gallery

    def add_negative(
        self, identity_id: str, embedder_version: str, embedding: Embedding, event_id: str | None
    ) -> int:
        """Store a face that is *not* this person; returns the negative's id.

        Raises:
            GalleryError: Unknown identity, or the embedding is not a finite ``(D,)`` vector.
        """
        vector = check_embedding(embedder_version, _checked(embedding), "a negative")
        gallery = self.gallery
        (negative_id,) = self.allocate_negative_ids(1)
        negative = Negative(negative_id, identity_id, embedder_version, vector, event_id, now())

        def work(pipe: Pipeline) -> None:
            if not pipe.exists(gallery.identity_key(identity_id)):
                raise GalleryError(f"unknown identity id {identity_id!r}")
            pipe.multi()
            self.queue_negative(pipe, negative)
            entry = history_entry("added", "negative", negative_id, "feedback", event_id)
            queue_entry(pipe, gallery.history_key(identity_id), entry)

        gallery.transaction(work, gallery.identity_key(identity_id))
        logger.info("hard negative %d added to identity %s", negative_id, identity_id)
        return negative_id

    def remove_negative(self, identity_id: str, negative_id: int, entry: HistoryEntry) -> None:
        """Remove one negative of an identity, recording ``entry`` in its history.

        Raises:
            GalleryError: The negative is not one of the identity's.
        """
        gallery = self.gallery

        def work(pipe: Pipeline) -> None:
            raw = pipe.hmget(self._negative_key(negative_id), ["identity_id", "embedder_version"])
            owner, version = raw
            if owner is None or version is None or text(owner) != identity_id:
                raise GalleryError(f"negative {negative_id} is not a negative of identity {identity_id}")
            pipe.multi()
            pipe.zrem(gallery.key(f"negatives:{text(version)}"), negative_id)
            pipe.delete(self._negative_key(negative_id))
            pipe.srem(self._negatives_of_key(identity_id), negative_id)
            queue_entry(pipe, gallery.history_key(identity_id), entry)

        gallery.transaction(work, self._negative_key(negative_id))

    def negatives(self, embedder_version: str) -> tuple[list[str], Embeddings]:
        """Every negative of one embedder version: the owners' identity ids and ``(N, D)`` float32."""
        gallery = self.gallery
        key = gallery.key(f"negatives:{embedder_version}")

        def read() -> list[list[bytes | None]]:
            negative_ids = [int(cast(bytes, raw)) for raw in gallery.client.zrange(key, 0, -1)]
            with gallery.client.pipeline(transaction=True) as pipe:
                for negative_id in negative_ids:
                    pipe.hmget(self._negative_key(negative_id), ["identity_id", "embedding"])
                return list(pipe.execute())

        owners: list[str] = []
        vectors: list[Embedding] = []
        for owner, embedding in gallery.call(read):
            if owner is not None and embedding is not None:
                owners.append(text(owner))
                vectors.append(np.frombuffer(blob(embedding), dtype="<f4").astype(np.float32))
        if not vectors:
            return [], np.zeros((0, 0), np.float32)
        return owners, np.stack(vectors)

    def identity_negatives(self, identity_id: str) -> list[Negative]:
        """One identity's negatives (every embedder version), by negative id."""
        gallery = self.gallery

        def read() -> tuple[list[int], list[dict[bytes, bytes]]]:
            members = cast(set[bytes], gallery.client.smembers(self._negatives_of_key(identity_id)))
            negative_ids = sorted(int(raw) for raw in members)
            with gallery.client.pipeline(transaction=True) as pipe:
                for negative_id in negative_ids:
                    pipe.hgetall(self._negative_key(negative_id))
                return negative_ids, list(pipe.execute())

        negative_ids, hashes = gallery.call(read)
        return [_negative(nid, raw) for nid, raw in zip(negative_ids, hashes, strict=True) if raw]

    def record(
        self,
        event_id: str,
        verdict: Verdict,
        identity_id: str,
        name: str,
        embedder_version: str,
        embedding: Embedding,
        item_id: int,
    ) -> Feedback:
        """Keep a correction (the audit log, and calibration's labelled probes)."""
        feedback = Feedback(
            uuid.uuid4().hex, event_id, verdict, identity_id, name, embedder_version,
            _checked(embedding), now(), item_id,
        )  # fmt: skip
        gallery = self.gallery

        def write() -> None:
            with gallery.client.pipeline(transaction=True) as pipe:
                self.queue_feedback(pipe, feedback)
                pipe.execute()

        gallery.call(write)
        logger.info("feedback on event %s: %s identity %s", event_id, verdict, identity_id)
        return feedback

    def feedback(self) -> list[Feedback]:
        """Every correction kept, oldest first."""
        gallery = self.gallery

        def read() -> tuple[list[str], list[dict[bytes, bytes]]]:
            feedback_ids = [
                text(raw) for raw in cast(list[bytes], gallery.client.zrange(gallery.key("feedback"), 0, -1))
            ]
            with gallery.client.pipeline(transaction=True) as pipe:
                for feedback_id in feedback_ids:
                    pipe.hgetall(gallery.key(f"feedback:{feedback_id}"))
                return feedback_ids, list(pipe.execute())

        feedback_ids, hashes = gallery.call(read)
        return [_feedback(fid, raw) for fid, raw in zip(feedback_ids, hashes, strict=True) if raw]

    def erase(self, identity_id: str) -> tuple[int, int]:
        """Delete an identity's negatives and the feedback about it; returns how many of each."""
        gallery = self.gallery

        def work(pipe: Pipeline) -> tuple[int, int]:
            negatives, feedback, deletions = self.plan_erase(pipe, identity_id)
            pipe.multi()
            deletions.queue(pipe)
            return negatives, feedback

        return gallery.transaction(work, *self.identity_keys(identity_id))

    def plan_erase(self, pipe: Pipeline, identity_id: str) -> tuple[int, int, Deletions]:
        """Read (under WATCH of :meth:`identity_keys`) what erasing an identity's corrections deletes.

        Returns:
            How many negatives and feedback records it has, and their deletions.
        """
        gallery = self.gallery
        negative_ids = [int(raw) for raw in pipe.smembers(self._negatives_of_key(identity_id))]
        versions = [pipe.hget(self._negative_key(n), "embedder_version") for n in negative_ids]
        feedback_ids = [text(raw) for raw in pipe.smembers(self._feedback_of_key(identity_id))]
        deletions = Deletions(
            keys=[self._negative_key(n) for n in negative_ids]
            + [gallery.key(f"feedback:{feedback_id}") for feedback_id in feedback_ids]
            + [self._negatives_of_key(identity_id), self._feedback_of_key(identity_id)],
            zset_members=[
                (gallery.key(f"negatives:{text(version)}"), [cast(str | int, negative_id)])
                for negative_id, version in zip(negative_ids, versions, strict=True)
                if version is not None
            ]
            + [(gallery.key("feedback"), list(feedback_ids))],
        )
        return len(negative_ids), len(feedback_ids), deletions

    def identity_keys(self, identity_id: str) -> tuple[str, str]:
        """The keys to WATCH while an identity's corrections are planned for erasure and erased."""
        return self._negatives_of_key(identity_id), self._feedback_of_key(identity_id)

    def allocate_negative_ids(self, count: int) -> list[int]:
        """Reserve ``count`` negative ids (outside any transaction: an aborted call leaves a gap)."""
        return self.gallery.allocate_ids("negative:next_id", count)

    def queue_negative(self, pipe: Pipeline, negative: Negative) -> None:
        """Queue the writes that store a negative (after ``multi()``, in ``Gallery.transaction``,
        so searchers reload); the caller records it in the person's history."""
        gallery = self.gallery
        fields: dict[str, str | bytes] = {
            "identity_id": negative.identity_id,
            "embedder_version": negative.embedder_version,
            "embedding": negative.embedding.astype("<f4").tobytes(),
            "created_at": negative.created_at,
        }
        if negative.event_id is not None:
            fields["event_id"] = negative.event_id
        pipe.hset(self._negative_key(negative.negative_id), mapping=fields)  # type: ignore[arg-type]
        version_key = gallery.key(f"negatives:{negative.embedder_version}")
        pipe.zadd(version_key, {str(negative.negative_id): negative.negative_id})
        pipe.sadd(self._negatives_of_key(negative.identity_id), negative.negative_id)

    def queue_feedback(self, pipe: Pipeline, feedback: Feedback) -> None:
        """Queue the writes that keep a feedback record, ordered in the log by its ``created_at``."""
        gallery = self.gallery
        fields: dict[str, str | bytes | int] = {
            "event_id": feedback.event_id,
            "verdict": feedback.verdict,
            "identity_id": feedback.identity_id,
            "name": feedback.name,
            "embedder_version": feedback.embedder_version,
            "embedding": feedback.embedding.astype("<f4").tobytes(),
            "created_at": feedback.created_at,
            "item_id": feedback.item_id,
        }
        pipe.hset(gallery.key(f"feedback:{feedback.feedback_id}"), mapping=fields)  # type: ignore[arg-type]
        score = datetime.fromisoformat(feedback.created_at).timestamp()
        pipe.zadd(gallery.key("feedback"), {feedback.feedback_id: score})
        pipe.sadd(self._feedback_of_key(feedback.identity_id), feedback.feedback_id)

    def _negative_key(self, negative_id: int) -> str:
        return self.gallery.key(f"negative:{negative_id}")

    def _negatives_of_key(self, identity_id: str) -> str:
        return self.gallery.key(f"identity:{identity_id}:negatives")

    def _feedback_of_key(self, identity_id: str) -> str:
        return self.gallery.key(f"identity:{identity_id}:feedback")


def feedback_pairs(corrections: Corrections, embedder_version: str) -> list[FeedbackPair]:
    """The kept corrections of one embedder version as labelled probes, for calibration.

    ``--is`` gives a genuine probe of the person, ``--not`` an impostor probe (a face the
    system took for them wrongly: the hardest kind).
    """
    return [
        FeedbackPair(item.embedding, item.identity_id, item.verdict == "is", item.item_id)
        for item in corrections.feedback()
        if item.embedder_version == embedder_version
    ]


def negatives_by_identity(owners: list[str], embeddings: Embeddings) -> dict[str, npt.NDArray[np.float32]]:
    """Group negatives per identity as unit-length ``(K, D)`` float32 rows."""
    grouped: dict[str, list[Embedding]] = {}
    for owner, vector in zip(owners, embeddings, strict=True):
        grouped.setdefault(owner, []).append(vector / max(float(np.linalg.norm(vector)), 1e-12))
    return {owner: np.stack(rows).astype(np.float32) for owner, rows in grouped.items()}


def _checked(embedding: Embedding) -> Embedding:
    vector = np.asarray(embedding, dtype=np.float32)
    if vector.ndim != 1 or vector.shape[0] == 0 or not np.isfinite(vector).all():
        raise GalleryError(f"a correction needs a finite (D,) embedding, got shape {vector.shape}")
    return vector


def _negative(negative_id: int, raw: dict[bytes, bytes]) -> Negative:
    fields = {text(key): value for key, value in raw.items()}
    event_id = fields.get("event_id")
    return Negative(
        negative_id=negative_id,
        identity_id=text(fields["identity_id"]),
        embedder_version=text(fields["embedder_version"]),
        embedding=np.frombuffer(blob(fields["embedding"]), dtype="<f4").astype(np.float32),
        event_id=None if event_id is None else text(event_id),
        created_at=text(fields["created_at"]),
    )


def _feedback(feedback_id: str, raw: dict[bytes, bytes]) -> Feedback:
    fields = {text(key): value for key, value in raw.items()}
    verdict = text(fields["verdict"])
    return Feedback(
        feedback_id=feedback_id,
        event_id=text(fields["event_id"]),
        verdict="is" if verdict == "is" else "not",
        identity_id=text(fields["identity_id"]),
        name=text(fields["name"]),
        embedder_version=text(fields["embedder_version"]),
        embedding=np.frombuffer(blob(fields["embedding"]), dtype="<f4").astype(np.float32),
        created_at=text(fields["created_at"]),
        item_id=int(fields["item_id"]),
    )


def apply_feedback(
    gallery: Gallery, event_id: str, verdict: Verdict, name: str, embedder_version: str, embedding: Embedding
) -> Feedback:
    """Correct an event: its face is (``is``) or is not (``not``) the person called ``name``.

    ``is`` adds the face as a template (origin ``feedback``), ``not`` as a hard negative;
    both are in the person's history and kept as a ``Feedback`` record.

    Raises:
        GalleryError: Nobody is enrolled as ``name``, or the embedding is malformed.
    """
    identity = gallery.get_by_name(name)
    corrections = Corrections(gallery)
    if verdict == "not":
        item_id = corrections.add_negative(identity.identity_id, embedder_version, embedding, event_id)
    else:
        template = NewTemplate(
            embedder_version,
            _checked(embedding),
            f"feedback on event {event_id}",
            origin="feedback",
            event_id=event_id,
        )
        (item_id,) = gallery.add_templates(identity.identity_id, [template])
    return corrections.record(
        event_id, verdict, identity.identity_id, name, embedder_version, embedding, item_id
    )


def undo(gallery: Gallery, identity_id: str, entry_number: int) -> HistoryEntry:
    """Reverse one addition of a person's history (a template or negative is removed).

    Returns:
        The entry that was undone.

    Raises:
        GalleryError: No such entry, it is a removal, or it was already undone.
    """
    entries = gallery.history(identity_id)
    if not 1 <= entry_number <= len(entries):
        raise GalleryError(
            f"there is no history entry {entry_number} (the person has {len(entries)}); "
            "see `vigil people history NAME`"
        )
    entry = entries[entry_number - 1]
    if entry.action != "added":
        raise GalleryError(f"history entry {entry_number} is a removal; only additions can be undone")
    if any(e.action == "removed" and (e.item, e.item_id) == (entry.item, entry.item_id) for e in entries):
        raise GalleryError(f"the {entry.item} of history entry {entry_number} is already removed")
    removal = history_entry(
        "removed", entry.item, entry.item_id, "undo", entry.event_id, f"undoes entry {entry_number}"
    )
    if entry.item == "template":
        gallery.remove_template(identity_id, entry.item_id, removal)
    else:
        Corrections(gallery).remove_negative(identity_id, entry.item_id, removal)
    logger.info("undid history entry %d of identity %s", entry_number, identity_id)
    return entry
