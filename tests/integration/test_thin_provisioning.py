"""Thin provisioning on real tgtd (thin_provisioning=1, backing files with holes in tmp):
GET LBA STATUS through iscsi-lbastatus, allocation figures, provisioning facts, sparse
transfers; a thick LUN beside for the LBPME=0 rules."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
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
        t.add_lun(1, 3, LUN_SIZE, thin=True, fill=b"old data")  # for uploads over old data
        t.add_lun(1, 4, LUN_SIZE, fill=b"old data")
        yield t


def fs_block(path: Path) -> int:
    return os.statvfs(path).f_bsize


class Pb:
    def __init__(self, run_cli: RunCli, state_dir: Path) -> None:
        self.run = run_cli
        root = str(Path(__file__).resolve().parents[2])
        self.env = dict(os.environ, POOLBACKEND_STATE_DIR=str(state_dir), PYTHONPATH=root)

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
def pb(run_cli: RunCli, state_dir: Path, tgt: Tgtd, tmp_path: Path) -> Pb:
    p = Pb(run_cli, state_dir)
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
    allocations = []
    for lun in (1, 2, 3, 4):
        text = pb("vol-info", "--bytes", "--pool", "thin", f"unit:0:0:{lun}")
        allocations.append(int(re.search(r"Allocation:\s+(\d+) bytes", text)[1]))  # type: ignore[index]
    assert allocations[:2] == [allocation, LUN_SIZE]
    pool = pb("pool-info", "--bytes", "thin")
    assert f"Capacity:       {4 * LUN_SIZE}\n" in pool
    assert f"Allocation:     {sum(allocations)}\n" in pool
    assert f"Available:      {4 * LUN_SIZE - sum(allocations)}\n" in pool
    listed = pb("pool-list", "--details")
    assert re.search(r"thin .* 256\.00 MiB +\d+\.\d\d MiB +\d+\.\d\d MiB", listed), listed


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


def allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


def test_sparse_download_reads_only_mapped_extents_and_keeps_holes(
    pb: Pb, tgt: Tgtd, tmp_path: Path
) -> None:
    want = expected_image(WRITTEN)
    assert tgt.backing_path(1, 1).read_bytes() == want
    out = tmp_path / "thin.raw"
    pb("vol-download", "--pool", "thin", "unit:0:0:1", str(out), "--sparse")
    assert out.read_bytes() == want
    written = sum(n for _, n in WRITTEN)
    assert allocated(out) <= written + 2 * fs_block(out)  # the holes are kept
    # a pipe gets the zeros, byte for byte the same image
    piped = tmp_path / "piped.raw"
    with open(piped, "wb") as f:
        rc = subprocess.run(
            [sys.executable, "-m", "poolbackend", "vol-download", "--pool", "thin", "unit:0:0:1",
             "-", "--sparse"],
            stdout=f, env=pb.env, timeout=60,
        ).returncode  # fmt: skip
    assert rc == 0 and piped.read_bytes() == want
    # a range that starts and ends inside extents
    part = tmp_path / "part.raw"
    offset, length = 10 * MiB - 1000, 3 * MiB + 5000
    pb("vol-download", "--pool", "thin", "unit:0:0:1", str(part), "--sparse",
       "--offset", str(offset), "--length", str(length))  # fmt: skip
    assert part.read_bytes() == want[offset : offset + length]


def test_non_thin_lun_sparse_download_is_a_full_read(pb: Pb, tgt: Tgtd, tmp_path: Path) -> None:
    want = expected_image(WRITTEN)
    for sparse in ((), ("--sparse",)):
        out = tmp_path / f"thick{len(sparse)}.raw"
        pb("vol-download", "--pool", "thin", "unit:0:0:2", str(out), *sparse)
        assert out.read_bytes() == want
    plain = tmp_path / "plain.raw"  # without --sparse a thin LUN is read in full, no holes
    pb("vol-download", "--pool", "thin", "unit:0:0:1", str(plain))
    assert plain.read_bytes() == want and allocated(plain) >= LUN_SIZE


def sparse_source(path: Path) -> bytes:
    """A 64 MiB file: holes, data, a run of written zeros, data at the very end."""
    parts = {1 * MiB: os.urandom(4096), 9 * MiB: os.urandom(2 * MiB + 512)}
    with open(path, "wb") as f:
        f.truncate(LUN_SIZE)
        for at, data in parts.items():
            f.seek(at)
            f.write(data)
        f.seek(20 * MiB)
        f.write(bytes(3 * MiB))  # allocated zeros: found while reading
        f.seek(LUN_SIZE - 1000)
        f.write(b"end" * 333 + b"!")
    return path.read_bytes()


@pytest.mark.parametrize("lun", [3, 4], ids=["thin", "thick"])
def test_sparse_upload_over_old_data(pb: Pb, tgt: Tgtd, tmp_path: Path, lun: int) -> None:
    src = tmp_path / "src.raw"
    want = sparse_source(src)
    backing = tgt.backing_path(1, lun)
    assert b"old data" in backing.read_bytes()[: 2 * MiB]
    pb("vol-upload", "--sparse", "--pool", "thin", f"unit:0:0:{lun}", str(src))
    assert backing.read_bytes() == want
    if lun == 3:  # the holes and zeros were deallocated: the file holds about the data
        data = 4096 + 2 * MiB + 512 + 1000
        assert allocated(backing) <= data + 4 * fs_block(backing)
        out = tmp_path / "back.raw"
        pb("vol-download", "--sparse", "--pool", "thin", f"unit:0:0:{lun}", str(out))
        assert out.read_bytes() == want
    else:  # a thick LUN gets the zeros written
        assert allocated(backing) >= LUN_SIZE - fs_block(backing)


def test_sparse_upload_from_a_pipe(pb: Pb, tgt: Tgtd, tmp_path: Path) -> None:
    src = tmp_path / "src.raw"
    want = sparse_source(src)
    with open(tgt.backing_path(1, 3), "r+b") as f:
        f.write(b"old data" * (4 * MiB // 8))
    with open(src, "rb") as f:
        rc = subprocess.run(
            [sys.executable, "-m", "poolbackend", "vol-upload", "--sparse", "--pool", "thin",
             "unit:0:0:3", "-"],
            stdin=f, env=pb.env, timeout=60,
        ).returncode  # fmt: skip
    assert rc == 0 and tgt.backing_path(1, 3).read_bytes() == want
