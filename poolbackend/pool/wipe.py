"""Volume wipe: every block of the LUN, including the last one libvirt misses.

``zero`` uses WRITE SAME(16) (with UNMAP on thin LUNs that read unmapped blocks as zero)
and falls back to pipelined WRITE(16) of zero buffers; ``trim`` uses UNMAP; the pattern
algorithms are the multi-pass schemes libvirt names (after scrub(1)), written with
pipelined WRITE(16) and, where the scheme asks for it, verified by reading back.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterator

from poolbackend.errors import ConfigError, DataError
from poolbackend.iscsi.aio import CheckCondition, Session
from poolbackend.iscsi.liveness import InFlightWindow
from poolbackend.pool.transfer import (
    DEPTH,
    MIN_IN_FLIGHT,
    Geometry,
    Progress,
    pipelined,
    window_for,
)
from poolbackend.scsi import cdb as C
from poolbackend.scsi.sense import SenseKey
from poolbackend.text import printable

# libvirt's virStorageVolWipeAlgorithm numbering and names.
ALGORITHMS = (
    "zero",
    "nnsa",
    "dod",
    "bsi",
    "gutmann",
    "schneier",
    "pfitzner7",
    "pfitzner33",
    "random",
    "trim",
)
RANDOM = b""  # marker: a pass of random data
VERIFY = b"verify"  # marker: read back and compare the previous pass

_GUTMANN_FIXED = (
    [bytes([b]) for b in (0x55, 0xAA)]
    + [bytes(p) for p in ((0x92, 0x49, 0x24), (0x49, 0x24, 0x92), (0x24, 0x92, 0x49))]
    + [bytes([n * 0x11]) for n in range(16)]
    + [
        bytes(p)
        for p in (
            (0x92, 0x49, 0x24),
            (0x49, 0x24, 0x92),
            (0x24, 0x92, 0x49),
            (0x6D, 0xB6, 0xDB),
            (0xB6, 0xDB, 0x6D),
            (0xDB, 0x6D, 0xB6),
        )
    ]
)
PASSES: dict[str, list[bytes]] = {
    "nnsa": [RANDOM, RANDOM, b"\x00", VERIFY],
    "dod": [RANDOM, b"\x00", b"\xff", VERIFY],
    "bsi": [bytes([b]) for b in (0xFF, 0xFE, 0xFD, 0xFB, 0xF7, 0xEF, 0xDF, 0xBF, 0x7F)],
    "gutmann": [RANDOM] * 4 + _GUTMANN_FIXED + [RANDOM] * 4,
    "schneier": [b"\x00", b"\xff"] + [RANDOM] * 5,
    "pfitzner7": [RANDOM] * 7,
    "pfitzner33": [RANDOM] * 33,
    "random": [RANDOM],
}


def algorithm_number(name: str) -> int:
    try:
        return ALGORITHMS.index(name)
    except ValueError:
        raise ConfigError(
            f"unsupported wipe algorithm '{printable(name)}' (use one of: {', '.join(ALGORITHMS)})"
        ) from None


def _chunks(geo: Geometry, blocks_per: int) -> Iterator[tuple[int, int]]:
    for lba in range(0, geo.block_count, blocks_per):
        yield lba, min(blocks_per, geo.block_count - lba)


async def _each_chunk(
    geo: Geometry,
    jobs: Iterator[tuple[int, int]],
    run: Callable[[int, int], Awaitable[None]],
    progress: Progress | None,
    window: InFlightWindow,
    done: int = 0,
) -> None:
    """Run ``run(lba, blocks)`` over ``jobs``, pipelined within ``window``, reporting progress."""

    async def step(job: tuple[int, int]) -> None:
        nonlocal done
        await run(*job)
        done += job[1] * geo.block_size
        if progress is not None:
            progress(done, geo.capacity)

    await pipelined(jobs, step, window=window, size=lambda job: job[1] * geo.block_size)


async def _write_pattern(
    session: Session, geo: Geometry, pattern: bytes, progress: Progress | None
) -> bytes:
    """One full pass; returns the fixed buffer written (b'' for random passes)."""
    chunk = geo.chunk_blocks()
    size = chunk * geo.block_size
    fixed = b"" if pattern == RANDOM else (pattern * (size // len(pattern) + 1))[:size]

    async def run(lba: int, blocks: int) -> None:
        data = (
            os.urandom(blocks * geo.block_size) if not fixed else fixed[: blocks * geo.block_size]
        )
        await session.write(geo.lun, lba, data, geo.block_size)

    window = window_for(session, DEPTH * size, min(MIN_IN_FLIGHT, size))
    await _each_chunk(geo, _chunks(geo, chunk), run, progress, window)
    return fixed


async def _verify(session: Session, geo: Geometry, fixed: bytes) -> None:
    chunk = geo.chunk_blocks()

    async def run(lba: int, blocks: int) -> None:
        data = await session.read(geo.lun, lba, blocks, geo.block_size)
        if data != fixed[: blocks * geo.block_size]:
            raise DataError(f"wipe verification failed on LUN {geo.lun} near LBA {lba}")

    window = window_for(session, DEPTH * chunk * geo.block_size)
    await _each_chunk(geo, _chunks(geo, chunk), run, None, window)


async def _zero(session: Session, geo: Geometry, progress: Progress | None) -> str:
    unmap = geo.thin and geo.lbprz and geo.lbpws
    per = geo.max_write_same_blocks or 65536
    per = min(per, 0xFFFFFFFF)
    zero_block = bytes(geo.block_size)
    bs = geo.block_size
    # Each WRITE SAME is sized from the window too: on a slow target (a backing file not in
    # the page cache) 32 MiB can take seconds, so start at 1 MiB and grow with the rate.
    window = window_for(session, DEPTH * per * bs, min(MIN_IN_FLIGHT, per * bs))

    def blocks_at(lba: int) -> int:
        return min(
            window.chunk(min(MIN_IN_FLIGHT, per * bs), per * bs) // bs, geo.block_count - lba
        )

    loop = asyncio.get_running_loop()
    first = blocks_at(0)
    try:
        # Probe with the first range: targets without WRITE SAME answer ILLEGAL REQUEST.
        start = loop.time()
        await session.execute(geo.lun, C.write_same16(0, first, unmap=unmap), write_data=zero_block)
        window.completed(first * bs, loop.time() - start)
    except CheckCondition as exc:
        if exc.sense_data is None or exc.sense_data.key != SenseKey.ILLEGAL_REQUEST:
            raise
        await _write_pattern(session, geo, b"\x00", progress)
        return "WRITE(16)"

    async def run(lba: int, blocks: int) -> None:
        await session.execute(
            geo.lun, C.write_same16(lba, blocks, unmap=unmap), write_data=zero_block
        )

    def rest() -> Iterator[tuple[int, int]]:
        lba = first
        while lba < geo.block_count:
            blocks = blocks_at(lba)
            yield lba, blocks
            lba += blocks

    await _each_chunk(geo, rest(), run, progress, window, done=first * bs)
    return "WRITE SAME(16) with UNMAP" if unmap else "WRITE SAME(16)"


async def _trim(session: Session, geo: Geometry, progress: Progress | None) -> str:
    if not geo.thin:
        raise ConfigError(
            f"LUN {geo.lun} is not thin-provisioned (READ CAPACITY LBPME=0): 'trim' needs UNMAP"
        )
    if not geo.lbpu:
        raise ConfigError(
            f"LUN {geo.lun} does not support UNMAP (VPD page 0xB2 has LBPU=0 or is missing): "
            "'trim' cannot deallocate it; use 'zero'"
        )
    per = min(geo.max_unmap_blocks or 0xFFFFFFFF, 1 << 22)

    async def run(lba: int, blocks: int) -> None:
        params = C.unmap_parameter_list([(lba, blocks)])
        await session.execute(geo.lun, C.unmap(len(params)), write_data=params)

    most = DEPTH * per * geo.block_size  # UNMAP is cheap (tgt punches holes): a fixed window
    await _each_chunk(geo, _chunks(geo, per), run, progress, window_for(session, most, most))
    return "UNMAP"


async def wipe(
    session: Session, geo: Geometry, algorithm: str = "zero", progress: Progress | None = None
) -> str:
    """Wipe the whole LUN; returns how it was done (for the user's information)."""
    algorithm_number(algorithm)
    if algorithm == "zero":
        return await _zero(session, geo, progress)
    if algorithm == "trim":
        return await _trim(session, geo, progress)
    last = b""
    for step in PASSES[algorithm]:
        if step == VERIFY:
            await _verify(session, geo, last)
        else:
            last = await _write_pattern(session, geo, step, progress)
    return f"{len([p for p in PASSES[algorithm] if p != VERIFY])} passes of WRITE(16)"
