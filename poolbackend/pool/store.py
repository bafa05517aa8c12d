"""Persistent pool definitions and runtime state on disk, laid out like libvirt's.

Where the files live, and how they are opened safely, is :mod:`poolbackend.pool.fsutil`.
Which operation is allowed when (active, inactive, transient) is the driver's
(:mod:`poolbackend.pool.driver`); the store keeps libvirt's object-layer checks next to the
files they read (name and UUID duplicates, source conflicts). About 570 lines: loading with
its damaged-file rules is most of it and is one concern.

A definition file holds the pool XML (:func:`~poolbackend.pool.xml.pool.format_pool_xml`); a
state file ``<name>.json`` exists while the pool is active and holds the live definition,
sizes and volumes in the plain format of :mod:`poolbackend.pool.statefile` (the tool's own
data: no libvirt checks, no limit meant for user input). A pool with a state file and no
definition is transient.

A damaged file of one pool never stops commands on the others (libvirt, too, skips a pool
whose file it cannot load). Each is reported once per process as one ``warning:`` line:

* a damaged state file (or a ``<name>.xml`` state of an older version, which is not read:
  the state lives in ``/run`` and a restart only rescans the target) makes its pool
  *inactive*: pool-start replaces the file, pool-destroy and pool-undefine remove it;
* a damaged definition file: list commands leave that pool out; naming the pool gives one
  ``error:`` line, except pool-destroy (which clears the runtime state whatever the
  definition holds) and pool-undefine of an inactive pool (which removes the file); define
  never overwrites it.

Every write is atomic (:func:`~poolbackend.pool.fsutil.atomic_write`). Mutating methods take
the process lock themselves; wrap a read-modify-write sequence in ``with store.locked(): …``
(re-entrant within a process) so that concurrent commands cannot interleave. A file that
cannot be read or parsed is reported with its path and is never overwritten or skipped
silently.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from poolbackend.errors import (
    ConfigError,
    NotFoundError,
    PoolBackendError,
    StateError,
    not_valid,
)
from poolbackend.pool import statefile
from poolbackend.pool.fsutil import (
    DEFAULT_LOCK_TIMEOUT,
    FILE_MODE,
    StorePaths,
    atomic_write,
    lexists,
    link_points_to,
    list_dir,
    process_lock,
    read_file,
    remove_file,
    replace_symlink,
)
from poolbackend.pool.model import PoolDef, PoolState
from poolbackend.pool.naming import printable
from poolbackend.pool.xml.pool import format_pool_xml, parse_pool_xml
from poolbackend.pool.xml.safe import canonical_uuid

__all__ = ["DamagedFileError", "PoolRecord", "Store", "StorePaths", "new_activation"]

STATE_SUFFIX = ".json"
LEGACY_STATE_SUFFIX = ".xml"  # the <poolstate> XML of earlier versions (not read)
_MAX_NAME_BYTES = 255 - len(STATE_SUFFIX)  # both <name>.xml and <name>.json must fit


class DamagedFileError(ConfigError):
    """A definition or state file of one pool cannot be loaded; ``path`` names it."""

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = path


def _print_warning(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


_WARNED: set[str] = set()  # each damaged file is reported once per process


# ---------------------------------------------------------------------------- the store


def new_activation() -> str:
    """A fresh activation id for a pool that starts (see :attr:`PoolState.activation`)."""
    return os.urandom(8).hex()


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
    damaged_state: Path | None = None  # a state file that could not be loaded (pool inactive)
    damaged_definition: Path | None = None  # a definition that could not be loaded

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

    def __init__(self, paths: StorePaths, *, warn: Callable[[str], None] = _print_warning) -> None:
        self.paths = paths
        self._warn = warn
        # Loaded state files by content: one command looks a pool up several times (before,
        # under the lock, after saving); the file just written is known without reading it.
        self._parsed_states: dict[Path, tuple[bytes, tuple[PoolDef, PoolState]]] = {}

    def warn(self, message: str) -> None:
        """Report a damaged file once per process (one ``warning:`` line by default)."""
        if message not in _WARNED:
            _WARNED.add(message)
            self._warn(message)

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
        return self.paths.state_dir / f"{name}{STATE_SUFFIX}"

    def legacy_state_path(self, name: str) -> Path:
        """Where an earlier version kept the state (XML); only ever removed, never read."""
        self._check_name(name)
        return self.paths.state_dir / f"{name}{LEGACY_STATE_SUFFIX}"

    # --- loading

    def _load_definition(self, name: str) -> PoolDef | None:
        path = self.definition_path(name)
        data = read_file(self.paths, path)
        if data is None:
            return None
        try:
            pool = parse_pool_xml(data, source_name=path.name)
        except ConfigError as exc:
            raise DamagedFileError(
                f"cannot load pool definition '{printable(str(path))}': {exc}", path
            ) from None
        if pool.name != name:
            raise DamagedFileError(
                f"XML error: Storage pool config filename '{printable(str(path))}' "
                f"does not match pool name '{printable(pool.name)}'",
                path,
            )
        return pool

    def _load_state(self, name: str) -> tuple[PoolDef, PoolState] | DamagedFileError | None:
        """The live definition and state, None without a state file, or the damage found."""
        path = self.state_path(name)
        data = read_file(self.paths, path)
        if data is None:
            legacy = self.legacy_state_path(name)
            if not lexists(self.paths, legacy):
                return None
            return DamagedFileError(
                f"pool state file '{printable(str(legacy))}' was written by an older "
                "poolbackend and is not read; the pool is inactive until started again",
                legacy,
            )
        cached = self._parsed_states.get(path)
        if cached is not None and cached[0] == data:
            return cached[1]
        try:
            pool, state = statefile.loads(data)
        except statefile.StateFileError as exc:
            return DamagedFileError(
                f"pool state file '{printable(str(path))}' is damaged ({exc}); "
                "the pool is inactive until started again",
                path,
            )
        if pool.name != name:
            return DamagedFileError(
                f"pool state file '{printable(str(path))}' holds pool "
                f"'{printable(pool.name)}', expected '{printable(name)}'; "
                "the pool is inactive until started again",
                path,
            )
        self._parsed_states[path] = (data, (pool, state))
        return pool, state

    def _record(self, name: str) -> PoolRecord | None:
        """Everything about pool ``name``; a damaged state makes it inactive (reported once),
        a damaged definition raises unless a valid state still describes the pool."""
        bad_definition: DamagedFileError | None = None
        try:
            definition = self._load_definition(name)
        except DamagedFileError as exc:
            definition, bad_definition = None, exc
        loaded = self._load_state(name)
        damaged_state: Path | None = None
        if isinstance(loaded, DamagedFileError):
            if bad_definition is None and definition is None:  # transient: nothing else left
                raise DamagedFileError(
                    f"{loaded}; pool-destroy {printable(name)} removes it", loaded.path
                )
            self.warn(str(loaded))
            damaged_state, loaded = loaded.path, None
        if bad_definition is not None:
            if loaded is None:
                raise bad_definition
            self.warn(str(bad_definition))
        if definition is None and loaded is None:
            return None
        autostart = definition is not None and self._autostart_link_ok(name)
        if loaded is not None:
            live, state = loaded
            state = replace(state, autostart=autostart, persistent=definition is not None)
        else:
            live = None
            state = PoolState(active=False, autostart=autostart, persistent=True)
        pool_uuid = live.uuid if live is not None else definition.uuid if definition else ""
        return PoolRecord(
            name=name,
            uuid=pool_uuid,
            definition=definition,
            live=live,
            state=state,
            damaged_state=damaged_state,
            damaged_definition=None if bad_definition is None else bad_definition.path,
        )

    def _autostart_link_ok(self, name: str) -> bool:
        """libvirt's rule: the pool autostarts when its link points at its definition."""
        return link_points_to(self.paths, self.autostart_path(name), self.definition_path(name))

    def _names(self) -> list[str]:
        names: set[str] = set()
        for directory, suffixes in (
            (self.paths.definitions_dir, (".xml",)),
            (self.paths.state_dir, (STATE_SUFFIX, LEGACY_STATE_SUFFIX)),
        ):
            for entry in list_dir(self.paths, directory):
                for suffix in suffixes:
                    if (
                        entry.endswith(suffix)
                        and len(entry) > len(suffix)
                        and not entry.startswith(".")
                    ):
                        names.add(entry[: -len(suffix)])
        return sorted(names)

    def list_pools(
        self, *, on_error: Callable[[PoolBackendError], None] | None = None
    ) -> list[PoolRecord]:
        """All pools (persistent and transient, active or not), sorted by name.

        A pool whose files cannot be loaded is left out and its error passed to ``on_error``
        (default: :meth:`warn`, once per process), so one damaged pool never stops a command
        about the others.
        """
        records: list[PoolRecord] = []
        for name in self._names():
            try:
                record = self._record(name)
            except PoolBackendError as exc:
                if on_error is None:
                    self.warn(str(exc))
                else:
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

    def _check_duplicates(
        self, pool: PoolDef, *, check_active: bool, records: list[PoolRecord] | None = None
    ) -> PoolRecord | None:
        """libvirt's virStoragePoolObjIsDuplicate against ``records`` (default: every pool,
        :meth:`list_pools`); returns the matching record if any."""
        for record in self.list_pools() if records is None else records:
            uuids = {record.uuid, record.definition.uuid if record.definition else record.uuid}
            if pool.uuid in uuids:
                if record.name != pool.name:
                    raise StateError(
                        f"operation failed: pool '{printable(record.name)}' is already defined "
                        f"with uuid {pool.uuid}"
                    )
                if check_active and record.active:
                    raise not_valid(f"pool is already active as '{printable(record.name)}'")
                return record
            if record.name == pool.name:
                raise StateError(
                    f"operation failed: pool '{printable(pool.name)}' already exists with uuid "
                    f"{record.uuid}"
                )
        return None

    def _check_source_conflict(self, pool: PoolDef, records: list[PoolRecord]) -> None:
        """libvirt's source-conflict check (``virStoragePoolObjSourceFindDuplicate``).

        libvirt skips it for iscsi-direct pools; poolbackend applies its iscsi rule: another
        pool (any other name; redefining a pool is not a conflict) with the same target and
        the same initiator IQN is refused with ``operation failed: Storage source conflict
        with pool: 'NAME'``. Unlike libvirt, the host counts through its resolved addresses
        (:func:`poolbackend.pool.targetid.same_target`), so ``localhost`` and ``127.0.0.1``
        are the same target; a different initiator IQN is a different I_T nexus (libvirt's
        rule), and the volume locks still keep such pools from writing one LUN at once.
        """
        from poolbackend.pool.targetid import same_target

        src = pool.source
        for record in records:
            if record.name == pool.name:
                continue
            for other in (record.live, record.definition):
                if (
                    other is not None
                    and other.source.initiator_iqn == src.initiator_iqn
                    and same_target(other.source, src)
                ):
                    raise StateError(
                        "operation failed: Storage source conflict with pool: "
                        f"'{printable(record.name)}'"
                    )

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
        ``operation failed: pool 'x' already exists with uuid U`` for a name clash,
        ``operation failed: pool 'x' is already defined with uuid U`` for a UUID clash and
        ``operation failed: Storage source conflict with pool: 'x'`` for another pool on the
        same target (:meth:`_check_source_conflict`).
        """
        self._check_name(pool.name)
        text = self._validated(pool)
        with self.locked():
            self._load_definition(pool.name)  # a damaged definition is never overwritten
            records = self.list_pools()  # read once for both checks
            self._check_source_conflict(pool, records)
            self._check_duplicates(pool, check_active=False, records=records)
            header = _HEADER.format(name=_comment_safe(pool.name))
            atomic_write(
                self.paths,
                self.definition_path(pool.name),
                (header + text).encode("utf-8"),
                FILE_MODE,
            )
            record = self._record(pool.name)
        assert record is not None
        return record

    def remove_definition(self, name: str, *, with_state: bool = False) -> None:
        """Remove the definition and autostart link of pool ``name`` (and its runtime state
        files with ``with_state``). The state rules are the driver's
        (:meth:`poolbackend.pool.driver.Driver.undefine`)."""
        with self.locked():
            remove_file(self.paths, self.autostart_path(name))
            remove_file(self.paths, self.definition_path(name))
            if with_state:
                self.remove_state_files(name)

    def save_state(
        self, name: str, state: PoolState, *, pool: PoolDef | None = None, checked: bool = False
    ) -> PoolRecord:
        """Write the runtime state of pool ``name`` (making it active if ``state.active``).

        The live definition is ``pool`` if given (pool start uses the persistent definition,
        :meth:`create_transient` the new one), else the current live definition, else the
        persistent definition. A given ``pool`` is checked for name and UUID clashes with the
        other pools (:meth:`_check_duplicates`) unless ``checked``: a refresh saves the live
        definition its start checked, and the check reads every pool's files (about 0.5 ms
        per defined pool, more for a large state), which a refresh must not pay.
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
                if not checked:
                    self._check_duplicates(pool, check_active=False)
            try:
                data = statefile.dumps(pool, state)
            except statefile.StateFileError as exc:
                raise StateError(
                    f"internal error: cannot save the state of pool '{printable(name)}': {exc}"
                ) from None
            path = self.state_path(name)
            atomic_write(self.paths, path, data, FILE_MODE)
            self._parsed_states[path] = (data, (pool, state))
            remove_file(self.paths, self.legacy_state_path(name))
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
            state = PoolState(active=True, persistent=False, activation=new_activation())
        with self.locked():
            records = self.list_pools()  # read once for both checks
            self._check_source_conflict(pool, records)
            self._check_duplicates(pool, check_active=True, records=records)
            return self.save_state(pool.name, state, pool=pool, checked=True)

    def clear_state(self, name: str) -> None:
        """Remove the runtime state (pool stopped); a transient pool disappears. Idempotent."""
        with self.locked():
            self.remove_state_files(name)

    def remove_state_files(self, name: str) -> bool:
        """Remove pool ``name``'s runtime state files (any version); whether one existed."""
        with self.locked():
            removed = remove_file(self.paths, self.state_path(name))
            return remove_file(self.paths, self.legacy_state_path(name)) or removed

    def set_autostart(self, name: str, autostart: bool) -> None:
        """Mark or unmark a persistent pool for autostart."""
        with self.locked():
            record = self.get_pool(name)
            if record.definition is None:
                raise StateError("internal error: cannot set autostart for transient pool")
            link = self.autostart_path(record.name)
            if not autostart:
                remove_file(self.paths, link)
                return
            target = self.definition_path(record.name)
            if link_points_to(self.paths, link, target):
                return
            replace_symlink(self.paths, link, str(target))

    def autostart_names(self) -> list[str]:
        """Names of persistent pools marked for autostart."""
        return [record.name for record in self.list_pools() if record.autostart]
