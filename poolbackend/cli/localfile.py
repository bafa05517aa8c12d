"""The local side of vol-download and vol-upload: outputs that never destroy what was there.

A regular output file (or a name that does not exist yet) is written to a private temporary
file in the same directory, flushed to disk and renamed over the name only when the whole
transfer succeeded, so a failure, Ctrl-C or SIGTERM leaves the old file byte for byte and no
new file. The replacement keeps the old file's permission bits (and, when we may, its owner),
as ``cp`` onto an existing file would; a new file gets ``0666`` minus the umask. A symlink is
followed: the file it points to is replaced, the link stays. Devices, pipes and ``-``
(standard output) cannot be replaced and are written in place; they are opened only after
every check passed. For vol-upload, ``-`` is standard input, and inputs that are disk images
in a container format (qcow2, vmdk, ...) are recognised by their magic bytes.
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import signal
import stat
import sys
import tempfile
from collections.abc import Iterator
from types import FrameType
from typing import BinaryIO

from poolbackend.cli.imagefmt import HEAD_BYTES, image_format
from poolbackend.errors import ConfigError, FileError
from poolbackend.text import printable

STDIO = "-"
_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def describe(path: str, stream: str) -> str:
    """How messages name ``path``: quoted and escaped, or the standard stream for ``-``."""
    return stream if path == STDIO else f"'{printable(path)}'"


def _terminated(signum: int, frame: FrameType | None) -> None:
    """SIGTERM takes Ctrl-C's path: asyncio's SIGINT handler cancels the running transfer
    (its cleanup runs in order), Python's default one raises KeyboardInterrupt."""
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
    else:
        raise KeyboardInterrupt


def interrupt_on_sigterm() -> None:
    """Make SIGTERM unwind like Ctrl-C, so temporary files are removed and sessions logged out."""
    signal.signal(signal.SIGTERM, _terminated)


@contextlib.contextmanager
def _signals_blocked() -> Iterator[None]:
    """No KeyboardInterrupt between creating a temporary file and remembering its name."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _may(path: str, mode: int) -> bool:
    """access(2) with the ids the writes will use (the effective ones)."""
    return os.access(path, mode, effective_ids=os.access in os.supports_effective_ids)


def _umask() -> int:
    old = os.umask(0o077)
    os.umask(old)
    return old


class Output:
    """Where vol-download writes; see the module doc. Checked at construction, opened by
    :meth:`open` (after the target answered), made visible by :meth:`commit`, removed by
    :meth:`abort` unless committed."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.shown = describe(path, "standard output")
        self._file: BinaryIO | None = None
        self._tmp: str | None = None
        self._mode = 0o666 & ~_umask()
        self._owner: tuple[int, int] | None = None
        self.replace = False  # written through a temporary file (a regular file)
        if path == STDIO:
            return
        self.target = os.path.realpath(path)
        try:
            st: os.stat_result | None = os.stat(self.target)
        except FileNotFoundError:
            st = None
        except OSError as exc:
            raise self.error(exc) from None
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise ConfigError(f"cannot write {self.shown}: it is a directory")
        if st is None or stat.S_ISREG(st.st_mode):
            self.replace = True
            directory = os.path.dirname(self.target)
            if not os.path.isdir(directory):
                raise ConfigError(f"cannot write {self.shown}: No such file or directory")
            if not _may(directory, os.W_OK | os.X_OK):
                raise ConfigError(
                    f"cannot write {self.shown}: its directory is not writable "
                    "(the file is replaced only when the download succeeded)"
                )
        if st is not None and stat.S_ISREG(st.st_mode):
            if not _may(self.target, os.W_OK):  # as cp: a file we may not write stays
                raise ConfigError(f"cannot write {self.shown}: Permission denied")
            self._mode = stat.S_IMODE(st.st_mode)
            self._owner = (st.st_uid, st.st_gid)

    def error(self, exc: OSError) -> FileError:
        return FileError(f"cannot write {self.shown}: {exc.strerror or exc}")

    @property
    def holes(self) -> bool:
        """Whether zero blocks may be skipped (a fresh file reads back zeros there)."""
        return self.replace

    def open(self) -> BinaryIO:
        """The stream to write; a new private temporary file for a regular file."""
        if self.path == STDIO:
            sys.stdout.flush()
            self._file = sys.stdout.buffer
        elif self.replace:
            directory, name = os.path.split(self.target)
            with _signals_blocked():
                fd, self._tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=directory)
            self._file = os.fdopen(fd, "wb")
        else:  # a device or a pipe: never created, never truncated
            fd = os.open(self.target, os.O_WRONLY | os.O_CLOEXEC)
            self._file = os.fdopen(fd, "wb")
        return self._file

    def commit(self) -> None:
        """Everything is written: flush it to disk and put it in place."""
        f = self._file
        if f is None:
            return
        f.flush()
        if self.path == STDIO:
            return
        fd = f.fileno()
        if self._tmp is None:
            with contextlib.suppress(OSError):  # pipes and char devices cannot be synced
                if stat.S_ISBLK(os.fstat(fd).st_mode):
                    os.fsync(fd)
            self._file = None
            f.close()
            return
        if self._owner is not None and os.geteuid() == 0:
            with contextlib.suppress(OSError):
                os.fchown(fd, *self._owner)
        os.fchmod(fd, self._mode)
        os.fsync(fd)
        self._file = None
        f.close()
        with _signals_blocked():
            os.rename(self._tmp, self.target)
            self._tmp = None
        with contextlib.suppress(OSError):
            dfd = os.open(os.path.dirname(self.target), os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    def abort(self) -> None:
        """Undo :meth:`open` unless committed: close, and remove the temporary file."""
        f, self._file = self._file, None
        if f is not None and self.path != STDIO:
            with contextlib.suppress(OSError):
                f.close()
        tmp, self._tmp = self._tmp, None
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


# -- vol-upload's input ------------------------------------------------------------------
class _Rejoined(io.RawIOBase):
    """A stream that cannot seek back, with its first bytes (already read) put in front."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = memoryview(head)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _read_head(src: BinaryIO) -> bytes:
    head = b""
    while len(head) < HEAD_BYTES:
        data = src.read(HEAD_BYTES - len(head))
        if not data:
            break
        head += data
    return head


class Input:
    """vol-upload's source; see the module doc. A missing file is refused at construction;
    a regular file is checked for image magic at once (reading it changes nothing), a pipe or
    standard input only by :meth:`open`, after every other check, so that a refused upload
    has not consumed any of it."""

    def __init__(self, path: str, *, force: bool) -> None:
        self.path = path
        self.force = force
        self.shown = describe(path, "standard input")
        self._src: BinaryIO | None = None
        if path == STDIO:
            return
        try:
            st = os.stat(path)
        except OSError as exc:
            raise self.error(exc) from None
        if stat.S_ISDIR(st.st_mode):
            raise ConfigError(f"cannot read {self.shown}: it is a directory")
        if stat.S_ISREG(st.st_mode):
            self.open()

    def error(self, exc: OSError) -> FileError:
        return FileError(f"cannot read {self.shown}: {exc.strerror or exc}")

    def open(self) -> BinaryIO:
        if self._src is None:
            self._src = self._open()
        return self._src

    def _open(self) -> BinaryIO:
        try:
            src: BinaryIO = sys.stdin.buffer if self.path == STDIO else open(self.path, "rb")
        except OSError as exc:
            raise self.error(exc) from None
        try:
            start = src.tell() if src.seekable() else None
            head = _read_head(src)
            if start is not None:
                src.seek(start)
        except OSError as exc:
            self._close(src)
            raise self.error(exc) from None
        fmt = image_format(head)
        if fmt is not None and not self.force:
            self._close(src)
            name = "IMAGE" if self.path == STDIO else shlex.quote(printable(self.path))
            raise ConfigError(
                f"{self.shown} is a {fmt} image, not a raw disk: its bytes are not the disk it "
                f"describes; convert it first (qemu-img convert -f {fmt} -O raw {name} "
                "disk.raw) or upload it as it is with --force"
            )
        if start is not None:
            return src
        return io.BufferedReader(_Rejoined(head, src), 1 << 20)

    def _close(self, src: BinaryIO) -> None:
        if self.path != STDIO:
            with contextlib.suppress(OSError):
                src.close()

    def close(self) -> None:
        src, self._src = self._src, None
        if src is not None:
            self._close(src)
