"""The commands libvirt's iscsi-direct backend does not support take virsh's syntax and end
with libvirt's messages, after the same checks in the same order (virsh-volume.c,
storage_driver.c); nothing changes on the target or in the state."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import BasicTarget, RunCli

INITIATOR = "iqn.2026-11.example:initiator1"
NS = "this function is not supported by the connection driver: "
CREATE = NS + "storage pool does not support volume creation"
CREATE_FROM = NS + "storage pool does not support volume creation from an existing volume"
RESIZE = NS + "storage pool does not support changing of volume capacity"
DELETE = NS + "storage pool does not support vol deletion"
CAPACITY = NS + "volume capacity required for this storage pool"
VOL = "unit:0:0:1"


def _pool_xml(tmp: Path, name: str, t: BasicTarget) -> str:
    path = tmp / f"{name}.xml"
    path.write_text(
        f"""<pool type='iscsi-direct'>
  <name>{name}</name>
  <source>
    <host name='{t.host}' port='{t.port}'/>
    <device path='{t.iqn}'/>
    <initiator><iqn name='{INITIATOR}-{name}'/></initiator>
  </source>
</pool>
"""
    )
    return str(path)


@pytest.fixture
def pools(run_cli: RunCli, tgt_basic: BasicTarget, tmp_path: Path) -> Path:
    """Pool ``p`` active on tgt_basic, pool ``idle`` defined but inactive; volume XML files.

    Each has an initiator name of its own: one target, one initiator is a source conflict."""
    for name in ("p", "idle"):
        rc, _, err = run_cli("pool-define", _pool_xml(tmp_path, name, tgt_basic))
        assert rc == 0, err
    rc, _, err = run_cli("pool-start", "p")
    assert rc == 0, err
    (tmp_path / "vol.xml").write_text(
        "<volume><name>newvol</name><capacity unit='M'>1</capacity></volume>\n"
    )
    (tmp_path / "vol-valid.xml").write_text(
        "<volume><name>newvol</name><capacity unit='M'>1</capacity><target/></volume>\n"
    )
    (tmp_path / "vol-nocap.xml").write_text("<volume><name>newvol</name></volume>\n")
    (tmp_path / "vol-clash.xml").write_text(
        f"<volume><name>{VOL}</name><capacity>1048576</capacity></volume>\n"
    )
    return tmp_path


CASES = [
    (["vol-create-as", "p", "newvol", "1M"], CREATE),
    (["vol-create-as", "p", "newvol", "1M", "--allocation", "0", "--format", "raw"], CREATE),
    (["vol-create-as", "p", "newvol", "1M", "--prealloc-metadata"], CREATE),
    (["vol-create-as", "p", "newvol", "0"], CAPACITY),
    (["vol-create-as", "p", VOL, "1M"], f"storage volume '{VOL}' exists already"),
    (["vol-create-as", "p", "newvol", "1X"], "Malformed size 1X"),
    (["vol-create-as", "p", "newvol", "-1"], "Malformed size -1"),
    (["vol-create-as", "p", "newvol", "1M", "--allocation", "abc"], "Malformed size abc"),
    (
        ["vol-create-as", "nosuch", "newvol", "1M"],
        "Storage pool not found: no storage pool with matching name 'nosuch'",
    ),
    (
        ["vol-create-as", "idle", "newvol", "1M"],
        "Requested operation is not valid: storage pool 'idle' is not active",
    ),
    (["vol-create", "p", "{tmp}/vol.xml"], CREATE),
    (["vol-create", "p", "{tmp}/vol-valid.xml", "--validate", "--prealloc-metadata"], CREATE),
    (["vol-create", "p", "{tmp}/vol-nocap.xml"], CAPACITY),
    (["vol-create", "p", "{tmp}/vol-clash.xml"], f"storage volume '{VOL}' exists already"),
    (["vol-create-from", "p", "{tmp}/vol.xml", VOL, "--inputpool", "p"], CREATE_FROM),
    (["vol-create-from", "p", "{tmp}/vol-nocap.xml", VOL, "--inputpool", "p"], CREATE_FROM),
    (
        ["vol-create-from", "p", "{tmp}/vol-clash.xml", VOL, "--inputpool", "p", "--reflink"],
        f"internal error: storage volume name '{VOL}' already in use.",
    ),
    (["vol-clone", VOL, "newvol", "--pool", "p"], CREATE_FROM),
    (["vol-clone", VOL, "newvol", "--pool", "p", "--prealloc-metadata", "--reflink"], CREATE_FROM),
    (
        ["vol-clone", VOL, "unit:0:0:2", "--pool", "p"],
        "internal error: storage volume name 'unit:0:0:2' already in use.",
    ),
    (["vol-delete", VOL, "--pool", "p"], DELETE),
    (["vol-delete", VOL, "--pool", "p", "--delete-snapshots"], DELETE),
    (["vol-delete", "{key}"], DELETE),
    (
        ["vol-delete", "unit:0:0:9", "--pool", "p"],
        "failed to get vol 'unit:0:0:9'\n"  # virsh's line, then libvirt's
        "error: Storage volume not found: no storage vol with matching path 'unit:0:0:9'",
    ),
    (["vol-resize", VOL, "1G", "--pool", "p"], RESIZE),
    (["vol-resize", VOL, "1G", "--pool", "p", "--delta"], RESIZE),
    (["vol-resize", VOL, "64M", "--pool", "p"], RESIZE),
    (["vol-resize", "{key}", "1G"], RESIZE),
    (
        ["vol-resize", VOL, "1M", "--pool", "p"],
        "invalid argument: can't shrink capacity below existing allocation",
    ),
    (
        ["vol-resize", VOL, "1M", "--pool", "p", "--shrink", "--delta"],
        "invalid argument: can't shrink capacity below existing allocation",
    ),
    (["vol-resize", "--pool", "p", VOL, "--", "-1M"], "negative size requires --shrink"),
    (
        ["vol-resize", VOL, "1G", "--pool", "p", "--allocate"],
        "operation failed: Not enough space left in storage pool",
    ),
    (["vol-resize", VOL, "1Q", "--pool", "p"], "Malformed size 1Q"),
    (
        ["vol-resize", VOL, "1G", "--pool", "idle"],
        "pool 'idle' is not active",  # virsh checks before looking the volume up
    ),
    (
        ["pool-delete", "p"],
        "Requested operation is not valid: storage pool 'p' is still active",
    ),
    (["pool-delete", "idle"], NS + "pool does not support pool deletion"),
    (
        ["pool-build", "idle", "--overwrite", "--no-overwrite"],
        "Options --no-overwrite and --overwrite are mutually exclusive",
    ),
]


@pytest.mark.parametrize(("argv", "message"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_unsupported_command_gives_libvirts_message(
    run_cli: RunCli, pools: Path, argv: list[str], message: str
) -> None:
    rc, key, err = run_cli("vol-key", VOL, "--pool", "p")
    assert rc == 0, err
    before = run_cli("vol-list", "p", "--details")
    args = [a.replace("{tmp}", str(pools)).replace("{key}", key.strip()) for a in argv]
    rc, out, err = run_cli(*args)
    assert (rc, out, err) == (1, "", f"error: {message}\n")
    assert run_cli("vol-list", "p", "--details") == before


def test_pool_build_accepts_virsh_options(run_cli: RunCli, pools: Path) -> None:
    assert run_cli("pool-build", "idle", "--no-overwrite") == (0, "Pool idle built\n\n", "")


def test_print_xml_prints_what_virsh_would_send(run_cli: RunCli, pools: Path) -> None:
    rc, out, err = run_cli(
        "vol-create-as",
        "p",
        "new<vol>",
        "1M",
        "--allocation",
        "0",
        "--format",
        "raw",
        "--print-xml",
    )
    assert (rc, err) == (0, "")
    assert out == (
        "<volume>\n  <name>new&lt;vol&gt;</name>\n  <capacity>1048576</capacity>\n"
        "  <allocation>0</allocation>\n  <target>\n    <format type='raw'/>\n  </target>\n"
        "</volume>\n"
    )
    rc, out, err = run_cli("vol-clone", VOL, "copy", "--pool", "p", "--print-xml")
    assert (rc, err) == (0, "")
    assert "<name>copy</name>" in out and "<volume type='network'>" in out
