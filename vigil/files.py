"""Writing files so that readers see the old contents or the new, never a partial write."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

_NEW_FILE_MODE = 0o644
_HASH_CHUNK_BYTES = 1 << 20


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Run ``write`` on a temp file next to ``path``, fsync it, then move it over ``path``.

    Parent folders are created. On any error the temp file is removed and ``path`` is untouched.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(descriptor)
    temporary = Path(temporary_name)
    try:
        # mkstemp makes the file owner-only; keep the old file's mode, else the usual 0o644.
        temporary.chmod(path.stat().st_mode & 0o777 if path.exists() else _NEW_FILE_MODE)
        write(temporary)
        with temporary.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_text_atomically(path: Path, text: str) -> None:
    """``write_atomically`` for UTF-8 text."""
    write_atomically(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def write_bytes_atomically(path: Path, data: bytes) -> None:
    """``write_atomically`` for bytes."""
    write_atomically(path, lambda temporary: temporary.write_bytes(data))


FileStamp = tuple[int, int, int]
"""A file's inode, modification time (ns) and size."""


def file_stamp(path: Path) -> FileStamp | None:
    """What changes when ``path`` is rewritten (None when it does not exist), to re-read files on change.

    The inode changes with every atomic replace, even within one mtime tick.
    """
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_ino, status.st_mtime_ns, status.st_size


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks.

    Raises:
        OSError: The file cannot be read.
    """
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
