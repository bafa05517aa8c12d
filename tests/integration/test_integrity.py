"""Data integrity against tgt's backing files, with HeaderDigest and DataDigest CRC32C.

Every session offers only CRC32C for both digests (SessionOptions for the library, the pool's
``<pb:digest header='CRC32C' data='CRC32C'/>`` for the CLI); since an answer outside the
offer fails the login, every successful operation below ran with both digests on (tgt,
configured for CRC32C, would also accept None, so it cannot enforce this itself).

* Seeded random write-then-read through the library -- the asyncio Session and the
  synchronous facade, sequential and several commands in flight -- with lengths on both
  sides of MaxRecvDataSegmentLength (8 KiB), FirstBurstLength (64 KiB) and MaxBurstLength
  (256 KiB); every read is compared with a model, and at the end the whole backing file is.
* vol-upload with block-aligned ``--offset`` and unaligned ``--length`` (the partial last
  block is merged) and vol-download with unaligned ``--offset``/``--length``, through a pool
  whose ``<pb:digest>`` asks for CRC32C.
* vol-wipe leaves every block zero for block counts 128*k+1 (129, 16385 blocks of 512
  bytes; 129 and 2049 blocks of 4096 bytes) -- test_pool.py covers 2049 x 512.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from poolbackend.iscsi.aio import Session, SessionOptions
from poolbackend.iscsi.portal import Portal
from poolbackend.iscsi.sync import SyncSession
from tests.conftest import RunCli
from tests.harness.tgtd import Tgtd

IQN = "iqn.2026-11.example:integrity"
INITIATOR = "iqn.2026-11.example:initiator1"
KiB = 1024
#: byte lengths around tgt's negotiated MRDSL (8 KiB), FirstBurstLength and MaxBurstLength
BOUNDARIES = [8 * KiB, 64 * KiB, 256 * KiB, 512 * KiB]
#: LUN -> (block size, block count); 3..6 are the wipe LUNs (filled with 0xff)
LUNS = {1: (512, 32768), 2: (4096, 1024), 3: (512, 129), 4: (512, 16385), 5: (4096, 129),
        6: (4096, 2049)}  # fmt: skip
DIGESTS = SessionOptions(header_digest="CRC32C", data_digest="CRC32C", timeout=20)


@pytest.fixture(scope="module")
def tgt() -> Iterator[Tgtd]:
    with Tgtd.start() as t:
        t.new_target(1, IQN)
        for lun, (bs, blocks) in LUNS.items():
            t.add_lun(1, lun, bs * blocks, blocksize=bs, fill=b"\xff" if lun >= 3 else None)
        t.set_param(1, "HeaderDigest", "CRC32C")
        t.set_param(1, "DataDigest", "CRC32C")
        yield t


def _lengths(rng: random.Random, bs: int) -> list[int]:
    """Block-multiple byte lengths just below, at and above each boundary, plus random ones."""
    out = []
    for b in BOUNDARIES:
        out += [b - bs, b, b + bs]
    out += [bs, rng.randrange(1, 64) * bs, rng.randrange(1, 2048) * bs]
    return out


def _ops(seed: int, bs: int, blocks: int, count: int) -> list[tuple[int, int]]:
    """(lba, block count) pairs: every boundary length once, then random ones."""
    rng = random.Random(seed)
    lengths = _lengths(rng, bs)
    lengths += [rng.choice(lengths) for _ in range(max(0, count - len(lengths)))]
    ops = []
    for n in lengths:
        nblocks = min(n // bs, blocks)
        ops.append((rng.randrange(0, blocks - nblocks + 1), nblocks))
    return ops


def test_sessions_offer_only_crc32c(tgt: Tgtd, tmp_path: Path) -> None:
    """The pool used below offers CRC32C alone; that an answer outside the offer fails the
    login is proven from bytes in tests/unit/test_digest_negotiation.py, and every session
    below asserts that both digests are on."""
    from poolbackend.pool.backends.iscsi_direct import session_options
    from poolbackend.pool.xml.pool import parse_pool_xml

    pool = parse_pool_xml(_pool(tmp_path, tgt).read_text())
    opts = session_options(pool.source.initiator_iqn, pool.options, pool.source.auth)
    assert (opts.header_digest, opts.data_digest) == ("CRC32C", "CRC32C")
    with SyncSession.open(Portal(tgt.host, tgt.port), IQN, opts) as s:
        assert s.session.params.header_digest and s.session.params.data_digest


@pytest.mark.timeout(120)
def test_random_write_read_through_the_async_session(tgt: Tgtd) -> None:
    rng = random.Random(4711)
    models = {lun: bytearray(tgt.backing_path(1, lun).read_bytes()) for lun in (1, 2)}

    async def go() -> None:
        async with await Session.open(Portal(tgt.host, tgt.port), IQN, DIGESTS) as s:
            assert s.params.header_digest and s.params.data_digest
            assert s.params.first_burst_length == 64 * KiB
            assert s.params.max_burst_length == 256 * KiB
            for lun in (1, 2):
                bs, blocks = LUNS[lun]
                model = models[lun]
                for lba, n in _ops(lun, bs, blocks, 30):
                    data = rng.randbytes(n * bs)
                    await s.write(lun, lba, data, bs)
                    model[lba * bs : (lba + n) * bs] = data
                    back = await s.read(lun, lba, n, bs)
                    assert bytes(back) == data, (lun, lba, n)
                # Several commands in flight: disjoint writes, then reads of random ranges.
                spans = [(i * blocks // 8, min(blocks // 8, 600 * 512 // bs)) for i in range(8)]
                datas = [rng.randbytes(n * bs) for _, n in spans]
                await asyncio.gather(
                    *(s.write(lun, lba, d, bs) for (lba, _), d in zip(spans, datas, strict=True))
                )
                for (lba, n), d in zip(spans, datas, strict=True):
                    model[lba * bs : (lba + n) * bs] = d
                reads = _ops(lun + 10, bs, blocks, 12)
                got = await asyncio.gather(*(s.read(lun, lba, n, bs) for lba, n in reads))
                for (lba, n), g in zip(reads, got, strict=True):
                    assert bytes(g) == bytes(model[lba * bs : (lba + n) * bs]), (lun, lba, n)

    asyncio.run(go())
    for lun in (1, 2):
        assert tgt.backing_path(1, lun).read_bytes() == bytes(models[lun]), f"LUN {lun}"


@pytest.mark.timeout(120)
def test_random_write_read_through_the_sync_session(tgt: Tgtd) -> None:
    rng = random.Random(1174)
    bs, blocks = LUNS[1]
    model = bytearray(tgt.backing_path(1, 1).read_bytes())
    with SyncSession.open(Portal(tgt.host, tgt.port), IQN, DIGESTS) as s:
        assert s.session.params.header_digest and s.session.params.data_digest
        for lba, n in _ops(99, bs, blocks, 24):
            data = rng.randbytes(n * bs)
            s.write(1, lba, data, bs)
            model[lba * bs : (lba + n) * bs] = data
            assert s.read(1, lba, n, bs) == data, (lba, n)
    assert tgt.backing_path(1, 1).read_bytes() == bytes(model)


def _pool(tmp: Path, t: Tgtd) -> Path:
    path = tmp / "integrity.xml"
    path.write_text(
        "<pool type='iscsi-direct' xmlns:pb='https://poolbackend.dev/xmlns/pool/1'>"
        "<name>integrity</name><source>"
        f"<host name='127.0.0.1' port='{t.port}'/><device path='{IQN}'/>"
        f"<initiator><iqn name='{INITIATOR}'/></initiator></source>"
        "<pb:iscsi><pb:digest header='CRC32C' data='CRC32C'/><pb:timeout seconds='20'/>"
        "</pb:iscsi></pool>"
    )
    return path


@pytest.mark.timeout(180)
def test_upload_download_unaligned_ranges(tgt: Tgtd, tmp_path: Path, run_cli: RunCli) -> None:
    rc, _, err = run_cli("pool-create", str(_pool(tmp_path, tgt)))
    assert rc == 0, err
    rng = random.Random(2049)
    for lun in (1, 2):
        bs, blocks = LUNS[lun]
        backing = tgt.backing_path(1, lun)
        size = bs * blocks
        # Uploads: offset a block multiple (required), length anything (partial last block).
        for length in (64 * KiB + 1, 256 * KiB - 7, bs - 1, rng.randrange(1, 300 * KiB)):
            offset = rng.randrange(0, (size - length) // bs) * bs
            src = tmp_path / "src.bin"
            src.write_bytes(rng.randbytes(length + 100))  # --length cuts it
            before = backing.read_bytes()
            rc, _, err = run_cli(
                "vol-upload", "--pool", "integrity", f"unit:0:0:{lun}", str(src),
                "--offset", str(offset), "--length", str(length),
            )  # fmt: skip
            assert rc == 0, err
            after = backing.read_bytes()
            want = before[:offset] + src.read_bytes()[:length] + before[offset + length :]
            assert after == want, (lun, offset, length)
        # Downloads: any offset and length.
        data = backing.read_bytes()
        for offset, length in ((1, 64 * KiB), (bs + 3, 256 * KiB + 5), (size - 777, 777)):
            out = tmp_path / "out.bin"
            rc, _, err = run_cli(
                "vol-download", "--pool", "integrity", f"unit:0:0:{lun}", str(out),
                "--offset", str(offset), "--length", str(length),
            )  # fmt: skip
            assert rc == 0, err
            assert out.read_bytes() == data[offset : offset + length], (lun, offset, length)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("lun", [3, 4, 5, 6])
def test_wipe_zeroes_every_block_of_128k_plus_1_luns(
    tgt: Tgtd, tmp_path: Path, run_cli: RunCli, lun: int
) -> None:
    bs, blocks = LUNS[lun]
    backing = tgt.backing_path(1, lun)
    backing.write_bytes(b"\xff" * (bs * blocks))
    rc, _, err = run_cli("pool-create", str(_pool(tmp_path, tgt)))
    assert rc == 0, err
    rc, _, err = run_cli("vol-wipe", "--pool", "integrity", f"unit:0:0:{lun}")
    assert rc == 0, err
    data = backing.read_bytes()
    assert len(data) == bs * blocks
    first_bad = next((i for i, b in enumerate(data) if b), None)
    assert first_bad is None, f"byte {first_bad} (block {first_bad // bs}) of {blocks} not zero"
