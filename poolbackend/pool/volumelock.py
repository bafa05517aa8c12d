"""Per-volume locks: one writer (wipe, upload) or any number of readers (download).

libvirt refuses a second wipe/upload of a volume that is busy instead of letting both write
at once. We do the same with an ``flock`` on ``<run dir>/volumes/<hash of the volume key>.lock``
held for the whole transfer: writers take it exclusively, readers shared; a command that
cannot get it fails at once with one line naming the volume and the operation in progress.
The keys (:func:`poolbackend.pool.targetid.lun_lock_keys`: resolved address, port, target
IQN, LUN) name the LUN itself, so pools through ``localhost`` and ``127.0.0.1`` of one
target share the lock (:func:`lun_lock` takes one per address). Lock files are never
removed (removing a lock file races with ``flock``); the kernel drops the lock when the
process ends, however it ends.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from poolbackend.errors import FileError, not_valid
from poolbackend.pool.fsutil import StorePaths, open_lock_file
from poolbackend.pool.naming import printable

__all__ = ["lock_holders", "lock_path", "lun_lock", "volume_lock"]


def lock_path(paths: StorePaths, volume_key: str) -> Path:
    digest = hashlib.sha256(volume_key.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return paths.volume_locks_dir / f"{digest}.lock"


def lock_holders(fd: int, locks_table: str = "/proc/locks") -> list[int]:
    """Pids holding an ``flock`` on the file open as ``fd``, from the kernel's lock table.

    This is the truth about who holds the lock now: a note in the file may name a reader
    that has exited while another still holds it. Empty when the table cannot be read.
    """
    st = os.fstat(fd)
    wanted = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    pids: list[int] = []
    with contextlib.suppress(OSError):
        with open(locks_table, encoding="ascii", errors="replace") as table:
            for line in table:
                fields = line.split()
                # "N: FLOCK ADVISORY READ|WRITE PID MAJ:MIN:INODE 0 EOF"; "N: -> ..." waits
                if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == wanted:
                    with contextlib.suppress(ValueError):
                        pid = int(fields[4])
                        if pid != os.getpid() and pid not in pids:
                            pids.append(pid)
    return pids


def _notes(fd: int) -> dict[int, str]:
    """The ``PID operation`` lines holders appended to the lock file (best effort)."""
    notes: dict[int, str] = {}
    with contextlib.suppress(OSError):
        text = os.pread(fd, 64 * 1024, 0).decode("utf-8", "replace")
        for line in text.splitlines():
            pid, _, operation = line.partition(" ")
            if pid.isdigit() and operation:
                notes[int(pid)] = operation
    return notes


def _busy(fd: int) -> str:
    """Who holds the lock now: each live holder with its operation, or nobody named."""
    holders = lock_holders(fd)
    if not holders:
        return "by another operation"
    notes = _notes(fd)
    return ", ".join(
        f"{printable(notes.get(pid, 'an operation'))} in progress (pid {pid})" for pid in holders
    )


@contextlib.contextmanager
def volume_lock(
    paths: StorePaths, volume_key: str, volume_name: str, operation: str, *, exclusive: bool
) -> Iterator[None]:
    """Hold the lock of one volume for ``operation`` (e.g. ``vol-wipe``) or fail at once."""
    path = lock_path(paths, volume_key)
    fd = open_lock_file(paths, path)
    with contextlib.suppress(OSError):  # notes are appended: readers write concurrently
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_APPEND)
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise FileError(
                    f"cannot lock volume '{printable(volume_name)}': {exc.strerror}"
                ) from None
            raise not_valid(
                f"volume '{printable(volume_name)}' is in use ({_busy(fd)}); {operation} refused"
            ) from None
        # Informative only (shown to whoever is refused, for the live pids): one line per
        # holder. A writer is alone; a reader starts the file afresh when it is alone.
        with contextlib.suppress(OSError):
            if exclusive or not lock_holders(fd):
                os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {operation}\n".encode())
        yield
    finally:
        os.close(fd)  # releases the flock


@contextlib.contextmanager
def lun_lock(
    paths: StorePaths, keys: Sequence[str], volume_name: str, operation: str, *, exclusive: bool
) -> Iterator[None]:
    """:func:`volume_lock` under every key of one LUN (all or none; each fails at once)."""
    with contextlib.ExitStack() as stack:
        for key in sorted(set(keys)):
            stack.enter_context(
                volume_lock(paths, key, volume_name, operation, exclusive=exclusive)
            )
        yield
