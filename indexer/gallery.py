"""The gallery's system of record: identities and their templates, in Redis.

Only embeddings and their provenance are stored, never face images. Keys, all under
``{namespace}:``::

    identity:{identity_id}            hash   name, metadata (JSON), created_at, updated_at
    identity:{identity_id}:templates  set    template ids of the identity
    identities                        set    every identity id
    names                             hash   name → identity id (names are unique)
    template:{template_id}            hash   identity_id, embedder_version, embedding
                                             (float32 bytes), dim, captured_at, source,
                                             quality, created_at, origin, event_id
    templates:{embedder_version}      zset   template ids of that embedder, score = id
    template:next_id                  string INCR counter for template ids
    identity:{identity_id}:history    list   JSON entries: templates and negatives added/removed
                                             (``indexer.history``)
    gallery:version                   string bumped by every change
    gallery:erased                    zset   ``erased_marker`` of each deleted identity, score =
                                             deletion time; older than a week: pruned at the
                                             next deletion (``indexer.deletions``)

Every change is one MULTI/EXEC transaction that also bumps ``gallery:version`` and
publishes the new version on ``{namespace}:gallery:changed``, so a crash leaves all of it
or none, and other processes learn of it to hot-reload. Writers WATCH the version key,
which serialises them: a concurrent change makes EXEC fail and the call retries.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import numpy as np
import numpy.typing as npt
import redis
from redis.client import Pipeline

from indexer import records
from indexer.deletions import Deletions
from indexer.history import HistoryEntry, history_entry, parse_entries, queue_entry
from indexer.records import (
    Identity,
    NewTemplate,
    Template,
    TemplateSpaces,
    check_metadata,
    check_name,
    check_template,
    expected_space,
    identity_from_hash,
    template_from_hash,
)
from vigil.config import Settings
from vigil.errors import GalleryError
from vigil.streams import redis_errors, text
from vigil.typing import Embedding, Embeddings

logger = logging.getLogger(__name__)

# A WATCH conflict means another writer committed first; retrying is cheap, and more
# than this many conflicts in a row means something is wrong (a runaway writer).
MAX_TRANSACTION_ATTEMPTS = 100

# Namespaces are key prefixes and SCAN patterns, so no ':' and no glob characters.
_NAMESPACE_PATTERN = re.compile(r"[A-Za-z0-9_.-]+")
_T = TypeVar("_T")


def erased_marker(identity_id: str) -> str:
    """What :attr:`Gallery.erased_key` holds for an erased identity: a one-way digest of its id.

    Not the id itself, so that nothing left in Redis after an erasure carries it; identity ids
    are random, so the digest says nothing of the person either.
    """
    return hashlib.sha256(identity_id.encode()).hexdigest()


class Gallery:
    """Identities and templates in Redis; every method is one atomic operation.

    Args:
        client: A connected client returning bytes (``decode_responses`` off), e.g. from
            :func:`vigil.streams.connect_redis`.
        namespace: Key prefix, so several galleries (or tests) can share one server.

    Example:
        >>> gallery = Gallery(connect_redis(settings.redis, settings.home))
        >>> alice = gallery.create_identity("alice")
        >>> gallery.add_templates(alice.identity_id, [NewTemplate("dlib_resnet-1", embedding)])
    """

    def __init__(self, client: redis.Redis, namespace: str = "vigil") -> None:
        if not _NAMESPACE_PATTERN.fullmatch(namespace):
            raise GalleryError(
                f"invalid gallery namespace {namespace!r}: use letters, digits, '_', '-' or '.'"
            )
        self._client = client
        self._namespace = namespace

    @classmethod
    def from_settings(cls, settings: Settings) -> Gallery:
        """The gallery on the settings' Redis (``REDIS_URL``, else the embedded server of ``home``).

        Raises:
            RedisUnavailableError: Redis cannot be reached.
        """
        from vigil.streams import connect_redis

        return cls(connect_redis(settings.redis, settings.home))

    @property
    def namespace(self) -> str:
        return self._namespace

    @property
    def channel(self) -> str:
        """The pub/sub channel announcing each new gallery version."""
        return f"{self._namespace}:gallery:changed"

    # -- writes ---------------------------------------------------------------------------

    def create_identity(self, name: str, metadata: dict[str, str] | None = None) -> Identity:
        """Add a person with no templates yet.

        Raises:
            GalleryError: The name is empty or already taken, or metadata is not text.
        """
        identity, _ = self.enroll(name, (), metadata)
        return identity

    def enroll(
        self, name: str, templates: Sequence[NewTemplate], metadata: dict[str, str] | None = None
    ) -> tuple[Identity, list[int]]:
        """Add a person together with their templates, in one transaction.

        Unlike :meth:`create_identity` followed by :meth:`add_templates`, a crash can never
        leave the person without templates.

        Returns:
            The new identity and its template ids, in input order.

        Raises:
            GalleryError: The name is empty or already taken, metadata is not text, or a
                template is malformed.
        """
        check_name(name)
        metadata = dict(metadata or {})
        check_metadata(metadata)
        rows = [check_template(template) for template in templates]
        template_ids = self.allocate_template_ids(len(rows))
        now = records.now()
        identity = Identity(uuid.uuid4().hex, name, metadata, now, now)

        def work(pipe: Pipeline) -> None:
            if pipe.hexists(self.key("names"), name):
                raise GalleryError(f"an identity named {name!r} already exists; pick another name")
            self.check_dimensions(pipe, [template for template, _ in rows])
            pipe.multi()
            self.queue_identity(pipe, identity)
            for template_id, (template, embedding) in zip(template_ids, rows, strict=True):
                self.queue_template(pipe, template_id, identity.identity_id, template, embedding, now)

        self.transaction(work, self.key("names"))
        # Logs name ids, never names: a log file outlives the person's erasure.
        logger.info("enrolled identity %s with %d templates", identity.identity_id, len(rows))
        return identity, template_ids

    def add_templates(self, identity_id: str, templates: Sequence[NewTemplate]) -> list[int]:
        """Enrol templates for an identity.

        Returns:
            The new template ids, in input order.

        Raises:
            GalleryError: Unknown identity, or a template is malformed (not 1-D, not finite,
                empty embedder version).
        """
        rows = [check_template(template) for template in templates]
        if not rows:
            return []
        template_ids = self.allocate_template_ids(len(rows))
        now = records.now()

        def work(pipe: Pipeline) -> None:
            if not pipe.exists(self.identity_key(identity_id)):
                raise GalleryError(f"unknown identity id {identity_id!r}")
            self.check_dimensions(pipe, [template for template, _ in rows])
            pipe.multi()
            for template_id, (template, embedding) in zip(template_ids, rows, strict=True):
                self.queue_template(pipe, template_id, identity_id, template, embedding, now)

        self.transaction(work, self.identity_key(identity_id))
        logger.info("added %d templates to identity %s", len(rows), identity_id)
        return template_ids

    def rename(self, identity_id: str, new_name: str) -> Identity:
        """Change an identity's name.

        Raises:
            GalleryError: Unknown identity, or the new name is empty or taken by someone else.
        """
        check_name(new_name)

        def work(pipe: Pipeline) -> Identity:
            identity = self._read_identity(pipe, identity_id)
            owner = pipe.hget(self.key("names"), new_name)
            if owner is not None and text(owner) != identity_id:
                raise GalleryError(f"an identity named {new_name!r} already exists; pick another name")
            renamed = Identity(identity_id, new_name, identity.metadata, identity.created_at, records.now())
            pipe.multi()
            pipe.hdel(self.key("names"), identity.name)
            pipe.hset(self.key("names"), new_name, identity_id)
            pipe.hset(
                self.identity_key(identity_id),
                mapping={"name": new_name, "updated_at": renamed.updated_at},
            )
            return renamed

        renamed = self.transaction(work, self.identity_key(identity_id), self.key("names"))
        logger.info("renamed identity %s", identity_id)
        return renamed

    def delete_identity(self, identity_id: str) -> int:
        """Remove an identity, its name and all its templates (every embedder version).

        Returns:
            How many templates were removed.

        Raises:
            GalleryError: Unknown identity.
        """

        def work(pipe: Pipeline) -> int:
            _, removed, deletions = self.plan_identity_deletion(pipe, identity_id)
            pipe.multi()
            deletions.queue(pipe)
            return removed

        removed = self.transaction(work, *self.identity_keys(identity_id))
        logger.info("deleted identity %s and %d templates", identity_id, removed)
        return removed

    def plan_identity_deletion(self, pipe: Pipeline, identity_id: str) -> tuple[Identity, int, Deletions]:
        """Read (under WATCH of :meth:`identity_keys`) what deleting an identity deletes.

        Returns:
            The identity, how many templates it has, and the deletions (its hash, name,
            templates in every embedder version, history), to queue after ``multi()``.

        Raises:
            GalleryError: Unknown identity.
        """
        identity = self._read_identity(pipe, identity_id)
        template_ids = sorted(int(raw) for raw in pipe.smembers(self._templates_of_key(identity_id)))
        versions = [
            pipe.hget(self._template_key(template_id), "embedder_version") for template_id in template_ids
        ]
        deletions = Deletions(
            keys=[self._template_key(t) for t in template_ids]
            + [
                self._templates_of_key(identity_id),
                self.identity_key(identity_id),
                self.history_key(identity_id),
            ],
            set_members=[(self.key("identities"), [identity_id])],
            hash_fields=[(self.key("names"), [identity.name])],
            zset_members=[
                (self._version_key(text(version)), [template_id])
                for template_id, version in zip(template_ids, versions, strict=True)
                if version is not None
            ],
            tombstones=[(self.erased_key, erased_marker(identity_id))],
        )
        return identity, len(template_ids), deletions

    def identity_keys(self, identity_id: str) -> tuple[str, str]:
        """The keys to WATCH while an identity's deletion is planned and run."""
        return self.identity_key(identity_id), self._templates_of_key(identity_id)

    @property
    def erased_key(self) -> str:
        """A sorted set of the :func:`erased_marker` of each deleted identity, kept at least a week.

        A worker that had not reloaded yet may name someone in a result written after their
        erasure; the tracker looks the result's identities up here, so that even one it never
        met enrolled is known to be erased and not announced.
        """
        return self.key("gallery:erased")

    @property
    def version_key(self) -> str:
        """The key of the version counter (every change bumps it; searchers compare it)."""
        return self.key("gallery:version")

    def remove_template(self, identity_id: str, template_id: int, entry: HistoryEntry) -> Template:
        """Remove one template of an identity, recording ``entry`` (a ``removed`` entry) in its history.

        Returns:
            The removed template.

        Raises:
            GalleryError: Unknown identity, or the template is not one of theirs.
        """

        def work(pipe: Pipeline) -> Template:
            self._read_identity(pipe, identity_id)
            raw = pipe.hgetall(self._template_key(template_id))
            if not raw or text(raw.get(b"identity_id", b"")) != identity_id:
                raise GalleryError(f"template {template_id} is not a template of identity {identity_id}")
            template = template_from_hash(template_id, raw)
            pipe.multi()
            pipe.zrem(self._version_key(template.embedder_version), template_id)
            pipe.delete(self._template_key(template_id))
            pipe.srem(self._templates_of_key(identity_id), template_id)
            queue_entry(pipe, self.history_key(identity_id), entry)
            return template

        removed = self.transaction(work, self.identity_key(identity_id), self._template_key(template_id))
        logger.info("removed template %d of identity %s (%s)", template_id, identity_id, entry.origin)
        return removed

    # -- reads ----------------------------------------------------------------------------

    def get_identity(self, identity_id: str) -> Identity:
        """The identity with this id.

        Raises:
            GalleryError: Unknown identity.
        """
        raw = self.call(lambda: self._client.hgetall(self.identity_key(identity_id)))
        if not raw:
            raise GalleryError(f"unknown identity id {identity_id!r}")
        return identity_from_hash(identity_id, raw)

    def find_by_name(self, name: str) -> Identity | None:
        """The identity with exactly this name, or None."""
        identity_id = self.call(lambda: self._client.hget(self.key("names"), name))
        if identity_id is None:
            return None
        try:
            return self.get_identity(text(identity_id))
        except GalleryError:  # deleted between the two reads
            return None

    def get_by_name(self, name: str) -> Identity:
        """The identity with exactly this name.

        Raises:
            GalleryError: Nobody has this name.
        """
        identity = self.find_by_name(name)
        if identity is None:
            raise GalleryError(f"nobody named {name!r} is enrolled; see `vigil people list`")
        return identity

    def list_identities(self) -> list[Identity]:
        """Every identity, sorted by name."""

        def work(pipe: Pipeline) -> list[str]:
            identity_ids = sorted(text(raw) for raw in pipe.smembers(self.key("identities")))
            pipe.multi()
            for identity_id in identity_ids:
                pipe.hgetall(self.identity_key(identity_id))
            return identity_ids

        identities: list[Identity] = []
        identity_ids, hashes = self._read_transaction(work)
        for identity_id, raw in zip(identity_ids, hashes, strict=True):
            if raw:
                identities.append(identity_from_hash(identity_id, raw))
        return sorted(identities, key=lambda identity: identity.name)

    def identity_templates(self, identity_id: str) -> list[Template]:
        """One identity's templates (all embedder versions), by template id.

        Raises:
            GalleryError: Unknown identity.
        """

        def work(pipe: Pipeline) -> list[int]:
            if not pipe.exists(self.identity_key(identity_id)):
                raise GalleryError(f"unknown identity id {identity_id!r}")
            template_ids = sorted(int(raw) for raw in pipe.smembers(self._templates_of_key(identity_id)))
            pipe.multi()
            for template_id in template_ids:
                pipe.hgetall(self._template_key(template_id))
            return template_ids

        template_ids, hashes = self._read_transaction(work)
        return [
            template_from_hash(template_id, raw)
            for template_id, raw in zip(template_ids, hashes, strict=True)
            if raw
        ]

    def history(self, identity_id: str) -> list[HistoryEntry]:
        """Every change to an identity's templates and negatives, oldest first (see ``indexer.history``).

        Raises:
            GalleryError: Unknown identity.
        """
        self.get_identity(identity_id)
        key = self.history_key(identity_id)
        return parse_entries(self.call(lambda: cast(list[bytes], self._client.lrange(key, 0, -1))))

    def templates(self, embedder_version: str) -> tuple[npt.NDArray[np.int64], list[str], Embeddings]:
        """Every template of one embedder version, as arrays for the search index.

        Returns:
            ``(N,)`` int64 template ids (ascending), the N owners' identity ids, and the
            ``(N, D)`` float32 embeddings. With no templates: empty arrays, ``(0, 0)``.

        Raises:
            Templates of another length than the model's (a corrupt store) are left out and logged.
        """

        def work(pipe: Pipeline) -> list[int]:
            template_ids = [
                int(cast(bytes, raw)) for raw in pipe.zrange(self._version_key(embedder_version), 0, -1)
            ]
            pipe.multi()
            for template_id in template_ids:
                pipe.hmget(self._template_key(template_id), ["identity_id", "embedding", "embedder_version"])
            return template_ids

        template_ids, rows = self._read_transaction(work)
        kept_ids: list[int] = []
        owners: list[str] = []
        vectors: list[Embedding] = []
        for template_id, (owner, blob, version) in zip(template_ids, rows, strict=True):
            if owner is None or blob is None or version is None or text(version) != embedder_version:
                continue
            kept_ids.append(template_id)
            owners.append(text(owner))
            vectors.append(np.frombuffer(blob, dtype=np.float32))
        if not vectors:
            return np.zeros(0, np.int64), [], np.zeros((0, 0), np.float32)
        dims = [vector.shape[0] for vector in vectors]
        if len(set(dims)) != 1:
            # One corrupt template must not take every search down: keep the model's own length
            # (else the most common one) and leave the others out, loudly.
            expected = expected_space(embedder_version).dim or max(set(dims), key=dims.count)
            odd = [template_id for template_id, dim in zip(kept_ids, dims, strict=True) if dim != expected]
            logger.error(
                "templates %s of %s are not %d-d like the others; left out of searches (corrupt gallery: "
                "remove them with `vigil people history NAME --undo`, or re-import an export)",
                odd, embedder_version, expected,
            )  # fmt: skip
            keep = [dim == expected for dim in dims]
            kept_ids = [template_id for template_id, kept in zip(kept_ids, keep, strict=True) if kept]
            owners = [owner for owner, kept in zip(owners, keep, strict=True) if kept]
            vectors = [vector for vector, kept in zip(vectors, keep, strict=True) if kept]
        return np.asarray(kept_ids, np.int64), owners, np.stack(vectors).astype(np.float32, copy=False)

    def templates_by_space(self) -> TemplateSpaces:
        """Which embedder versions each person has templates for, and how many (one consistent read)."""
        prefix = self.key("templates:")

        def work(pipe: Pipeline) -> list[tuple[str, int]]:
            keys = sorted(text(key) for key in self._client.scan_iter(match=f"{prefix}*", count=1000))
            rows = [
                (key.removeprefix(prefix), int(cast(bytes, raw)))
                for key in keys
                for raw in pipe.zrange(key, 0, -1)
            ]
            pipe.multi()
            for _, template_id in rows:
                pipe.hget(self._template_key(template_id), "identity_id")
            return rows

        rows, owners = self._read_transaction(work)
        counts: dict[str, dict[str, int]] = {}
        for (version, _), owner in zip(rows, owners, strict=True):
            if owner is not None:
                per_person = counts.setdefault(text(owner), {})
                per_person[version] = per_person.get(version, 0) + 1
        return TemplateSpaces(counts)

    def template_count(self) -> int:
        """How many templates the gallery holds, over all embedder versions."""
        pattern = self.key("templates:*")

        def count() -> int:
            keys = list(self._client.scan_iter(match=pattern, count=1000))
            with self._client.pipeline(transaction=True) as pipe:
                for key in keys:
                    pipe.zcard(key)
                return sum(int(size) for size in pipe.execute())

        return self.call(count)

    def version(self) -> int:
        """The gallery's version: it grows by one with every change."""
        raw = self.call(lambda: self._client.get(self.key("gallery:version")))
        return 0 if raw is None else int(raw)

    # -- shared with the stores beside the gallery (history, corrections, unknowns, backup) ---

    @property
    def client(self) -> redis.Redis:
        return self._client

    def key(self, suffix: str) -> str:
        """A key of this gallery's namespace."""
        return f"{self._namespace}:{suffix}"

    def history_key(self, identity_id: str) -> str:
        return self.key(f"identity:{identity_id}:history")

    def identity_key(self, identity_id: str) -> str:
        return self.key(f"identity:{identity_id}")

    def allocate_template_ids(self, count: int) -> list[int]:
        """Reserve ``count`` template ids (outside any transaction: an aborted call leaves a gap)."""
        return self.allocate_ids("template:next_id", count)

    def allocate_ids(self, counter: str, count: int) -> list[int]:
        """Reserve ``count`` consecutive ids of the counter key ``counter`` (e.g. ``template:next_id``)."""
        if count == 0:
            return []
        last = int(self.call(lambda: self._client.incrby(self.key(counter), count)))
        return list(range(last - count + 1, last + 1))

    def queue_identity(self, pipe: Pipeline, identity: Identity) -> None:
        """Queue the writes that add ``identity`` (after ``multi()``, in :meth:`transaction`)."""
        pipe.hset(
            self.identity_key(identity.identity_id),
            mapping={
                "name": identity.name,
                "metadata": json.dumps(identity.metadata, sort_keys=True),
                "created_at": identity.created_at,
                "updated_at": identity.updated_at,
            },
        )
        pipe.hset(self.key("names"), identity.name, identity.identity_id)
        pipe.sadd(self.key("identities"), identity.identity_id)

    def queue_template(
        self,
        pipe: Pipeline,
        template_id: int,
        identity_id: str,
        template: NewTemplate,
        embedding: Embedding,
        created_at: str,
        *,
        history: bool = True,
    ) -> None:
        """Queue the writes that add a template (after ``multi()``, in :meth:`transaction`).

        Args:
            embedding: ``template``'s embedding as ``check_template`` returned it.
            history: Record the addition in the person's history; off when an import
                restores the history the export kept.
        """
        fields: dict[str, str | bytes | int | float] = {
            "identity_id": identity_id,
            "embedder_version": template.embedder_version,
            "embedding": embedding.astype("<f4").tobytes(),
            "dim": int(embedding.shape[0]),
            "source": template.source,
            "quality": float(template.quality),
            "created_at": created_at,
        }
        if template.captured_at is not None:
            fields["captured_at"] = template.captured_at
        if template.event_id is not None:
            fields["event_id"] = template.event_id
        fields["origin"] = template.origin
        pipe.hset(self._template_key(template_id), mapping=fields)  # type: ignore[arg-type]
        pipe.zadd(self._version_key(template.embedder_version), {str(template_id): template_id})
        pipe.sadd(self._templates_of_key(identity_id), template_id)
        if history:
            entry = history_entry("added", "template", template_id, template.origin, template.event_id)
            queue_entry(pipe, self.history_key(identity_id), entry)

    def check_dimensions(self, pipe: Pipeline, templates: Sequence[NewTemplate]) -> None:
        """Refuse templates whose length differs from the gallery's templates of the same model.

        Call it in a :meth:`transaction`'s ``work`` before ``multi()``: the version key it
        watches makes the check and the writes one atomic step.

        Raises:
            GalleryError: A template of some embedder version has another dimension than
                that version's stored templates.
        """
        for version, dim in _dimensions(templates).items():
            stored = self._stored_dim(pipe, version)
            if stored is not None and stored != dim:
                raise GalleryError(
                    f"a template embedding has dimension {dim}, but the gallery's {version} templates have "
                    f"{stored} values; it is not from the same model"
                )

    def transaction(self, work: Callable[[Pipeline], _T], *watched: str) -> _T:
        """Run ``work`` under WATCH (it reads, calls ``multi()`` and queues writes), then
        bump the version and publish it in the same MULTI/EXEC; retry on a conflict.

        Stores beside the gallery whose changes affect matching (hard negatives) write
        through this, so searchers reload on their next query.

        Raises:
            GalleryError: Too many conflicting writers, or Redis rejected a command.
        """
        version_key = self.key("gallery:version")

        def attempt() -> _T:
            with self._client.pipeline(transaction=True) as pipe:
                for _ in range(MAX_TRANSACTION_ATTEMPTS):
                    try:
                        pipe.watch(version_key, *watched)  # type: ignore[no-untyped-call]  # untyped in redis-py
                        current = pipe.get(version_key)
                        new_version = (0 if current is None else int(current)) + 1
                        result = work(pipe)
                        pipe.set(version_key, new_version)
                        pipe.publish(self.channel, new_version)
                        pipe.execute()
                        return result
                    except redis.WatchError:
                        continue
                    finally:
                        pipe.reset()
            raise GalleryError(
                f"gallery {self._namespace!r}: {MAX_TRANSACTION_ATTEMPTS} conflicting writes in a row; "
                "retry later"
            )

        return self.call(attempt)

    def call(self, operation: Callable[[], _T]) -> _T:
        """Run a Redis operation with the gallery's error mapping (outages and rejections)."""
        try:
            with redis_errors():
                return operation()
        except redis.ResponseError as exc:
            raise GalleryError(f"Redis rejected a gallery operation: {exc}") from exc

    # -- private --------------------------------------------------------------------------

    def _templates_of_key(self, identity_id: str) -> str:
        return self.key(f"identity:{identity_id}:templates")

    def _template_key(self, template_id: int) -> str:
        return self.key(f"template:{template_id}")

    def _version_key(self, embedder_version: str) -> str:
        return self.key(f"templates:{embedder_version}")

    def _stored_dim(self, pipe: Pipeline, embedder_version: str) -> int | None:
        """The dimension of the stored templates of a version (None without any)."""
        first = cast(list[bytes], pipe.zrange(self._version_key(embedder_version), 0, 0))
        if not first:
            return None
        raw = pipe.hget(self._template_key(int(first[0])), "dim")
        return None if raw is None else int(raw)

    def _read_identity(self, pipe: Pipeline, identity_id: str) -> Identity:
        raw = pipe.hgetall(self.identity_key(identity_id))
        if not raw:
            raise GalleryError(f"unknown identity id {identity_id!r}")
        return identity_from_hash(identity_id, raw)

    def _read_transaction(self, work: Callable[[Pipeline], Any]) -> tuple[Any, list[Any]]:
        """Consistent multi-key read: ``work`` reads under WATCH of the version key, then
        queues reads after ``multi()``; a concurrent change retries."""
        version_key = self.key("gallery:version")

        def attempt() -> tuple[Any, list[Any]]:
            with self._client.pipeline(transaction=True) as pipe:
                for _ in range(MAX_TRANSACTION_ATTEMPTS):
                    try:
                        pipe.watch(version_key)  # type: ignore[no-untyped-call]  # untyped in redis-py
                        first = work(pipe)
                        return first, list(pipe.execute())
                    except redis.WatchError:
                        continue
                    except redis.exceptions.OutOfMemoryError:
                        # A full Redis refuses MULTI even around reads: searches must go on.
                        return self._read_without_multi(work)
                    finally:
                        pipe.reset()
            raise GalleryError(f"gallery {self._namespace!r} changes too fast to read consistently; retry")

        return self.call(attempt)

    def _read_without_multi(self, work: Callable[[Pipeline], Any]) -> tuple[Any, list[Any]]:
        """:meth:`_read_transaction` for a full Redis: the queued reads run as a plain pipeline,
        and the version read before and after proves that no change came in between."""
        version_key = self.key("gallery:version")
        for _ in range(MAX_TRANSACTION_ATTEMPTS):
            with self._client.pipeline(transaction=True) as pipe:
                pipe.watch(version_key)  # type: ignore[no-untyped-call]  # immediate mode, for work's reads
                before = pipe.get(version_key)
                first = work(pipe)
                queued = list(pipe.command_stack)
                pipe.reset()
            with self._client.pipeline(transaction=False) as plain:
                for arguments, options in queued:
                    plain.execute_command(*arguments, **options)  # type: ignore[no-untyped-call]
                values = list(plain.execute())
            if self._client.get(version_key) == before:
                return first, values
        raise GalleryError(f"gallery {self._namespace!r} changes too fast to read consistently; retry")


def _dimensions(templates: Sequence[NewTemplate]) -> dict[str, int]:
    """Each embedder version's template length.

    Raises:
        GalleryError: Templates of one version with different lengths.
    """
    dims: dict[str, int] = {}
    for template in templates:
        dim = int(np.asarray(template.embedding).shape[0])
        if dims.setdefault(template.embedder_version, dim) != dim:
            raise GalleryError(
                f"a template embedding has dimension {dim}, but another {template.embedder_version} "
                f"template has {dims[template.embedder_version]} values; they cannot be from one model"
            )
    return dims
