"""Persistent pool definitions and runtime state on disk, laid out like libvirt's.

Locations (root / other users):

* definitions ``<name>.xml``: ``/etc/poolbackend/storage/`` /
  ``$XDG_CONFIG_HOME/poolbackend/storage/`` (default ``~/.config``);
* autostart links: ``<definitions>/autostart/<name>.xml``;
* runtime state ``<name>.xml``: ``/run/poolbackend/storage/`` /
  ``$XDG_RUNTIME_DIR/poolbackend/storage/``;
* secrets: ``/etc/poolbackend/secrets/`` / ``$XDG_CONFIG_HOME/poolbackend/secrets/``;
  ephemeral secrets in ``<runtime>/secrets/``;
* the lock file: ``<runtime>/poolbackend.lock``.

Without ``XDG_RUNTIME_DIR`` the runtime directory is ``$XDG_STATE_HOME/poolbackend`` (default
``~/.local/state/poolbackend``). ``POOLBACKEND_STATE_DIR=D`` moves everything under ``D``:
``D/config`` (definitions), ``D/run`` (state, lock, ephemeral secrets) and ``D/secrets``.

A definition file holds the pool XML (:func:`~poolbackend.pool.xmlio.format_pool_xml`); a
state file exists while the pool is active and holds a ``<poolstate>`` document with the
live definition, sizes and volumes. A pool with a state file and no definition is transient.

Every write is atomic (temporary file in the same directory, fsync, ``os.replace``, fsync of
the directory); files that may hold secret values are 0600 in 0700 directories, the rest
0644. Mutating methods take the process lock themselves; wrap a read-modify-write sequence in
``with store.locked(): …`` (re-entrant within a process) so that concurrent commands cannot
interleave. A file that cannot be read or parsed is reported with its path and is never
overwritten or skipped silently.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from poolbackend.errors import ConfigError, NotFoundError, PoolBackendError, StateError
from poolbackend.pool.model import PoolDef, PoolState
from poolbackend.pool.naming import printable
from poolbackend.pool.xmlio import (
    canonical_uuid,
    format_pool_state_xml,
    format_pool_xml,
    parse_pool_state_xml,
    parse_pool_xml,
)

__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "ENV_STATE_DIR",
    "FILE_MODE",
    "PRIVATE_DIR_MODE",
    "PRIVATE_FILE_MODE",
    "PoolRecord",
    "Store",
    "StorePaths",
    "atomic_write",
    "ensure_dir",
    "process_lock",
]

ENV_STATE_DIR = "POOLBACKEND_STATE_DIR"
DEFAULT_LOCK_TIMEOUT = 30.0
FILE_MODE = 0o644
PRIVATE_FILE_MODE = 0o600
DIR_MODE = 0o755
PRIVATE_DIR_MODE = 0o700
_MAX_NAME_BYTES = 255 - len(".xml")


@dataclass(frozen=True)
class StorePaths:
    """Where poolbackend keeps its files (see the module doc)."""

    config_dir: Path
    run_dir: Path
    secrets_dir: Path

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
    def lock_path(self) -> Path:
        return self.run_dir / "poolbackend.lock"

    @classmethod
    def under(cls, root: Path | str) -> StorePaths:
        """The ``POOLBACKEND_STATE_DIR`` layout: ``root/config``, ``root/run``, ``root/secrets``."""
        base = Path(root).absolute()
        return cls(config_dir=base / "config", run_dir=base / "run", secrets_dir=base / "secrets")

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


# ------------------------------------------------------------------------ file primitives


def _os_error(action: str, path: Path, exc: OSError) -> PoolBackendError:
    reason = exc.strerror or str(exc)
    return PoolBackendError(f"cannot {action} '{printable(str(path))}': {printable(reason)}")


def ensure_dir(path: Path, mode: int = DIR_MODE) -> None:
    """Create ``path`` (and parents) if needed; a private ``mode`` (0700) is enforced even on
    an existing directory."""
    try:
        path.mkdir(mode=mode, parents=True, exist_ok=True)
        if mode == PRIVATE_DIR_MODE and (path.stat().st_mode & 0o777) != mode:
            os.chmod(path, mode)
    except OSError as exc:
        raise _os_error("create directory", path, exc) from None


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = FILE_MODE) -> None:
    """Replace ``path`` with ``data`` atomically, with permissions ``mode``.

    The data goes to a temporary file in the same directory which is fsynced and then
    renamed over ``path``; the directory is fsynced afterwards. On any failure the old file
    is untouched and the temporary file removed.
    """
    directory = path.parent
    try:
        fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise _os_error("write", path, exc) from None
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
            raise _os_error("write", path, exc) from None
        raise
    _fsync_dir(directory)


def _remove(path: Path) -> bool:
    """Remove ``path``; False if it did not exist."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise _os_error("remove", path, exc) from None
    _fsync_dir(path.parent)
    return True


def _read(path: Path) -> bytes | None:
    """File contents, or None if it does not exist."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _os_error("read", path, exc) from None


# ----------------------------------------------------------------------------- the lock


class _FileLock:
    """An exclusive ``flock`` on a lock file, re-entrant within the process."""

    def __init__(self, path: Path) -> None:
        self.path = path
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
        ensure_dir(self.path.parent)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        except OSError as exc:
            raise _os_error("open lock file", self.path, exc) from None
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise _os_error("lock", self.path, exc) from None
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
        lock = _LOCKS.setdefault(key, _FileLock(Path(key)))
    with lock.hold(timeout):
        yield


# ---------------------------------------------------------------------------- the store


@dataclass(frozen=True)
class PoolRecord:
    """Everything known about one pool.

    ``definition`` is the persistent definition (None for a transient pool); ``live`` the
    definition the running pool was started with (None when inactive). ``state`` always
    reflects the files: ``active``, ``autostart`` and ``persistent`` are filled in.
    """

    name: str
    uuid: str
    definition: PoolDef | None
    live: PoolDef | None
    state: PoolState

    @property
    def active(self) -> bool:
        return self.state.active

    @property
    def persistent(self) -> bool:
        return self.definition is not None

    @property
    def autostart(self) -> bool:
        return self.state.autostart

    @property
    def pool(self) -> PoolDef:
        """The definition in effect: the live one while active, else the persistent one."""
        if self.live is not None:
            return self.live
        assert self.definition is not None
        return self.definition

    @property
    def inactive_pool(self) -> PoolDef:
        """The definition used at the next start (``pool-dumpxml --inactive``)."""
        if self.definition is not None:
            return self.definition
        return self.pool


_HEADER = """<!--
WARNING: THIS IS AN AUTO-GENERATED FILE. CHANGES TO IT ARE LIKELY TO BE
OVERWRITTEN AND LOST. Changes to this xml configuration should be made using:
  poolbackend pool-edit {name}
or other application using the poolbackend API.
-->

"""


def _comment_safe(name: str) -> str:
    if "--" in name or name.endswith("-"):
        return "<name>"
    return printable(name)


class Store:
    """Pool definitions, autostart flags and runtime state (see the module doc)."""

    def __init__(self, paths: StorePaths) -> None:
        self.paths = paths
        # Parsed state files by content: one command looks a pool up several times (before,
        # under the lock, after saving) and a 1000-volume state takes ~30 ms to parse.
        self._parsed_states: dict[Path, tuple[bytes, tuple[PoolDef, PoolState]]] = {}

    @classmethod
    def default(cls) -> Store:
        """The store of this process (:meth:`StorePaths.default`)."""
        return cls(StorePaths.default())

    def locked(
        self, timeout: float = DEFAULT_LOCK_TIMEOUT
    ) -> contextlib.AbstractContextManager[None]:
        """Context manager holding the process lock (re-entrant)."""
        return process_lock(self.paths, timeout)

    # --- paths

    @staticmethod
    def _check_name(name: str) -> None:
        if (
            not name
            or "/" in name
            or "\x00" in name
            or len(name.encode("utf-8", "replace")) > _MAX_NAME_BYTES
        ):
            raise ConfigError(
                f"invalid pool name '{printable(name)}': "
                f"must be 1-{_MAX_NAME_BYTES} bytes without '/'"
            )

    def definition_path(self, name: str) -> Path:
        self._check_name(name)
        return self.paths.definitions_dir / f"{name}.xml"

    def autostart_path(self, name: str) -> Path:
        self._check_name(name)
        return self.paths.autostart_dir / f"{name}.xml"

    def state_path(self, name: str) -> Path:
        self._check_name(name)
        return self.paths.state_dir / f"{name}.xml"

    # --- loading

    def _load_definition(self, name: str) -> PoolDef | None:
        path = self.definition_path(name)
        data = _read(path)
        if data is None:
            return None
        try:
            pool = parse_pool_xml(data, source_name=path.name)
        except ConfigError as exc:
            raise ConfigError(
                f"cannot load pool definition '{printable(str(path))}': {exc}"
            ) from None
        if pool.name != name:
            raise ConfigError(
                f"XML error: Storage pool config filename '{printable(str(path))}' "
                f"does not match pool name '{printable(pool.name)}'"
            )
        return pool

    def _load_state(self, name: str) -> tuple[PoolDef, PoolState] | None:
        path = self.state_path(name)
        data = _read(path)
        if data is None:
            return None
        cached = self._parsed_states.get(path)
        if cached is not None and cached[0] == data:
            pool, state = cached[1]
        else:
            try:
                pool, state = parse_pool_state_xml(data, source_name=path.name)
            except ConfigError as exc:
                raise ConfigError(
                    f"cannot load pool state '{printable(str(path))}': {exc}"
                ) from None
            self._parsed_states[path] = (data, (pool, state))
        if pool.name != name:
            raise ConfigError(
                f"pool state file '{printable(str(path))}' holds pool '{printable(pool.name)}', "
                f"expected '{printable(name)}'"
            )
        return pool, state

    def _record(self, name: str) -> PoolRecord | None:
        definition = self._load_definition(name)
        loaded = self._load_state(name)
        if definition is None and loaded is None:
            return None
        autostart = definition is not None and os.path.lexists(self.autostart_path(name))
        if loaded is not None:
            live, state = loaded
            state = replace(state, autostart=autostart, persistent=definition is not None)
        else:
            live = None
            state = PoolState(active=False, autostart=autostart, persistent=True)
        pool_uuid = live.uuid if live is not None else definition.uuid if definition else ""
        return PoolRecord(name=name, uuid=pool_uuid, definition=definition, live=live, state=state)

    def _names(self) -> list[str]:
        names: set[str] = set()
        for directory in (self.paths.definitions_dir, self.paths.state_dir):
            try:
                entries = os.listdir(directory)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise _os_error("list", directory, exc) from None
            for entry in entries:
                if entry.endswith(".xml") and len(entry) > 4 and (directory / entry).is_file():
                    names.add(entry[:-4])
        return sorted(names)

    def list_pools(
        self, *, on_error: Callable[[PoolBackendError], None] | None = None
    ) -> list[PoolRecord]:
        """All pools (persistent and transient, active or not), sorted by name.

        A file that cannot be loaded raises, unless ``on_error`` is given: then the error is
        passed to it (to be shown as a warning) and that pool is left out.
        """
        records: list[PoolRecord] = []
        for name in self._names():
            try:
                record = self._record(name)
            except PoolBackendError as exc:
                if on_error is None:
                    raise
                on_error(exc)
                continue
            if record is not None:
                records.append(record)
        return records

    def find_pool(self, name_or_uuid: str) -> PoolRecord | None:
        """The pool with this UUID or name (UUID tried first, like virsh), or None."""
        wanted_uuid = canonical_uuid(name_or_uuid)
        if wanted_uuid is not None:
            for record in self.list_pools():
                if wanted_uuid in (
                    record.uuid,
                    record.definition.uuid if record.definition else "",
                ):
                    return record
        try:
            self._check_name(name_or_uuid)
        except ConfigError:
            return None
        return self._record(name_or_uuid)

    def get_pool(self, name_or_uuid: str) -> PoolRecord:
        """Like :meth:`find_pool` but raises :class:`NotFoundError` (libvirt's text)."""
        record = self.find_pool(name_or_uuid)
        if record is None:
            raise NotFoundError(
                "Storage pool not found: no storage pool with matching name "
                f"'{printable(name_or_uuid)}'"
            )
        return record

    def get_pool_by_uuid(self, pool_uuid: str) -> PoolRecord:
        """The pool with this UUID; :class:`NotFoundError` otherwise."""
        wanted = canonical_uuid(pool_uuid)
        for record in self.list_pools() if wanted else []:
            if record.uuid == wanted:
                return record
        raise NotFoundError(
            f"Storage pool not found: no storage pool with matching uuid '{printable(pool_uuid)}'"
        )

    # --- changes

    def _check_duplicates(self, pool: PoolDef, *, check_active: bool) -> PoolRecord | None:
        """libvirt's virStoragePoolObjIsDuplicate; returns the matching record if any."""
        for record in self.list_pools():
            uuids = {record.uuid, record.definition.uuid if record.definition else record.uuid}
            if pool.uuid in uuids:
                if record.name != pool.name:
                    raise StateError(
                        f"operation failed: pool '{printable(record.name)}' is already defined "
                        f"with uuid {pool.uuid}"
                    )
                if check_active and record.active:
                    raise StateError(
                        f"Requested operation is not valid: pool is already active as "
                        f"'{printable(record.name)}'"
                    )
                return record
            if record.name == pool.name:
                raise StateError(
                    f"operation failed: pool '{printable(pool.name)}' already exists with uuid "
                    f"{record.uuid}"
                )
        return None

    @staticmethod
    def _validated(pool: PoolDef) -> str:
        """Format ``pool`` and check that the result parses back (catches bad models)."""
        text = format_pool_xml(pool)
        parse_pool_xml(text, source_name=f"{pool.name}.xml")
        return text

    def define(self, pool: PoolDef) -> PoolRecord:
        """Create or update the persistent definition of ``pool``.

        Same name and UUID as an existing pool updates it (a running pool keeps its live
        definition until restarted; a running transient pool becomes persistent). Raises
        ``operation failed: pool 'x' already exists with uuid U`` for a name clash and
        ``operation failed: pool 'x' is already defined with uuid U`` for a UUID clash.
        """
        self._check_name(pool.name)
        text = self._validated(pool)
        with self.locked():
            self._check_duplicates(pool, check_active=False)
            ensure_dir(self.paths.definitions_dir)
            header = _HEADER.format(name=_comment_safe(pool.name))
            atomic_write(
                self.definition_path(pool.name), (header + text).encode("utf-8"), FILE_MODE
            )
            record = self._record(pool.name)
        assert record is not None
        return record

    def undefine(self, name: str) -> None:
        """Remove the definition and autostart flag of an inactive persistent pool."""
        with self.locked():
            record = self.get_pool(name)
            if record.active:
                raise StateError(
                    "Requested operation is not valid: storage pool "
                    f"'{printable(record.name)}' is still active"
                )
            if record.definition is None:
                raise StateError(
                    "Requested operation is not valid: pool "
                    f"'{printable(record.name)}' is transient"
                )
            _remove(self.autostart_path(record.name))
            _remove(self.definition_path(record.name))

    def save_state(self, name: str, state: PoolState, *, pool: PoolDef | None = None) -> PoolRecord:
        """Write the runtime state of pool ``name`` (making it active if ``state.active``).

        The live definition is ``pool`` if given (pool start uses the persistent definition,
        :meth:`create_transient` the new one), else the current live definition, else the
        persistent definition.
        """
        with self.locked():
            if pool is None:
                record = self.get_pool(name)
                pool = record.live or record.definition
                assert pool is not None
            elif pool.name != name:
                raise ConfigError(
                    f"pool name '{printable(pool.name)}' does not match '{printable(name)}'"
                )
            else:
                self._check_name(name)
                self._check_duplicates(pool, check_active=False)
            ensure_dir(self.paths.state_dir)
            data = format_pool_state_xml(pool, state).encode("utf-8")
            atomic_write(self.state_path(name), data, FILE_MODE)
            saved = self._record(name)
        assert saved is not None
        return saved

    def create_transient(self, pool: PoolDef, state: PoolState | None = None) -> PoolRecord:
        """Start ``pool`` without defining it (``pool-create``).

        ``state`` defaults to an active pool without volumes (what libvirt writes before the
        first refresh). Refuses a pool that is already active (``Requested operation is not
        valid: pool is already active as 'x'``) and name/UUID clashes like :meth:`define`.
        """
        self._validated(pool)
        if state is None:
            state = PoolState(active=True, persistent=False)
        with self.locked():
            self._check_duplicates(pool, check_active=True)
            return self.save_state(pool.name, state, pool=pool)

    def clear_state(self, name: str) -> None:
        """Remove the runtime state (pool stopped); a transient pool disappears. Idempotent."""
        with self.locked():
            _remove(self.state_path(name))

    def set_autostart(self, name: str, autostart: bool) -> None:
        """Mark or unmark a persistent pool for autostart."""
        with self.locked():
            record = self.get_pool(name)
            if record.definition is None:
                raise StateError("internal error: cannot set autostart for transient pool")
            link = self.autostart_path(record.name)
            if not autostart:
                _remove(link)
                return
            if os.path.lexists(link):
                return
            ensure_dir(self.paths.autostart_dir)
            target = str(self.definition_path(record.name))
            temp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
            try:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp)
                os.symlink(target, temp)
                os.replace(temp, link)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
                raise _os_error("create autostart link", link, exc) from None
            _fsync_dir(link.parent)

    def autostart_names(self) -> list[str]:
        """Names of persistent pools marked for autostart."""
        return [record.name for record in self.list_pools() if record.autostart]
