"""Every command against a target that reports impossible values (the scripted fake target).

tgt cannot be made to answer with a block length of 3 or an INQUIRY of 5 bytes, so these run
against :class:`~tests.harness.faketarget.FakeTarget` in ``scsi`` mode: LUNs 0, 1 and 2 are
64 KiB disks with real (in-memory) data, and LUN 1 (or the REPORT LUNS answer) gets one of
the hostile values of ``HOSTILE_LUN`` / ``HOSTILE_REPORT_LUNS``. Every cell checks, on the
real CLI in a subprocess:

* either correct output with LUN 1 left out and one ``warning: LUN 1 left out: …`` line, or
  exactly one ``error: …`` line and exit status 1;
* never a traceback or a MemoryError;
* the other LUNs unaffected: still listed, and LUN 2 still reads, writes and wipes right;
* a refused transfer wrote nothing to the hostile LUN.

The transfer commands find LUN 1 in the pool (started while it was healthy) and the hostile
value appears afterwards, as when a LUN shrinks to nothing while its pool is active; the
scan commands see it at once. The real tgt case (an empty backing file) is in
``test_large_pools.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import RunCli
from tests.harness.faketarget import (
    HOSTILE_LUN,
    HOSTILE_REPORT_LUNS,
    INQUIRY_HOSTILE,
    FakeLun,
    FakeTarget,
)

POOL = "hostile"
IQN = "iqn.2026-12.example:hostile"
INITIATOR = "iqn.2026-11.example:initiator1"
BLOCKS = 128  # 64 KiB LUNs of 512-byte blocks
SIZE = BLOCKS * 512


def _pattern(lun: int) -> bytes:
    return bytes((lun * 37 + i) % 251 + 1 for i in range(SIZE))


def _no_crash(err: str) -> None:
    assert "Traceback" not in err and "MemoryError" not in err, err


def _one_error(rc: int, err: str) -> str:
    _no_crash(err)
    assert rc == 1, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def _one_warning_for_lun1(err: str) -> None:
    _no_crash(err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: LUN 1 left out: "), err


@dataclass
class Scene:
    fake: FakeTarget
    run: RunCli
    tmp: Path

    def url(self, lun: int | None = None) -> str:
        base = f"iscsi://{self.fake.portal}/{IQN}"
        return base if lun is None else f"{base}/{lun}"

    def define_and_start(self) -> tuple[int, str, str]:
        path = self.tmp / "pool.xml"
        path.write_text(
            f"""<pool type='iscsi-direct'>
  <name>{POOL}</name>
  <source>
    <host name='{self.fake.host}' port='{self.fake.port}'/>
    <device path='{IQN}'/>
    <initiator><iqn name='{INITIATOR}'/></initiator>
  </source>
  <pb:iscsi xmlns:pb='https://poolbackend.dev/xmlns/pool/1'><pb:timeout seconds='5'/></pb:iscsi>
</pool>
"""
        )
        rc, _, err = self.run("pool-define", str(path))
        assert rc == 0, err
        return self.run("pool-start", POOL)

    def volumes(self) -> list[str]:
        rc, out, err = self.run("vol-list", POOL)
        assert rc == 0 and err == "", err
        return [line.split()[0] for line in out.splitlines()[2:] if line.strip()]

    def data(self, lun: int) -> bytes:
        return bytes(self.fake.luns[lun].data)

    def other_luns_work(self) -> None:
        """LUN 2 still reads, writes and wipes correctly."""
        out = self.tmp / "lun2.raw"
        rc, _, err = self.run("vol-download", "--pool", POOL, "unit:0:0:2", str(out))
        assert rc == 0, err
        assert out.read_bytes() == self.data(2)
        src = self.tmp / "up.raw"
        src.write_bytes(_pattern(9))
        rc, _, err = self.run("vol-upload", "--pool", POOL, "unit:0:0:2", str(src))
        assert rc == 0, err
        assert self.data(2) == _pattern(9)
        rc, _, err = self.run("vol-wipe", "--pool", POOL, "unit:0:0:2")
        assert rc == 0, err
        assert self.data(2) == bytes(SIZE)


@pytest.fixture
def scene(run_cli: RunCli, tmp_path: Path) -> Iterator[Scene]:
    luns = {lun: FakeLun(blocks=BLOCKS, data=bytearray(_pattern(lun))) for lun in (0, 1, 2)}
    with FakeTarget("luns", luns=luns, iqn=IQN, lifetime=240) as fake:
        yield Scene(fake, run_cli, tmp_path)
        assert fake.errors == []


# ----------------------------------------------------------------- one hostile LUN

Check = Callable[[Scene, str], None]


def _pool_start(s: Scene, hostile: str) -> None:
    HOSTILE_LUN[hostile](s.fake.luns[1])
    rc, out, err = s.define_and_start()
    assert rc == 0, err
    _one_warning_for_lun1(err)
    assert out == f"Pool {POOL} started\n\n"
    assert s.volumes() == ["unit:0:0:0", "unit:0:0:2"]


def _pool_refresh(s: Scene, hostile: str) -> None:
    assert s.define_and_start()[0] == 0
    assert s.volumes() == ["unit:0:0:0", "unit:0:0:1", "unit:0:0:2"]
    HOSTILE_LUN[hostile](s.fake.luns[1])
    rc, _, err = s.run("pool-refresh", POOL)
    assert rc == 0, err
    _one_warning_for_lun1(err)
    assert s.volumes() == ["unit:0:0:0", "unit:0:0:2"]
    s.other_luns_work()


def _vol_list(s: Scene, hostile: str) -> None:
    HOSTILE_LUN[hostile](s.fake.luns[1])
    assert s.define_and_start()[0] == 0
    rc, out, err = s.run("vol-list", POOL, "--details")
    assert rc == 0 and err == "", err
    assert "unit:0:0:0" in out and "unit:0:0:2" in out and "unit:0:0:1" not in out
    assert "64.00 KiB" in out


def _vol_info(s: Scene, hostile: str) -> None:
    HOSTILE_LUN[hostile](s.fake.luns[1])
    assert s.define_and_start()[0] == 0
    rc, _, err = s.run("vol-info", "--pool", POOL, "unit:0:0:1")
    _no_crash(err)  # virsh's two lines for an unknown volume
    assert rc == 1 and err.splitlines() == [
        "error: failed to get vol 'unit:0:0:1'",
        "error: Storage volume not found: no storage vol with matching path 'unit:0:0:1'",
    ], err
    rc, out, err = s.run("vol-info", "--pool", POOL, "unit:0:0:2")
    assert rc == 0 and err == "" and "64.00 KiB" in out, (out, err)


def _started_then_hostile(s: Scene, hostile: str) -> None:
    assert s.define_and_start()[0] == 0
    assert s.volumes() == ["unit:0:0:0", "unit:0:0:1", "unit:0:0:2"]
    HOSTILE_LUN[hostile](s.fake.luns[1])


def _vol_download(s: Scene, hostile: str) -> None:
    _started_then_hostile(s, hostile)
    out = s.tmp / "lun1.raw"
    rc, _, err = s.run("vol-download", "--pool", POOL, "unit:0:0:1", str(out))
    _one_error(rc, err)
    assert not out.exists() or out.stat().st_size == 0
    s.other_luns_work()


def _vol_upload(s: Scene, hostile: str) -> None:
    _started_then_hostile(s, hostile)
    src = s.tmp / "up1.raw"
    src.write_bytes(bytes(SIZE))
    rc, _, err = s.run("vol-upload", "--pool", POOL, "unit:0:0:1", str(src))
    _one_error(rc, err)
    assert s.data(1) == _pattern(1)  # nothing written
    assert not any(cdb[0] == 0x8A for cdb in s.fake.commands)
    s.other_luns_work()


def _vol_wipe(s: Scene, hostile: str) -> None:
    _started_then_hostile(s, hostile)
    rc, _, err = s.run("vol-wipe", "--pool", POOL, "unit:0:0:1")
    _one_error(rc, err)
    assert s.data(1) == _pattern(1)
    assert not any(cdb[0] in (0x8A, 0x93) for cdb in s.fake.commands)
    s.other_luns_work()


def _iscsi_ls(s: Scene, hostile: str) -> None:
    HOSTILE_LUN[hostile](s.fake.luns[1])
    rc, out, err = s.run("iscsi-ls", "-s", s.url())
    assert rc == 0, err
    _one_warning_for_lun1(err)
    luns = [line.split()[0] for line in out.splitlines() if line.startswith("Lun:")]
    assert luns == ["Lun:0", "Lun:2"], out
    assert "Size:64k" in out


def _iscsi_inq(s: Scene, hostile: str) -> None:
    HOSTILE_LUN[hostile](s.fake.luns[1])
    rc, out, err = s.run("iscsi-inq", s.url(1))
    if hostile in INQUIRY_HOSTILE:
        assert "INQUIRY" in _one_error(rc, err)
    else:
        assert rc == 0 and err == "" and "Vendor:FAKE" in out, err
    rc, out, err = s.run("iscsi-inq", s.url(2))
    assert rc == 0 and err == "" and "Vendor:FAKE" in out, err


def _iscsi_readcapacity(s: Scene, hostile: str) -> None:
    HOSTILE_LUN[hostile](s.fake.luns[1])
    rc, out, err = s.run("iscsi-readcapacity", s.url(1))
    if hostile in INQUIRY_HOSTILE:  # the tool checks the LUN's INQUIRY first
        assert "INQUIRY" in _one_error(rc, err)
    else:
        assert "READ CAPACITY" in _one_error(rc, err)
    rc, out, err = s.run("iscsi-readcapacity", "-s", s.url(2))
    assert (rc, out, err) == (0, f"{SIZE}\n", "")


def _find_sources(s: Scene, hostile: str) -> None:
    HOSTILE_LUN[hostile](s.fake.luns[1])
    rc, out, err = s.run(
        "find-storage-pool-sources-as",
        "iscsi-direct",
        s.fake.host,
        str(s.fake.port),
        "--initiator",
        INITIATOR,
    )
    assert rc == 0 and err == "", err
    assert f"<device path='{IQN}'/>" in out


COMMANDS: dict[str, Check] = {
    "pool-start": _pool_start,
    "pool-refresh": _pool_refresh,
    "vol-list": _vol_list,
    "vol-info": _vol_info,
    "vol-download": _vol_download,
    "vol-upload": _vol_upload,
    "vol-wipe": _vol_wipe,
    "iscsi-ls": _iscsi_ls,
    "iscsi-inq": _iscsi_inq,
    "iscsi-readcapacity": _iscsi_readcapacity,
    "find-storage-pool-sources-as": _find_sources,
}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("hostile", list(HOSTILE_LUN))
def test_hostile_lun(scene: Scene, hostile: str, command: str) -> None:
    COMMANDS[command](scene, hostile)


# ----------------------------------------------------------- hostile REPORT LUNS

# What each hostile REPORT LUNS answer must give: an error, or the LUNs listed.
REPORT_EXPECTED: dict[str, list[int] | None] = {
    "cut mid-entry": None,
    "length larger": None,  # re-asked with the larger allocation, then cut off
    "length smaller": [0, 1],  # the length field is authoritative
    "length 4 GiB": None,
    "length not a multiple of 8": None,
    "duplicated LUNs": [0, 1, 2],
}
assert set(REPORT_EXPECTED) == set(HOSTILE_REPORT_LUNS)


def _report_warnings(hostile: str) -> list[str]:
    """A LUN listed twice: the second entry is left out, named by its 8 bytes."""
    if hostile != "duplicated LUNs":
        return []
    return [
        f"warning: LUN 000{n}000000000000 left out: LUN {n} is reported twice "
        f"(also as 000{n}000000000000)"
        for n in (0, 1, 2)
    ]


def _report_pool_start(s: Scene, hostile: str) -> None:
    s.fake.report_luns = HOSTILE_REPORT_LUNS[hostile]
    rc, _, err = s.define_and_start()
    expected = REPORT_EXPECTED[hostile]
    if expected is None:
        assert "REPORT LUNS" in _one_error(rc, err)
        rc, _, err = s.run("vol-list", POOL)
        assert "is not active" in _one_error(rc, err)
        return
    assert rc == 0, err
    _no_crash(err)
    assert err.splitlines() == _report_warnings(hostile)
    assert s.volumes() == [f"unit:0:0:{n}" for n in expected]


def _report_pool_refresh(s: Scene, hostile: str) -> None:
    assert s.define_and_start()[0] == 0
    s.fake.report_luns = HOSTILE_REPORT_LUNS[hostile]
    rc, _, err = s.run("pool-refresh", POOL)
    expected = REPORT_EXPECTED[hostile]
    if expected is None:
        assert "REPORT LUNS" in _one_error(rc, err)
        return
    assert rc == 0, err
    assert s.volumes() == [f"unit:0:0:{n}" for n in expected]
    if 2 in expected:
        s.other_luns_work()


def _report_iscsi_ls(s: Scene, hostile: str) -> None:
    s.fake.report_luns = HOSTILE_REPORT_LUNS[hostile]
    rc, out, err = s.run("iscsi-ls", "-s", s.url())
    expected = REPORT_EXPECTED[hostile]
    if expected is None:
        assert "REPORT LUNS" in _one_error(rc, err)
        return
    assert rc == 0, err
    assert err.splitlines() == _report_warnings(hostile)
    luns = [line.split()[0] for line in out.splitlines() if line.startswith("Lun:")]
    assert luns == [f"Lun:{n}" for n in expected]


def _report_transfers(s: Scene, hostile: str) -> None:
    """Transfers do not ask REPORT LUNS: they work whatever it says."""
    assert s.define_and_start()[0] == 0
    s.fake.report_luns = HOSTILE_REPORT_LUNS[hostile]
    s.other_luns_work()


REPORT_COMMANDS: dict[str, Check] = {
    "pool-start": _report_pool_start,
    "pool-refresh": _report_pool_refresh,
    "iscsi-ls": _report_iscsi_ls,
    "vol-download/upload/wipe": _report_transfers,
}


@pytest.mark.parametrize("command", list(REPORT_COMMANDS))
@pytest.mark.parametrize("hostile", list(HOSTILE_REPORT_LUNS))
def test_hostile_report_luns(scene: Scene, hostile: str, command: str) -> None:
    REPORT_COMMANDS[command](scene, hostile)
