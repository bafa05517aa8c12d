"""Per-volume locks: one writer (wipe, upload) or any number of readers (download).

libvirt refuses a second wipe/upload of a volume that is busy instead of letting both write
at once. We do the same with an ``flock`` on ``<run dir>/volumes/<hash of the volume key>.lock``
held for the whole transfer: writers take it exclusively, readers shared; a command that
cannot get it fails at once with one line naming the volume and the operation in progress.
The key (portal, target, LUN) names the LUN itself, so two pools over the same target
share the lock. Lock files are never removed (removing a lock file races with ``flock``);
the kernel drops the lock when the process ends, however it ends.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from poolbackend.errors import PoolBackendError, StateError
from poolbackend.pool.fsutil import StorePaths, open_lock_file
from poolbackend.pool.naming import printable

__all__ = ["lock_path", "volume_lock"]


def lock_path(paths: StorePaths, volume_key: str) -> Path:
    digest = hashlib.sha256(volume_key.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return paths.volume_locks_dir / f"{digest}.lock"


def _busy(fd: int) -> str:
    """What the current holder wrote into the lock file (best effort)."""
    with contextlib.suppress(OSError):
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
        if text:
            return printable(text)
    return "another operation"


@contextlib.contextmanager
def volume_lock(
    paths: StorePaths, volume_key: str, volume_name: str, operation: str, *, exclusive: bool
) -> Iterator[None]:
    """Hold the lock of one volume for ``operation`` (e.g. ``vol-wipe``) or fail at once."""
    path = lock_path(paths, volume_key)
    fd = open_lock_file(paths, path)
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise PoolBackendError(
                    f"cannot lock volume '{printable(volume_name)}': {exc.strerror}"
                ) from None
            raise StateError(
                f"Requested operation is not valid: volume '{printable(volume_name)}' is in use "
                f"({_busy(fd)}); {operation} refused"
            ) from None
        note = f"{operation} in progress (pid {os.getpid()})".encode()
        with contextlib.suppress(OSError):  # only informative: shown to whoever is refused
            os.ftruncate(fd, 0)
            os.pwrite(fd, note, 0)
        yield
    finally:
        os.close(fd)  # releases the flock
