"""Thin provisioning facts and allocation of a LUN, for the pool commands.

* :func:`read_provisioning`: LBPME/LBPRZ (READ CAPACITY(16)) and VPD 0xB0/0xB2, live from the
  target -- ``vol-info --scsi`` shows them.
* :func:`allocation`: the bytes a LUN holds. LBPME=1: the mapped and anchored extents from
  GET LBA STATUS, walked over the whole LUN with several commands in flight
  (:mod:`poolbackend.iscsi.extents`); LBPME=0: the capacity (every block is mapped).

A refresh computes the allocation of every thin LUN inside its pipelined scan. The walk of one
LUN is bounded by :data:`REFRESH_BUDGET` commands (each describes up to 1024 extents): a
LUN more fragmented than that counts the part not walked as allocated -- an upper bound,
never an under-statement -- so a refresh of many thin LUNs costs about one extra command
per LUN and never a walk of unbounded length.
"""

from __future__ import annotations

from poolbackend.iscsi import extents
from poolbackend.iscsi.aio import Session
from poolbackend.iscsi.errors import BadTargetData, CommandFailed
from poolbackend.scsi.capacity import ReadCapacity16
from poolbackend.scsi.errors import ScsiParseError
from poolbackend.scsi.lun import LunRef
from poolbackend.scsi.provisioning import Provisioning, provisioning
from poolbackend.scsi.vpd import (
    BlockLimits,
    LogicalBlockProvisioning,
    parse_block_limits,
    parse_logical_block_provisioning,
    parse_supported_pages,
)

REFRESH_BUDGET = 64  # GET LBA STATUS commands per LUN in a refresh (~64k extents)


async def read_provisioning(session: Session, lun: LunRef) -> Provisioning:
    """The LUN's provisioning facts; a page the LUN does not have reads as not reported."""
    rc16 = await session.read_capacity16(lun)
    limits, lbp = await limit_pages(session, lun, f"{session.what}: LUN {lun}")
    return provisioning(rc16, limits, lbp)


async def limit_pages(
    session: Session, lun: LunRef, where: str
) -> tuple[BlockLimits | None, LogicalBlockProvisioning | None]:
    """VPD 0xB0 (block limits) and 0xB2 (logical block provisioning), each None when the
    LUN's list of pages (0x00) does not name it or cannot be read. A malformed page fails in
    one line, ``<where>: <problem>`` (:class:`BadTargetData`), before any later page is asked."""
    try:
        pages = parse_supported_pages(await session.vpd(lun, 0x00)).pages
    except (CommandFailed, ScsiParseError):  # no usable page list: go without the pages
        pages = ()
    limits: BlockLimits | None = None
    lbp: LogicalBlockProvisioning | None = None
    try:
        if 0xB0 in pages:
            limits = parse_block_limits(await session.vpd(lun, 0xB0))
        if 0xB2 in pages:
            lbp = parse_logical_block_provisioning(await session.vpd(lun, 0xB2))
    except ScsiParseError as exc:
        raise BadTargetData(f"{where}: {exc}") from None
    return limits, lbp


async def allocation(
    session: Session, lun: LunRef, rc16: ReadCapacity16, budget: int | None = REFRESH_BUDGET
) -> int:
    """Bytes allocated to the LUN (see the module's docstring)."""
    if not rc16.lbpme:
        return rc16.capacity_bytes
    walked = await extents.walk(session, lun, rc16.block_count, budget=budget)
    return walked.allocated_blocks * rc16.block_length
