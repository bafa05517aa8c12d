"""LUN scan for pool refresh: REPORT LUNS, then TUR + INQUIRY + READ CAPACITY per LUN.

All LUNs are probed concurrently on one session, so a 1000-LUN target costs a few round
trips bounded by the target's command window instead of one round trip per command (as in
libvirt). A LUN that fails is reported and left out; it does not fail the whole refresh.
That includes a LUN whose INQUIRY or READ CAPACITY data is short or impossible (checked by
the SCSI parsers, e.g. tgt's last LBA 2^64-1 for an empty backing file): it is left out
with the reason, like a NOT READY LUN.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from poolbackend.iscsi.aio import Session
from poolbackend.iscsi.errors import CommandFailed, ISCSIError
from poolbackend.iscsi.events import Event
from poolbackend.pool import thin
from poolbackend.scsi import cdb as C
from poolbackend.scsi.capacity import ReadCapacity16
from poolbackend.scsi.inquiry import StandardInquiry, device_type_name
from poolbackend.scsi.lun import Lun, LunRef
from poolbackend.scsi.reportluns import refused_line


@dataclass(frozen=True)
class LunInfo:
    lun: Lun  # as the target reported it
    device_type: int
    device_type_name: str
    vendor: str
    product: str
    block_size: int = 0
    block_count: int = 0
    allocation: int | None = None  # bytes; None: the capacity (see pool/thin.py)
    note: str | None = None  # why the allocation is not known (one warning line)

    @property
    def capacity(self) -> int:
        """Exact size: (last LBA + 1) x block length (libvirt reports one block less)."""
        return self.block_size * self.block_count


@dataclass(frozen=True)
class ScanResult:
    luns: tuple[LunInfo, ...]
    failures: tuple[str, ...]  # one line per LUN left out


@dataclass(frozen=True)
class Probe:
    """What TEST UNIT READY + INQUIRY + READ CAPACITY tell about one LUN."""

    inquiry: StandardInquiry
    block_count: int = 0  # 0 for a LUN that is not a disk (no READ CAPACITY sent)
    block_size: int = 0
    rc16: ReadCapacity16 | None = None  # None: not a disk, or (16) refused and (10) used


async def probe(session: Session, lun: LunRef) -> Probe:
    """The one identification sequence of a LUN, for a refresh and before a transfer: TEST
    UNIT READY, standard INQUIRY, and for a disk READ CAPACITY(16), falling back to (10)."""
    await session.test_unit_ready(lun)
    inq = await session.inquiry(lun)
    if not inq.is_disk:
        return Probe(inq)
    rc16 = await session.read_capacity16(lun)
    if rc16 is None:
        blocks, block_size = await session.read_capacity10(lun)
        return Probe(inq, blocks, block_size)
    return Probe(inq, rc16.block_count, rc16.block_length, rc16)


def _info(lun: Lun, found: Probe, allocation: int | None, note: str | None) -> LunInfo:
    inq = found.inquiry
    return LunInfo(
        lun,
        inq.device_type,
        device_type_name(inq.device_type),
        inq.vendor,
        inq.product,
        block_size=found.block_size,
        block_count=found.block_count,
        allocation=allocation,
        note=note,
    )


async def scan(session: Session) -> ScanResult:
    report = await session.report_luns_data()
    refused = [refused_line(raw, reason) for raw, reason in report.refused]
    results = await _Scan(session, report.entries).run()
    found = [res for res in results if isinstance(res, LunInfo)]
    failures = refused + [res for res in results if isinstance(res, str)]
    failures += [res.note for res in found if res.note is not None]
    return ScanResult(tuple(found), tuple(failures))


_TUR = C.tur()
_INQUIRY = C.inquiry(alloc=255)
_READ_CAPACITY16 = C.read_capacity16()
_READ_CAPACITY10 = C.read_capacity10()


class _Scan:
    """Every LUN's :func:`probe` (and a thin LUN's allocation, :func:`thin.allocation`), all
    in flight at once, driven by command callbacks.

    The same commands, order, results and one-line reasons as awaiting :func:`probe` for
    each LUN, without a task and a future per command (a 1024-LUN refresh is ~4100
    commands). A LUN that fails (:class:`CommandFailed`, bad data included) is left out with
    its reason; anything else (connection lost for good, timeout, protocol error) fails the
    scan as soon as it happens: the other probes share the dead session, and waiting for
    each of them to retry its own reconnect would multiply the time to error.
    """

    def __init__(self, session: Session, luns: tuple[Lun, ...]) -> None:
        self.session = session
        self.results: list[LunInfo | str] = [""] * len(luns)
        self.left = len(luns)
        self.luns = luns
        self.done: asyncio.Future[list[LunInfo | str]] = asyncio.get_running_loop().create_future()
        self.walks: set[asyncio.Task[int]] = set()  # GET LBA STATUS walks of thin LUNs

    async def run(self) -> list[LunInfo | str]:
        if not self.luns:
            return []
        for i, lun in enumerate(self.luns):
            _LunProbe(self, i, lun).send(_TUR, 0, _LunProbe.tested)
        try:
            return await self.done
        finally:
            for walk in self.walks:
                walk.cancel()

    def finish(self, index: int, result: LunInfo | str) -> None:
        self.results[index] = result
        self.left -= 1
        if not self.left and not self.done.done():
            self.done.set_result(self.results)

    def abort(self, exc: BaseException) -> None:
        if not self.done.done():
            self.done.set_exception(exc)


class _LunProbe:
    """One LUN's TEST UNIT READY, INQUIRY and READ CAPACITY, one callback per answer."""

    __slots__ = ("index", "inq", "lun", "scan", "step")

    def __init__(self, scan: _Scan, index: int, lun: Lun) -> None:
        self.scan, self.index, self.lun = scan, index, lun
        self.inq: StandardInquiry | None = None

    def send(
        self, cdb: bytes, read_len: int, step: Callable[[_LunProbe, Event | ISCSIError], None]
    ) -> None:
        """Send ``cdb``; ``step`` (which knows the command it answers) gets the outcome."""
        self.step = step
        try:
            self.scan.session.submit(self.lun, cdb, self.answered, read_len=read_len)
        except ISCSIError as exc:  # the session is gone for good
            self.scan.abort(exc)

    def answered(self, rid: int, outcome: Event | ISCSIError) -> None:
        if self.scan.done.done():
            return  # the scan failed (or was cancelled) meanwhile
        try:
            self.step(self, outcome)
        except CommandFailed as exc:
            self.scan.finish(self.index, f"LUN {self.lun} left out: {exc}")
        except BaseException as exc:
            self.scan.abort(exc)

    def tested(self, outcome: Event | ISCSIError) -> None:
        self.scan.session.result_of(self.lun, _TUR, outcome)
        self.send(_INQUIRY, 255, _LunProbe.identified)

    def identified(self, outcome: Event | ISCSIError) -> None:
        session = self.scan.session
        inq = self.inq = session.inquiry_data(
            self.lun, session.result_of(self.lun, _INQUIRY, outcome)
        )
        if not inq.is_disk:
            self.found(Probe(inq))
        else:
            self.send(_READ_CAPACITY16, 32, _LunProbe.measured16)

    def measured16(self, outcome: Event | ISCSIError) -> None:
        assert self.inq is not None
        rc16 = self.scan.session.read_capacity16_of(self.lun, outcome)
        if rc16 is None:
            self.send(_READ_CAPACITY10, 8, _LunProbe.measured10)
        else:
            self.found(Probe(self.inq, rc16.block_count, rc16.block_length, rc16))

    def measured10(self, outcome: Event | ISCSIError) -> None:
        assert self.inq is not None
        session = self.scan.session
        r = session.result_of(self.lun, _READ_CAPACITY10, outcome)
        blocks, block_size = session.read_capacity10_data(self.lun, r)
        self.found(Probe(self.inq, blocks, block_size))

    def found(self, probe: Probe) -> None:
        rc16 = probe.rc16
        if rc16 is None or not rc16.lbpme:  # thin.allocation's answer without a walk
            allocation = rc16.capacity_bytes if rc16 is not None else None
            self.scan.finish(self.index, _info(self.lun, probe, allocation, None))
            return
        walk = asyncio.ensure_future(thin.allocation(self.scan.session, self.lun, rc16))
        self.scan.walks.add(walk)
        walk.add_done_callback(lambda done: self.walked(probe, done))

    def walked(self, probe: Probe, walk: asyncio.Task[int]) -> None:
        self.scan.walks.discard(walk)
        if walk.cancelled() or self.scan.done.done():
            return
        exc = walk.exception()
        if exc is None:
            self.scan.finish(self.index, _info(self.lun, probe, walk.result(), None))
        elif isinstance(exc, CommandFailed):  # GET LBA STATUS refused or impossible
            note = f"LUN {self.lun}: allocation shown as the capacity: {exc}"
            self.scan.finish(self.index, _info(self.lun, probe, None, note))
        else:
            self.scan.abort(exc)
