"""Thin provisioning on real tgtd (thin_provisioning=1, backing files with holes in tmp):
GET LBA STATUS through iscsi-lbastatus, allocation figures, provisioning facts, sparse
transfers; a thick LUN beside for the LBPME=0 rules."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from poolbackend.iscsi.aio import Session, SessionOptions
from poolbackend.iscsi.portal import Portal
from tests.conftest import RunCli
from tests.harness.tgtd import Tgtd

MiB = 1 << 20
IQN = "iqn.2026-12.example:thin"
INITIATOR = "iqn.2026-11.example:initiator1"
LUN_SIZE = 64 * MiB
# (offset, bytes) written through iSCSI to the thin LUN 1
WRITTEN = ((1 * MiB, 4096), (10 * MiB, 3 * MiB), (LUN_SIZE - 8192, 8192))


def pattern(offset: int, size: int) -> bytes:
    seed = offset.to_bytes(8, "big")
    return (seed * (size // 8 + 1))[:size]


async def _write(tgt: Tgtd, lun: int, parts: tuple[tuple[int, int], ...]) -> None:
    async with await Session.open(
        Portal("127.0.0.1", tgt.port), IQN, SessionOptions(timeout=10)
    ) as s:
        for offset, size in parts:
            await s.write(lun, offset // 512, pattern(offset, size), 512)


def expected_image(parts: tuple[tuple[int, int], ...], size: int = LUN_SIZE) -> bytes:
    image = bytearray(size)
    for offset, n in parts:
        image[offset : offset + n] = pattern(offset, n)
    return bytes(image)


@pytest.fixture(scope="module")
def tgt() -> Iterator[Tgtd]:
    with Tgtd.start() as t:
        t.new_target(1, IQN)
        t.add_lun(1, 1, LUN_SIZE, thin=True)
        t.add_lun(1, 2, LUN_SIZE)  # thick
        asyncio.run(_write(t, 1, WRITTEN))
        asyncio.run(_write(t, 2, WRITTEN))
        yield t


def fs_block(path: Path) -> int:
    return os.statvfs(path).f_bsize


class Pb:
    def __init__(self, run_cli: RunCli) -> None:
        self.run = run_cli

    def __call__(self, *args: str, ok: bool = True) -> str:
        rc, out, err = self.run(*args, timeout=60)
        assert "Traceback" not in err
        if ok:
            assert rc == 0, f"{args}: {err}"
            return str(out)
        assert rc != 0, f"{args} unexpectedly succeeded: {out}"
        lines = err.strip().splitlines()
        assert lines and all(line.startswith(("error: ", "warning: ")) for line in lines), err
        return str(err)


@pytest.fixture
def pb(run_cli: RunCli, tgt: Tgtd, tmp_path: Path) -> Pb:
    p = Pb(run_cli)
    xml = tmp_path / "pool.xml"
    xml.write_text(
        f"<pool type='iscsi-direct'><name>thin</name><source>"
        f"<host name='127.0.0.1' port='{tgt.port}'/><device path='{IQN}'/>"
        f"<initiator><iqn name='{INITIATOR}'/></initiator></source></pool>"
    )
    p("pool-define", str(xml))
    p("pool-start", "thin")
    return p


def test_iscsi_lbastatus_lists_the_written_extents(run_cli: RunCli, tgt: Tgtd) -> None:
    rc, out, err = run_cli("iscsi-lbastatus", tgt.url(1, 1))
    assert rc == 0, err
    lines = out.splitlines()
    mapped = [
        (int(m[1]) * 512, int(m[2]) * 512)
        for line in lines
        if (m := re.fullmatch(r"LBA:(\d+) Blocks:(\d+) mapped", line))
    ]
    assert mapped == [(o, max(n, fs_block(tgt.workdir))) for o, n in WRITTEN]
    assert all(re.fullmatch(r"LBA:\d+ Blocks:\d+ (mapped|deallocated)", x) for x in lines[:-1])
    assert lines[-1].startswith(f"Mapped:{sum(n for _, n in mapped) // 512} blocks")
    # a range inside: cut to it
    rc, out, _ = run_cli("iscsi-lbastatus", tgt.url(1, 1), "--lba", "2050", "--blocks", "20000")
    assert out.splitlines()[:3] == [
        "LBA:2050 Blocks:6 mapped",
        "LBA:2056 Blocks:18424 deallocated",
        "LBA:20480 Blocks:1570 mapped",
    ]
    # a thick LUN is not asked (tgt would call its holes deallocated)
    rc, out, err = run_cli("iscsi-lbastatus", tgt.url(1, 2))
    assert rc == 0 and out.splitlines()[0] == f"LBA:0 Blocks:{LUN_SIZE // 512} mapped"
    assert "LBPME=0" in err
    rc, out, err = run_cli("iscsi-lbastatus", tgt.url(1, 1), "--lba", str(LUN_SIZE // 512))
    assert (
        rc == 1
        and err
        == f"error: --lba {LUN_SIZE // 512} is beyond the end of LUN 1 ({LUN_SIZE // 512} blocks)\n"
    )


def test_allocation_of_a_thin_lun_everywhere(pb: Pb, tgt: Tgtd) -> None:
    unit = fs_block(tgt.workdir)  # tgt maps (and punches) whole blocks of its backing file
    written = sum(n for _, n in WRITTEN)
    info = pb("vol-info", "--bytes", "--pool", "thin", "unit:0:0:1")
    allocation = int(re.search(r"Allocation:\s+(\d+) bytes", info)[1])  # type: ignore[index]
    assert written <= allocation <= written + unit
    assert f"<allocation unit='bytes'>{allocation}</allocation>" in pb(
        "vol-dumpxml", "--pool", "thin", "unit:0:0:1"
    )
    thick = pb("vol-info", "--bytes", "--pool", "thin", "unit:0:0:2")
    assert f"Allocation:     {LUN_SIZE} bytes" in thick
    details = pb("vol-list", "--details", "thin")
    assert re.search(r"unit:0:0:1 .* 64\.00 MiB +3\.\d\d MiB", details), details
    assert re.search(r"unit:0:0:2 .* 64\.00 MiB +64\.00 MiB", details), details
    pool = pb("pool-info", "--bytes", "thin")
    assert f"Capacity:       {2 * LUN_SIZE}" in pool
    assert f"Allocation:     {LUN_SIZE + allocation}" in pool
    assert f"Available:      {LUN_SIZE - allocation}" in pool
    assert re.search(
        r"thin .* 128\.00 MiB +67\.\d\d MiB +60\.\d\d MiB", pb("pool-list", "--details")
    )


def test_vol_info_scsi_shows_provisioning_facts(pb: Pb) -> None:
    thin = pb("vol-info", "--scsi", "--pool", "thin", "unit:0:0:1")
    for line in (
        r"Thin provisioning \(LBPME\): +yes",
        r"Reads zeros unmapped \(LBPRZ\): +yes",
        r"Provisioning type: +thin",
        r"UNMAP \(LBPU\): +yes",
        r"WRITE SAME\(16\) UNMAP \(LBPWS\): +yes",
        r"WRITE SAME\(10\) UNMAP \(LBPWS10\): +yes",
        r"Max UNMAP LBA count: +unlimited",
        r"UNMAP granularity: +-",
    ):
        assert re.search(line, thin), (line, thin)
    thick = pb("vol-info", "--scsi", "--pool", "thin", "unit:0:0:2")
    assert re.search(r"Thin provisioning \(LBPME\): +no", thick)
    assert re.search(r"Provisioning type: +full", thick)
    assert re.search(r"UNMAP \(LBPU\): +no", thick)
