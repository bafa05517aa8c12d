"""The multi-pass wipe algorithms, pass by pass, on a real tgt LUN.

The expected passes are written out here from scrub(1)'s descriptions (libvirt names its
algorithms after scrub's) and Gutmann's paper, not taken from poolbackend.pool.wipe:

* nnsa: random, random, 0x00, verify;   bsi: 0xff 0xfe 0xfd 0xfb 0xf7 0xef 0xdf 0xbf 0x7f;
* gutmann: 4 random, 0x55, 0xaa, 92 49 24 (3 rotations), 0x00..0xff step 0x11,
  92 49 24 (3 rotations), 6d b6 db (3 rotations), 4 random;
* schneier: 0x00, 0xff, 5 random;   pfitzner7: 7 random;   pfitzner33: 33 random.

The session is the real one, with its write/read recorded (every call still goes to tgt).
When the writes of a pass cover the whole LUN, tgt's backing file is read and must hold
exactly that pass's data -- the pattern for a fixed pass, bytes never seen before for a
random one. A LUN of 2 MiB + 3 blocks takes several WRITEs per pass, the last one short.
A verify pass that finds other data on the LUN (changed behind tgt's back) fails the wipe.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from poolbackend.errors import DataError
from poolbackend.iscsi.aio import Session, SessionOptions
from poolbackend.iscsi.portal import Portal
from poolbackend.pool.transfer import geometry
from poolbackend.pool.wipe import wipe
from tests.harness.tgtd import MiB, Tgtd

IQN = "iqn.2026-11.example:wipe-passes"
BS = 512
BLOCKS = 4096 + 3
R, V = "random", "verify"


def _fixed(*octets: int) -> bytes:
    return bytes(octets)


def _rotations(a: int, b: int, c: int) -> list[bytes]:
    return [_fixed(a, b, c), _fixed(b, c, a), _fixed(c, a, b)]


EXPECTED: dict[str, list[bytes | str]] = {
    "nnsa": [R, R, _fixed(0x00), V],
    "bsi": [_fixed(b) for b in (0xFF, 0xFE, 0xFD, 0xFB, 0xF7, 0xEF, 0xDF, 0xBF, 0x7F)],
    "gutmann": [R] * 4
    + [_fixed(0x55), _fixed(0xAA)]
    + _rotations(0x92, 0x49, 0x24)
    + [_fixed(n) for n in range(0x00, 0x100, 0x11)]
    + _rotations(0x92, 0x49, 0x24)
    + _rotations(0x6D, 0xB6, 0xDB)
    + [R] * 4,
    "schneier": [_fixed(0x00), _fixed(0xFF)] + [R] * 5,
    "pfitzner7": [R] * 7,
    "pfitzner33": [R] * 33,
}


@pytest.fixture(scope="module")
def tgt() -> Iterator[Tgtd]:
    with Tgtd.start() as t:
        t.new_target(1, IQN)
        t.add_lun(1, 1, BLOCKS * BS, blocksize=BS)
        yield t


class Recorder:
    """Wraps a Session's write/read: per pass, what was written where, and the LUN's
    content (tgt's backing file) once the pass covered every block."""

    def __init__(self, session: Session, backing: Path) -> None:
        self.backing = backing
        self.passes: list[list[tuple[int, bytes]]] = []  # per pass: (lba, payload)
        self.images: list[bytes] = []  # per pass: the backing file afterwards
        self.reads_after: dict[int, int] = {}  # pass count -> READ calls after it
        self.after_pass: Callable[[int], None] | None = None
        self._current: list[tuple[int, bytes]] = []
        self._covered = 0
        write, read = session.write, session.read

        async def recording_write(lun: object, lba: int, data: bytes, block_size: int) -> None:
            await write(lun, lba, data, block_size)  # type: ignore[arg-type]
            assert block_size == BS
            self._current.append((lba, bytes(data)))
            self._covered += len(data) // BS
            if self._covered >= BLOCKS:
                self._end_pass()

        async def recording_read(lun: object, lba: int, blocks: int, block_size: int) -> object:
            n = len(self.passes)
            self.reads_after[n] = self.reads_after.get(n, 0) + blocks
            return await read(lun, lba, blocks, block_size)  # type: ignore[arg-type]

        session.write = recording_write  # type: ignore[assignment,method-assign]
        session.read = recording_read  # type: ignore[assignment,method-assign]

    def _end_pass(self) -> None:
        writes = sorted(self._current)
        lbas = [lba for lba, _ in writes]
        assert lbas == sorted(set(lbas)), "a block was written twice in one pass"
        image = b"".join(data for _, data in writes)
        assert len(image) == BLOCKS * BS and lbas[0] == 0, "a pass did not cover the LUN"
        on_lun = self.backing.read_bytes()
        assert on_lun == image, f"pass {len(self.passes) + 1}: the LUN differs from the writes"
        self.passes.append(writes)
        self.images.append(on_lun)
        self._current, self._covered = [], 0
        if self.after_pass is not None:
            self.after_pass(len(self.passes))


def _run(tgt: Tgtd, algorithm: str, setup: Callable[[Recorder], None] | None = None) -> Recorder:
    async def go() -> Recorder:
        opts = SessionOptions(timeout=30)
        async with await Session.open(Portal(tgt.host, tgt.port), IQN, opts) as s:
            rec = Recorder(s, tgt.backing_path(1, 1))
            if setup is not None:
                setup(rec)
            geo = await geometry(s, 1)
            assert (geo.block_size, geo.block_count) == (BS, BLOCKS)
            await wipe(s, geo, algorithm)
            return rec

    coro: Awaitable[Recorder] = go()
    return asyncio.run(coro)  # type: ignore[arg-type]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("algorithm", sorted(EXPECTED))
def test_every_pass_leaves_its_pattern_on_the_lun(tgt: Tgtd, algorithm: str) -> None:
    tgt.backing_path(1, 1).write_bytes(b"\xc3" * (BLOCKS * BS))  # "old data"
    rec = _run(tgt, algorithm)
    steps = EXPECTED[algorithm]
    writes = [s for s in steps if s != V]
    assert len(rec.passes) == len(writes), f"{len(rec.passes)} passes, expected {len(writes)}"
    seen: list[bytes] = [b"\xc3" * (BLOCKS * BS)]
    for n, (step, chunks, image) in enumerate(zip(writes, rec.passes, rec.images, strict=True)):
        if step == R:
            assert image not in seen, f"random pass {n + 1} repeats earlier data"
            assert len(set(image[:65536])) > 200, f"pass {n + 1} does not look random"
            assert len(chunks) > 1  # several commands per pass
        else:
            assert isinstance(step, bytes)
            for lba, data in chunks:  # every WRITE carries the pattern from its first byte
                assert data == (step * (len(data) // len(step) + 1))[: len(data)], (
                    f"pass {n + 1} ({step.hex()}) at LBA {lba}"
                )
        seen.append(image)
    # verify passes read the whole LUN back after the pass before them, and only then
    expected_reads = {
        sum(1 for s in steps[:i] if s != V): BLOCKS for i, s in enumerate(steps) if s == V
    }
    assert rec.reads_after == expected_reads
    assert tgt.backing_path(1, 1).read_bytes() == rec.images[-1]


def test_a_verify_that_finds_other_data_fails_the_wipe(tgt: Tgtd) -> None:
    """nnsa's verify after the 0x00 pass: one byte changed behind tgt's back is found."""
    backing = tgt.backing_path(1, 1)
    bad_lba = 3000

    def corrupt_after_zero_pass(rec: Recorder) -> None:
        def hook(done: int) -> None:
            if done == 3:  # random, random, 0x00: now change one byte on the "disk"
                with backing.open("r+b") as f:
                    f.seek(bad_lba * BS + 17)
                    f.write(b"\x01")

        rec.after_pass = hook

    with pytest.raises(DataError, match=r"^wipe verification failed on LUN 1 near LBA 2048$"):
        _run(tgt, "nnsa", corrupt_after_zero_pass)
    # and without the change the same wipe verifies
    rec = _run(tgt, "nnsa")
    assert rec.reads_after == {3: BLOCKS}


def test_lun_size_is_not_a_multiple_of_the_chunk() -> None:
    assert BLOCKS * BS % MiB != 0
