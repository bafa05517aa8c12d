"""libvirt's storage-backend contract for iscsi-direct pools, over the embedded initiator.

check/start/refresh/stop/find-sources/wipe/upload/download, with libvirt's lifecycle rules
implemented once here: start = first refresh; a refresh that cannot reach the target
deactivates the pool (the definition is never touched); one failing LUN is reported and
left out instead of failing the pool. Each operation opens its own session (like libvirt)
but all its commands are pipelined on it, and every wait is bounded.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import BinaryIO, TypeVar

from poolbackend.errors import ConfigError, NotFoundError, PoolBackendError, StateError
from poolbackend.iscsi.aio import Session, SessionOptions
from poolbackend.iscsi.portal import Credentials, Portal
from poolbackend.pool import lookup, naming, scan, targetid, transfer, volumelock, wipe
from poolbackend.pool.model import PoolDef, PoolState, SourceSpec, Volume
from poolbackend.pool.secrets import SecretStore
from poolbackend.pool.store import PoolRecord, Store, new_activation

T = TypeVar("T")
Progress = Callable[[int, int], None]
DEFAULT_TIMEOUT = 10.0
NOT_SUPPORTED = "this function is not supported by the connection driver: "


def not_supported(what: str) -> PoolBackendError:
    """libvirt's uniform message for a backend callback this pool type does not have."""
    return PoolBackendError(NOT_SUPPORTED + what)


@dataclass(frozen=True)
class RefreshReport:
    state: PoolState
    failures: tuple[str, ...]


def session_options(pool: PoolDef) -> SessionOptions:
    o = pool.options
    opts = SessionOptions(initiator_name=pool.source.initiator_iqn)
    opts.timeout = o.timeout_seconds or DEFAULT_TIMEOUT
    opts.timeout_hint = f"<pb:timeout seconds='{opts.timeout:g}'/>"
    if o.header_digest:
        opts.header_digest = o.header_digest
    if o.data_digest:
        opts.data_digest = o.data_digest
    if pool.source.auth is not None:
        opts.chap_algorithms = pool.source.auth.algorithms
    return opts


def portal_of(host: str, port: int | None) -> Portal:
    h, p = naming.connect_address(host, port)
    return Portal(h, p)


def _run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


class Backend:
    """The pool driver: definitions and state in a :class:`Store`, CHAP values in secrets."""

    def __init__(
        self,
        store: Store | None = None,
        secrets: SecretStore | None = None,
        libvirt_uri: str | None = None,
    ) -> None:
        self.store = store or Store.default()
        self.secrets = secrets or SecretStore.default()
        self.libvirt_uri = libvirt_uri or os.environ.get("POOLBACKEND_LIBVIRT_URI")

    # -- credentials -------------------------------------------------------------------
    def _secret_value(self, uuid: str | None, usage: str | None) -> bytes:
        try:
            return self.secrets.chap_secret(uuid=uuid, usage=usage).reveal()
        except NotFoundError:
            if not self.libvirt_uri:
                raise
        from poolbackend.pool.libvirt_secrets import lookup_secret

        return lookup_secret(self.libvirt_uri, uuid=uuid, usage=usage)

    def credentials(self, pool: PoolDef) -> Credentials | None:
        auth = pool.source.auth
        if auth is None:
            return None
        secret = self._secret_value(auth.secret_uuid, auth.secret_usage)
        t_secret = None
        if auth.mutual:
            t_secret = self._secret_value(auth.target_secret_uuid, auth.target_secret_usage)
        return Credentials(auth.username, secret, auth.target_username, t_secret)

    async def open_session(self, pool: PoolDef) -> Session:
        src = pool.source
        return await Session.open(
            portal_of(src.host, src.port),
            src.target_iqn,
            session_options(pool),
            self.credentials(pool),
        )

    # -- lifecycle ---------------------------------------------------------------------
    def check(self, name: str) -> bool:
        """libvirt's checkPool: the active flag, no I/O."""
        return self.store.get_pool(name).state.active

    async def scan_pool(self, pool: PoolDef) -> tuple[tuple[Volume, ...], tuple[str, ...]]:
        session = await self.open_session(pool)
        try:
            result = await scan.scan(session)
        finally:
            await session.close()
        volumes = tuple(
            Volume.for_lun(
                pool.source,
                info.lun,
                capacity=info.capacity,
                allocation=info.allocation,
                device_type=info.device_type,
                device_type_name=info.device_type_name,
                block_size=info.block_size,
                vendor=info.vendor,
                product=info.product,
            )
            for info in result.luns
        )
        return volumes, result.failures

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
            volumes, failures = _run(self.scan_pool(pool))
        except PoolBackendError as exc:
            if starting:
                raise
            with self.store.locked():
                current = self.store.find_pool(name)
                why = "stopped" if current is None else self._changed(origin, current)
                if why is None:
                    self.store.clear_state(name)  # a failed refresh deactivates the pool
                elif why == "restarted":  # not ours to clear: say why it stays active
                    raise StateError(
                        f"{exc} (pool '{name}' was restarted during the refresh and stays active)"
                    ) from None
            raise
        total = sum(v.capacity for v in volumes)
        allocated = sum(v.allocation for v in volumes)  # thin LUNs: their mapped extents
        with self.store.locked():
            current = self.store.find_pool(name)
            why = "undefined" if current is None else self._changed(origin, current)
            if starting and current is not None and current.state.active:
                raise StateError(lookup.invalid(name, "is already active"))
            if not starting and (current is None or not current.state.active):
                raise StateError(
                    lookup.invalid(name, "is not active") + " (it was stopped during the refresh)"
                )
            if why is not None or current is None:
                raise StateError(
                    lookup.invalid(
                        name, f"was {why} during the {'start' if starting else 'refresh'}"
                    )
                    + "; the result of scanning its old target was discarded"
                )
            state = PoolState(
                active=True,
                autostart=current.state.autostart,
                persistent=current.state.persistent,
                capacity=total,
                allocation=allocated,
                available=total - allocated,
                volumes=volumes,
                activation=new_activation() if starting else origin.state.activation,
            )
            self.store.save_state(name, state, pool=pool)
        return RefreshReport(state, failures)

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

    def start(self, name: str) -> RefreshReport:
        record = self.store.get_pool(name)
        if record.state.active:
            raise StateError(lookup.invalid(record.pool.name, "is already active"))
        return self._scan_and_save(record, starting=True)

    def create(self, pool: PoolDef) -> RefreshReport:
        """A transient pool: started without a persistent definition."""
        with self.store.locked():
            record = self.store.create_transient(pool)
        return self._scan_and_save(record, starting=False)

    def refresh(self, name: str) -> RefreshReport:
        record = self.store.get_pool(name)
        if not record.state.active:
            raise StateError(lookup.invalid(record.pool.name, "is not active"))
        return self._scan_and_save(record, starting=False)

    def destroy(self, name: str) -> str:
        """Clear the pool's runtime state whatever it holds (see :meth:`Store.destroy`);
        returns the pool's name."""
        return self.store.destroy(name)

    # -- discovery ---------------------------------------------------------------------
    def find_sources(self, spec: SourceSpec, timeout: float = DEFAULT_TIMEOUT) -> list[str]:
        """SendTargets on a discovery session: the IQNs of every target of the portal."""

        async def go() -> list[str]:
            opts = SessionOptions(
                initiator_name=spec.initiator_iqn,
                timeout=timeout,
                timeout_hint=f"--timeout {timeout:g}",
            )
            async with await Session.open(portal_of(spec.host, spec.port), None, opts) as s:
                return [name for name, _ in await s.send_targets()]

        return _run(go())

    # -- volumes -----------------------------------------------------------------------
    def find_volume(self, vol: str, pool_name: str | None) -> tuple[PoolRecord, Volume]:
        return lookup.find_volume(self.store, vol, pool_name)

    def _disk(self, record: PoolRecord, volume: Volume) -> None:
        if not volume.is_disk:
            raise ConfigError(
                f"volume '{volume.name}' is LUN {volume.lun}, a {volume.device_type_name} "
                "device without blocks"
            )

    async def _with_geometry(
        self,
        record: PoolRecord,
        volume: Volume,
        fn: Callable[[Session, transfer.Geometry], Awaitable[T]],
    ) -> T:
        session = await self.open_session(record.pool)
        try:
            geo = await transfer.geometry(session, volume.address(record.pool.name))
            return await fn(session, geo)
        finally:
            await session.close()

    def wipe(
        self,
        vol: str,
        pool_name: str | None,
        algorithm: str = "zero",
        progress: Progress | None = None,
    ) -> str:
        wipe.algorithm_number(algorithm)
        record, volume = self.find_volume(vol, pool_name)
        if not volume.is_disk:
            return "nothing to wipe (not a disk LUN)"  # libvirt: LUN 0 wipe is a no-op success
        with self._volume_lock(record, volume, "vol-wipe", exclusive=True):
            return _run(
                self._with_geometry(
                    record, volume, lambda s, g: wipe.wipe(s, g, algorithm, progress)
                )
            )

    def _volume_lock(
        self, record: PoolRecord, volume: Volume, operation: str, *, exclusive: bool
    ) -> AbstractContextManager[None]:
        """One writer or many readers per LUN, whichever pool (host alias) reaches it.

        Keyed on the target itself (resolved addresses, port, target IQN, LUN), not on the
        volume key, which differs between pools through ``localhost`` and ``127.0.0.1``.
        """
        keys = targetid.lun_lock_keys(record.pool.source, volume.lun)
        return volumelock.lun_lock(
            self.store.paths, keys, volume.name, operation, exclusive=exclusive
        )

    def _on_disk_lun(
        self,
        vol: str,
        pool_name: str | None,
        fn: Callable[[Session, transfer.Geometry], Awaitable[T]],
        operation: str,
        exclusive: bool,
    ) -> T:
        record, volume = self.find_volume(vol, pool_name)
        self._disk(record, volume)
        with self._volume_lock(record, volume, operation, exclusive=exclusive):
            return _run(self._with_geometry(record, volume, fn))

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
        """Copy the volume to what ``open_output()`` returns. It is called only after the
        login and a fresh READ CAPACITY accepted the range, so a refused download has not
        touched the output."""

        async def run(session: Session, geo: transfer.Geometry) -> int:
            transfer.check_range(geo, offset, length)
            return await transfer.download(
                session,
                geo,
                open_output(),
                offset=offset,
                length=length,
                sparse=sparse,
                holes=holes,
                progress=progress,
            )

        return self._on_disk_lun(vol, pool_name, run, "vol-download", exclusive=False)

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
        """Write what ``open_input()`` returns into the volume; it is called only after the
        login and a fresh READ CAPACITY accepted the range, so a refused upload has not read
        from a pipe."""

        async def run(session: Session, geo: transfer.Geometry) -> int:
            transfer.check_upload_range(geo, offset, length)
            return await transfer.upload(
                session,
                geo,
                open_input(),
                offset=offset,
                length=length,
                sparse=sparse,
                progress=progress,
            )

        return self._on_disk_lun(vol, pool_name, run, "vol-upload", exclusive=True)
