"""A LUN is what the target reported: kept raw from REPORT LUNS to the state file, the BHS and
QEMU's ``<source name='IQN/N'>`` (N = the first two reported bytes, big-endian).

QEMU's libiscsi copies N raw into LUN bytes 0-1, so tgt's LUN 300 (reported ``41 2c``) must be
N = 16684; N = 300 reaches tgt's LUN 44. The live check with QEMU is
tests/integration/test_attach_lun_id.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from poolbackend.errors import ConfigError, StateError
from poolbackend.pool import statefile
from poolbackend.pool.model import PoolDef, PoolSource, PoolState, Volume
from poolbackend.pool.store import Store, StorePaths
from poolbackend.pool.xml import disk
from poolbackend.scsi import (
    Lun,
    ScsiParseError,
    UnsupportedLunFormat,
    build_report_luns_data,
    lun_field,
    parse_report_luns,
)
from tests.conftest import RunCli
from tests.unit.test_iscsi_core import logged_in

TARGET = "iqn.2026-11.example:target1"
INITIATOR = "iqn.2026-11.example:initiator1"
UUID = "6a1f3c2e-9b4d-4e8a-8f27-3c5d1e0b7a94"


def _pool() -> PoolDef:
    return PoolDef("lunpool", UUID, PoolSource("127.0.0.1", 3261, TARGET, INITIATOR))


# ------------------------------------------------------------------- entries, from bytes

USABLE = [
    # raw entry, number shown to users, QEMU number
    ("0000000000000000", 0, 0),
    ("0005000000000000", 5, 5),  # peripheral
    ("002c000000000000", 44, 44),
    ("00ff000000000000", 255, 255),
    ("4100000000000000", 256, 0x4100),  # flat: tgt's LUNs >= 256
    ("412c000000000000", 300, 16684),  # tgt's LUN 300
    ("44d2000000000000", 1234, 0x44D2),
    ("7fff000000000000", 16383, 0x7FFF),
    ("012c000000000000", 300, 300),  # LIO's LUN 300: peripheral, the number raw
    ("3fff000000000000", 16383, 0x3FFF),
    ("4005000000000000", 5, 0x4005),  # flat LUN 5: QEMU must send 40 05, not 00 05
]
#: the first entry of each number (a second one with the same number is refused)
UNIQUE = [u for i, u in enumerate(USABLE) if u[1] not in {v[1] for v in USABLE[:i]}]


@pytest.mark.parametrize(("raw", "number", "qemu"), USABLE)
def test_reported_entry_kept_with_number_and_qemu_number(raw: str, number: int, qemu: int) -> None:
    lun = Lun(bytes.fromhex(raw))
    assert (lun.number, lun.qemu, lun.hex, str(lun)) == (number, qemu, raw, str(number))
    assert lun_field(lun) == bytes.fromhex(raw)  # addressed as reported, never re-encoded
    assert Lun.from_hex(raw) == lun


REFUSED = [
    ("0001000200000000", "more than two bytes"),  # second level
    ("412c000000000001", "more than two bytes"),
    ("0000000000000100", "more than two bytes"),
    ("c101000000000000", "extended addressing"),  # well-known LU
    ("e200000000000001", "more than two bytes"),  # long extended LUN
    ("d200000000000000", "extended addressing"),
    ("8001000000000000", "logical unit addressing"),
]


@pytest.mark.parametrize(("raw", "why"), REFUSED)
def test_entries_qemu_cannot_address_are_refused(raw: str, why: str) -> None:
    with pytest.raises(UnsupportedLunFormat, match=why):
        Lun(bytes.fromhex(raw))


@pytest.mark.parametrize("text", ["412c", "412C000000000000", "412c00000000000g", ""])
def test_from_hex_refuses_malformed_text(text: str) -> None:
    with pytest.raises(ScsiParseError):
        Lun.from_hex(text)


def test_report_luns_splits_usable_and_refused_entries_in_one_rule() -> None:
    raws = [bytes.fromhex(raw) for raw, _, _ in UNIQUE]
    bad = [bytes.fromhex(raw) for raw, _ in REFUSED]
    data = build_report_luns_data([*raws[:3], *bad, *raws[3:]])
    report = parse_report_luns(data)
    assert [lun.raw for lun in report.entries] == raws
    assert report.luns == tuple(number for _, number, _ in UNIQUE)
    assert report.unsupported == tuple(bad)
    for (raw, why), (got, reason) in zip(REFUSED, report.refused, strict=True):
        assert got.hex() == raw and why in reason


def test_report_luns_refuses_a_second_entry_with_the_same_number() -> None:
    # flat 40 05 and peripheral 00 05 would both be unit:0:0:5; tgt reports its LUN 16684
    # as 41 2c, the same entry as LUN 300
    data = build_report_luns_data(
        [bytes.fromhex(h) for h in ("0005" + "00" * 6, "4005" + "00" * 6, "412c" + "00" * 6)] * 1
        + [bytes.fromhex("412c" + "00" * 6)]
    )
    report = parse_report_luns(data)
    assert [lun.hex for lun in report.entries] == ["0005000000000000", "412c000000000000"]
    assert [reason for _, reason in report.refused] == [
        "LUN 5 is reported twice (also as 0005000000000000)",
        "LUN 300 is reported twice (also as 412c000000000000)",
    ]


def test_bhs_lun_field_is_the_reported_entry() -> None:
    """The initiator addresses a scanned LUN with the reported bytes (flat 40 05 stays 40 05)."""
    for raw, _, _ in USABLE:
        conn = logged_in()
        lun = Lun(bytes.fromhex(raw))
        conn.scsi_command(lun, bytes(6))
        assert b"".join(conn.data_to_send())[8:16] == lun.raw
        conn.task_management(5, lun)  # LOGICAL UNIT RESET addresses the same bytes
        assert b"".join(conn.data_to_send())[8:16] == lun.raw


# --------------------------------------------------------------- model and state file


def test_volume_keeps_the_report_and_the_state_file_round_trips_it() -> None:
    pool = _pool()
    volumes = tuple(
        Volume.for_lun(pool.source, Lun(bytes.fromhex(raw)), capacity=1 << 20, block_size=512)
        for raw, _, _ in UNIQUE
    )
    assert [v.name for v in volumes] == [f"unit:0:0:{n}" for _, n, _ in UNIQUE]
    text = statefile.dumps(pool, PoolState(active=True, volumes=volumes))
    assert b'"lun":300,' in text and b'"reported":"412c000000000000"' in text
    _, state = statefile.loads(text)
    assert state.volumes == volumes
    assert [v.address(pool.name).qemu for v in state.volumes] == [q for _, _, q in UNIQUE]


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ('"412c000000000000"', '"002c000000000000"', "is LUN 44, not 300"),
        ('"412c000000000000"', '"412c"', "not 16 lowercase hex digits"),
        ('"412c000000000000"', '"c101000000000000"', "extended addressing"),
        ('"412c000000000000"', '"412c000000000001"', "more than two bytes"),
    ],
)
def test_state_file_with_a_bad_report_is_refused(old: str, new: str, problem: str) -> None:
    pool = _pool()
    volume = Volume.for_lun(pool.source, 300, capacity=512, block_size=512)
    text = statefile.dumps(pool, PoolState(active=True, volumes=(volume,))).decode()
    assert old in text
    with pytest.raises(ConfigError, match=problem) as info:
        statefile.loads(text.replace(old, new).encode())
    assert "\n" not in str(info.value)


def _old_state_store(root: Path) -> Store:
    """A store whose state file was written before the report was kept."""
    pool = _pool()
    store = Store(StorePaths.under(root))
    store.define(pool)
    volume = Volume.for_lun(pool.source, 300, capacity=1 << 20, block_size=512)
    store.save_state(pool.name, PoolState(active=True, volumes=(volume,)))
    path = store.state_path(pool.name)
    path.write_text(path.read_text().replace(',"reported":"412c000000000000"', ""))
    return store


def test_old_state_file_loads_and_attach_asks_for_a_refresh(tmp_path: Path) -> None:
    store = _old_state_store(tmp_path)
    volume = store.get_pool("lunpool").state.volumes[0]
    assert (volume.lun, volume.reported) == (300, None)
    with pytest.raises(StateError, match=r"run 'pool-refresh lunpool' first"):
        disk.disk_xml(store.get_pool("lunpool").pool, volume, target="vdb", bus="virtio")


def test_old_state_file_cli(state_dir: Path, run_cli: RunCli) -> None:
    _old_state_store(state_dir)
    rc, out, err = run_cli("vol-info", "--scsi", "--pool", "lunpool", "unit:0:0:300")
    assert rc == 0, err
    assert "QEMU LUN:       unknown (run pool-refresh)" in out
    rc, out, err = run_cli(
        "attach-volume",
        "test",
        "unit:0:0:300",
        "--pool",
        "lunpool",
        "--print-xml",
        "--connect",
        "test:///default",
    )
    assert rc != 0 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "run 'pool-refresh lunpool' first" in err


def test_vol_info_scsi_shows_the_qemu_number(state_dir: Path, run_cli: RunCli) -> None:
    pool = _pool()
    store = Store(StorePaths.under(state_dir))
    store.define(pool)
    volume = Volume.for_lun(pool.source, 300, capacity=1 << 20, block_size=512)
    store.save_state(pool.name, PoolState(active=True, volumes=(volume,)))
    rc, out, err = run_cli("vol-info", "--scsi", "--pool", "lunpool", "unit:0:0:300")
    assert rc == 0, err
    assert "LUN:            300\n" in out
    assert "QEMU LUN:       16684\n" in out
    assert "Reported as:    412c000000000000\n" in out


# ----------------------------------------------------------------------------- disk XML


@pytest.mark.parametrize(("raw", "number", "qemu"), USABLE)
def test_disk_xml_names_the_qemu_number(raw: str, number: int, qemu: int) -> None:
    pool = _pool()
    volume = Volume.for_lun(pool.source, Lun(bytes.fromhex(raw)), capacity=1 << 20)
    root = etree.fromstring(disk.disk_xml(pool, volume, target="vdb", bus="virtio"))
    assert root.find("source").get("name") == f"{TARGET}/{qemu}"


def test_disk_xml_for_tgt_lun_300_is_16684() -> None:
    pool = _pool()
    volume = Volume.for_lun(pool.source, 300, capacity=1 << 20)
    assert volume.name == "unit:0:0:300"
    assert disk.source_name(pool, volume) == f"{TARGET}/16684"
