"""attach-volume's disk XML and refusals, checked with libvirt's own parser and schema.

libvirt's ``test:///default`` driver (no daemon) parses domain XML with libvirt's real parser
and has a running domain ``test`` with ``vda``, but it cannot hot-plug (that is tested with a
real libvirtd and QEMU in tests/integration/test_attach.py). The pool state is written straight
into a private store, so no target is needed here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree

from poolbackend.errors import ConfigError, NotFoundError, StateError
from poolbackend.pool import attach
from poolbackend.pool.driver import Driver
from poolbackend.pool.model import ChapAuth, PoolDef, PoolSource, PoolState, Volume
from poolbackend.pool.secrets import SecretStore
from poolbackend.pool.store import Store, StorePaths
from poolbackend.pool.xml import disk
from tests.conftest import RunCli

TARGET = "iqn.2026-11.example:target1"
INITIATOR = "iqn.2026-11.example:initiator1"
UUID = "6a1f3c2e-9b4d-4e8a-8f27-3c5d1e0b7a94"
TEST_URI = "test:///default"
DOMAIN_RNG = Path("/usr/share/libvirt/schemas/domain.rng")


def _pool(
    auth: ChapAuth | None = None, host: str = "127.0.0.1", port: int | None = 3261
) -> PoolDef:
    return PoolDef("iscsi-pool", UUID, PoolSource(host, port, TARGET, INITIATOR, auth))


def _store(root: Path, pool: PoolDef, *, active: bool = True) -> Store:
    store = Store(StorePaths.under(root))
    store.define(pool)
    if active:
        volumes = (
            Volume.for_lun(pool.source, 1, capacity=64 << 20, block_size=512),
            Volume.for_lun(pool.source, 2, capacity=8 << 20, block_size=4096),
            Volume.for_lun(pool.source, 5, device_type=1, device_type_name="tape"),
        )
        store.save_state(pool.name, PoolState(active=True, volumes=volumes))
    return store


@pytest.fixture
def conn() -> Iterator[object]:
    import libvirt

    c = libvirt.open(TEST_URI)
    yield c
    c.close()


def _define_domain_with(conn: object, disk_xml: str) -> str:
    """Define a domain holding *disk_xml* with libvirt's parser; return libvirt's dump."""
    domain = f"""<domain type='test'>
  <name>attach-check</name>
  <memory unit='MiB'>64</memory>
  <os><type>hvm</type></os>
  <devices>{disk_xml}</devices>
</domain>"""
    dom = conn.defineXML(domain)  # type: ignore[attr-defined]
    try:
        return str(dom.XMLDesc(0))
    finally:
        dom.undefine()


# ------------------------------------------------------------------------------ pure


@pytest.mark.parametrize(
    ("index", "name"), [(0, "vda"), (1, "vdb"), (25, "vdz"), (26, "vdaa"), (701, "vdzz")]
)
def test_index_to_name_follows_libvirt(index: int, name: str) -> None:
    assert disk.index_to_name("vd", index) == name


def test_next_free_target_skips_used_names() -> None:
    assert disk.next_free_target({"vda", "sda"}, "virtio") == "vdb"
    assert disk.next_free_target({"vda", "sda", "sdb"}, "scsi") == "sdc"
    assert disk.next_free_target(set(), "sata") == "sda"


@pytest.mark.parametrize(
    ("options", "bus"),
    [
        (disk.DiskOptions(), "virtio"),
        (disk.DiskOptions(device="lun"), "scsi"),
        (disk.DiskOptions(target="sdc"), "scsi"),
        (disk.DiskOptions(target="vdc"), "virtio"),
        (disk.DiskOptions(target="sdc", bus="sata"), "sata"),
    ],
)
def test_bus_defaults(options: disk.DiskOptions, bus: str) -> None:
    assert disk.resolve_bus(options) == bus


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (disk.DiskOptions(target="hda"), "invalid target device 'hda'"),
        (disk.DiskOptions(target="vdb", bus="scsi"), "does not fit bus 'scsi'"),
        (disk.DiskOptions(device="lun", bus="virtio"), "needs bus 'scsi'"),
        (disk.DiskOptions(bus="ide"), "unsupported bus 'ide'"),
        (disk.DiskOptions(device="cdrom"), "unsupported disk device 'cdrom'"),
    ],
)
def test_bad_disk_options_are_refused(options: disk.DiskOptions, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        disk.resolve_bus(options)


def test_disk_xml_shape() -> None:
    pool = _pool(ChapAuth("alice", secret_usage="target1-chap"))
    volume = Volume.for_lun(pool.source, 7, capacity=1 << 20)
    root = etree.fromstring(disk.disk_xml(pool, volume, target="sdb", bus="scsi", device="lun"))
    assert root.get("type") == "network"
    assert root.get("device") == "lun"
    assert root.find("driver").attrib == {"name": "qemu", "type": "raw", "cache": "none"}
    src = root.find("source")
    assert src.attrib == {"protocol": "iscsi", "name": f"{TARGET}/7"}
    assert src.find("host").attrib == {"name": "127.0.0.1", "port": "3261"}
    assert src.find("initiator/iqn").get("name") == INITIATOR
    assert src.find("auth").get("username") == "alice"
    assert src.find("auth/secret").attrib == {"type": "iscsi", "usage": "target1-chap"}
    assert root.find("target").attrib == {"dev": "sdb", "bus": "scsi"}


def test_disk_xml_default_port_and_ipv6() -> None:
    pool = _pool(host="::1", port=None)
    volume = Volume.for_lun(pool.source, 0)
    root = etree.fromstring(disk.disk_xml(pool, volume, target="vda", bus="virtio"))
    assert root.find("source/host").attrib == {"name": "::1", "port": "3260"}
    assert root.find("source").get("name") == f"{TARGET}/0"


@pytest.mark.parametrize(
    "auth",
    [None, ChapAuth("alice", secret_usage="target1-chap"), ChapAuth("bob", secret_uuid=UUID)],
)
def test_disk_xml_is_valid_for_libvirt_schema_and_parser(
    conn: object, auth: ChapAuth | None
) -> None:
    if not DOMAIN_RNG.exists():
        pytest.fail(
            f"{DOMAIN_RNG} missing: install Debian's libvirt-daemon (scripts/install-deps.sh)"
        )
    pool = _pool(auth)
    volume = Volume.for_lun(pool.source, 3, capacity=1 << 20)
    element = disk.disk_xml(pool, volume, target="sdb", bus="scsi")
    domain = etree.fromstring(
        f"<domain type='kvm'><name>x</name><memory>65536</memory><os><type>hvm</type></os>"
        f"<devices>{element}</devices></domain>"
    )
    schema = etree.RelaxNG(etree.parse(str(DOMAIN_RNG)))
    assert schema.validate(domain), schema.error_log.last_error
    dumped = etree.fromstring(_define_domain_with(conn, element))
    src = dumped.find("devices/disk/source")
    assert src.get("protocol") == "iscsi"
    assert src.get("name") == f"{TARGET}/3"
    assert src.find("host").get("port") == "3261"
    assert src.find("initiator/iqn").get("name") == INITIATOR
    if auth is not None:
        secret = src.find("auth/secret")
        assert secret.get("usage" if auth.secret_usage else "uuid") == (
            auth.secret_usage or auth.secret_uuid
        )


# -------------------------------------------------------------------- against test://


def test_print_only_picks_the_next_free_target_and_changes_nothing(
    tmp_path: Path, conn: object
) -> None:
    store = _store(tmp_path, _pool())
    before = conn.lookupByName("test").XMLDesc(0)  # type: ignore[attr-defined]
    result = attach.attach_volume(
        "test", "unit:0:0:1", pool="iscsi-pool", driver=Driver(store), conn=conn, print_only=True
    )
    assert result.target == "vdb"  # the test domain already has vda
    assert result.bus == "virtio"
    assert conn.lookupByName("test").XMLDesc(0) == before  # type: ignore[attr-defined]


def test_target_in_use_is_refused(tmp_path: Path, conn: object) -> None:
    store = _store(tmp_path, _pool())
    with pytest.raises(StateError, match="target device 'vda' is already in use by domain 'test'"):
        attach.attach_volume(
            "test",
            "unit:0:0:1",
            pool="iscsi-pool",
            driver=Driver(store),
            conn=conn,
            options=disk.DiskOptions(target="vda"),
        )


def test_unknown_domain_pool_volume_and_inactive_pool(tmp_path: Path, conn: object) -> None:
    store = _store(tmp_path, _pool())
    with pytest.raises(NotFoundError, match="failed to get domain 'nosuch'"):
        attach.attach_volume(
            "nosuch", "unit:0:0:1", pool="iscsi-pool", driver=Driver(store), conn=conn
        )
    with pytest.raises(NotFoundError, match="no storage pool with matching name 'other'"):
        attach.attach_volume("test", "unit:0:0:1", pool="other", driver=Driver(store), conn=conn)
    with pytest.raises(NotFoundError, match="unit:0:0:9"):
        attach.attach_volume(
            "test", "unit:0:0:9", pool="iscsi-pool", driver=Driver(store), conn=conn
        )
    inactive = _store(tmp_path / "inactive", _pool(), active=False)
    with pytest.raises(StateError, match=r"^pool 'iscsi-pool' is not active$"):  # virsh's text
        attach.attach_volume(
            "test", "unit:0:0:1", pool="iscsi-pool", driver=Driver(inactive), conn=conn
        )


def test_non_disk_lun_is_refused(tmp_path: Path, conn: object) -> None:
    store = _store(tmp_path, _pool())
    with pytest.raises(ConfigError, match="LUN 5, a tape device, not a disk"):
        attach.attach_volume(
            "test", "unit:0:0:5", pool="iscsi-pool", driver=Driver(store), conn=conn
        )


def test_chap_secret_missing_in_libvirt_says_define_secret(tmp_path: Path) -> None:
    class NoSecrets:
        """A connection whose secret driver knows no secret (test:// has no secret driver)."""

        def __init__(self, real: object) -> None:
            self.real = real

        def __getattr__(self, name: str) -> object:
            return getattr(self.real, name)

        def secretLookupByUsage(self, usage_type: int, usage: str) -> object:
            import libvirt

            err = libvirt.libvirtError("no secret")
            err.err = (libvirt.VIR_ERR_NO_SECRET, 0, "no secret", 0, "", "", "", 0, 0)
            raise err

    import libvirt

    real = libvirt.open(TEST_URI)
    store = _store(tmp_path, _pool(ChapAuth("alice", secret_usage="target1-chap")))
    secrets = SecretStore(StorePaths.under(tmp_path))
    with pytest.raises(StateError, match="rerun with --define-secret"):
        attach.attach_volume(
            "test",
            "unit:0:0:1",
            pool="iscsi-pool",
            driver=Driver(store, secrets),
            conn=NoSecrets(real),
        )
    with pytest.raises(NotFoundError, match="no local secret with usage 'target1-chap'"):
        attach.attach_volume(
            "test",
            "unit:0:0:1",
            pool="iscsi-pool",
            driver=Driver(store, secrets),
            conn=NoSecrets(real),
            define_secret=True,
        )
    real.close()


def test_detach_of_a_volume_not_attached(tmp_path: Path, conn: object) -> None:
    store = _store(tmp_path, _pool())
    with pytest.raises(NotFoundError, match="is not attached to domain 'test'"):
        attach.detach_volume(
            "test", "unit:0:0:1", pool="iscsi-pool", driver=Driver(store), conn=conn
        )


# ------------------------------------------------------------------------------- CLI


def test_cli_print_xml_and_errors(tmp_path: Path, state_dir: Path, run_cli: RunCli) -> None:
    _store(state_dir, _pool())
    rc, out, err = run_cli(
        "attach-volume", "test", "unit:0:0:2", "--pool", "iscsi-pool", "-c", TEST_URI,
        "--target", "sdc", "--print-xml",
    )  # fmt: skip
    assert (rc, err) == (0, "")
    disk = etree.fromstring(out)
    assert disk.find("target").attrib == {"dev": "sdc", "bus": "scsi"}
    assert disk.find("source").get("name") == f"{TARGET}/2"

    rc, out, err = run_cli(
        "attach-volume", "nosuch", "unit:0:0:1", "--pool", "iscsi-pool", "-c", TEST_URI
    )
    assert rc == 1
    assert err == "error: failed to get domain 'nosuch': no such domain\n"

    rc, out, err = run_cli(
        "attach-volume", "test", "unit:0:0:1", "--pool", "iscsi-pool", "-c", TEST_URI,
        "--target", "vda",
    )  # fmt: skip
    assert rc == 1
    assert err == "error: target device 'vda' is already in use by domain 'test'\n"

    rc, out, err = run_cli(
        "attach-volume", "test", "unit:0:0:1", "--pool", "iscsi-pool", "-c", "bogus:///x"
    )
    assert rc == 1
    assert err.startswith("error: cannot connect to libvirt at bogus:///x: ")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_detach_of_an_inactive_pool_matches_the_qemu_number_that_reaches_the_lun() -> None:
    """Without the pool's state, a disk is the volume's when its QEMU number addresses the
    LUN of the volume's name (peripheral or flat addressing), never the legacy raw number."""
    from poolbackend.pool.xml.disk import reaches_lun

    assert reaches_lun(1, 1) and reaches_lun(0x4001, 1)
    assert reaches_lun(16684, 300)  # tgt's LUN 300, reported 41 2c
    assert not reaches_lun(300, 300)  # 01 2c: peripheral bus 1, tgt's LUN 44
    assert not reaches_lun(2, 1) and not reaches_lun(0x10000, 0)
