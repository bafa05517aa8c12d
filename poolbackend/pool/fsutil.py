"""Where poolbackend keeps its files and the only code that opens them.

About 590 lines, on purpose in one module: the locations, the trust checks of every
directory level (owner, mode, no symlink), the checked open, atomic write and the process
lock are one rule -- every file poolbackend touches goes through the same walk -- and
splitting them would put that rule in several places.

Locations (root / other users):

* definitions ``<name>.xml``: ``/etc/poolbackend/storage/`` /
  ``$XDG_CONFIG_HOME/poolbackend/storage/`` (default ``~/.config``);
* autostart links: ``<definitions>/autostart/<name>.xml``;
* runtime state ``<name>.json``: ``/run/poolbackend/storage/`` /
  ``$XDG_RUNTIME_DIR/poolbackend/storage/``;
* secrets: ``/etc/poolbackend/secrets/`` / ``$XDG_CONFIG_HOME/poolbackend/secrets/``;
  ephemeral secrets in ``<runtime>/secrets/``;
* volume locks: ``<runtime>/volumes/<hash>.lock``;
* the lock file: ``<runtime>/poolbackend.lock``.

Without ``XDG_RUNTIME_DIR`` the runtime directory is ``$XDG_STATE_HOME/poolbackend`` (default
``~/.local/state/poolbackend``). ``POOLBACKEND_STATE_DIR=D`` moves everything under ``D``:
``D/config`` (definitions), ``D/run`` (state, locks, ephemeral secrets) and ``D/secrets``.

Safety. poolbackend often runs as root, so a directory that someone else can change must not
steer its writes: a planted symlink would make root truncate or chmod a file elsewhere. The
top directories (``D``, or the config and runtime directories) and every directory under them
that we use must be real directories (not symlinks) owned by the caller and not writable by
group or others; the directories above them must be owned by root or the caller and not
writable by others unless sticky (``/tmp``). Anything else is refused with one line. Files
are opened with ``O_NOFOLLOW`` and must be regular files; directories that we create or chmod
are opened with ``O_DIRECTORY | O_NOFOLLOW``. Once the directories are checked nobody but the
caller (and root) can change their entries, so the checks cannot be raced.

Every write is atomic (temporary file in the same directory created with ``O_EXCL |
O_NOFOLLOW``, fsync, ``os.replace``, fsync of the directory). Files that may hold secret
values are 0600 in 0700 directories, the rest 0644.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from poolbackend.errors import FileError, PoolBackendError, StateError
from poolbackend.text import printable

__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "DIR_MODE",
    "ENV_STATE_DIR",
    "FILE_MODE",
    "PRIVATE_DIR_MODE",
    "PRIVATE_FILE_MODE",
    "StorePaths",
    "UnsafePathError",
    "atomic_write",
    "ensure_dir",
    "lexists",
    "link_points_to",
    "list_dir",
    "open_lock_file",
    "os_error",
    "process_lock",
    "read_file",
    "remove_file",
    "replace_symlink",
]

ENV_STATE_DIR = "POOLBACKEND_STATE_DIR"
DEFAULT_LOCK_TIMEOUT = 30.0
FILE_MODE = 0o644
PRIVATE_FILE_MODE = 0o600
DIR_MODE = 0o755
PRIVATE_DIR_MODE = 0o700

_OPEN_FLAGS = os.O_CLOEXEC | os.O_NOFOLLOW
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePathError(StateError):
    """A state directory or file that someone else could redirect (symlink, owner, mode)."""


@dataclass(frozen=True)
class StorePaths:
    """Where poolbackend keeps its files (see the module doc).

    ``base`` is ``POOLBACKEND_STATE_DIR`` when set: the single top directory we own. Without
    it the config and runtime directories are the top directories.
    """

    config_dir: Path
    run_dir: Path
    secrets_dir: Path
    base: Path | None = None

    @property
    def definitions_dir(self) -> Path:
        return self.config_dir / "storage"

    @property
    def autostart_dir(self) -> Path:
        return self.definitions_dir / "autostart"

    @property
    def state_dir(self) -> Path:
        return self.run_dir / "storage"

    @property
    def ephemeral_secrets_dir(self) -> Path:
        return self.run_dir / "secrets"

    @property
    def volume_locks_dir(self) -> Path:
        return self.run_dir / "volumes"

    @property
    def lock_path(self) -> Path:
        return self.run_dir / "poolbackend.lock"

    @property
    def roots(self) -> tuple[Path, ...]:
        """The top directories that must be ours (see the module doc)."""
        if self.base is not None:
            return (self.base,)
        roots = (self.config_dir, self.run_dir)
        if any(_is_under(self.secrets_dir, root) for root in roots):
            return roots
        return (*roots, self.secrets_dir)

    def root_of(self, path: Path) -> Path:
        """The top directory that holds ``path``."""
        for root in self.roots:
            if _is_under(path, root):
                return root
        raise ValueError(f"{path} is outside the poolbackend directories")

    @classmethod
    def under(cls, root: Path | str) -> StorePaths:
        """The ``POOLBACKEND_STATE_DIR`` layout: ``root/config``, ``root/run``, ``root/secrets``."""
        base = Path(os.path.abspath(root))
        return cls(
            config_dir=base / "config",
            run_dir=base / "run",
            secrets_dir=base / "secrets",
            base=base,
        )

    @classmethod
    def default(
        cls, environ: Mapping[str, str] | None = None, uid: int | None = None
    ) -> StorePaths:
        """Paths for this process: ``$POOLBACKEND_STATE_DIR``, else system paths for root,
        else the XDG directories."""
        env = os.environ if environ is None else environ
        if env.get(ENV_STATE_DIR):
            return cls.under(env[ENV_STATE_DIR])
        if (os.geteuid() if uid is None else uid) == 0:
            config = Path("/etc/poolbackend")
            return cls(
                config_dir=config, run_dir=Path("/run/poolbackend"), secrets_dir=config / "secrets"
            )
        home = Path(env.get("HOME") or Path.home())
        config_home = (
            Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else home / ".config"
        )
        if env.get("XDG_RUNTIME_DIR"):
            run = Path(env["XDG_RUNTIME_DIR"]) / "poolbackend"
        elif env.get("XDG_STATE_HOME"):
            run = Path(env["XDG_STATE_HOME"]) / "poolbackend"
        else:
            run = home / ".local" / "state" / "poolbackend"
        config = config_home / "poolbackend"
        return cls(config_dir=config, run_dir=run, secrets_dir=config / "secrets")


def _is_under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


# ------------------------------------------------------------------------------ errors


def os_error(action: str, path: Path, exc: OSError) -> PoolBackendError:
    """One line for a failed file operation: ``cannot <action> '<path>': <reason>``
    (:class:`FileError`), or the symlink refusal (:class:`UnsafePathError`)."""
    if exc.errno == errno.ELOOP:
        return _symlink_error(path)
    reason = exc.strerror or str(exc)
    return FileError(f"cannot {action} '{printable(str(path))}': {printable(reason)}")


def _symlink_error(path: Path) -> UnsafePathError:
    return UnsafePathError(
        f"refusing '{printable(str(path))}': it is a symbolic link, not a file poolbackend "
        "created (someone may be trying to redirect its writes)"
    )


# ------------------------------------------------------------------- directory checks


def _check_own(path: Path, st: os.stat_result) -> None:
    """A directory of ours: a real directory, owned by the caller, not writable by others."""
    shown = printable(str(path))
    if stat.S_ISLNK(st.st_mode):
        raise _symlink_error(path)
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePathError(f"refusing state directory '{shown}': not a directory")
    uid = os.geteuid()
    if st.st_uid != uid:
        raise UnsafePathError(
            f"refusing state directory '{shown}': owned by uid {st.st_uid}, not by the "
            f"caller (uid {uid})"
        )
    if st.st_mode & 0o022:
        raise UnsafePathError(
            f"refusing state directory '{shown}': writable by group or others "
            f"(mode {stat.S_IMODE(st.st_mode):04o}); run chmod go-w on it"
        )


def _check_ancestor(path: Path, root: Path, st: os.stat_result) -> None:
    """A directory above a top directory: owned by root or the caller, and not writable by
    others unless sticky (then nobody else can rename our directory inside it)."""
    uid = os.geteuid()
    if st.st_uid not in (0, uid):
        reason = f"owned by uid {st.st_uid}"
    elif st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
        reason = f"writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})"
    else:
        return
    raise UnsafePathError(
        f"refusing state directory '{printable(str(root))}': its parent "
        f"'{printable(str(path))}' is {reason}, so another user could replace it"
    )


_SAFE_ANCESTORS: set[Path] = set()
_SAFE_ANCESTORS_GUARD = threading.Lock()


def _ancestors_checked(root: Path, *, create: bool) -> bool:
    """Check (creating if asked) the directories above ``root``; False if one is missing.

    Both the path as written and its resolved form are checked. A checked root is remembered
    for the process: only root or the caller can change those directories afterwards.
    """
    with _SAFE_ANCESTORS_GUARD:
        if root in _SAFE_ANCESTORS:
            return True
    parent = root.parent
    if create:
        try:
            os.makedirs(parent, DIR_MODE, exist_ok=True)
        except OSError as exc:
            raise os_error("create directory", parent, exc) from None
    chains = [parent, Path(os.path.realpath(parent))]
    for chain in chains:
        for directory in (*reversed(chain.parents), chain):
            try:
                st = os.stat(directory)
            except FileNotFoundError:
                return False
            except OSError as exc:
                raise os_error("inspect", directory, exc) from None
            _check_ancestor(directory, root, st)
    with _SAFE_ANCESTORS_GUARD:
        _SAFE_ANCESTORS.add(root)
    return True


def _walk(path: Path, root: Path, *, create: bool, mode: int = DIR_MODE) -> bool:
    """Check every directory from ``root`` down to ``path`` (see the module doc).

    With ``create`` missing directories are made (``mode`` for ``path`` itself, 0755 for
    the ones above it) and a private ``mode`` is enforced on an existing ``path``. Returns
    False when a directory is missing and ``create`` is not set.
    """
    if not _ancestors_checked(root, create=create):
        return False
    relative = path.relative_to(root)
    directory = root
    for depth in range(len(relative.parts) + 1):
        if depth:
            directory = directory / relative.parts[depth - 1]
        is_target = directory == path
        try:
            st = os.lstat(directory)
        except FileNotFoundError:
            if not create:
                return False
            try:
                os.mkdir(directory, mode if is_target else DIR_MODE)
            except FileExistsError:
                pass
            except OSError as exc:
                raise os_error("create directory", directory, exc) from None
            try:
                st = os.lstat(directory)
            except OSError as exc:
                raise os_error("create directory", directory, exc) from None
        except OSError as exc:
            raise os_error("inspect", directory, exc) from None
        _check_own(directory, st)
        if create and is_target and mode == PRIVATE_DIR_MODE and stat.S_IMODE(st.st_mode) != mode:
            _chmod_dir(directory, mode)
    return True


def _chmod_dir(directory: Path, mode: int) -> None:
    try:
        fd = os.open(directory, _DIR_FLAGS)
    except OSError as exc:
        raise os_error("open directory", directory, exc) from None
    try:
        os.fchmod(fd, mode)
    except OSError as exc:
        raise os_error("chmod", directory, exc) from None
    finally:
        os.close(fd)


def ensure_dir(paths: StorePaths, path: Path, mode: int = DIR_MODE) -> None:
    """Create ``path`` (and the directories above it) if needed, checking each one; a
    private ``mode`` (0700) is enforced even on an existing directory."""
    _walk(path, paths.root_of(path), create=True, mode=mode)


def _dir_exists(paths: StorePaths, directory: Path) -> bool:
    return _walk(directory, paths.root_of(directory), create=False)


# ------------------------------------------------------------------------------ files


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, _DIR_FLAGS)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _open_regular(path: Path, flags: int, mode: int = FILE_MODE) -> int:
    """``os.open`` with ``O_NOFOLLOW``; the result must be a regular file."""
    fd = os.open(path, flags | _OPEN_FLAGS, mode)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafePathError(f"refusing '{printable(str(path))}': not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_file(paths: StorePaths, path: Path) -> bytes | None:
    """Contents of ``path``, or None if it (or its directory) does not exist."""
    if not _dir_exists(paths, path.parent):
        return None
    try:
        fd = _open_regular(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise os_error("read", path, exc) from None
    try:
        with os.fdopen(fd, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise os_error("read", path, exc) from None


def lexists(paths: StorePaths, path: Path) -> bool:
    """Whether ``path`` exists (a symlink counts, and is not followed)."""
    if not _dir_exists(paths, path.parent):
        return False
    return os.path.lexists(path)


def link_points_to(paths: StorePaths, link: Path, target: Path) -> bool:
    """Whether ``link`` is a symlink to the file ``target`` (same inode, libvirt's
    ``virFileLinkPointsTo``); stat only, nothing is opened."""
    if not _dir_exists(paths, link.parent):
        return False
    try:
        if not stat.S_ISLNK(os.lstat(link).st_mode):
            return False
        return os.path.samestat(os.stat(link), os.stat(target))
    except OSError:
        return False


def list_dir(paths: StorePaths, directory: Path) -> list[str]:
    """Names of the entries of ``directory`` that are not directories (regular files, and
    symlinks so that reading them reports them); empty if it does not exist."""
    if not _dir_exists(paths, directory):
        return []
    try:
        with os.scandir(directory) as entries:
            return sorted(e.name for e in entries if not e.is_dir(follow_symlinks=False))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise os_error("list", directory, exc) from None


def _refuse_symlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISLNK(os.lstat(path).st_mode):
            raise _symlink_error(path)


def atomic_write(
    paths: StorePaths, path: Path, data: bytes, mode: int = FILE_MODE, *, dir_mode: int = DIR_MODE
) -> None:
    """Replace ``path`` with ``data`` atomically, with permissions ``mode``.

    The directory is created (``dir_mode``) and checked; the data goes to a temporary file
    in it (``O_EXCL | O_NOFOLLOW``) which is fsynced and then renamed over ``path``; the
    directory is fsynced afterwards. A symlink at ``path`` is refused. On any failure the old
    file is untouched and the temporary file removed.
    """
    directory = path.parent
    ensure_dir(paths, directory, dir_mode)
    _refuse_symlink(path)
    try:
        # mkstemp opens with O_CREAT | O_EXCL | O_NOFOLLOW and a random name.
        fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise os_error("write", path, exc) from None
    try:
        try:
            os.fchmod(fd, mode)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise
        os.replace(temp_name, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        if isinstance(exc, OSError):
            raise os_error("write", path, exc) from None
        raise
    _fsync_dir(directory)


def remove_file(paths: StorePaths, path: Path) -> bool:
    """Remove ``path`` (a symlink is removed, never followed); False if it did not exist."""
    if not _dir_exists(paths, path.parent):
        return False
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise os_error("remove", path, exc) from None
    _fsync_dir(path.parent)
    return True


def replace_symlink(paths: StorePaths, link: Path, target: str) -> None:
    """Make ``link`` a symlink to ``target`` atomically (the autostart flag)."""
    directory = link.parent
    ensure_dir(paths, directory)
    temp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)  # removes a stale link or file, never what it points to
        os.symlink(target, temp)
        os.replace(temp, link)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise os_error("create link", link, exc) from None
    _fsync_dir(directory)


def open_lock_file(paths: StorePaths, path: Path) -> int:
    """Open (creating) the lock file ``path`` for ``flock``; a symlink is refused."""
    ensure_dir(paths, path.parent)
    try:
        return _open_regular(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    except OSError as exc:
        raise os_error("open lock file", path, exc) from None


# ----------------------------------------------------------------------------- the lock


class _FileLock:
    """An exclusive ``flock`` on a lock file, re-entrant within the process."""

    def __init__(self, paths: StorePaths) -> None:
        self.paths = paths
        self.path = paths.lock_path
        self._mutex = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    @contextlib.contextmanager
    def hold(self, timeout: float) -> Iterator[None]:
        deadline = time.monotonic() + max(timeout, 0.0)
        if not self._mutex.acquire(timeout=max(timeout, 0.0)):
            raise self._timeout_error(timeout)
        try:
            if self._depth == 0:
                self._fd = self._acquire(deadline, timeout)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._fd is not None:
                    with contextlib.suppress(OSError):
                        fcntl.flock(self._fd, fcntl.LOCK_UN)
                    os.close(self._fd)
                    self._fd = None
        finally:
            self._mutex.release()

    def _acquire(self, deadline: float, timeout: float) -> int:
        fd = open_lock_file(self.paths, self.path)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise os_error("lock", self.path, exc) from None
            if time.monotonic() >= deadline:
                os.close(fd)
                raise self._timeout_error(timeout)
            time.sleep(0.02)

    def _timeout_error(self, timeout: float) -> StateError:
        return StateError(
            f"cannot lock '{printable(str(self.path))}' within {timeout:g}s: "
            "another poolbackend command is running"
        )

    def reset_after_fork(self) -> None:
        self._mutex = threading.RLock()
        self._depth = 0
        self._fd = None


_LOCKS: dict[str, _FileLock] = {}
_LOCKS_GUARD = threading.Lock()


def _reset_locks_after_fork() -> None:
    for lock in _LOCKS.values():
        lock.reset_after_fork()


os.register_at_fork(after_in_child=_reset_locks_after_fork)


@contextlib.contextmanager
def process_lock(paths: StorePaths, timeout: float = DEFAULT_LOCK_TIMEOUT) -> Iterator[None]:
    """Hold poolbackend's exclusive lock for ``paths`` (shared by pools and secrets).

    Re-entrant within a process; other processes wait up to ``timeout`` seconds, then get
    a :class:`StateError`.
    """
    key = os.path.abspath(paths.lock_path)
    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault(key, _FileLock(paths))
    with lock.hold(timeout):
        yield
