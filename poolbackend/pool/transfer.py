"""Streamed volume download/upload with pipelined READ(16)/WRITE(16) and constant memory.

A fixed number of chunk buffers circulate: reads land directly in them (no per-PDU
allocation), and the file is written strictly in order. Chunk size comes from the LUN's
VPD block limits and is capped so memory stays bounded whatever the volume size.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, TypeVar

from poolbackend.errors import ConfigError, PoolBackendError
from poolbackend.iscsi.aio import Session
from poolbackend.iscsi.errors import BadTargetData, CommandFailed, ISCSIError
from poolbackend.iscsi.liveness import InFlightWindow
from poolbackend.scsi.lun import LunRef

T = TypeVar("T")
Progress = Callable[[int, int], None]
"""``progress(done, total)`` in bytes; ``total`` 0 when it is not known (a pipe)."""
DEFAULT_CHUNK = 1 << 20
DEPTH = 8
READ_CHUNK = 1 << 20  # download: bytes per READ(16)
READ_DEPTH = 8  # download: READs in flight at most (= chunk buffers allocated)
MIN_IN_FLIGHT = 1 << 20  # the in-flight window starts here (and never goes below)


@dataclass(frozen=True)
class Geometry:
    lun: LunRef  # the scanned LUN as reported (str() is its number)
    block_size: int
    block_count: int
    max_transfer_blocks: int  # 0 = no limit
    max_write_same_blocks: int
    thin: bool = False
    lbprz: bool = False
    lbpws: bool = False
    max_unmap_blocks: int = 0
    max_unmap_descriptors: int = 0
    lbpu: bool = False  # UNMAP supported (VPD 0xB2)

    @property
    def capacity(self) -> int:
        return self.block_size * self.block_count

    def chunk_blocks(self, want_bytes: int = DEFAULT_CHUNK) -> int:
        blocks = max(1, want_bytes // self.block_size)
        if self.max_transfer_blocks:
            blocks = min(blocks, self.max_transfer_blocks)
        return blocks


async def geometry(session: Session, lun: LunRef) -> Geometry:
    """Size, block limits and provisioning of a disk LUN; non-disk LUNs are refused.

    Every value is checked before it sizes any work: the READ CAPACITY parsers refuse
    impossible capacities and block lengths (:func:`poolbackend.scsi.capacity.check_capacity`),
    and short or malformed VPD pages fail with one line (:class:`BadTargetData`).
    """
    from poolbackend.pool.scan import probe
    from poolbackend.pool.thin import limit_pages

    found = await probe(session, lun)
    if not found.inquiry.is_disk:
        from poolbackend.scsi.inquiry import device_type_name

        raise ConfigError(
            f"LUN {lun} is a {device_type_name(found.inquiry.device_type)} device, not a disk; "
            "it has no blocks to read or write"
        )
    rc = found.rc16
    bl, lbp = await limit_pages(session, lun, f"LUN {lun}")
    return Geometry(
        lun,
        found.block_size,
        found.block_count,
        max_transfer_blocks=bl.max_transfer_length if bl else 0,
        max_write_same_blocks=bl.max_write_same_length if bl else 0,
        thin=rc is not None and rc.lbpme,
        lbprz=rc is not None and rc.lbprz,
        lbpws=lbp is not None and lbp.lbpws,
        max_unmap_blocks=bl.max_unmap_lba_count if bl else 0,
        max_unmap_descriptors=bl.max_unmap_descriptors if bl else 0,
        lbpu=lbp is not None and lbp.lbpu,
    )


def _range(geo: Geometry, offset: int, length: int | None) -> tuple[int, int]:
    if offset < 0 or (length is not None and length < 0):
        raise ConfigError("--offset and --length must not be negative")
    if geo.capacity <= 0:
        raise ConfigError(f"LUN {geo.lun} reports a capacity of 0 bytes: nothing to transfer")
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


def check_range(geo: Geometry, offset: int, length: int | None) -> None:
    """Refuse a range the LUN does not have, before anything is opened for writing."""
    _range(geo, offset, length)


def check_upload_range(geo: Geometry, offset: int, length: int | None) -> None:
    """What an upload can check before reading its source: alignment and the range."""
    if offset % geo.block_size:
        raise ConfigError(
            f"--offset {offset} is not a multiple of LUN {geo.lun}'s {geo.block_size}-byte blocks"
        )
    _range(geo, offset, length)


class LunResized(PoolBackendError):
    """The LUN's size changed while a transfer ran: what was copied is not one snapshot."""


async def _same_size(session: Session, geo: Geometry) -> None:
    """A fresh READ CAPACITY must still give the size the transfer was planned for (a LUN
    that now reports an impossible size, e.g. tgt's empty file, has changed size too)."""
    try:
        blocks, block_size = await session.read_capacity(geo.lun)
    except BadTargetData as exc:
        raise LunResized(
            f"LUN {geo.lun} changed size during the transfer ({geo.capacity} bytes at the "
            f"start, now an impossible size: {exc}); the transfer was stopped"
        ) from None
    if (blocks, block_size) != (geo.block_count, geo.block_size):
        raise LunResized(
            f"LUN {geo.lun} changed size during the transfer ({geo.capacity} bytes at the "
            f"start, {blocks * block_size} bytes now); the transfer was stopped"
        )


@contextlib.asynccontextmanager
async def _sized(session: Session, geo: Geometry) -> AsyncIterator[None]:
    """Around a transfer: a failed command is explained by a size change if there was one,
    and a transfer that completed is checked against a fresh READ CAPACITY."""
    try:
        yield
    except CommandFailed:
        with contextlib.suppress(ISCSIError):  # the LUN may be gone: keep the first error
            await _same_size(session, geo)
        raise
    await _same_size(session, geo)


def _can_seek(out: BinaryIO) -> bool:
    try:
        return out.seekable()
    except (OSError, ValueError):
        return False


def window_for(session: Session, max_bytes: int, min_bytes: int = MIN_IN_FLIGHT) -> InFlightWindow:
    """The in-flight window of one transfer: sized so each command finishes well within the
    session's timeout at the rate the target is measured to achieve (see InFlightWindow)."""
    return InFlightWindow.for_timeout(session.options.timeout, min_bytes, max_bytes)


async def pipelined(
    items: Iterable[T],
    run: Callable[[T], Awaitable[None]],
    depth: int = DEPTH,
    *,
    window: InFlightWindow | None = None,
    size: Callable[[T], int] | None = None,
) -> None:
    """Run ``run(item)`` for every item with at most ``depth`` in flight; the first error wins.

    With a ``window``, items (of ``size(item)`` bytes of work) also wait for room in it, and
    every completion feeds its latency back. Items are taken lazily, so a generator reading a
    file stays ``depth`` chunks ahead at most (and a generator may size the next item from
    the window).
    """
    loop = asyncio.get_running_loop()
    errors: list[BaseException] = []
    tasks: set[asyncio.Task[None]] = set()
    in_flight = [0, 0]  # commands, bytes
    wake: list[asyncio.Future[None]] = []

    async def one(item: T, nbytes: int) -> None:
        start = loop.time()
        try:
            await run(item)
            if window is not None:
                window.completed(nbytes, loop.time() - start)
        except BaseException as exc:
            errors.append(exc)
        finally:
            in_flight[0] -= 1
            in_flight[1] -= nbytes
            if wake and not wake[0].done():
                wake[0].set_result(None)

    def full(nbytes: int) -> bool:
        return in_flight[0] >= depth or (
            window is not None and not window.room(in_flight[1], nbytes)
        )

    try:
        for item in items:
            if errors:
                break
            nbytes = size(item) if size is not None else 0
            while full(nbytes) and not errors:
                wake[:] = [loop.create_future()]
                await wake[0]
            if errors:
                break
            in_flight[0] += 1
            in_flight[1] += nbytes
            task = asyncio.create_task(one(item, nbytes))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    finally:
        if tasks:
            await asyncio.gather(*tasks)
    if errors:
        raise errors[0]


async def download(
    session: Session,
    geo: Geometry,
    out: BinaryIO,
    *,
    offset: int = 0,
    length: int | None = None,
    sparse: bool = False,
    holes: bool | None = None,
    progress: Progress | None = None,
) -> int:
    """Copy [offset, offset+length) of the LUN to ``out`` in order; returns bytes written.

    ``sparse`` reads only the mapped extents of a thin LUN that reads deallocated blocks as
    zeros (:mod:`poolbackend.pool.sparse`; anything else is read in full) and, where
    ``holes`` (default: ``sparse`` and ``out`` can seek), leaves holes by seeking over zero
    runs and zero chunks; that is only right for a fresh file (anything else would keep old
    data there), so a pipe or a device gets the zeros written.
    Work is generated lazily: memory is ``READ_DEPTH`` chunks whatever the capacity says.
    """
    from poolbackend.pool import sparse as S

    start, end = _range(geo, offset, length)
    bs = geo.block_size
    chunk = geo.chunk_blocks(READ_CHUNK)
    first_lba, last_lba = start // bs, -(-end // bs)
    mapped = None
    if sparse:
        mapped = await S.plan(session, geo, first_lba, last_lba)
    n_reads = -(-(last_lba - first_lba) // chunk) if mapped is None else READ_DEPTH
    # Read k goes into buffers[k % n]; it is started only after read k - n was written out.
    buffers = [bytearray(chunk * bs) for _ in range(min(READ_DEPTH, n_reads) or 1)]
    holes = sparse and holes is not False and _can_seek(out)
    zero = memoryview(bytes(chunk * bs))
    done = 0

    window = window_for(session, len(buffers) * chunk * bs)
    loop = asyncio.get_running_loop()

    async def fetch(lba: int, blocks: int, buffer: bytearray) -> memoryview:
        view = memoryview(buffer)
        began = loop.time()
        await session.read(geo.lun, lba, blocks, bs, into=view[: blocks * bs])
        window.completed(blocks * bs, loop.time() - began)
        return view[max(start - lba * bs, 0) : min(blocks * bs, end - lba * bs)]

    def account(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, end - start)

    def write(view: memoryview) -> None:
        if holes and S.is_zero(view):
            out.seek(len(view), os.SEEK_CUR)
        else:
            out.write(view)
        account(len(view))

    def skip(job: S.Job) -> None:
        n = min(job.blocks * bs, end - job.lba * bs) - max(start - job.lba * bs, 0)
        if holes:
            out.seek(n, os.SEEK_CUR)
            account(n)
            return
        while n > 0:
            part = min(n, len(zero))
            out.write(zero[:part])
            account(part)
            n -= part

    pending: deque[tuple[asyncio.Task[memoryview] | None, S.Job]] = deque()
    reading = 0

    async def drain_one() -> None:
        nonlocal reading
        task, job = pending.popleft()
        if task is None:
            skip(job)
        else:
            reading -= 1
            write(await task)

    async with _sized(session, geo):
        try:
            k = 0
            for job in S.jobs(first_lba, last_lba, chunk, mapped):
                if not job.read:
                    pending.append((None, job))
                    continue
                while pending and (  # the window sizes what is in flight, up to the buffers
                    len(pending) >= len(buffers)
                    or not window.room(reading * chunk * bs, chunk * bs)
                ):
                    await drain_one()
                buffer = buffers[k % len(buffers)]
                k += 1
                reading += 1
                pending.append((asyncio.create_task(fetch(job.lba, job.blocks, buffer)), job))
            while pending:
                await drain_one()
        finally:
            for task, _ in pending:
                if task is not None:
                    task.cancel()
    if holes:
        out.truncate(out.tell())
    return done


async def upload(
    session: Session,
    geo: Geometry,
    src: BinaryIO,
    *,
    offset: int = 0,
    length: int | None = None,
    sparse: bool = False,
    progress: Progress | None = None,
) -> int:
    """Write ``src`` to the LUN at ``offset`` (a block multiple); a partial last block is merged.

    ``sparse`` turns the holes of a regular file (SEEK_DATA/SEEK_HOLE) and all-zero chunks
    into zero runs, which are deallocated on a thin LUN that reads them back as zeros and
    zeroed otherwise (:mod:`poolbackend.pool.sparse`), so the LUN reads back as the file
    whatever it held before.
    """
    from poolbackend.pool import sparse as S

    bs = geo.block_size
    check_upload_range(geo, offset, length)
    regular = False
    try:  # only a regular file has a size; pipes, FIFOs and devices are read to the end
        st = os.fstat(src.fileno())
        regular = stat.S_ISREG(st.st_mode)
        size = st.st_size - src.tell() if regular else -1
    except (OSError, ValueError):
        size = -1
    want = length if length else (size if size >= 0 else None)
    if want is not None:
        _range(geo, offset, want)
    chunk = geo.chunk_blocks() * bs
    read = written = 0

    def plain() -> Iterator[S.Piece]:
        at = 0
        while want is None or at < want:
            data = src.read(chunk if want is None else min(chunk, want - at))
            if not data:
                return
            yield at, data
            at += len(data)

    if not sparse:
        source: Iterator[S.Piece] = plain()
    elif regular and want is not None:
        fd, base = src.fileno(), src.tell()
        source = S.pieces(lambda at, n: os.pread(fd, n, base + at), fd, base, want, bs, chunk)
    else:
        source = S.pieces(lambda at, n: src.read(n), None, 0, want, bs, chunk)

    def chunks() -> Iterator[tuple[int, bytes | int]]:
        nonlocal read
        for at, data in source:
            n = data if isinstance(data, int) else len(data)
            lba = offset // bs + at // bs
            if lba * bs + n > geo.capacity:
                raise ConfigError(
                    f"the source is larger than LUN {geo.lun} ({geo.capacity} bytes) allows"
                )
            yield lba, data
            read += n

    async def put(job: tuple[int, bytes | int]) -> None:
        nonlocal written
        lba, data = job
        if isinstance(data, int):  # a zero run of whole blocks
            await S.zero_range(session, geo, lba, data // bs)
            n = data
        else:
            n = len(data)
            if len(data) % bs:  # merge a partial final block with what is on the LUN
                old = await session.read(geo.lun, lba + len(data) // bs, 1, bs)
                data += bytes(old[len(data) % bs :])
            await session.write(geo.lun, lba, data, bs)
        written += n
        if progress is not None:
            progress(written, want if want is not None else 0)  # 0: total unknown (a pipe)

    def cost(job: tuple[int, bytes | int]) -> int:
        return min(job[1], chunk) if isinstance(job[1], int) else len(job[1])

    window = window_for(session, DEPTH * chunk)
    async with _sized(session, geo):
        await pipelined(chunks(), put, window=window, size=cost)
    return read
