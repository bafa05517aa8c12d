"""Streamed volume download/upload with pipelined READ(16)/WRITE(16) and constant memory.

A fixed number of chunk buffers circulate: reads land directly in them (no per-PDU
allocation), and the file is written strictly in order. Chunk size comes from the LUN's
VPD block limits and is capped so memory stays bounded whatever the volume size.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from poolbackend.errors import ConfigError
from poolbackend.iscsi.aio import Session
from poolbackend.iscsi.errors import CommandFailed
from poolbackend.scsi.vpd import parse_block_limits, parse_supported_pages

Progress = Callable[[int, int], None]
DEFAULT_CHUNK = 1 << 20
DEPTH = 8


@dataclass(frozen=True)
class Geometry:
    lun: int
    block_size: int
    block_count: int
    max_transfer_blocks: int  # 0 = no limit
    max_write_same_blocks: int
    thin: bool = False
    lbprz: bool = False
    lbpws: bool = False
    max_unmap_blocks: int = 0
    max_unmap_descriptors: int = 0

    @property
    def capacity(self) -> int:
        return self.block_size * self.block_count

    def chunk_blocks(self, want_bytes: int = DEFAULT_CHUNK) -> int:
        blocks = max(1, want_bytes // self.block_size)
        if self.max_transfer_blocks:
            blocks = min(blocks, self.max_transfer_blocks)
        return blocks


async def geometry(session: Session, lun: int) -> Geometry:
    """Size, block limits and provisioning of a disk LUN; non-disk LUNs are refused."""
    from poolbackend.scsi import cdb as C
    from poolbackend.scsi.capacity import parse_read_capacity16
    from poolbackend.scsi.vpd import parse_logical_block_provisioning

    await session.test_unit_ready(lun)
    inq = await session.inquiry(lun)
    if inq.peripheral_qualifier != 0 or inq.device_type != 0:
        from poolbackend.scsi.inquiry import device_type_name

        raise ConfigError(
            f"LUN {lun} is a {device_type_name(inq.device_type)} device, not a disk; "
            "it has no blocks to read or write"
        )
    thin = lbprz = False
    try:
        r = await session.execute(lun, C.read_capacity16(), read_len=32)
        rc = parse_read_capacity16(bytes(r.data))
        blocks, block_size, thin, lbprz = rc.last_lba + 1, rc.block_length, rc.lbpme, rc.lbprz
    except CommandFailed:
        blocks, block_size = await session.read_capacity(lun)
    max_xfer = max_ws = max_unmap = max_desc = 0
    lbpws = False
    try:
        pages = parse_supported_pages(await session.vpd(lun, 0x00)).pages
    except CommandFailed:
        pages = ()
    if 0xB0 in pages:
        bl = parse_block_limits(await session.vpd(lun, 0xB0))
        max_xfer, max_ws = bl.max_transfer_length, bl.max_write_same_length
        max_unmap, max_desc = bl.max_unmap_lba_count, bl.max_unmap_descriptors
    if 0xB2 in pages:
        lbpws = parse_logical_block_provisioning(await session.vpd(lun, 0xB2)).lbpws
    return Geometry(
        lun, block_size, blocks, max_xfer, max_ws, thin, lbprz, lbpws, max_unmap, max_desc
    )


def _range(geo: Geometry, offset: int, length: int | None) -> tuple[int, int]:
    if offset < 0 or (length is not None and length < 0):
        raise ConfigError("--offset and --length must not be negative")
    if offset > geo.capacity:
        raise ConfigError(
            f"offset {offset} is beyond the end of LUN {geo.lun} ({geo.capacity} bytes)"
        )
    end = geo.capacity if length is None or length == 0 else offset + length
    if end > geo.capacity:
        raise ConfigError(
            f"offset {offset} + length {length} exceeds LUN {geo.lun}'s {geo.capacity} bytes"
        )
    return offset, end


async def download(
    session: Session,
    geo: Geometry,
    out: BinaryIO,
    *,
    offset: int = 0,
    length: int | None = None,
    sparse: bool = False,
    progress: Progress | None = None,
) -> int:
    """Copy [offset, offset+length) of the LUN to ``out``; returns bytes written."""
    start, end = _range(geo, offset, length)
    bs = geo.block_size
    first_lba, last_lba = start // bs, -(-end // bs)
    chunk = geo.chunk_blocks()
    total = end - start
    jobs = [(lba, min(chunk, last_lba - lba)) for lba in range(first_lba, last_lba, chunk)]
    free: asyncio.Queue[bytearray] = asyncio.Queue()
    for _ in range(min(DEPTH, len(jobs)) or 1):
        free.put_nowait(bytearray(chunk * bs))
    zero = bytes(chunk * bs) if sparse else b""
    done = 0
    pos = start

    async def fetch(lba: int, blocks: int) -> tuple[bytearray, int]:
        buf = await free.get()
        await session.read(geo.lun, lba, blocks, bs, into=memoryview(buf)[: blocks * bs])
        return buf, blocks

    pending: list[asyncio.Task[tuple[bytearray, int]]] = []
    it = iter(jobs)
    try:
        for job in it:
            pending.append(asyncio.create_task(fetch(*job)))
            if len(pending) < DEPTH:
                continue
            pos, done = await _drain_one(
                pending, jobs, start, end, bs, out, sparse, zero, free, pos, done, progress, total
            )
        while pending:
            pos, done = await _drain_one(
                pending, jobs, start, end, bs, out, sparse, zero, free, pos, done, progress, total
            )
    finally:
        for t in pending:
            t.cancel()
    if sparse:
        out.truncate(out.tell())
    return done


async def _drain_one(
    pending: list[asyncio.Task[tuple[bytearray, int]]],
    jobs: list[tuple[int, int]],
    start: int,
    end: int,
    bs: int,
    out: BinaryIO,
    sparse: bool,
    zero: bytes,
    free: asyncio.Queue[bytearray],
    pos: int,
    done: int,
    progress: Progress | None,
    total: int,
) -> tuple[int, int]:
    task = pending.pop(0)
    buf, blocks = await task
    # Absolute byte range this buffer covers, clipped to [start, end).
    lba_start = pos // bs
    lo = pos - lba_start * bs
    hi = min(blocks * bs, end - lba_start * bs)
    view = memoryview(buf)[lo:hi]
    if sparse and view == memoryview(zero)[: len(view)]:
        out.seek(len(view), os.SEEK_CUR)
    else:
        out.write(view)
    view.release()
    pos += hi - lo
    done += hi - lo
    free.put_nowait(buf)
    if progress is not None:
        progress(done, total)
    return pos, done


async def upload(
    session: Session,
    geo: Geometry,
    src: BinaryIO,
    *,
    offset: int = 0,
    length: int | None = None,
    progress: Progress | None = None,
) -> int:
    """Write ``src`` to the LUN at ``offset`` (a block multiple); a partial last block is merged."""
    bs = geo.block_size
    if offset % bs:
        raise ConfigError(
            f"--offset {offset} is not a multiple of LUN {geo.lun}'s {bs}-byte blocks"
        )
    try:
        size = os.fstat(src.fileno()).st_size - src.tell()
    except (OSError, ValueError):
        size = -1
    want = length if length else (size if size >= 0 else None)
    if want is not None:
        _range(geo, offset, want)
    chunk = geo.chunk_blocks() * bs
    sem = asyncio.Semaphore(DEPTH)
    tasks: set[asyncio.Task[None]] = set()
    failure: list[BaseException] = []
    lba = offset // bs
    done = 0

    async def put(lba: int, data: bytes) -> None:
        try:
            if len(data) % bs:  # merge a partial final block with what is on the LUN
                tail_lba = lba + len(data) // bs
                old = await session.read(geo.lun, tail_lba, 1, bs)
                data = data + bytes(old[len(data) % bs :])
            await session.write(geo.lun, lba, data, bs)
        except BaseException as exc:
            failure.append(exc)
        finally:
            sem.release()

    while not failure:
        limit = chunk if want is None else min(chunk, want - done)
        if limit <= 0:
            break
        data = src.read(limit)
        if not data:
            break
        if lba * bs + len(data) > geo.capacity:
            raise ConfigError(
                f"the source is larger than LUN {geo.lun} ({geo.capacity} bytes) allows"
            )
        await sem.acquire()
        t = asyncio.create_task(put(lba, data))
        tasks.add(t)
        t.add_done_callback(tasks.discard)
        lba += -(-len(data) // bs)
        done += len(data)
        if progress is not None:
            progress(done, want or done)
    if tasks:
        await asyncio.gather(*tasks)
    if failure:
        raise failure[0]
    return done
