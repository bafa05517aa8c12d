"""No command touches the wrong pool's LUN: every volume command, every form of VOL.

One tgtd with two targets whose LUNs have the same numbers (so pools ``pa`` and ``pb`` both
have ``unit:0:0:1`` and ``unit:0:0:2``); every LUN is filled with its own byte. Each
command runs through the CLI with VOL as a name with ``--pool``, a bare name, a key, a path,
an unknown name, and a key of the other pool; afterwards every backing file is read: a wipe
or upload changed exactly the LUN the form names and nothing else, a download returned that
LUN's bytes, and a refused form changed nothing and printed virsh's lines. A second test
puts the same pools into a real libvirtd and checks that our error lines are virsh's, byte
for byte.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import RunCli
from tests.harness.libvirtd import Libvirtd, iscsi_direct_pool_xml
from tests.harness.tgtd import MiB, Tgtd

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

INITIATOR = "iqn.2026-11.example:lookup-initiator"
TARGETS = {"pa": (1, "iqn.2026-11.example:lookup-a"), "pb": (2, "iqn.2026-11.example:lookup-b")}
LUNS = (1, 2)
SIZE = 1 * MiB
UPLOAD = bytes(range(256)) * 256  # 64 KiB written at offset 0
NS = "this function is not supported by the connection driver: "
HINT = ", specifying --pool might help"


@dataclass
class Lab:
    tgt: Tgtd

    def fill(self, pool: str, lun: int) -> bytes:
        tid, _ = TARGETS[pool]
        return bytes([tid * 16 + lun]) * SIZE

    def backing(self, pool: str, lun: int) -> Path:
        return self.tgt.backing_path(TARGETS[pool][0], lun)

    def reset(self) -> None:
        for pool in TARGETS:
            for lun in LUNS:
                with open(self.backing(pool, lun), "r+b") as f:
                    f.write(self.fill(pool, lun))

    def contents(self) -> dict[tuple[str, int], bytes]:
        return {(p, lun): self.backing(p, lun).read_bytes() for p in TARGETS for lun in LUNS}

    def key(self, pool: str, lun: int) -> str:
        return f"ip-127.0.0.1:{self.tgt.port}-iscsi-{TARGETS[pool][1]}-lun-{lun}"

    def pool_xml(self, name: str) -> str:
        return iscsi_direct_pool_xml(
            name, host="127.0.0.1", port=self.tgt.port, target=TARGETS[name][1], initiator=INITIATOR
        )


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Tgtd.start() as tgt:
        for _, (tid, iqn) in TARGETS.items():
            tgt.new_target(tid, iqn)
            for lun in LUNS:
                tgt.add_lun(tid, lun, SIZE)
        lab = Lab(tgt)
        lab.reset()
        yield lab


@pytest.fixture
def pools(lab: Lab, run_cli: RunCli, tmp_path: Path) -> Lab:
    """pa and pb active, pc defined (inactive) on a third target name."""
    for name in TARGETS:
        xml = tmp_path / f"{name}.xml"
        xml.write_text(lab.pool_xml(name))
        rc, _, err = run_cli("pool-create", str(xml))
        assert rc == 0, err
    idle = tmp_path / "pc.xml"
    idle.write_text(
        iscsi_direct_pool_xml(
            "pc", host="127.0.0.1", port=lab.tgt.port, target="iqn.2026-11.example:lookup-c",
            initiator=INITIATOR,
        )
    )  # fmt: skip
    rc, _, err = run_cli("pool-define", str(idle))
    assert rc == 0, err
    (tmp_path / "up.bin").write_bytes(UPLOAD)
    (tmp_path / "vol.xml").write_text("<volume><name>copy</name><capacity>1</capacity></volume>")
    lab.reset()
    return lab


COMMANDS = [
    "vol-info", "vol-dumpxml", "vol-key", "vol-path", "vol-name", "vol-pool",
    "vol-wipe", "vol-download", "vol-upload", "attach-volume", "detach-volume",
    "vol-delete", "vol-resize", "vol-clone", "vol-create-from",
]  # fmt: skip


def _argv(cmd: str, vol: str, pool: str | None, tmp: Path) -> list[str]:
    """The command line of ``cmd`` on VOL (``--pool`` only when given)."""
    with_pool = ["--pool", pool] if pool is not None else []
    if cmd == "vol-create-from":  # the input volume and its pool are --inputpool's
        return [cmd, "pa", str(tmp / "vol.xml"), vol] + (
            ["--inputpool", pool] if pool is not None else []
        )
    extra = {
        "vol-download": [str(tmp / "down.bin")],
        "vol-upload": [str(tmp / "up.bin")],
        "vol-resize": ["2M"],
        "vol-clone": ["copy"],
    }.get(cmd, [])
    if cmd in ("attach-volume", "detach-volume"):
        head = [cmd, "test", vol, "-c", "test:///default"]
        head += ["--print-xml"] if cmd == "attach-volume" else []
        return head + with_pool
    return [cmd, vol, *extra, *with_pool]


def _check_acted_on(
    cmd: str, lab: Lab, pool: str, lun: int, result: tuple[int, str, str], tmp: Path
) -> dict[tuple[str, int], bytes]:
    """Check the output of ``cmd`` on LUN ``lun`` of ``pool``; return the expected LUNs."""
    rc, out, err = result
    expected = {(p, n): lab.fill(p, n) for p in TARGETS for n in LUNS}
    key, iqn = lab.key(pool, lun), TARGETS[pool][1]
    ok = (rc, err) == (0, "")
    if cmd == "vol-info":
        assert ok and out.startswith(f"Name:           unit:0:0:{lun}\n"), result
    elif cmd == "vol-dumpxml":
        assert ok and f"<key>{key}</key>" in out, result
    elif cmd in ("vol-key", "vol-path"):
        assert result == (0, key + "\n\n", "")
    elif cmd == "vol-name":
        assert result == (0, f"unit:0:0:{lun}\n\n", "")
    elif cmd == "vol-pool":
        assert result == (0, f"{pool}\n\n", "")
    elif cmd == "vol-wipe":
        assert ok, result
        expected[pool, lun] = bytes(SIZE)
    elif cmd == "vol-upload":
        assert ok, result
        expected[pool, lun] = UPLOAD + lab.fill(pool, lun)[len(UPLOAD) :]
    elif cmd == "vol-download":
        assert ok, result
        assert (tmp / "down.bin").read_bytes() == lab.fill(pool, lun)
        (tmp / "down.bin").unlink()
    elif cmd == "attach-volume":
        assert ok and f'name="{iqn}/{lun}"' in out, result
    elif cmd == "detach-volume":  # test:///default's domain has no such disk
        assert result == (
            1, "", f"error: volume 'unit:0:0:{lun}' of pool '{pool}' is not attached to "
            "domain 'test'\n",
        )  # fmt: skip
    else:  # unsupported: the volume was found, then libvirt's refusal
        message = {
            "vol-delete": "storage pool does not support vol deletion",
            "vol-resize": "storage pool does not support changing of volume capacity",
            "vol-clone": "storage pool does not support volume creation from an existing volume",
            "vol-create-from": "storage pool does not support volume creation from an "
            "existing volume",
        }[cmd]
        assert result == (1, "", f"error: {NS}{message}\n"), result
    return expected


@pytest.mark.parametrize("cmd", COMMANDS)
def test_each_form_of_vol_reaches_its_own_lun_only(
    cmd: str, pools: Lab, run_cli: RunCli, tmp_path: Path
) -> None:
    lab = pools
    # (VOL, --pool) -> the (pool, LUN) it names
    good = [
        ("unit:0:0:1", "pb", "pb", 1),  # name with --pool
        ("unit:0:0:2", "pa", "pa", 2),
        (lab.key("pa", 2), None, "pa", 2),  # key
        (lab.key("pb", 1), "pb", "pb", 1),  # key with its own pool
        (lab.key("pb", 2) + "/", None, "pb", 2),  # path (libvirt sanitizes it)
    ]
    for vol, pool, want_pool, lun in good:
        result = run_cli(*_argv(cmd, vol, pool, tmp_path))
        expected = _check_acted_on(cmd, lab, want_pool, lun, result, tmp_path)
        assert lab.contents() == expected, (cmd, vol, pool)
        lab.reset()

    hint = "" if cmd in ("vol-name", "vol-pool") else HINT  # virsh names the pool option
    hint = ", specifying --inputpool might help" if cmd == "vol-create-from" else hint
    other = lab.key("pb", 1)
    bad = [
        (  # a bare name: every pool has one
            "unit:0:0:1", None,
            f"error: failed to get vol 'unit:0:0:1'{hint}\n"
            "error: Storage volume not found: no storage vol with matching path 'unit:0:0:1'\n",
        ),
        (
            "unit:0:0:9", "pa",
            "error: failed to get vol 'unit:0:0:9'\n"
            "error: Storage volume not found: no storage vol with matching path 'unit:0:0:9'\n",
        ),
        (other, "pa", f"error: Requested volume '{other}' is not in pool 'pa'\n"),
        (
            "unit:0:0:1", "nosuch",
            "error: failed to get pool 'nosuch'\n"
            "error: Storage pool not found: no storage pool with matching name 'nosuch'\n",
        ),
    ]  # fmt: skip
    if cmd != "detach-volume":  # detach works on an inactive pool (from its definition)
        bad.append(("unit:0:0:1", "pc", "error: pool 'pc' is not active\n"))
    before = lab.contents()
    for vol, pool, message in bad:
        assert run_cli(*_argv(cmd, vol, pool, tmp_path)) == (1, "", message), (vol, pool)
        assert lab.contents() == before, (cmd, vol, pool)
    assert not (tmp_path / "down.bin").exists()


# ------------------------------------------------------------------ virsh's own lines

ORACLE_COMMANDS = [
    "vol-info", "vol-dumpxml", "vol-key", "vol-path", "vol-name", "vol-pool",
    "vol-wipe", "vol-download", "vol-upload", "vol-delete", "vol-resize", "vol-clone",
    "vol-create-from",
]  # fmt: skip


def test_errors_are_virshs_lines(
    pools: Lab, libvirtd: Libvirtd, run_cli: RunCli, tmp_path: Path
) -> None:
    """The same pools in libvirt: each refused form prints what virsh prints."""
    lab = pools
    for name in TARGETS:
        libvirtd.virsh("pool-create", str(libvirtd.define_file(f"{name}.xml", lab.pool_xml(name))))
    idle = iscsi_direct_pool_xml(
        "pc", host="127.0.0.1", port=lab.tgt.port, target="iqn.2026-11.example:lookup-c",
        initiator=INITIATOR,
    )  # fmt: skip
    libvirtd.virsh("pool-define", str(libvirtd.define_file("pc.xml", idle)), check=True)
    forms: list[tuple[str, str | None]] = [
        ("unit:0:0:1", None),
        ("unit:0:0:9", "pa"),
        (lab.key("pb", 1), "pa"),
        ("unit:0:0:1", "nosuch"),
        ("unit:0:0:1", "pc"),
        ("no//such/", None),
    ]
    compared = 0
    for cmd in ORACLE_COMMANDS:
        for vol, pool in forms:
            if pool is not None and cmd in ("vol-name", "vol-pool"):
                continue  # virsh's vol-name/vol-pool have no --pool (ours honour one)
            argv = _argv(cmd, vol, pool, tmp_path)
            theirs = libvirtd.virsh(*argv)
            rc, _, err = run_cli(*argv)
            assert (rc, err) == (theirs.returncode, theirs.stderr), argv
            compared += 1
        # and the found forms print the same names, keys and pools
        for vol, pool in ((lab.key("pa", 2), None), ("unit:0:0:1", "pb")):
            if cmd in ("vol-key", "vol-path") or (cmd in ("vol-name", "vol-pool") and not pool):
                argv = _argv(cmd, vol, pool, tmp_path)
                assert run_cli(*argv)[:2] == (0, libvirtd.virsh(*argv, check=True).stdout)
    assert compared == 70

    # vol-create-as --backing-vol: a name in the new volume's pool (if active), else a key or
    # path of any pool
    for pool, vol in (
        ("pa", "unit:0:0:1"),
        ("pa", "unit:0:0:9"),
        ("pa", lab.key("pb", 1)),
        ("pc", "unit:0:0:1"),
        ("pc", lab.key("pb", 1)),
    ):
        argv = ["vol-create-as", pool, "new", "1M", "--backing-vol", vol, "--print-xml"]
        theirs = libvirtd.virsh(*argv)
        rc, out, err = run_cli(*argv)
        assert (rc, err) == (theirs.returncode, theirs.stderr), argv
        path = re.search(r"<path>[^<]*</path>", theirs.stdout)
        assert (path is None and rc == 1) or (path is not None and path.group(0) in out), argv
    assert lab.contents() == {(p, n): lab.fill(p, n) for p in TARGETS for n in LUNS}
