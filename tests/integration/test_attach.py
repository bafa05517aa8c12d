"""attach-volume / detach-volume against a real QEMU domain run by a private libvirtd.

One private tgtd (a plain target and a CHAP target) and one paused, OS-less TCG domain are
shared by the whole module (:func:`vmhost` fixture); after every test every disk is
detached again (live and persistent) and every libvirt secret removed, so tests stay
independent. "QEMU opened the LUN" is checked three ways: ``virsh domblkinfo`` capacity
equals our ``vol-info --bytes`` capacity, QMP ``query-block`` names the iSCSI source, and
tgtd shows a session from the pool's initiator name. Disks that get detached are on the
virtio-scsi bus: an OS-less guest never releases a virtio-blk disk (see
tests/harness/vmhost.py).
"""

from __future__ import annotations

import base64
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import RunCli
from tests.harness.libvirtd import iscsi_direct_pool_xml
from tests.harness.tgtd import MiB, Tgtd
from tests.harness.vmhost import VmHost

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

INITIATOR = "iqn.2026-11.example:vm-initiator"
PLAIN_IQN = "iqn.2026-11.example:attach-plain"
CHAP_IQN = "iqn.2026-11.example:attach-chap"
CHAP_USER = "chapuser"
CHAP_PASSWORD = "chapsecret12345"
DOMAIN = "pbvm"

PLAIN_TID, CHAP_TID = 1, 2
#: LUN -> (size, block size) of the plain target
PLAIN_LUNS = {1: (64 * MiB, 512), 2: (8 * MiB, 4096)}
CHAP_LUNS = {1: (16 * MiB, 512)}


@dataclass
class Lab:
    tgt: Tgtd
    vm: VmHost
    domain: str

    @property
    def uri(self) -> str:
        return self.vm.uri

    def url(self, tid: int, lun: int) -> str:
        return self.tgt.url(tid, lun)


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def lab(vmhost: VmHost) -> Iterator[Lab]:
    with Tgtd.start() as tgt:
        tgt.new_target(PLAIN_TID, PLAIN_IQN)
        for lun, (size, bs) in PLAIN_LUNS.items():
            tgt.add_lun(PLAIN_TID, lun, size, blocksize=bs)
        tgt.new_target(CHAP_TID, CHAP_IQN)
        for lun, (size, bs) in CHAP_LUNS.items():
            tgt.add_lun(CHAP_TID, lun, size, blocksize=bs)
        tgt.add_account(CHAP_USER, CHAP_PASSWORD)
        tgt.bind_account(CHAP_TID, CHAP_USER)
        vmhost.define_paused_domain(DOMAIN)
        yield Lab(tgt, vmhost, DOMAIN)
        # No remove_domain(): `virsh destroy` waits 1.5-2 s for the reaping of QEMU here;
        # stopping the (module-scoped) vmhost right after kills it by PID at once.


@pytest.fixture(autouse=True)
def clean_domain(lab: Lab) -> Iterator[None]:
    """After each test: no disk (live or persistent), no libvirt secret, no session."""
    yield
    vm = lab.vm
    for dev in vm.disk_targets(lab.domain):
        vm.virsh("detach-disk", lab.domain, dev, "--live", timeout=30)
    for dev in vm.disk_targets(lab.domain, inactive=True):
        vm.virsh("detach-disk", lab.domain, dev, "--config", timeout=30)
    for uuid in vm.secret_uuids():
        vm.virsh("secret-undefine", uuid, timeout=30)
    assert vm.disk_targets(lab.domain) == [], vm.log_tail()
    assert vm.disk_targets(lab.domain, inactive=True) == []
    assert vm.virsh("domstate", lab.domain).stdout.strip() == "paused"
    for tid in (PLAIN_TID, CHAP_TID):
        lab.tgt.wait_sessions(tid, 0, timeout=10)


def _pool(
    run_cli: RunCli, tmp_path: Path, lab: Lab, name: str, *, chap_usage: str | None = None
) -> None:
    """Define and start pool *name* on the plain target (or, *chap_usage*, the CHAP one)."""
    if chap_usage is not None:
        secret = tmp_path / f"{name}-secret.xml"
        secret.write_text(
            "<secret ephemeral='no' private='yes'>\n"
            f"  <usage type='iscsi'>\n    <target>{chap_usage}</target>\n  </usage>\n"
            "</secret>\n"
        )
        _ok(run_cli("secret-define", str(secret)))
        value = tmp_path / f"{name}-secret.value"
        value.write_text(CHAP_PASSWORD)
        _ok(run_cli("secret-set-value", chap_usage, "--file", str(value), "--plain"))
    xml = iscsi_direct_pool_xml(
        name,
        host=lab.tgt.host,
        port=lab.tgt.port,
        target=CHAP_IQN if chap_usage else PLAIN_IQN,
        initiator=INITIATOR,
        auth_user=CHAP_USER if chap_usage else None,
        secret_usage=chap_usage,
    )
    f = tmp_path / f"{name}.xml"
    f.write_text(xml)
    _ok(run_cli("pool-define", str(f)))
    _ok(run_cli("pool-start", name))


def _ok(result: tuple[int, str, str]) -> str:
    rc, out, err = result
    assert rc == 0, f"exit {rc}\nstdout: {out}\nstderr: {err}"
    assert "Traceback" not in err, err
    return out


def _error(result: tuple[int, str, str], *words: str) -> str:
    """Exit 1, one ``error: `` line naming *words* (case-insensitive), no traceback; or
    virsh's two for a failed lookup (``error: failed to get vol|pool …`` + libvirt's line)."""
    rc, out, err = result
    assert rc == 1, f"exit {rc}\nstdout: {out}\nstderr: {err}"
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert errors == err.splitlines(), err
    lookup = len(errors) == 2 and errors[0].startswith("error: failed to get ")
    assert len(errors) == 1 or lookup, err
    text = " ".join(errors)
    for w in words:
        assert w.lower() in text.lower(), f"{w!r} not in {text!r}"
    return text


def _capacity(run_cli: RunCli, pool: str, vol: str) -> int:
    out = _ok(run_cli("vol-info", "--bytes", "--pool", pool, vol))
    m = re.search(r"^Capacity:\s+(\d+) bytes$", out, re.M)
    assert m, out
    return int(m.group(1))


def _attach(run_cli: RunCli, lab: Lab, vol: str, *args: str) -> str:
    out = _ok(run_cli("attach-volume", lab.domain, vol, "--connect", lab.uri, *args))
    assert "Disk attached successfully" in out, out
    return out


def _detach(run_cli: RunCli, lab: Lab, vol: str, *args: str) -> str:
    out = _ok(run_cli("detach-volume", lab.domain, vol, "--connect", lab.uri, *args))
    assert "Disk detached successfully" in out, out
    return out


def _assert_qemu_opened(
    lab: Lab, dev: str, *, tid: int, lun: int, capacity: int, user: str | None = None
) -> None:
    """domblkinfo capacity, query-block source and a tgtd session from our initiator."""
    vm = lab.vm
    assert vm.disk_capacity(lab.domain, dev) == capacity
    sources = vm.block_sources(lab.domain)
    assert dev in sources, (sources, vm.log_tail())
    src = sources[dev]
    assert src.url == lab.url(tid, lun), src.filename
    assert src.virtual_size == capacity
    assert src.initiator == INITIATOR, src.filename
    assert src.user == user, src.filename
    assert INITIATOR in [n.initiator for n in lab.tgt.nexuses(tid)]


def _assert_gone(lab: Lab, tid: int) -> None:
    assert lab.vm.disk_targets(lab.domain) == []
    assert lab.vm.block_sources(lab.domain) == {}
    lab.tgt.wait_sessions(tid, 0, timeout=10)


# --------------------------------------------------------------------- tests


def test_live_attach_scsi_then_detach(run_cli: RunCli, tmp_path: Path, lab: Lab) -> None:
    _pool(run_cli, tmp_path, lab, "plain")
    capacity = _capacity(run_cli, "plain", "unit:0:0:1")
    assert capacity == PLAIN_LUNS[1][0]

    # No --live/--config: the current state, i.e. live only (the domain runs).
    _attach(run_cli, lab, "unit:0:0:1", "--pool", "plain", "--target", "sda", "--bus", "scsi")
    assert lab.vm.disk_targets(lab.domain) == ["sda"]
    assert lab.vm.disk_targets(lab.domain, inactive=True) == []
    disk = lab.vm.disk(lab.domain, "sda")
    assert disk is not None
    assert (disk.get("type"), disk.get("device")) == ("network", "disk")
    target = disk.find("target")
    assert target is not None and target.get("bus") == "scsi"
    _assert_qemu_opened(lab, "sda", tid=PLAIN_TID, lun=1, capacity=capacity)

    _detach(run_cli, lab, "unit:0:0:1", "--pool", "plain")
    _assert_gone(lab, PLAIN_TID)


def test_attach_by_path_detach_by_key_4k_blocks(run_cli: RunCli, tmp_path: Path, lab: Lab) -> None:
    """VOL as path and key; no --target (next free sdX on bus scsi); 4096-byte blocks."""
    _pool(run_cli, tmp_path, lab, "plain")
    path = _ok(run_cli("vol-path", "--pool", "plain", "unit:0:0:2")).strip()
    key = _ok(run_cli("vol-key", "--pool", "plain", "unit:0:0:2")).strip()
    capacity = _capacity(run_cli, "plain", "unit:0:0:2")
    assert capacity == PLAIN_LUNS[2][0]

    _attach(run_cli, lab, path, "--bus", "scsi", "--live")
    (dev,) = lab.vm.disk_targets(lab.domain)
    assert dev.startswith("sd"), dev
    _assert_qemu_opened(lab, dev, tid=PLAIN_TID, lun=2, capacity=capacity)

    _detach(run_cli, lab, key, "--live")
    _assert_gone(lab, PLAIN_TID)


def test_device_lun_passthrough(run_cli: RunCli, tmp_path: Path, lab: Lab) -> None:
    _pool(run_cli, tmp_path, lab, "plain")
    capacity = _capacity(run_cli, "plain", "unit:0:0:1")
    _attach(run_cli, lab, "unit:0:0:1", "--pool", "plain", "--target", "sdc", "--device", "lun")
    disk = lab.vm.disk(lab.domain, "sdc")
    assert disk is not None and disk.get("device") == "lun"
    _assert_qemu_opened(lab, "sdc", tid=PLAIN_TID, lun=1, capacity=capacity)
    _detach(run_cli, lab, "unit:0:0:1", "--pool", "plain")
    _assert_gone(lab, PLAIN_TID)


def test_chap_with_secret_defined_in_libvirt(run_cli: RunCli, tmp_path: Path, lab: Lab) -> None:
    _pool(run_cli, tmp_path, lab, "chap", chap_usage="attach-chap-1")
    lab.vm.define_iscsi_secret("attach-chap-1", CHAP_PASSWORD.encode())
    capacity = _capacity(run_cli, "chap", "unit:0:0:1")
    assert capacity == CHAP_LUNS[1][0]

    _attach(run_cli, lab, "unit:0:0:1", "--pool", "chap", "--target", "sdb", "--bus", "scsi")
    disk = lab.vm.disk(lab.domain, "sdb")
    assert disk is not None
    auth = disk.find("./source/auth")
    assert auth is not None and auth.get("username") == CHAP_USER
    secret = auth.find("secret")
    assert secret is not None
    assert (secret.get("type"), secret.get("usage")) == ("iscsi", "attach-chap-1")
    _assert_qemu_opened(lab, "sdb", tid=CHAP_TID, lun=1, capacity=capacity, user=CHAP_USER)

    _detach(run_cli, lab, "unit:0:0:1", "--pool", "chap")
    _assert_gone(lab, CHAP_TID)


def test_chap_define_secret(run_cli: RunCli, tmp_path: Path, lab: Lab) -> None:
    _pool(run_cli, tmp_path, lab, "chap", chap_usage="attach-chap-2")
    base = ("attach-volume", lab.domain, "unit:0:0:1", "--pool", "chap", "--connect", lab.uri)
    scsi = ("--target", "sda", "--bus", "scsi")

    # The secret is only in our local store: refused, with a hint, nothing changed.
    _error(run_cli(*base, *scsi), "--define-secret")
    assert lab.vm.secret_uuids() == []
    assert lab.vm.disk_targets(lab.domain) == []

    _attach(run_cli, lab, "unit:0:0:1", "--pool", "chap", *scsi, "--define-secret")
    (uuid,) = lab.vm.secret_uuids()
    assert lab.vm.secret_usage(uuid) == "attach-chap-2"
    # The value may be private (secret-get-value refused); QEMU's CHAP login proves it.
    capacity = _capacity(run_cli, "chap", "unit:0:0:1")
    _assert_qemu_opened(lab, "sda", tid=CHAP_TID, lun=1, capacity=capacity, user=CHAP_USER)

    _detach(run_cli, lab, "unit:0:0:1", "--pool", "chap")
    _assert_gone(lab, CHAP_TID)


def test_define_secret_replaces_a_stale_value(run_cli: RunCli, tmp_path: Path, lab: Lab) -> None:
    """After a password rotation libvirt still holds the old value: a plain attach fails
    like QEMU does (authentication), ``--define-secret`` replaces the value, never shown."""
    _pool(run_cli, tmp_path, lab, "chap", chap_usage="attach-chap-3")
    stale = b"old-rotated-away-password"
    uuid = lab.vm.define_iscsi_secret("attach-chap-3", stale)  # readable: not private
    scsi = ("--target", "sdb", "--bus", "scsi")
    base = ("attach-volume", lab.domain, "unit:0:0:1", "--pool", "chap", "--connect", lab.uri)

    _error(run_cli(*base, *scsi))  # QEMU logs in with the stale value
    assert lab.vm.disk_targets(lab.domain) == []
    assert lab.vm.secret_value(uuid) == stale

    rc, out, err = run_cli(*base, *scsi, "--define-secret")
    assert rc == 0, err
    for text in (out, err):
        assert CHAP_PASSWORD not in text and stale.decode() not in text
    assert lab.vm.secret_uuids() == [uuid]
    assert lab.vm.secret_value(uuid) == CHAP_PASSWORD.encode()
    capacity = _capacity(run_cli, "chap", "unit:0:0:1")
    _assert_qemu_opened(lab, "sdb", tid=CHAP_TID, lun=1, capacity=capacity, user=CHAP_USER)

    _detach(run_cli, lab, "unit:0:0:1", "--pool", "chap")
    _assert_gone(lab, CHAP_TID)


def test_config_and_persistent(run_cli: RunCli, tmp_path: Path, lab: Lab) -> None:
    _pool(run_cli, tmp_path, lab, "plain")
    vol = ("unit:0:0:1", "--pool", "plain")

    # --config: the persistent definition only; the running QEMU is untouched.
    _attach(run_cli, lab, *vol, "--target", "sdb", "--bus", "scsi", "--config")
    assert lab.vm.disk_targets(lab.domain, inactive=True) == ["sdb"]
    assert lab.vm.disk_targets(lab.domain) == []
    assert lab.vm.block_sources(lab.domain) == {}
    disk = lab.vm.disk(lab.domain, "sdb", inactive=True)
    assert disk is not None
    source = disk.find("source")
    assert source is not None
    assert (source.get("protocol"), source.get("name")) == ("iscsi", f"{PLAIN_IQN}/1")
    host = source.find("host")
    assert host is not None
    assert (host.get("name"), host.get("port")) == (lab.tgt.host, str(lab.tgt.port))
    iqn = source.find("./initiator/iqn")
    assert iqn is not None and iqn.get("name") == INITIATOR
    _detach(run_cli, lab, *vol, "--config")
    assert lab.vm.disk_targets(lab.domain, inactive=True) == []

    # --persistent: both, because the domain runs.
    _attach(run_cli, lab, *vol, "--target", "sdb", "--bus", "scsi", "--persistent")
    assert lab.vm.disk_targets(lab.domain, inactive=True) == ["sdb"]
    assert lab.vm.disk_targets(lab.domain) == ["sdb"]
    _assert_qemu_opened(lab, "sdb", tid=PLAIN_TID, lun=1, capacity=PLAIN_LUNS[1][0])
    _detach(run_cli, lab, *vol, "--persistent")
    assert lab.vm.disk_targets(lab.domain, inactive=True) == []
    _assert_gone(lab, PLAIN_TID)


def test_print_xml_changes_nothing_and_is_usable(run_cli: RunCli, tmp_path: Path, lab: Lab) -> None:
    _pool(run_cli, tmp_path, lab, "plain")
    _pool(run_cli, tmp_path, lab, "chap", chap_usage="attach-chap-3")
    base = ("attach-volume", lab.domain, "--connect", lab.uri, "--print-xml")

    out = _ok(run_cli(*base, "unit:0:0:1", "--pool", "plain", "--target", "sdd", "--bus", "scsi"))
    disk = ET.fromstring(out)
    assert (disk.tag, disk.get("type"), disk.get("device")) == ("disk", "network", "disk")
    driver = disk.find("driver")
    assert driver is not None and (driver.get("name"), driver.get("type")) == ("qemu", "raw")
    source = disk.find("source")
    assert source is not None
    assert (source.get("protocol"), source.get("name")) == ("iscsi", f"{PLAIN_IQN}/1")
    target = disk.find("target")
    assert target is not None and (target.get("dev"), target.get("bus")) == ("sdd", "scsi")
    assert disk.find("./source/auth") is None

    # CHAP: the auth element, and no secret is copied into libvirt by --print-xml.
    chap = ET.fromstring(
        _ok(run_cli(*base, "unit:0:0:1", "--pool", "chap", "--target", "sde", "--bus", "scsi"))
    )
    auth = chap.find("./source/auth")
    assert auth is not None and auth.get("username") == CHAP_USER
    secret = auth.find("secret")
    assert secret is not None
    assert (secret.get("type"), secret.get("usage")) == ("iscsi", "attach-chap-3")

    vda = ET.fromstring(_ok(run_cli(*base, "unit:0:0:1", "--pool", "plain", "--bus", "virtio")))
    target = vda.find("target")
    assert target is not None and target.get("bus") == "virtio"
    assert (target.get("dev") or "").startswith("vd")

    # Nothing changed ...
    assert lab.vm.disk_targets(lab.domain) == []
    assert lab.vm.disk_targets(lab.domain, inactive=True) == []
    assert lab.vm.secret_uuids() == []
    assert lab.tgt.sessions(PLAIN_TID) == []

    # ... and the printed XML is what QEMU needs: virsh attach-device of it works.
    f = tmp_path / "disk.xml"
    f.write_text(out)
    lab.vm.virsh("attach-device", lab.domain, str(f), "--live", check=True)
    _assert_qemu_opened(lab, "sdd", tid=PLAIN_TID, lun=1, capacity=PLAIN_LUNS[1][0])
    lab.vm.virsh("detach-device", lab.domain, str(f), "--live", check=True)
    _assert_gone(lab, PLAIN_TID)


def test_errors(run_cli: RunCli, tmp_path: Path, lab: Lab) -> None:
    _pool(run_cli, tmp_path, lab, "plain")
    inactive = tmp_path / "stopped.xml"
    inactive.write_text(
        iscsi_direct_pool_xml(
            "stopped",
            host=lab.tgt.host,
            port=lab.tgt.port,
            target=PLAIN_IQN,
            initiator=INITIATOR + "-stopped",  # the same target and initiator is a conflict
        )
    )
    _ok(run_cli("pool-define", str(inactive)))
    uri = ("--connect", lab.uri)
    scsi = ("--target", "sda", "--bus", "scsi")

    for cmd in ("attach-volume", "detach-volume"):
        extra = scsi if cmd == "attach-volume" else ()
        _error(
            run_cli(cmd, "nosuchdom", "unit:0:0:1", "--pool", "plain", *uri, *extra), "nosuchdom"
        )
        _error(run_cli(cmd, lab.domain, "unit:0:0:1", "--pool", "nosuchpool", *uri), "nosuchpool")
        _error(run_cli(cmd, lab.domain, "unit:0:0:9", "--pool", "plain", *uri), "unit:0:0:9")
        # attach needs the LUN's state; detach finds the disk from the definition alone
        words = ("active",) if cmd == "attach-volume" else ("not attached",)
        _error(run_cli(cmd, lab.domain, "unit:0:0:1", "--pool", "stopped", *uri), "stopped", *words)
    assert lab.vm.disk_targets(lab.domain) == []

    # The target device is taken (by another LUN).
    _attach(run_cli, lab, "unit:0:0:2", "--pool", "plain", *scsi)
    _error(
        run_cli("attach-volume", lab.domain, "unit:0:0:1", "--pool", "plain", *uri, *scsi), "sda"
    )
    assert lab.vm.disk_targets(lab.domain) == ["sda"]
    _assert_qemu_opened(lab, "sda", tid=PLAIN_TID, lun=2, capacity=PLAIN_LUNS[2][0])
    # The same volume twice (on another target): refused.
    again = ("attach-volume", lab.domain, "unit:0:0:2", "--pool", "plain", *uri)
    _error(run_cli(*again, "--target", "sdb", "--bus", "scsi"), "unit:0:0:2")
    assert lab.vm.disk_targets(lab.domain) == ["sda"]
    _detach(run_cli, lab, "unit:0:0:2", "--pool", "plain")
    _assert_gone(lab, PLAIN_TID)
    # Detaching a volume that is not attached.
    _error(run_cli("detach-volume", lab.domain, "unit:0:0:2", "--pool", "plain", *uri), "attached")


def _pids_with_env(needle: bytes) -> dict[int, str]:
    """pid -> comm of every process whose environment contains *needle*."""
    found = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if needle in (d / "environ").read_bytes():
                found[int(d.name)] = (d / "comm").read_text().strip()
        except OSError:
            continue
    return found


def test_vmhost_is_private_and_stops_everything(lab: Lab) -> None:
    """A second VmHost: own virtlogd (none auto-spawned), QEMU as nobody, all gone on stop."""
    import os

    with VmHost.start() as vm:
        vm.define_paused_domain("solo", persistent=False)
        (qemu,) = vm._qemu_pids()
        if os.geteuid() == 0:
            assert Path(f"/proc/{qemu}").stat().st_uid == 65534  # nobody
        env = _pids_with_env(f"XDG_RUNTIME_DIR={vm.runtime_dir}".encode())
        assert sorted(p for p, comm in env.items() if comm == "virtlogd") == [vm.virtlogd_pid]
        assert vm.pid in env
        assert str(vm.workdir) in vm.qemu_log("solo")
        pids = [vm.pid, vm.virtlogd_pid, qemu]
        workdir = vm.workdir
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        assert state in ("Z", "X"), (pid, state)
    assert not workdir.exists()


def test_detach_while_the_pool_is_inactive(run_cli: RunCli, tmp_path: Path, lab: Lab) -> None:
    """The definition holds all detach needs (portal, target, LUN from the name/key/path)."""
    _pool(run_cli, tmp_path, lab, "plain")
    key2 = _ok(run_cli("vol-key", "unit:0:0:2", "--pool", "plain")).strip()
    _attach(run_cli, lab, "unit:0:0:1", "--pool", "plain", "--target", "sdb", "--bus", "scsi")
    _attach(run_cli, lab, "unit:0:0:2", "--pool", "plain", "--target", "sdc", "--config")
    _ok(run_cli("pool-destroy", "plain"))
    uri = ("--connect", lab.uri)
    # A volume of the inactive pool that is not attached, and a name without its pool.
    _error(
        run_cli("detach-volume", lab.domain, "unit:0:0:3", "--pool", "plain", *uri), "not attached"
    )
    _error(run_cli("detach-volume", lab.domain, "unit:0:0:1", *uri), "not found")
    _detach(run_cli, lab, "unit:0:0:1", "--pool", "plain")
    assert lab.vm.disk_targets(lab.domain) == []
    _assert_gone(lab, PLAIN_TID)
    _detach(run_cli, lab, key2, "--config")
    assert lab.vm.disk_targets(lab.domain, inactive=True) == []
    assert "inactive" in _ok(run_cli("pool-list", "--all"))


# ---------------------------------------------------- data through QEMU, warnings


def _qemu_io(lab: Lab, dev: str, command: str, *markers: str) -> str:
    """Run a qemu-io command on the attached disk *dev* through HMP (the VM stays paused;
    QEMU's own block layer does the I/O over its iSCSI connection to tgt). qemu-io prints
    to QEMU's stdout, i.e. the domain log: returns the new log text once one of *markers*
    is in it (bounded wait)."""
    disk = lab.vm.disk(lab.domain, dev)
    assert disk is not None
    alias = disk.find("alias")
    assert alias is not None and alias.get("name"), ET.tostring(disk)
    seen = len(lab.vm.qemu_log(lab.domain))
    lab.vm.virsh("qemu-monitor-command", lab.domain, "--hmp",
                 f'qemu-io -d {alias.get("name")} "{command}"', check=True)  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        new = lab.vm.qemu_log(lab.domain)[seen:]
        if any(m in new for m in markers):
            return new
        assert time.monotonic() < deadline, f"qemu-io {command!r} printed {new!r}"
        time.sleep(0.1)


def test_data_moves_through_the_attached_disk(run_cli: RunCli, tmp_path: Path, lab: Lab) -> None:
    """What QEMU writes lands in tgt's backing file at the same offset, and what is in the
    backing file is what QEMU reads (qemu-io's pattern check, and a wrong pattern fails)."""
    _pool(run_cli, tmp_path, lab, "plain")
    _attach(run_cli, lab, "unit:0:0:1", "--pool", "plain", "--target", "sda", "--bus", "scsi")
    backing = lab.tgt.backing_path(PLAIN_TID, 1)
    # write through QEMU, check the backing file
    done = "wrote 65536/65536 bytes at offset 1048576"
    out = _qemu_io(lab, "sda", "write -P 0x5c 1048576 65536", done, "error", "failed")
    assert done in out, out
    with backing.open("rb") as f:
        f.seek(1048576 - 512)
        got = f.read(65536 + 1024)
    assert got[512:-512] == b"\x5c" * 65536
    assert got[:512] != b"\x5c" * 512 and got[-512:] != b"\x5c" * 512  # nothing around it
    # write into the backing file, read through QEMU
    with backing.open("r+b") as f:
        f.seek(3 * 1048576)
        f.write(b"\x3e" * 4096)
    done, bad = "read 4096/4096 bytes at offset 3145728", "Pattern verification failed"
    out = _qemu_io(lab, "sda", "read -P 0x3e 3145728 4096", done, bad, "error")
    assert done in out and bad not in out, out
    out = _qemu_io(lab, "sda", "read -P 0x3f 3145728 4096", done, bad, "error")
    assert bad in out, out  # the check above can fail
    _detach(run_cli, lab, "unit:0:0:1", "--pool", "plain")
    _assert_gone(lab, PLAIN_TID)


def test_mutual_chap_pool_warns_and_define_secret_prints_no_value(
    run_cli: RunCli, tmp_path: Path, lab: Lab
) -> None:
    """A mutual-CHAP pool's volume attaches with one warning line (QEMU cannot check the
    target); --define-secret copies the value into libvirt and never prints it."""
    out_user, out_password = "attach-out", "attach-out-secret-77"
    lab.tgt.add_account(out_user, out_password)
    lab.tgt.bind_account(CHAP_TID, out_user, outgoing=True)
    try:
        _pool(run_cli, tmp_path, lab, "chap", chap_usage="attach-chap-m")
        (tmp_path / "out-secret.xml").write_text(
            "<secret ephemeral='no' private='yes'><usage type='iscsi'>"
            "<target>attach-out-m</target></usage></secret>"
        )
        _ok(run_cli("secret-define", str(tmp_path / "out-secret.xml")))
        _ok(run_cli("secret-set-value", "attach-out-m", input=out_password))
        _ok(run_cli("pool-destroy", "chap"))
        _ok(run_cli("pool-undefine", "chap"))
        xml = Path(tmp_path / "chap.xml").read_text()
        xml = xml.replace("<pool type='iscsi-direct'>", "<pool type='iscsi-direct' "
                          "xmlns:pb='https://poolbackend.dev/xmlns/pool/1'>")  # fmt: skip
        target_auth = (
            f"<pb:iscsi><pb:target-auth username='{out_user}'><pb:secret usage='attach-out-m'/>"
            "</pb:target-auth></pb:iscsi></pool>"
        )
        xml = xml.replace("</pool>", target_auth)
        (tmp_path / "chap.xml").write_text(xml)
        _ok(run_cli("pool-define", str(tmp_path / "chap.xml")))
        _ok(run_cli("pool-start", "chap"))  # our initiator checks the target: mutual works
        rc, out, err = run_cli("attach-volume", lab.domain, "unit:0:0:1", "--pool", "chap",
                               "--connect", lab.uri, "--target", "sda", "--bus", "scsi",
                               "--define-secret")  # fmt: skip
        assert rc == 0 and "Disk attached successfully" in out, err
        warnings = [ln for ln in err.splitlines() if ln.startswith("warning: ")]
        assert (
            "warning: pool 'chap' uses mutual CHAP; QEMU's iSCSI driver authenticates only "
            "the initiator, so the VM's connection does not verify the target"
        ) in warnings, err
        for text in (out, err):
            for secret in (CHAP_PASSWORD, out_password):
                for form in (secret, base64.b64encode(secret.encode()).decode()):
                    assert form not in text, f"a secret was printed: {text}"
        (uuid,) = lab.vm.secret_uuids()
        assert lab.vm.secret_usage(uuid) == "attach-chap-m"
        _assert_qemu_opened(lab, "sda", tid=CHAP_TID, lun=1, capacity=CHAP_LUNS[1][0],
                            user=CHAP_USER)  # fmt: skip
        _detach(run_cli, lab, "unit:0:0:1", "--pool", "chap")
        _assert_gone(lab, CHAP_TID)
    finally:
        lab.tgt.unbind_account(CHAP_TID, out_user, outgoing=True)
        lab.tgt.delete_account(out_user)
