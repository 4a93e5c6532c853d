"""Every error Vigil raises on purpose.

    VigilError
    ├── ConfigError          a setting is missing, malformed or out of range
    ├── ImageError           an image cannot be read or has an unusable shape
    ├── ModelLoadError       weights are missing, corrupt or do not match the model
    ├── DatasetError         a benchmark or training dataset is missing or malformed
    ├── GalleryError         the gallery store rejected an operation
    ├── EventError           an event id is malformed or unknown, or its face is no longer kept
    ├── RedisUnavailableError  Redis cannot be reached, is loading, or the embedded server cannot start
    │   └── RedisRefusedError  Redis refuses writes: full (OOM), cannot persist (MISCONF), a replica
    ├── ServiceRunningError  another `vigil run` holds the service lease of this Redis
    ├── StreamError          a camera/file source cannot be opened or read
    └── MalformedEntryError  an entry on a Redis Stream cannot be read (a poison entry)

Each message says what is wrong and what to do about it, in one line, so the CLI can
print it as is.
"""

from __future__ import annotations

import enum


class VigilError(Exception):
    """Base class of every error Vigil raises on purpose."""


class ConfigError(VigilError):
    """A setting is missing, malformed or out of range."""


class ImageError(VigilError):
    """An image cannot be read or has a shape Vigil cannot use.

    Attributes:
        source: The file path (or a short description) of the offending image.
    """

    def __init__(self, message: str, source: str = "") -> None:
        super().__init__(f"{source}: {message}" if source else message)
        self.source = source


class ModelLoadError(VigilError):
    """Model weights are missing, corrupt or do not fit the model."""


class DatasetError(VigilError):
    """A benchmark or training dataset is missing or malformed."""


class GalleryError(VigilError):
    """The gallery store rejected an operation."""


class EventError(VigilError):
    """An event id is malformed or unknown, or the face behind the event is no longer kept."""


class CalibrationError(VigilError):
    """A calibration file is missing, corrupt or for another embedder."""


class RedisErrorKind(enum.StrEnum):
    """Why a Redis operation failed (the values are the metric label and ``vigil status`` format)."""

    CONNECTION = "connection"
    """The server cannot be reached, or the connection was lost."""
    TIMEOUT = "timeout"
    LOADING = "loading"
    """The server is loading its data from disk (``LOADING``): wait, it is not dead."""
    OUT_OF_MEMORY = "out_of_memory"
    """``maxmemory`` reached with an eviction policy that refuses writes (``OOM``)."""
    MISCONF = "misconf"
    """The server cannot persist (a failed snapshot or AOF write) and refuses writes (``MISCONF``)."""
    READONLY = "readonly"
    """The server is a read-only replica (``READONLY``)."""


class RedisUnavailableError(VigilError):
    """Redis cannot be reached, is still loading its data, or the embedded server cannot be started.

    Attributes:
        kind: What failed; loops that ride out outages count it under this label.
    """

    def __init__(self, message: str, kind: RedisErrorKind = RedisErrorKind.CONNECTION) -> None:
        super().__init__(message)
        self.kind = kind


class RedisRefusedError(RedisUnavailableError):
    """Redis answers, but refuses writes: out of memory, cannot persist, or a read-only replica.

    Reads still work (the gallery stays usable); writers drop what they cannot store (frames)
    or retry later. ``kind`` says which refusal.
    """


class ServiceRunningError(VigilError):
    """Another ``vigil run`` holds the service lease of this Redis: one service per Redis."""


class ServiceStartError(VigilError):
    """The service's workers cannot start for good (a refused gallery, missing or corrupt
    weights, a bad setting): restarting them cannot help, so the service stops."""


class StreamError(VigilError):
    """A camera or file source cannot be opened or read.

    Attributes:
        camera: The name of the camera the error belongs to.
    """

    def __init__(self, message: str, camera: str = "") -> None:
        super().__init__(f"camera {camera!r}: {message}" if camera else message)
        self.camera = camera


class MalformedEntryError(VigilError):
    """An entry on a Redis Stream cannot be read: malformed, or trimmed while it was pending.

    Readers count such a poison entry, acknowledge it and skip it, so it cannot stop them.

    Attributes:
        stream: The stream.
        entry_id: The entry's id.
    """

    def __init__(self, message: str, stream: str = "", entry_id: str = "") -> None:
        super().__init__(f"{stream} entry {entry_id}: {message}" if entry_id else message)
        self.stream = stream
        self.entry_id = entry_id


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (or its type name), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
