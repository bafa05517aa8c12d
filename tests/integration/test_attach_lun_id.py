"""A VM given volume N must read and write LUN N, whatever N is (issue 10, LUN ids above 255).

QEMU's iSCSI driver (libiscsi) copies the number in ``<source name='IQN/N'>`` raw into the
first two bytes of the LUN field; tgt reports LUNs above 255 in flat space addressing and reads
``01 2c`` as LUN 44. So ``IQN/300`` is tgt's LUN 44 and ``IQN/1234`` (``04 d2``) its LUN 210.
Here every LUN holds its own byte pattern, the volumes are attached to a paused QEMU domain
with our attach-volume, and the data is read back and written through QEMU itself
(``qemu-io`` over HMP); the write is then checked in the right tgt backing file.

LUN 16684 is created too: tgt reports it as ``41 2c``, the same entry as LUN 300 (its REPORT
LUNS masks the number to 14 bits), so the refresh leaves the second entry out with one line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import RunCli
from tests.harness.libvirtd import iscsi_direct_pool_xml
from tests.harness.tgtd import MiB, Tgtd
from tests.harness.vmhost import VmHost

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

IQN = "iqn.2026-11.example:lunid"
INITIATOR = "iqn.2026-11.example:lunid-initiator"
DOMAIN = "pblunid"
TID = 1
POOL = "lunid"
#: LUN -> fill byte. 44 and 210 are where QEMU lands when given 300 / 1234 raw.
PATTERN = {44: 0x2C, 210: 0xD2, 300: 0xA3, 1234: 0xB4, 16684: 0xC5}
#: what tgt reports for each LUN, first two bytes as a number (QEMU's LUN)
QEMU_LUN = {44: 44, 210: 210, 300: 0x412C, 1234: 0x44D2}
SIZE = 1 * MiB


@dataclass
class Lab:
    tgt: Tgtd
    vm: VmHost

    def hmp(self, command: str) -> str:
        r = self.vm.virsh("qemu-monitor-command", "--hmp", DOMAIN, command, check=True)
        return r.stdout

    def qemu_io(self, dev: str, command: str) -> str:
        """Run a qemu-io command on the block backend of disk *dev*, inside QEMU.

        QEMU 7.2 prints qemu-io's output on its stdout, i.e. into the domain log, not into
        the monitor reply: return what the log gained, once the command's summary line
        (``read N/N bytes at offset X`` / ``wrote ...``) is there.
        """
        qdev = self.vm.block_sources(DOMAIN)[dev].qdev
        mark = len(self.vm.qemu_log(DOMAIN))
        reply = self.hmp(f'qemu-io -d {qdev} "{command}"')
        assert reply.strip() == "", reply
        verb = {"read": "read", "write": "wrote"}[command.split()[0]]
        done = re.compile(rf"^{verb} (\d+)/(\d+) bytes at offset \d+$|failed", re.M)
        self.vm.wait_for(
            lambda: done.search(self.vm.qemu_log(DOMAIN)[mark:]) is not None,
            f"qemu-io {command!r} in the log of {DOMAIN}",
            timeout=20,
        )
        out = self.vm.qemu_log(DOMAIN)[mark:]
        m = done.search(out)
        assert m is not None and m.group(1) == m.group(2), out
        return out

    def read_bytes(self, dev: str, offset: int, length: int) -> bytes:
        """Bytes QEMU reads from disk *dev* (parsed from ``read -v``'s hex dump)."""
        out = self.qemu_io(dev, f"read -v {offset} {length}")
        data = bytearray()
        for line in out.splitlines():
            m = re.match(r"^[0-9a-f]{8}:\s+((?:[0-9a-f]{2} ){1,16})", line)
            if m:
                data += bytes.fromhex(m.group(1))
        assert len(data) == length, out
        return bytes(data)


@pytest.fixture(scope="module")
def lab(vmhost: VmHost) -> Iterator[Lab]:
    with Tgtd.start() as tgt:
        tgt.new_target(TID, IQN)
        for lun, fill in PATTERN.items():
            tgt.add_lun(TID, lun, SIZE, fill=bytes([fill]))
        vmhost.define_paused_domain(DOMAIN)
        yield Lab(tgt, vmhost)


@pytest.fixture(autouse=True)
def clean_domain(lab: Lab) -> Iterator[None]:
    yield
    for dev in lab.vm.disk_targets(DOMAIN):
        lab.vm.virsh("detach-disk", DOMAIN, dev, "--live", timeout=30)
    assert lab.vm.disk_targets(DOMAIN) == []
    lab.tgt.wait_sessions(TID, 0, timeout=10)


def _ok(result: tuple[int, str, str]) -> tuple[str, str]:
    rc, out, err = result
    assert rc == 0, f"exit {rc}\nstdout: {out}\nstderr: {err}"
    assert "Traceback" not in err, err
    return out, err


def _start_pool(run_cli: RunCli, tmp_path: Path, lab: Lab) -> str:
    xml = iscsi_direct_pool_xml(
        POOL, host=lab.tgt.host, port=lab.tgt.port, target=IQN, initiator=INITIATOR
    )
    (tmp_path / "pool.xml").write_text(xml)
    _ok(run_cli("pool-define", str(tmp_path / "pool.xml")))
    return _ok(run_cli("pool-start", POOL))[1]


def _attach(run_cli: RunCli, lab: Lab, lun: int, dev: str) -> None:
    out, _ = _ok(
        run_cli(
            "attach-volume", DOMAIN, f"unit:0:0:{lun}", "--pool", POOL, "--connect", lab.vm.uri,
            "--target", dev, "--bus", "scsi",
        )
    )  # fmt: skip
    assert "Disk attached successfully" in out, out


def test_refresh_shows_qemu_numbers_and_leaves_out_the_duplicate(
    run_cli: RunCli, tmp_path: Path, lab: Lab
) -> None:
    warnings = _start_pool(run_cli, tmp_path, lab)
    assert warnings.splitlines() == [
        "warning: LUN 412c000000000000 left out: LUN 300 is reported twice "
        "(also as 412c000000000000)"
    ], warnings
    listed, _ = _ok(run_cli("vol-list", POOL))
    names = sorted(re.findall(r"unit:0:0:\d+", listed))
    assert names == sorted(f"unit:0:0:{n}" for n in (0, 44, 210, 300, 1234)), listed
    for lun, qemu in QEMU_LUN.items():
        info, _ = _ok(run_cli("vol-info", "--scsi", "--pool", POOL, f"unit:0:0:{lun}"))
        assert re.search(rf"^LUN:\s+{lun}$", info, re.M), info
        assert re.search(rf"^QEMU LUN:\s+{qemu}$", info, re.M), info
        xml, _ = _ok(
            run_cli(
                "attach-volume", DOMAIN, f"unit:0:0:{lun}", "--pool", POOL, "--print-xml",
                "--connect", lab.vm.uri,
            )
        )  # fmt: skip
        assert f'name="{IQN}/{qemu}"' in xml, xml


@pytest.mark.parametrize(("lun", "other"), [(300, 44), (1234, 210)])
def test_vm_reads_and_writes_the_lun_it_was_given(
    run_cli: RunCli, tmp_path: Path, lab: Lab, lun: int, other: int
) -> None:
    """QEMU given volume *lun* sees *lun*'s bytes, not those of *other* (where the LUN
    number sent raw lands on tgt), and its writes land in *lun*'s backing file."""
    _start_pool(run_cli, tmp_path, lab)
    _attach(run_cli, lab, lun, "sda")
    got = lab.read_bytes("sda", 0, 512)
    assert got != bytes([PATTERN[other]]) * 512, f"QEMU reads LUN {other}'s data for {lun}"
    assert got == bytes([PATTERN[lun]]) * 512, got[:16].hex()
    assert lab.vm.disk_capacity(DOMAIN, "sda") == SIZE

    lab.qemu_io("sda", "write -P 0xe7 4096 4096")
    assert lab.read_bytes("sda", 4096, 512) == b"\xe7" * 512
    for n, fill in PATTERN.items():
        data = lab.tgt.backing_path(TID, n).read_bytes()
        want = bytes([fill]) * SIZE
        if n == lun:
            want = want[:4096] + b"\xe7" * 4096 + want[8192:]
        assert data == want, f"backing file of LUN {n} after writing volume {lun}"
    # put the pattern back for the next case
    lab.qemu_io("sda", f"write -P {PATTERN[lun]:#x} 4096 4096")

    out, _ = _ok(
        run_cli("detach-volume", DOMAIN, f"unit:0:0:{lun}", "--pool", POOL, "--connect", lab.vm.uri)
    )
    assert "Disk detached successfully" in out, out


def test_disk_of_an_older_version_is_named_not_detached(
    run_cli: RunCli, tmp_path: Path, lab: Lab
) -> None:
    """A disk written as ``IQN/300`` (as before the fix) reaches tgt's LUN 44: detaching
    volume 300 must not take it for that volume, and says which disk it is."""
    _start_pool(run_cli, tmp_path, lab)
    xml, _ = _ok(
        run_cli(
            "attach-volume", DOMAIN, "unit:0:0:300", "--pool", POOL, "--print-xml",
            "--target", "sdb", "--bus", "scsi", "--connect", lab.vm.uri,
        )
    )  # fmt: skip
    old = xml.replace(f"{IQN}/16684", f"{IQN}/300")
    assert old != xml
    (tmp_path / "old.xml").write_text(old)
    lab.vm.virsh("attach-device", DOMAIN, str(tmp_path / "old.xml"), "--live", check=True)
    assert lab.read_bytes("sdb", 0, 512) == bytes([PATTERN[44]]) * 512  # the old defect

    rc, _, err = run_cli(
        "detach-volume", DOMAIN, "unit:0:0:300", "--pool", POOL, "--connect", lab.vm.uri
    )
    assert rc == 1 and "Traceback" not in err, err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert "'sdb' names QEMU LUN 300" in err and f"virsh detach-disk {DOMAIN} sdb" in err, err
    assert lab.vm.disk_targets(DOMAIN) == ["sdb"]  # left in place


def test_iscsi_ls_lists_each_lun_once_with_its_size(run_cli: RunCli, lab: Lab) -> None:
    rc, out, err = run_cli("iscsi-ls", "-s", f"iscsi://{lab.tgt.portal}")
    assert rc == 0 and "Traceback" not in err, err
    assert re.findall(r"^Lun:(\d+)\s+Type:DIRECT_ACCESS \(Size:1M\)$", out, re.M) == [
        str(n) for n in (44, 210, 300, 1234)
    ], out
    assert err.splitlines() == [
        "warning: LUN 412c000000000000 left out: LUN 300 is reported twice "
        "(also as 412c000000000000)"
    ], err
