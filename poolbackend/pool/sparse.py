"""Sparse transfer planning: which parts of a thin LUN a download reads, which it skips.

A download with ``--sparse`` of a LUN that is thin and reads deallocated blocks as zeros
(LBPME=1 and LBPRZ=1) asks GET LBA STATUS for the range first and reads only the mapped
extents; the others are holes in a fresh output file, or zeros written to a pipe or device.
Anchored blocks read as zeros too (LBPRZ) and are skipped like deallocated ones.

Everything else is a full read: a thick LUN (LBPME=0: tgt calls its file's holes
"deallocated", which says nothing), a thin LUN with LBPRZ=0 (deallocated blocks may read as
anything, and a full read would copy that), a target that refuses GET LBA STATUS, and one
whose answers are impossible (cut off, out of order, overlapping, beyond the LUN: one
``warning:`` line, then the full read -- never a skipped block that holds data). A walk
longer than :data:`WALK_BYTES` of LUN per command would cost more than reading: it stops
and the rest is read.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from poolbackend.iscsi import extents
from poolbackend.iscsi.aio import CheckCondition, Session
from poolbackend.iscsi.errors import BadTargetData
from poolbackend.scsi.lbastatus import Extent, ProvisioningStatus
from poolbackend.scsi.sense import SenseKey
from poolbackend.text import emit

if TYPE_CHECKING:
    from poolbackend.pool.transfer import Geometry

WALK_BYTES = 4 << 20  # at most one GET LBA STATUS per 4 MiB of range (plus a floor)
MIN_BUDGET = 64


@dataclass(frozen=True)
class Job:
    """One piece of the output, in order: ``read`` it from the LUN, or a zero run."""

    lba: int
    blocks: int
    read: bool


async def plan(
    session: Session, geo: Geometry, first_lba: int, last_lba: int
) -> tuple[Extent, ...] | None:
    """The extents of [first_lba, last_lba), or None for a full read (see the module)."""
    if not (geo.thin and geo.lbprz):
        return None
    budget = max(MIN_BUDGET, (last_lba - first_lba) * geo.block_size // WALK_BYTES)
    try:
        walked = await extents.walk(
            session, geo.lun, geo.block_count, first_lba, last_lba, budget=budget
        )
    except BadTargetData as exc:
        emit("warning", f"{exc}; reading every block instead")
        return None
    except CheckCondition as exc:  # GET LBA STATUS not supported after all
        if exc.sense_data is None or exc.sense_data.key != SenseKey.ILLEGAL_REQUEST:
            raise
        return None
    return walked.extents


def jobs(
    first_lba: int, last_lba: int, chunk: int, mapped: tuple[Extent, ...] | None
) -> Iterator[Job]:
    """Reads of at most ``chunk`` blocks over the mapped extents, zero runs over the rest
    (lazily: memory does not grow with the LUN's size)."""
    for e in mapped or (Extent(first_lba, last_lba - first_lba, ProvisioningStatus.MAPPED),):
        if not e.mapped:
            yield Job(e.lba, e.blocks, False)
            continue
        for lba in range(e.lba, e.end, chunk):
            yield Job(lba, min(chunk, e.end - lba), True)


# -- upload ----------------------------------------------------------------------------------
# A sparse upload turns the holes of its input (SEEK_DATA/SEEK_HOLE on a regular file) and
# the all-zero chunks it reads into zero runs, which the LUN then deallocates or zeroes
# (:func:`zero_range`); everything else is written as it is. A zero run is always whole
# blocks: the partial blocks at its edges are written as data (zeros).

Piece = tuple[int, bytes | int]
"""``(offset from the upload's start, data)`` or ``(offset, length of a zero run)``."""


def is_zero(data: bytes | memoryview) -> bool:
    """Whether every byte is 0: three probes first (data rarely starts with zeros), then one
    C-level comparison. (``memoryview ==`` compares element by element, ~4 ms per MiB of
    zeros, and ``any()`` iterates in Python, ~12 ms per MiB; this is ~0.1-0.2 ms.)"""
    n = len(data)
    if n == 0 or data[0] or data[n - 1] or data[n // 2]:
        return n == 0
    return (data.tobytes() if isinstance(data, memoryview) else data) == bytes(n)


def _zero_chunk(data: bytes, bs: int) -> bool:
    return len(data) % bs == 0 and is_zero(data)


def _seek(fd: int, pos: int, whence: int, default: int) -> int:
    try:
        return os.lseek(fd, pos, whence)
    except OSError as exc:  # ENXIO: no data after pos; EINVAL etc.: no hole support
        return default if exc.errno == errno.ENXIO else -1


def pieces(
    read: Callable[[int, int], bytes],
    src_fd: int | None,
    start: int,
    want: int | None,
    bs: int,
    chunk: int,
) -> Iterator[Piece]:
    """What to upload, in order: data from ``read(offset, n)`` (offset from ``start``), zero
    runs for the holes of ``src_fd`` (a regular file at ``start``; None for a stream, whose
    ``read`` ignores the offset) and for all-zero chunks. ``want`` is the number of bytes to
    upload (None: to the end of a stream). Every piece but the last is whole blocks.
    """
    pos = 0
    while want is None or pos < want:
        n = chunk if want is None else min(chunk, want - pos)
        if src_fd is not None and want is not None:
            data_at = _seek(src_fd, start + pos, os.SEEK_DATA, start + want)
            if data_at >= 0:
                run = (min(data_at - start, want) - pos) // bs * bs
                if run > 0:
                    yield pos, run
                    pos += run
                    continue
                hole_at = _seek(src_fd, start + pos, os.SEEK_HOLE, start + want) - start
                if pos < hole_at < want:  # up to the next hole, in whole blocks
                    n = min(n, max(bs, (hole_at - pos) // bs * bs))
        data = read(pos, n)
        if not data:
            return
        yield (pos, len(data)) if _zero_chunk(data, bs) else (pos, data)
        pos += len(data)


async def zero_range(session: Session, geo: Geometry, lba: int, blocks: int) -> None:
    """Make [lba, lba + blocks) read as zeros: deallocated on a thin LUN that reads
    deallocated blocks as zeros (UNMAP with LBPU, else WRITE SAME(16) with UNMAP with LBPWS),
    zeros written otherwise (WRITE SAME(16), WRITE(16) of zeros where that is refused)."""
    from poolbackend.scsi import cdb as C

    bs = geo.block_size
    if geo.thin and geo.lbprz and geo.lbpu:
        per = min(geo.max_unmap_blocks or 0xFFFFFFFF, 1 << 22)
        for at in range(lba, lba + blocks, per):
            params = C.unmap_parameter_list([(at, min(per, lba + blocks - at))])
            await session.execute(geo.lun, C.unmap(len(params)), write_data=params)
        return
    unmap = geo.thin and geo.lbprz and geo.lbpws
    per = min(geo.max_write_same_blocks or 65536, 65536)
    zero = bytes(bs)
    try:
        for at in range(lba, lba + blocks, per):
            n = min(per, lba + blocks - at)
            await session.execute(geo.lun, C.write_same16(at, n, unmap=unmap), write_data=zero)
    except CheckCondition as exc:
        if exc.sense_data is None or exc.sense_data.key != SenseKey.ILLEGAL_REQUEST:
            raise
        step = max(1, (1 << 20) // bs)
        buf = bytes(step * bs)
        for at in range(lba, lba + blocks, step):
            n = min(step, lba + blocks - at)
            await session.write(geo.lun, at, buf[: n * bs], bs)
