"""The storage driver: the one front door to pools, volumes and secrets.

Like libvirt's ``storage_driver.c`` above its ``virStorageBackend`` tables, the driver owns
what is the same for every pool type, and the command line (:mod:`poolbackend.cli`) and
:mod:`poolbackend.pool.attach` call nothing else:

* object lifecycle: define, undefine, create, start, refresh, destroy, autostart, build,
  delete; listing and lookup of pools (name or UUID) and volumes (name + pool, key, path:
  :func:`poolbackend.pool.lookup.find_volume`);
* state rules, with libvirt's texts: ``Requested operation is not valid: storage pool 'P'
  is already active`` / ``is not active`` / ``is still active``; a start or refresh whose
  pool changed while it scanned is discarded (:meth:`Driver._scan_and_save`);
* locks: the process lock around every read-modify-write of the files, a volume lock (one
  writer or several readers per LUN, :mod:`poolbackend.pool.volumelock`) around transfers;
* persistence, through :class:`~poolbackend.pool.store.Store` (definitions, runtime state,
  autostart links) and :class:`~poolbackend.pool.secrets.SecretStore` (CHAP values, or a
  libvirt connection's secrets with ``libvirt_uri``).

The pool type's work on the target is the backend's
(:class:`~poolbackend.pool.backends.iscsi_direct.IscsiDirectBackend`); tests give the
driver a backend with a fake session factory. Every error is a one-line
:class:`~poolbackend.errors.PoolBackendError`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from poolbackend.errors import ConfigError, NotFoundError, PoolBackendError, StateError, not_valid
from poolbackend.iscsi.portal import Credentials
from poolbackend.pool import lookup
from poolbackend.pool.model import PoolDef, PoolState, SecretDef, SourceSpec, Volume
from poolbackend.pool.store import DamagedFileError, PoolRecord, Store, new_activation
from poolbackend.text import printable

if TYPE_CHECKING:  # the initiator is imported only by commands that talk to a target
    from poolbackend.pool.backends.iscsi_direct import IscsiDirectBackend, Progress, ScanReport
    from poolbackend.pool.secrets import SecretStore, SecretValue
    from poolbackend.scsi.provisioning import Provisioning

__all__ = ["Driver", "PoolRecord", "RefreshReport", "not_supported"]

NOT_SUPPORTED = "this function is not supported by the connection driver: "


def _pool_invalid(name: str, what: str) -> StateError:
    """libvirt's "Requested operation is not valid: storage pool 'NAME' WHAT"."""
    return not_valid(f"storage pool '{name}' {what}")


def not_supported(what: str) -> PoolBackendError:
    """libvirt's uniform message for a backend callback this pool type does not have."""
    return PoolBackendError(NOT_SUPPORTED + what)


@dataclass(frozen=True)
class RefreshReport:
    """A start or refresh that was saved: the pool's new state, one line per LUN left out."""

    name: str
    state: PoolState
    failures: tuple[str, ...]


class Driver:
    """Pools, volumes and secrets (see the module doc)."""

    def __init__(
        self,
        store: Store | None = None,
        secrets: SecretStore | None = None,
        *,
        libvirt_uri: str | None = None,
        backend: IscsiDirectBackend | None = None,
    ) -> None:
        self.store = store or Store.default()
        self._secrets = secrets
        self.libvirt_uri = libvirt_uri or os.environ.get("POOLBACKEND_LIBVIRT_URI")
        self._backend = backend

    @property
    def secrets(self) -> SecretStore:
        """The local CHAP secrets, beside the store's files (made on first use)."""
        if self._secrets is None:
            from poolbackend.pool.secrets import SecretStore

            self._secrets = SecretStore(self.store.paths)
        return self._secrets

    @property
    def backend(self) -> IscsiDirectBackend:
        """The pool type's callback table (made on first use: listing commands never load
        the initiator)."""
        if self._backend is None:
            from poolbackend.pool.backends.iscsi_direct import IscsiDirectBackend

            self._backend = IscsiDirectBackend()
        return self._backend

    def locked(self) -> contextlib.AbstractContextManager[None]:
        """The process lock (re-entrant): hold it around a read-modify-write of pools."""
        return self.store.locked()

    # -- lookup ------------------------------------------------------------------------
    def list_pools(self) -> list[PoolRecord]:
        """Every pool, sorted by name; a damaged one is left out with one warning."""
        return self.store.list_pools()

    def lookup_pool(self, name_or_uuid: str) -> PoolRecord:
        """The pool by UUID or name (libvirt's ``Storage pool not found`` otherwise)."""
        return self.store.get_pool(name_or_uuid)

    def find_pool(self, name_or_uuid: str) -> PoolRecord | None:
        return self.store.find_pool(name_or_uuid)

    def active_pool(self, name_or_uuid: str) -> PoolRecord:
        """The pool, which must be active."""
        record = self.lookup_pool(name_or_uuid)
        if not record.state.active:
            raise _pool_invalid(record.pool.name, "is not active")
        return record

    def find_volume(
        self,
        vol: str,
        pool_name: str | None,
        *,
        pool_option: str | None = "pool",
        any_pool: bool = False,
    ) -> tuple[PoolRecord, Volume]:
        """The pool and volume VOL names, as virsh resolves it (:func:`lookup.find_volume`)."""
        return lookup.find_volume(
            self.store, vol, pool_name, pool_option=pool_option, any_pool=any_pool
        )

    def autostart_names(self) -> list[str]:
        return self.store.autostart_names()

    # -- lifecycle ---------------------------------------------------------------------
    def define(self, pool: PoolDef) -> PoolRecord:
        """Define or redefine ``pool``; an active pool keeps running its live definition and
        uses the new one at its next start (libvirt's pending definition)."""
        with self.locked():
            return self.store.define(pool)

    def undefine(self, name: str) -> str:
        """Remove an inactive persistent pool's definition and autostart link; returns its
        name. A damaged definition of a pool without a valid state is removed too."""
        with self.locked():
            try:
                record = self.store.get_pool(name)
            except DamagedFileError as exc:
                if exc.path != self.store.definition_path(name):
                    raise
                self.store.remove_definition(name, with_state=True)
                return name
            if record.active:
                raise _pool_invalid(printable(record.name), "is still active")
            if record.definition is None:
                raise not_valid(f"pool '{printable(record.name)}' is transient")
            self.store.remove_definition(record.name, with_state=record.damaged_state is not None)
            return record.name

    def create(self, pool: PoolDef) -> RefreshReport:
        """A transient pool: started (and scanned) without a persistent definition."""
        with self.locked():
            record = self.store.create_transient(pool)
        return self._scan_and_save(record, starting=False)

    def start(self, name: str) -> RefreshReport:
        record = self.lookup_pool(name)
        if record.state.active:  # libvirt's checkPool: no session outlives a command
            raise _pool_invalid(record.pool.name, "is already active")
        return self._scan_and_save(record, starting=True)

    def refresh(self, name: str) -> RefreshReport:
        record = self.active_pool(name)
        return self._scan_and_save(record, starting=False)

    def destroy(self, name_or_uuid: str) -> str:
        """Stop an active pool: its runtime state is cleared whatever the state or
        definition file holds; returns the pool's name. A pool that is inactive only because
        its state file is damaged (or of an older version) is "destroyed" by removing it."""
        with self.locked():
            try:
                record = self.store.get_pool(name_or_uuid)
            except DamagedFileError:
                if not self.store.remove_state_files(name_or_uuid):
                    raise
                return name_or_uuid
            if record.damaged_state is not None:
                self.store.remove_state_files(record.name)
                return record.name
            if not record.state.active:
                raise _pool_invalid(printable(record.pool.name), "is not active")
            # libvirt's stopPool has nothing to release (no session outlives a command), so
            # a destroy is file work only and never loads the initiator
            self.store.remove_state_files(record.name)
            return record.name

    def set_autostart(self, name: str, autostart: bool) -> str:
        """Mark or unmark a persistent pool for autostart; returns its name."""
        with self.locked():
            pool_name = self.lookup_pool(name).pool.name
            self.store.set_autostart(pool_name, autostart)
        return pool_name

    def build(self, name: str) -> str:
        """pool-build: nothing to build for iscsi-direct (libvirt's backend has no buildPool);
        refused for an active pool, as libvirt does."""
        record = self.lookup_pool(name)
        if record.state.active:
            raise _pool_invalid(printable(record.pool.name), "is already active")
        return record.pool.name

    def delete(self, name: str) -> None:
        """pool-delete: refused for an active pool, else not supported (as libvirt)."""
        record = self.lookup_pool(name)
        if record.state.active:
            raise _pool_invalid(printable(record.pool.name), "is still active")
        raise not_supported("pool does not support pool deletion")

    def _scan_and_save(self, origin: PoolRecord, *, starting: bool) -> RefreshReport:
        """Scan the target of ``origin`` and save the volume list, if it still belongs there.

        The scan runs without the store lock (it can take long: a slow or stopped target),
        so the pool may change meanwhile. The result is saved only into exactly what the
        scan began from: for a start, the same persistent definition of a still inactive
        pool; for a refresh, the same activation (its id is in the state file) with the same
        live definition. Otherwise it is discarded with one line, and a failed refresh never
        deactivates an activation it did not begin from.
        """
        name = origin.pool.name
        pool = origin.pool  # the definition the scan talks to
        try:
            credentials = self.credentials(pool)
            if starting:
                report = self.backend.start_pool(pool, credentials)
            else:
                report = self.backend.refresh_pool(pool, credentials)
        except PoolBackendError as exc:
            if starting:
                raise
            with self.locked():
                current = self.store.find_pool(name)
                why = "stopped" if current is None else self._changed(origin, current)
                if why is None:
                    self.store.clear_state(name)  # a failed refresh deactivates the pool
                elif why == "restarted":  # not ours to clear: say why it stays active
                    raise StateError(
                        f"{exc} (pool '{name}' was restarted during the refresh and stays active)"
                    ) from None
            raise
        return self._save_scan(origin, report, starting=starting)

    def _save_scan(
        self, origin: PoolRecord, report: ScanReport, *, starting: bool
    ) -> RefreshReport:
        name, pool = origin.pool.name, origin.pool
        total = sum(v.capacity for v in report.volumes)
        allocated = sum(v.allocation for v in report.volumes)  # thin LUNs: their mapped extents
        with self.locked():
            current = self.store.find_pool(name)
            why = "undefined" if current is None else self._changed(origin, current)
            if starting and current is not None and current.state.active:
                raise _pool_invalid(name, "is already active")
            if not starting and (current is None or not current.state.active):
                raise _pool_invalid(name, "is not active (it was stopped during the refresh)")
            if why is not None or current is None:
                raise _pool_invalid(
                    name,
                    f"was {why} during the {'start' if starting else 'refresh'}; "
                    "the result of scanning its old target was discarded",
                )
            state = PoolState(
                active=True,
                autostart=current.state.autostart,
                persistent=current.state.persistent,
                capacity=total,
                allocation=allocated,
                available=total - allocated,
                volumes=report.volumes,
                activation=new_activation() if starting else origin.state.activation,
            )
            # a refresh saves the live definition its start checked: no duplicate check
            self.store.save_state(name, state, pool=pool, checked=not starting)
        return RefreshReport(name, state, report.failures)

    @staticmethod
    def _changed(origin: PoolRecord, current: PoolRecord) -> str | None:
        """How the pool differs from the one a start/refresh began from (None: it does not)."""
        if not origin.state.active:  # a start: the persistent definition it scans
            return None if current.definition == origin.definition else "redefined"
        if not current.state.active:
            return "stopped"
        if (current.state.activation, current.live) != (origin.state.activation, origin.live):
            return "restarted"
        return None

    # -- discovery ---------------------------------------------------------------------
    def find_sources(self, spec: SourceSpec, timeout: float) -> list[str]:
        """find-storage-pool-sources: the IQN of every target of the portal."""
        return self.backend.find_pool_sources(spec, timeout)

    # -- volumes -----------------------------------------------------------------------
    def _volume_lock(
        self, record: PoolRecord, volume: Volume, operation: str, *, exclusive: bool
    ) -> contextlib.AbstractContextManager[None]:
        """One writer or many readers per LUN, whichever pool (host alias) reaches it.

        Keyed on the target itself (resolved addresses, port, target IQN, LUN), not on the
        volume key, which differs between pools through ``localhost`` and ``127.0.0.1``.
        """
        from poolbackend.pool import targetid, volumelock

        keys = targetid.lun_lock_keys(record.pool.source, volume.lun)
        return volumelock.lun_lock(
            self.store.paths, keys, volume.name, operation, exclusive=exclusive
        )

    def _disk(self, vol: str, pool_name: str | None) -> tuple[PoolRecord, Volume]:
        record, volume = self.find_volume(vol, pool_name)
        if not volume.is_disk:
            raise ConfigError(
                f"volume '{volume.name}' is LUN {volume.lun}, a {volume.device_type_name} "
                "device without blocks"
            )
        return record, volume

    def volume_provisioning(self, vol: str, pool_name: str | None) -> Provisioning:
        """A volume's thin provisioning facts (LBPME/LBPRZ, VPD 0xB0/0xB2), asked live."""
        record, volume = self.find_volume(vol, pool_name)
        pool = record.pool
        return self.backend.volume_provisioning(pool, self.credentials(pool), volume)

    def wipe(
        self,
        vol: str,
        pool_name: str | None,
        algorithm: str = "zero",
        progress: Progress | None = None,
    ) -> str:
        from poolbackend.pool.wipe import algorithm_number

        algorithm_number(algorithm)
        record, volume = self.find_volume(vol, pool_name)
        if not volume.is_disk:
            return "nothing to wipe (not a disk LUN)"  # libvirt: LUN 0 wipe is a no-op success
        with self._volume_lock(record, volume, "vol-wipe", exclusive=True):
            pool = record.pool
            return self.backend.wipe_vol(pool, self.credentials(pool), volume, algorithm, progress)

    def download(
        self,
        vol: str,
        pool_name: str | None,
        open_output: Callable[[], BinaryIO],
        *,
        offset: int = 0,
        length: int | None = None,
        sparse: bool = False,
        holes: bool | None = None,
        progress: Progress | None = None,
    ) -> int:
        """Copy the volume to what ``open_output()`` returns (called only once the range
        is accepted: a refused download has not touched the output)."""
        record, volume = self._disk(vol, pool_name)
        with self._volume_lock(record, volume, "vol-download", exclusive=False):
            pool = record.pool
            return self.backend.download_vol(
                pool,
                self.credentials(pool),
                volume,
                open_output,
                offset=offset,
                length=length,
                sparse=sparse,
                holes=holes,
                progress=progress,
            )

    def upload(
        self,
        vol: str,
        pool_name: str | None,
        open_input: Callable[[], BinaryIO],
        *,
        offset: int = 0,
        length: int | None = None,
        sparse: bool = False,
        progress: Progress | None = None,
    ) -> int:
        """Write what ``open_input()`` returns into the volume (called only once the range
        is accepted: a refused upload has not read from a pipe)."""
        record, volume = self._disk(vol, pool_name)
        with self._volume_lock(record, volume, "vol-upload", exclusive=True):
            pool = record.pool
            return self.backend.upload_vol(
                pool,
                self.credentials(pool),
                volume,
                open_input,
                offset=offset,
                length=length,
                sparse=sparse,
                progress=progress,
            )

    # -- secrets -----------------------------------------------------------------------
    def _secret_value(self, uuid: str | None, usage: str | None) -> bytes:
        try:
            return self.secrets.chap_secret(uuid=uuid, usage=usage).reveal()
        except NotFoundError:
            if not self.libvirt_uri:
                raise
        from poolbackend.pool.libvirt_secrets import lookup_secret

        return lookup_secret(self.libvirt_uri, uuid=uuid, usage=usage)

    def credentials(self, pool: PoolDef) -> Credentials | None:
        """The pool's CHAP credentials (local secret store first, then libvirt's)."""
        auth = pool.source.auth
        if auth is None:
            return None
        secret = self._secret_value(auth.secret_uuid, auth.secret_usage)
        t_secret = None
        if auth.mutual:
            t_secret = self._secret_value(auth.target_secret_uuid, auth.target_secret_usage)
        return Credentials(auth.username, secret, auth.target_username, t_secret)

    def secret_define(self, secret: SecretDef) -> SecretDef:
        return self.secrets.define(secret)

    def secret_set_value(self, name: str, value: bytes) -> None:
        self.secrets.set_value(name, value)

    def secret_list(self) -> list[SecretDef]:
        return self.secrets.list()

    def secret_undefine(self, name: str) -> str:
        return self.secrets.undefine(name)

    def secret_lookup(self, name: str) -> SecretDef:
        return self.secrets.get(name)

    def secret_find(self, name: str) -> SecretDef | None:
        """The local secret with this UUID or usage, or None."""
        return self.secrets.find(name)

    def secret_value(self, *, uuid: str | None, usage: str | None) -> SecretValue:
        """A CHAP secret's value from the local store (never from libvirt)."""
        return self.secrets.chap_secret(uuid=uuid, usage=usage)
