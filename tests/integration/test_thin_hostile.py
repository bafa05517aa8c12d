"""GET LBA STATUS answers a real target never gives, from the scripted fake target: cut off,
out of order, overlapping, beyond the LUN, zero-length, a reserved status, a first extent
that misses the start. Each must end in one clean line or a full read, never wrong data:

* ``iscsi-lbastatus``: exactly one ``error:`` line, exit 1;
* ``pool-start``: the LUN is kept, its allocation is its capacity, one ``warning:`` line;
* ``vol-download --sparse``: one ``warning:`` line, then a full read with the right bytes.

The honest answer proves the opposite: only the mapped extents are read (the READ commands
the fake target received cover exactly them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from poolbackend.scsi.lbastatus import build_lba_status_data
from tests.conftest import RunCli
from tests.harness.faketarget import FakeLun, FakeTarget

IQN = "iqn.2026-12.example:thinfake"
INITIATOR = "iqn.2026-11.example:initiator1"
BLOCKS = 4096  # 2 MiB LUN
MAPPED = ((0, 16), (1000, 600), (4000, 96))  # (lba, blocks) holding data


def honest(lba: int, alloc: int) -> bytes:
    extents: list[tuple[int, int, int]] = []
    pos = 0
    for start, n in MAPPED:
        if start > pos:
            extents.append((pos, start - pos, 1))
        extents.append((start, n, 0))
        pos = start + n
    if pos < BLOCKS:
        extents.append((pos, BLOCKS - pos, 1))
    cut = [(max(a, lba), a + n - max(a, lba), st) for a, n, st in extents if a + n > lba]
    return build_lba_status_data(cut)


def _data() -> bytearray:
    data = bytearray(BLOCKS * 512)
    for start, n in MAPPED:
        for b in range(start, start + n):
            data[b * 512 : (b + 1) * 512] = (b % 250 + 1).to_bytes(1, "big") * 512
    return data


HOSTILE: dict[str, Callable[[int, int], bytes]] = {
    "cut off": lambda lba, alloc: honest(lba, alloc)[:-10],
    "out of order": lambda lba, alloc: build_lba_status_data(
        [(lba, 10, 1), (lba + 500, 10, 1), (lba + 10, 10, 0)]
    ),
    "overlapping": lambda lba, alloc: build_lba_status_data([(lba, 100, 1), (lba + 50, 100, 0)]),
    "beyond the LUN": lambda lba, alloc: build_lba_status_data([(lba, BLOCKS * 2, 1)]),
    "zero-length": lambda lba, alloc: build_lba_status_data([(lba, 0, 1)]),
    "reserved status": lambda lba, alloc: build_lba_status_data([(lba, BLOCKS - lba, 9)]),
    "misses the start": lambda lba, alloc: build_lba_status_data([(lba + 1, 10, 1)]),
    "no descriptors": lambda lba, alloc: bytes.fromhex("00000004") + bytes(4),
}


@pytest.fixture
def fake() -> Iterator[FakeTarget]:
    lun = FakeLun(blocks=BLOCKS, lbpme=True, lbprz=True, data=_data(), lba_status=honest)
    with FakeTarget("luns", luns={1: lun}, iqn=IQN) as target:
        yield target


def _pool(run: RunCli, fake: FakeTarget, tmp: Path) -> None:
    path = tmp / "pool.xml"
    path.write_text(
        f"<pool type='iscsi-direct'><name>fk</name><source>"
        f"<host name='{fake.host}' port='{fake.port}'/><device path='{IQN}'/>"
        f"<initiator><iqn name='{INITIATOR}'/></initiator></source>"
        "<pb:iscsi xmlns:pb='https://poolbackend.dev/xmlns/pool/1'><pb:timeout seconds='5'/>"
        "</pb:iscsi></pool>"
    )
    rc, _, err = run("pool-define", str(path))
    assert rc == 0, err


def _reads(fake: FakeTarget) -> set[int]:
    blocks: set[int] = set()
    for cdb in fake.commands:
        if cdb[0] == 0x88:
            lba = int.from_bytes(cdb[2:10], "big")
            blocks.update(range(lba, lba + int.from_bytes(cdb[10:14], "big")))
    return blocks


def _start_and_download_sparse(run_cli: RunCli, fake: FakeTarget, tmp_path: Path) -> None:
    """pool-start shows the mapped bytes as LUN 1's allocation, and a sparse download
    copies it exactly while reading only the mapped blocks."""
    _pool(run_cli, fake, tmp_path)
    rc, _, err = run_cli("pool-start", "fk")
    assert rc == 0 and err == "", err
    rc, out, _ = run_cli("vol-info", "--bytes", "--pool", "fk", "unit:0:0:1")
    assert f"Allocation:     {sum(n for _, n in MAPPED) * 512} bytes" in out
    fake.commands.clear()
    out_file = tmp_path / "d.raw"
    rc, _, err = run_cli("vol-download", "--sparse", "--pool", "fk", "unit:0:0:1", str(out_file))
    assert rc == 0 and err == "", err
    assert out_file.read_bytes() == bytes(fake.luns[1].data)
    assert _reads(fake) == {b for a, n in MAPPED for b in range(a, a + n)}


def test_honest_answers_read_only_the_mapped_extents(
    run_cli: RunCli, fake: FakeTarget, tmp_path: Path
) -> None:
    _start_and_download_sparse(run_cli, fake, tmp_path)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_lba_status(name: str, run_cli: RunCli, fake: FakeTarget, tmp_path: Path) -> None:
    fake.luns[1].lba_status = HOSTILE[name]
    rc, out, err = run_cli("iscsi-lbastatus", f"iscsi://{fake.portal}/{IQN}/1")
    assert rc == 1 and "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "GET LBA STATUS" in lines[0]
    _pool(run_cli, fake, tmp_path)
    rc, _, err = run_cli("pool-start", "fk")
    assert rc == 0 and err.startswith("warning: LUN 1: allocation shown as the capacity: "), err
    assert len(err.splitlines()) == 1
    rc, out, _ = run_cli("vol-info", "--bytes", "--pool", "fk", "unit:0:0:1")
    assert f"Allocation:     {BLOCKS * 512} bytes" in out
    out_file = tmp_path / "d.raw"
    rc, _, err = run_cli("vol-download", "--sparse", "--pool", "fk", "unit:0:0:1", str(out_file))
    assert rc == 0 and err.startswith("warning: ") and len(err.splitlines()) == 1, err
    assert out_file.read_bytes() == bytes(fake.luns[1].data)


def test_short_answers_are_walked_in_segments(
    run_cli: RunCli, fake: FakeTarget, tmp_path: Path
) -> None:
    """A target that describes at most two extents per answer (legal) makes the walk go on
    from where each answer ended, in concurrent segments whose borders cut extents: the map
    must still be exact."""

    def two(lba: int, alloc: int) -> bytes:
        data = honest(lba, alloc)
        return (36).to_bytes(4, "big") + data[4 : 8 + 32]

    fake.luns[1].lba_status = two
    rc, out, err = run_cli("iscsi-lbastatus", f"iscsi://{fake.portal}/{IQN}/1")
    assert rc == 0, err
    mapped = [line for line in out.splitlines() if line.endswith(" mapped")]
    assert mapped == [f"LBA:{a} Blocks:{n} mapped" for a, n in MAPPED]
    asked = [c for c in fake.commands if c[0] == 0x9E and c[1] & 0x1F == 0x12]
    assert len(asked) > 3  # several answers, from several segments
    _start_and_download_sparse(run_cli, fake, tmp_path)
