"""The iscsi-direct pool type's callback table, like libvirt's ``virStorageBackend`` filled by
``storage_backend_iscsi_direct.c``: start, refresh, find sources, and the volume callbacks
wipe, upload and download. libvirt's checkPool and stopPool have no work here (no session
outlives a command): the driver answers them from the recorded state without loading this
module.

The backend talks to the target only; it owns no files, locks or lifecycle rules (that is
:mod:`poolbackend.pool.driver`). Each callback opens its own session through the session
factory it was given (:meth:`poolbackend.iscsi.aio.Session.open` by default; unit tests pass
a fake one), pipelines all its commands on it and closes it. Every wait is bounded by the
pool's timeout.

What the callbacks do, as libvirt's: start = the first refresh; a refresh lists every LUN of
the target (REPORT LUNS, then TEST UNIT READY + INQUIRY + READ CAPACITY per LUN, all
concurrently); one failing LUN is reported and left out (libvirt fails the whole pool).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol, TypeVar

from poolbackend.errors import library_errors
from poolbackend.iscsi.aio import Session, SessionOptions
from poolbackend.iscsi.portal import Credentials, Portal
from poolbackend.pool import naming, scan, thin, transfer, wipe
from poolbackend.pool.model import ChapAuth, PoolDef, PoolOptions, SourceSpec, Volume
from poolbackend.scsi.provisioning import Provisioning

__all__ = [
    "DEFAULT_TIMEOUT",
    "POOL_TIMEOUT_HINT",
    "IscsiDirectBackend",
    "Progress",
    "ScanReport",
    "SessionFactory",
    "portal_of",
    "session_options",
]

T = TypeVar("T")
Progress = Callable[[int, int], None]
DEFAULT_TIMEOUT = 10.0
"""Seconds every wait is bounded by when the pool sets no ``<pb:timeout>``."""


class SessionFactory(Protocol):
    """Opens a logged-in session (a discovery session when ``target`` is None)."""

    def __call__(
        self,
        portal: Portal,
        target: str | None,
        options: SessionOptions,
        credentials: Credentials | None = None,
    ) -> Awaitable[Session]: ...


@dataclass(frozen=True)
class ScanReport:
    """What a start or refresh found: the volumes, and one line per LUN left out."""

    volumes: tuple[Volume, ...]
    failures: tuple[str, ...]


POOL_TIMEOUT_HINT = "<pb:timeout seconds='{:g}'/>"
"""How a pool sets the timeout, named in timeout errors (``{:g}``: the seconds)."""


def session_options(
    initiator_iqn: str,
    options: PoolOptions,
    auth: ChapAuth | None = None,
    *,
    hint: str = POOL_TIMEOUT_HINT,
) -> SessionOptions:
    """The one mapping from the pool side to the initiator's one options type: a pool's
    initiator IQN, ``<pb:iscsi>`` options (:class:`PoolOptions`, ``None`` = default) and
    CHAP algorithms, or a discovery's IQN and ``--timeout``. :class:`PoolOptions` stays a
    type of its own because it records what the XML says (``None`` is formatted as nothing)."""
    opts = SessionOptions(initiator_name=initiator_iqn)
    opts.timeout = options.timeout_seconds or DEFAULT_TIMEOUT
    opts.timeout_hint = hint.format(opts.timeout)
    if options.header_digest:
        opts.header_digest = options.header_digest
    if options.data_digest:
        opts.data_digest = options.data_digest
    if auth is not None:
        opts.chap_algorithms = auth.algorithms
    return opts


def portal_of(host: str, port: int | None) -> Portal:
    """The portal to connect to for a pool's ``<host>`` (default port, no brackets)."""
    h, p = naming.connect_address(host, port)
    return Portal(h, p)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Every callback's one entry into the initiator: its errors leave as user errors.

    The result is handed out beside the main task: Python 3.11's ``asyncio.run`` formats the
    repr of that task, its result included, when it checks the SIGINT handler on the way
    out (``signal.getsignal``), ~3 ms for a 1024-LUN scan."""
    box: list[T] = []

    async def main() -> None:
        box.append(await coro)

    with library_errors():
        asyncio.run(main())
    return box[0]


class IscsiDirectBackend:
    """libvirt's ``virStorageBackend`` for ``iscsi-direct``, over the embedded initiator."""

    pool_type = "iscsi-direct"

    def __init__(self, open_session: SessionFactory | None = None) -> None:
        self.open_session: SessionFactory = open_session or Session.open

    async def _session(self, pool: PoolDef, credentials: Credentials | None) -> Session:
        src = pool.source
        options = session_options(src.initiator_iqn, pool.options, src.auth)
        return await self.open_session(
            portal_of(src.host, src.port), src.target_iqn, options, credentials
        )

    # -- pools (startPool, refreshPool, findPoolSources) ---------------------------------
    def start_pool(self, pool: PoolDef, credentials: Credentials | None) -> ScanReport:
        """startPool + the first refreshPool: log in and list the LUNs."""
        return _run(self._scan(pool, credentials))

    def refresh_pool(self, pool: PoolDef, credentials: Credentials | None) -> ScanReport:
        """refreshPool: every LUN of the target as a volume; a failing LUN is left out."""
        return _run(self._scan(pool, credentials))

    async def _scan(self, pool: PoolDef, credentials: Credentials | None) -> ScanReport:
        async with await self._session(pool, credentials) as session:
            result = await scan.scan(session)
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
        return ScanReport(volumes, result.failures)

    def find_pool_sources(self, spec: SourceSpec, timeout: float = DEFAULT_TIMEOUT) -> list[str]:
        """findPoolSources: SendTargets on a discovery session; the IQN of every target."""

        async def go() -> list[str]:
            opts = session_options(
                spec.initiator_iqn, PoolOptions(timeout_seconds=timeout), hint="--timeout {:g}"
            )
            session = await self.open_session(portal_of(spec.host, spec.port), None, opts)
            async with session as s:
                return [name for name, _ in await s.send_targets()]

        return _run(go())

    # -- volumes (refreshVol's live facts, wipeVol, uploadVol, downloadVol) --------------
    def volume_provisioning(
        self, pool: PoolDef, credentials: Credentials | None, volume: Volume
    ) -> Provisioning:
        """The volume's thin provisioning facts, asked live (:func:`thin.read_provisioning`)."""

        async def go() -> Provisioning:
            async with await self._session(pool, credentials) as session:
                return await thin.read_provisioning(session, volume.address(pool.name))

        return _run(go())

    async def _with_geometry(
        self,
        pool: PoolDef,
        credentials: Credentials | None,
        volume: Volume,
        fn: Callable[[Session, transfer.Geometry], Awaitable[T]],
    ) -> T:
        """``fn`` on a session to the volume's LUN, after a fresh probe of its geometry."""
        async with await self._session(pool, credentials) as session:
            geo = await transfer.geometry(session, volume.address(pool.name))
            return await fn(session, geo)

    def wipe_vol(
        self,
        pool: PoolDef,
        credentials: Credentials | None,
        volume: Volume,
        algorithm: str,
        progress: Progress | None = None,
    ) -> str:
        """wipeVol with libvirt's algorithms; returns what was done (one line)."""

        async def run(session: Session, geo: transfer.Geometry) -> str:
            return await wipe.wipe(session, geo, algorithm, progress)

        return _run(self._with_geometry(pool, credentials, volume, run))

    def download_vol(
        self,
        pool: PoolDef,
        credentials: Credentials | None,
        volume: Volume,
        open_output: Callable[[], BinaryIO],
        *,
        offset: int = 0,
        length: int | None = None,
        sparse: bool = False,
        holes: bool | None = None,
        progress: Progress | None = None,
    ) -> int:
        """downloadVol: ``open_output()`` is called only after the login and a fresh READ
        CAPACITY accepted the range, so a refused download has not touched the output."""

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

        return _run(self._with_geometry(pool, credentials, volume, run))

    def upload_vol(
        self,
        pool: PoolDef,
        credentials: Credentials | None,
        volume: Volume,
        open_input: Callable[[], BinaryIO],
        *,
        offset: int = 0,
        length: int | None = None,
        sparse: bool = False,
        progress: Progress | None = None,
    ) -> int:
        """uploadVol: ``open_input()`` is called only after the login and a fresh READ
        CAPACITY accepted the range, so a refused upload has not read from a pipe."""

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

        return _run(self._with_geometry(pool, credentials, volume, run))
