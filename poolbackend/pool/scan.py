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
from dataclasses import dataclass, replace

from poolbackend.iscsi.aio import Session
from poolbackend.iscsi.errors import CommandFailed
from poolbackend.pool import thin
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


async def probe_lun(session: Session, lun: Lun) -> LunInfo:
    found = await probe(session, lun)
    inq = found.inquiry
    info = LunInfo(
        lun,
        inq.device_type,
        device_type_name(inq.device_type),
        inq.vendor,
        inq.product,
        block_size=found.block_size,
        block_count=found.block_count,
    )
    if found.rc16 is not None:
        try:
            info = replace(info, allocation=await thin.allocation(session, lun, found.rc16))
        except CommandFailed as exc:  # GET LBA STATUS refused or impossible: keep the LUN
            info = replace(info, note=f"LUN {lun}: allocation shown as the capacity: {exc}")
    return info


async def scan(session: Session) -> ScanResult:
    report = await session.report_luns_data()
    luns = report.entries
    refused = [refused_line(raw, reason) for raw, reason in report.refused]

    async def info_or_reason(lun: Lun) -> LunInfo | str:
        try:
            return await probe_lun(session, lun)
        except CommandFailed as exc:
            return f"LUN {lun} left out: {exc}"

    # Anything but a per-LUN failure (connection lost for good, timeout, protocol error)
    # fails the refresh as soon as it happens: the other probes share the dead session, and
    # waiting for each of them to retry its own reconnect would multiply the time to error.
    tasks = [asyncio.ensure_future(info_or_reason(lun)) for lun in luns]
    try:
        results = await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        raise
    found = [res for res in results if isinstance(res, LunInfo)]
    failures = refused + [res for res in results if isinstance(res, str)]
    failures += [res.note for res in found if res.note is not None]
    return ScanResult(tuple(found), tuple(failures))
