"""Our pool next to libvirt's real iscsi-direct backend on the same target.

The same pool XML goes to a private libvirtd (C backend over libiscsi) and to poolbackend.
vol-list output must be identical; XML dumps must be identical except the documented
capacity fix (ours is one block larger: (last LBA + 1) x block length).
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import BasicTarget, RunCli
from tests.harness.libvirtd import Libvirtd, iscsi_direct_pool_xml

INITIATOR = "iqn.2026-11.example:initiator1"


def _capacities(xml: str) -> list[int]:
    return [int(n) for n in re.findall(r"<(?:capacity|allocation) unit='bytes'>(\d+)<", xml)]


def test_same_volumes_as_libvirt(
    libvirtd: Libvirtd, tgt_basic: BasicTarget, run_cli: RunCli, tmp_path: Path
) -> None:
    xml = iscsi_direct_pool_xml(
        "compat", host="127.0.0.1", port=tgt_basic.port, target=tgt_basic.iqn, initiator=INITIATOR
    )
    theirs_file = libvirtd.define_file("compat.xml", xml)
    ours_file = tmp_path / "compat.xml"
    ours_file.write_text(xml)
    libvirtd.virsh("pool-create", str(theirs_file), check=True)
    rc, out, err = run_cli("pool-create", str(ours_file))
    assert rc == 0, err
    assert out == f"Pool compat created from {ours_file}\n\n"

    for args in (["vol-list", "compat"], ["vol-list", "--details", "compat"]):
        theirs = libvirtd.virsh(*args, check=True).stdout
        rc, ours, err = run_cli(*args)
        assert rc == 0, err
        assert ours == theirs, f"{args}:\n--- libvirt\n{theirs}\n--- ours\n{ours}"

    for lun, (size, block) in tgt_basic.luns.items():
        name = f"unit:0:0:{lun}"
        theirs = libvirtd.virsh("vol-dumpxml", "--pool", "compat", name, check=True).stdout
        rc, ours, err = run_cli("vol-dumpxml", "--pool", "compat", name)
        assert rc == 0, err
        assert _capacities(theirs) == [size - block, size - block]  # libvirt's one-block-short
        assert _capacities(ours) == [size, size]  # the exact size
        strip = re.compile(r"<(capacity|allocation) unit='bytes'>\d+<")
        assert strip.sub("", ours) == strip.sub("", theirs)
        theirs_info = libvirtd.virsh("vol-info", "--pool", "compat", name).stdout
        rc, ours_info, _ = run_cli("vol-info", "--pool", "compat", name)
        assert ours_info == theirs_info  # both print 64.00 MiB etc.

    theirs = libvirtd.virsh("pool-dumpxml", "compat", check=True).stdout
    rc, ours, _ = run_cli("pool-dumpxml", "compat")
    total = sum(size for size, _ in tgt_basic.luns.values())
    assert _capacities(ours) == [total, total]
    assert _capacities(theirs) == [total - sum(b for _, b in tgt_basic.luns.values())] * 2

    def normalize(text: str) -> str:
        text = re.sub(r"<uuid>[^<]+</uuid>", "<uuid/>", text)
        return re.sub(r"<(capacity|allocation) unit='bytes'>\d+<", "<size<", text)

    assert normalize(ours) == normalize(theirs)
    libvirtd.virsh("pool-destroy", "compat", check=True)


def test_chap_pool_with_secret_from_libvirt(
    libvirtd: Libvirtd, run_cli: RunCli, tmp_path: Path, tgtd: object
) -> None:
    from tests.harness.tgtd import Tgtd

    assert isinstance(tgtd, Tgtd)
    tgtd.new_target(1, "iqn.2026-11.example:chap")
    tgtd.add_lun(1, 1, 32 << 20)
    tgtd.add_account("chapuser", "chapsecret12345")
    tgtd.bind_account(1, "chapuser")
    libvirtd.define_iscsi_secret("chap-secret", b"chapsecret12345")
    xml = iscsi_direct_pool_xml(
        "lvchap",
        host="127.0.0.1",
        port=tgtd.port,
        target="iqn.2026-11.example:chap",
        initiator=INITIATOR,
        auth_user="chapuser",
        secret_usage="chap-secret",
    )
    f = tmp_path / "lvchap.xml"
    f.write_text(xml)
    # Not in our local store: a clear error naming the secret...
    rc, _, err = run_cli("pool-create", str(f))
    assert rc == 1 and "no secret with matching usage 'chap-secret'" in err
    # ...and with --connect the value is read from libvirt (never printed).
    rc, out, err = run_cli("pool-create", str(f), "--connect", libvirtd.uri)
    assert rc == 0, err
    rc, out, _ = run_cli("vol-list", "--details", "lvchap")
    assert "32.00 MiB" in out and "chapsecret12345" not in out + err
    # POOLBACKEND_LIBVIRT_URI instead of --connect does the same.
    assert run_cli("pool-destroy", "lvchap")[0] == 0
    rc, out, err = run_cli("pool-create", str(f), env={"POOLBACKEND_LIBVIRT_URI": libvirtd.uri})
    assert rc == 0 and "chapsecret12345" not in out + err, err
    rc, out, _ = run_cli("vol-list", "--details", "lvchap")
    assert rc == 0 and "32.00 MiB" in out
    assert run_cli("pool-destroy", "lvchap")[0] == 0
    # and it is really what was used: a URI naming no running libvirt fails the same start
    nowhere = f"qemu:///session?socket={tmp_path}/no-libvirtd.sock"
    rc, _, err = run_cli("pool-create", str(f), env={"POOLBACKEND_LIBVIRT_URI": nowhere})
    assert rc == 1 and "chapsecret12345" not in err, err
    assert err.startswith(f"error: cannot connect to libvirt at {nowhere}"), err


def test_find_sources_matches_libvirt(
    libvirtd: Libvirtd, tgt_basic: BasicTarget, run_cli: RunCli
) -> None:
    args = [
        "find-storage-pool-sources-as",
        "iscsi-direct",
        "127.0.0.1",
        str(tgt_basic.port),
        "--initiator",
        INITIATOR,
    ]
    theirs = libvirtd.virsh(*args, check=True).stdout
    rc, ours, err = run_cli(*args)
    assert rc == 0, err
    assert ours == theirs
