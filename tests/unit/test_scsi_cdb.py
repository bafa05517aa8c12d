"""CDB builders: exact bytes per the §21.1 cheat-sheet, range checks and names."""

from __future__ import annotations

import pytest

from poolbackend.scsi import Opcode, cdb, cdb_name


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def test_tur() -> None:
    assert cdb.tur() == bytes(6)


def test_inquiry() -> None:
    assert cdb.inquiry() == h("12 00 00 00ff 00")
    assert cdb.inquiry(alloc=64) == h("12 00 00 0040 00")
    assert cdb.inquiry(evpd=True, page=0x83, alloc=0x1000) == h("12 01 83 1000 00")
    with pytest.raises(ValueError, match="needs evpd=True"):
        cdb.inquiry(page=0x80)
    with pytest.raises(ValueError, match="INQUIRY allocation length 65536"):
        cdb.inquiry(alloc=0x10000)


def test_report_luns() -> None:
    assert cdb.report_luns() == h("a0 00 00 000000 00000010 00 00")
    assert cdb.report_luns(alloc=40, select_report=2) == h("a0 00 02 000000 00000028 00 00")
    with pytest.raises(ValueError, match="REPORT LUNS allocation length 8"):
        cdb.report_luns(alloc=8)


def test_read_capacity() -> None:
    assert cdb.read_capacity10() == h("25 00 00000000 0000 00 00")
    assert cdb.read_capacity16() == h("9e 10 0000000000000000 00000020 00 00")


def test_read_write_10() -> None:
    assert cdb.read10(0x12345678, 0x100) == h("28 00 12345678 00 0100 00")
    assert cdb.write10(1, 8, fua=True) == h("2a 08 00000001 00 0008 00")
    assert cdb.read10(0, 1, dpo=True, fua=True) == h("28 18 00000000 00 0001 00")
    assert cdb.read10(0xFFFFFFFF, 0xFFFF)[2:9] == h("ffffffff 00 ffff")
    with pytest.raises(ValueError, match=r"READ\(10\) LBA 4294967296 out of range"):
        cdb.read10(0x1_0000_0000, 1)
    with pytest.raises(ValueError, match=r"WRITE\(10\) block count 65536"):
        cdb.write10(0, 0x10000)
    with pytest.raises(ValueError, match="LBA -1"):
        cdb.read10(-1, 1)


def test_read_write_16() -> None:
    assert cdb.read16(0x1_0000_0000, 128) == h("88 00 0000000100000000 00000080 00 00")
    assert cdb.write16(5, 0x10000, fua=True, dpo=True) == h("8a 18 0000000000000005 00010000 00 00")
    with pytest.raises(ValueError, match=r"READ\(16\) LBA"):
        cdb.read16(2**64, 1)
    with pytest.raises(ValueError, match=r"WRITE\(16\) block count"):
        cdb.write16(0, 2**32)


def test_write_same16() -> None:
    assert cdb.write_same16(0, 2048) == h("93 00 0000000000000000 00000800 00 00")
    assert cdb.write_same16(16, 0, unmap=True, ndob=True) == h(
        "93 09 0000000000000010 00000000 00 00"
    )
    assert cdb.write_same16(0, 1, anchor=True)[1] == 0x10


def test_unmap() -> None:
    # UNMAP's ANCHOR is bit 0 of byte 1 (WRITE SAME's is 0x10).
    assert cdb.unmap(24) == h("42 00 00000000 00 0018 00")
    assert cdb.unmap(24, anchor=True)[1] == 0x01
    with pytest.raises(ValueError, match="parameter list length 65536"):
        cdb.unmap(0x10000)


def test_unmap_parameter_list() -> None:
    data = cdb.unmap_parameter_list([(0x800, 0x80)])
    assert data == h("0016 0010 00000000  0000000000000800 00000080 00000000")
    assert len(cdb.unmap(len(data))) == 10
    two = cdb.unmap_parameter_list([(0, 1), (2**64 - 1, 2**32 - 1)])
    assert two[:4] == h("0026 0020") and len(two) == 8 + 32
    assert cdb.unmap_parameter_list([]) == h("0006 0000 00000000")
    with pytest.raises(ValueError, match="UNMAP block count"):
        cdb.unmap_parameter_list([(0, 2**32)])
    with pytest.raises(ValueError, match="UNMAP parameter data length"):
        cdb.unmap_parameter_list([(0, 1)] * 4096)


def test_synchronize_cache() -> None:
    assert cdb.synchronize_cache10() == h("35 00 00000000 00 0000 00")
    assert cdb.synchronize_cache10(100, 8, immed=True) == h("35 02 00000064 00 0008 00")
    assert cdb.synchronize_cache16(2**40) == h("91 00 0000010000000000 00000000 00 00")


def test_mode_sense6() -> None:
    assert cdb.mode_sense6() == h("1a 00 3f 00 ff 00")
    assert cdb.mode_sense6(0x08, pc=3, dbd=True, alloc=64) == h("1a 08 c8 00 40 00")
    with pytest.raises(ValueError, match="page code 64"):
        cdb.mode_sense6(0x40)


@pytest.mark.parametrize(
    ("built", "name"),
    [
        (cdb.tur(), "TEST UNIT READY"),
        (cdb.inquiry(), "INQUIRY"),
        (cdb.report_luns(), "REPORT LUNS"),
        (cdb.read_capacity10(), "READ CAPACITY(10)"),
        (cdb.read_capacity16(), "READ CAPACITY(16)"),
        (cdb.read10(0, 1), "READ(10)"),
        (cdb.write10(0, 1), "WRITE(10)"),
        (cdb.read16(0, 1), "READ(16)"),
        (cdb.write16(0, 1), "WRITE(16)"),
        (cdb.write_same16(0, 1), "WRITE SAME(16)"),
        (cdb.unmap(24), "UNMAP"),
        (cdb.synchronize_cache10(), "SYNCHRONIZE CACHE(10)"),
        (cdb.synchronize_cache16(), "SYNCHRONIZE CACHE(16)"),
        (cdb.mode_sense6(), "MODE SENSE(6)"),
        (h("9e 12"), "GET LBA STATUS(16)"),
        (h("9e 13"), "SERVICE ACTION IN(16)"),
        (bytes([Opcode.MODE_SENSE_10]), "MODE SENSE(10)"),
        (h("c5 00"), "opcode 0xC5"),
        (b"", "empty CDB"),
    ],
)
def test_cdb_name(built: bytes, name: str) -> None:
    assert cdb_name(built) == name


def test_cdb_lengths() -> None:
    assert {len(c) for c in (cdb.tur(), cdb.inquiry(), cdb.mode_sense6())} == {6}
    assert len(cdb.report_luns()) == 12
    assert {len(cdb.read16(0, 1)), len(cdb.write_same16(0, 1)), len(cdb.read_capacity16())} == {16}
