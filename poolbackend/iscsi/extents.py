"""Walk a thin LUN's LBA extents with GET LBA STATUS(16), several commands in flight.

One answer covers as many extents as fit in its allocation length, and the next question
starts where it ended, so one walk is a chain of round trips. The walk therefore asks once
from the start (an empty or simple LUN is done with that one answer) and splits what is left
into segments walked concurrently on the same session, which pipelines them up to the
target's command window.

Every answer goes through the strict parser (:func:`poolbackend.scsi.lbastatus.parse_lba_status`);
an impossible one fails the walk with :class:`~poolbackend.iscsi.errors.BadTargetData`
(:meth:`Session.parsed <poolbackend.iscsi.aio.Session.parsed>`). A ``budget`` bounds the
commands of one walk: when it runs out the walk stops and says so (``complete=False``) and
the part not walked is reported as mapped, which is never wrong for a reader (it reads it)
and is an upper bound for an allocation figure.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from poolbackend.iscsi.aio import Session
from poolbackend.scsi.lbastatus import (
    DEFAULT_ALLOC,
    Extent,
    ProvisioningStatus,
    get_lba_status16,
    parse_lba_status,
)
from poolbackend.scsi.lun import LunRef

SEGMENTS = 16  # concurrent walkers over what the first answer did not cover


@dataclass(frozen=True)
class ExtentMap:
    extents: tuple[Extent, ...]  # contiguous from the walk's start to its end, merged
    complete: bool  # False: the budget ran out and the rest is reported as mapped
    commands: int

    def blocks(self, *statuses: ProvisioningStatus) -> int:
        return sum(e.blocks for e in self.extents if e.status in statuses)

    @property
    def allocated_blocks(self) -> int:
        """Blocks holding resources: mapped and anchored ones."""
        return self.blocks(ProvisioningStatus.MAPPED, ProvisioningStatus.ANCHORED)


async def lba_status(
    session: Session, lun: LunRef, lba: int, block_count: int, alloc: int = DEFAULT_ALLOC
) -> tuple[Extent, ...]:
    """One GET LBA STATUS(16) from ``lba``, parsed; impossible answers fail in one line."""
    r = await session.execute(lun, get_lba_status16(lba, alloc), read_len=alloc)
    return session.parsed(lun, lambda data: parse_lba_status(data, lba, block_count, alloc), r.data)


def merged(extents: list[Extent]) -> tuple[Extent, ...]:
    out: list[Extent] = []
    for e in extents:
        if out and out[-1].status == e.status and out[-1].end == e.lba:
            out[-1] = Extent(out[-1].lba, out[-1].blocks + e.blocks, e.status)
        else:
            out.append(e)
    return tuple(out)


def _clip(extents: tuple[Extent, ...], end: int) -> list[Extent]:
    out = []
    for e in extents:
        if e.lba >= end:
            break
        out.append(e if e.end <= end else Extent(e.lba, end - e.lba, e.status))
    return out


async def walk(
    session: Session,
    lun: LunRef,
    block_count: int,
    start: int = 0,
    end: int | None = None,
    *,
    budget: int | None = None,
    segments: int = SEGMENTS,
    alloc: int = DEFAULT_ALLOC,
) -> ExtentMap:
    """The extents of [start, end) (default: to the end of the LUN)."""
    stop = block_count if end is None else end
    if not 0 <= start < stop <= block_count:
        raise ValueError(f"walk range {start}..{stop} outside 0..{block_count}")
    used = [0]
    complete = [True]

    async def segment(a: int, b: int) -> list[Extent]:
        out: list[Extent] = []
        pos = a
        while pos < b:
            if budget is not None and used[0] >= budget:
                complete[0] = False
                out.append(Extent(pos, b - pos, ProvisioningStatus.MAPPED))
                break
            used[0] += 1
            got = _clip(await lba_status(session, lun, pos, block_count, alloc), b)
            out += got
            pos = got[-1].end
        return out

    first = _clip(await lba_status(session, lun, start, block_count, alloc), stop)
    used[0] += 1
    pos = first[-1].end
    rest: list[Extent] = []
    if pos < stop:
        n = max(1, min(segments, stop - pos))
        step = -(-(stop - pos) // n)
        bounds = [(a, min(a + step, stop)) for a in range(pos, stop, step)]
        for part in await asyncio.gather(*(segment(a, b) for a, b in bounds)):
            rest += part
    return ExtentMap(merged(first + rest), complete[0], used[0])
