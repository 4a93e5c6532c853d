"""Files: written so that readers see the old contents or the new, never a partial write, and
private, because much of what Vigil writes is biometric data (embeddings, face photos).

New files are owner-only (0600) and Vigil's directories 0700 (``make_private_dir``): the data
directory, the embedded Redis's files (started under ``owner_only_umask``), exports and kept
photos are nobody else's to read.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from vigil.errors import VigilError

logger = logging.getLogger(__name__)

# Owner read/write only: exports, kept photos and reports may hold biometric data.
NEW_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700
_OWNER_ONLY_UMASK = 0o077
_HASH_CHUNK_BYTES = 1 << 20


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Run ``write`` on a temp file next to ``path``, fsync it, move it over ``path``, fsync the folder.

    A new file is owner-only (0600); a replaced one keeps its mode (a user's deliberate
    ``chmod`` stands). Parent folders are created, owner-only. The folder's fsync makes the
    rename itself durable: without it a crash can leave the old file after "success". On any
    error the temp file is removed and ``path`` is untouched.
    """
    if not path.parent.is_dir():
        make_private_dir(path.parent)
    descriptor, temporary_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(descriptor)
    temporary = Path(temporary_name)
    try:
        # mkstemp makes the file owner-only; keep the old file's mode, else owner-only.
        temporary.chmod(path.stat().st_mode & 0o777 if path.exists() else NEW_FILE_MODE)
        write(temporary)
        with temporary.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (a rename, a new or deleted file) to disk."""
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def make_private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) readable by its owner only (0700), or tighten it.

    An existing folder of ours that others may read is tightened (a data directory made by an
    older Vigil), except a shared one (sticky bit, like ``/tmp``) or one owned by someone else,
    which are left alone.

    Returns:
        ``path``.
    """
    missing = [folder for folder in (path, *path.parents) if not folder.exists()]
    for folder in reversed(missing):
        folder.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
        folder.chmod(PRIVATE_DIR_MODE)  # mkdir's mode is masked by the umask
    status = path.stat()
    if status.st_mode & 0o077 and status.st_uid == os.getuid() and not status.st_mode & stat.S_ISVTX:
        path.chmod(PRIVATE_DIR_MODE)
        logger.info("%s was readable by others; it is now owner-only (0700)", path)
    return path


def make_files_private(folder: Path) -> None:
    """Make the files directly in ``folder`` owner-only (files written before Vigil did so)."""
    for path in folder.iterdir():
        try:
            if path.is_file() and not path.is_symlink() and path.stat().st_mode & 0o077:
                path.chmod(NEW_FILE_MODE)
        except FileNotFoundError:  # a temporary file of Redis's, gone since the listing
            continue


@contextmanager
def owner_only_umask() -> Iterator[None]:
    """Create files and folders owner-only while inside (for a child process that writes its own,
    such as the embedded redis-server: it keeps the umask it starts with).

    The umask is per process: keep the block short (other threads' files are affected too).
    """
    previous = os.umask(_OWNER_ONLY_UMASK)
    try:
        yield
    finally:
        os.umask(previous)


def write_text_atomically(path: Path, text: str) -> None:
    """``write_atomically`` for UTF-8 text."""
    write_atomically(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def write_bytes_atomically(path: Path, data: bytes) -> None:
    """``write_atomically`` for bytes."""
    write_atomically(path, lambda temporary: temporary.write_bytes(data))


def path_inside(folder: Path, *parts: str) -> Path:
    """``folder/part/...``, refusing parts that would leave ``folder`` (``..``, absolute paths, links).

    For file names built from data (ids read from Redis, names in files), so that a forged
    value cannot write elsewhere.

    Raises:
        VigilError: A part is empty, holds a path separator, is ``.`` or ``..``, or the
            resolved path is outside ``folder``.
    """
    for part in parts:
        if not part or part in (".", "..") or "/" in part or "\\" in part or "\0" in part:
            raise VigilError(
                f"refusing file name {part!r}: not a plain name inside {folder}; the data is forged"
            )
    path = folder.joinpath(*parts)
    if not path.resolve().is_relative_to(folder.resolve()):
        raise VigilError(f"refusing {path}: it resolves outside {folder} (a link?); use another folder")
    return path


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
