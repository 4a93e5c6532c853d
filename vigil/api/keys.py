"""API keys: who may read and who may change, stored hashed in Redis.

A key is a random token shown once, when it is created (``vigil api-keys create``); Redis keeps
only its SHA-256 (a random 256-bit token needs no slow hash: nothing can be guessed from the
digest) with the key's name and role. A request presents it in the ``X-API-Key`` header.

    vigil:api:keys        hash  SHA-256 of the token → JSON {name, role, created_at}
    vigil:api:key_names   hash  name → SHA-256 of its token (names are unique)
"""

from __future__ import annotations

import enum
import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import cast

import redis

from vigil.errors import ConfigError
from vigil.streams import redis_errors, text

KEYS_KEY = "vigil:api:keys"
NAMES_KEY = "vigil:api:key_names"
TOKEN_PREFIX = "vk_"
_TOKEN_BYTES = 32


class ApiRole(enum.StrEnum):
    """What a key may do: ``read`` everything, or also change it (``admin``)."""

    READ = "read"
    ADMIN = "admin"


@dataclass(frozen=True)
class ApiKey:
    """A key's name, role and creation time (Unix seconds); never its token."""

    name: str
    role: ApiRole
    created_at: float


class KeyStore:
    """Create, check, list and revoke API keys.

    Example:
        >>> store = KeyStore(client)
        >>> key, token = store.create("phone", ApiRole.ADMIN)
        >>> store.check(token) == key
        True
    """

    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    def create(self, name: str, role: ApiRole) -> tuple[ApiKey, str]:
        """A new key and its token (shown once: only its digest is kept).

        Raises:
            ConfigError: The name is empty, too long, or already taken.
        """
        if not name or len(name) > 64 or not name.isprintable():
            raise ConfigError(f"invalid key name {name!r}: use 1-64 printable characters")
        token = TOKEN_PREFIX + secrets.token_urlsafe(_TOKEN_BYTES)
        key = ApiKey(name, role, time.time())
        digest = _digest(token)
        record = json.dumps({"name": name, "role": role.value, "created_at": key.created_at})
        with redis_errors():
            if not self._client.hsetnx(NAMES_KEY, name, digest):
                raise ConfigError(f"an API key named {name!r} exists; revoke it first or pick another name")
            self._client.hset(KEYS_KEY, digest, record)
        return key, token

    def check(self, token: str) -> ApiKey | None:
        """The key this token belongs to, or None (unknown or revoked)."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        with redis_errors():
            raw = cast(bytes | None, self._client.hget(KEYS_KEY, _digest(token)))
        return None if raw is None else _key(raw)

    def list_keys(self) -> list[ApiKey]:
        """Every key, by name."""
        with redis_errors():
            records = cast(dict[bytes, bytes], self._client.hgetall(KEYS_KEY))
        return sorted((_key(raw) for raw in records.values()), key=lambda key: key.name)

    def revoke(self, name: str) -> bool:
        """Revoke the key called ``name`` (its token stops working at once); whether it existed."""
        with redis_errors():
            digest = cast(bytes | None, self._client.hget(NAMES_KEY, name))
            if digest is None:
                return False
            with self._client.pipeline(transaction=True) as pipe:
                pipe.hdel(KEYS_KEY, text(digest))
                pipe.hdel(NAMES_KEY, name)
                pipe.execute()
        return True


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _key(raw: bytes) -> ApiKey:
    record = json.loads(raw)
    return ApiKey(str(record["name"]), ApiRole(record["role"]), float(record["created_at"]))
