"""VPD pages 00/80/83/B0/B1/B2 with tgt 1.0.85's contents."""

from __future__ import annotations

import pytest

from poolbackend.scsi import (
    Designator,
    ScsiParseError,
    parse_block_device_characteristics,
    parse_block_limits,
    parse_device_identification,
    parse_logical_block_provisioning,
    parse_supported_pages,
    parse_unit_serial,
    preferred_identifier,
    vpd_full_length,
)


def page(code: int, body: bytes) -> bytes:
    return bytes([0, code]) + len(body).to_bytes(2, "big") + body


T10 = bytes.fromhex("02010024") + b"IET     00010001".ljust(36, b"\0")
NAA3 = bytes.fromhex("01030008 3000000100000001")
NAA6 = bytes.fromhex("01030010 60000000000000000e00000000010001")
TGT_83 = page(0x83, T10 + NAA3 + NAA6)


def test_supported_pages() -> None:
    data = bytes.fromhex("0000000600 80 83 b0 b1 b2".replace(" ", ""))
    assert parse_supported_pages(data).pages == (0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2)
    assert parse_supported_pages(data + bytes(10)).pages == (0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2)


def test_unit_serial_right_aligned() -> None:
    assert parse_unit_serial(page(0x80, b" " * 30 + b"beaf11")).serial == "beaf11"


def test_tgt_device_identification() -> None:
    ids = parse_device_identification(TGT_83).designators
    assert [(d.code_set, d.association, d.designator_type, d.piv) for d in ids] == [
        (2, 0, 1, False),
        (1, 0, 3, False),
        (1, 0, 3, False),
    ]
    assert ids[0].text == "IET     00010001"
    assert ids[1].text == "3000000100000001" and ids[1].naa == 3
    assert ids[2].text == "60000000000000000e00000000010001" and ids[2].naa == 6
    assert ids[0].naa is None
    assert preferred_identifier(ids) == "naa.60000000000000000e00000000010001"


def designator(kind: int, value: bytes, *, code_set: int = 1, association: int = 0) -> Designator:
    return Designator(5, code_set, True, association, kind, value)


def test_preferred_identifier_order() -> None:
    naa5 = designator(3, bytes.fromhex("5000000000000001"))
    naa3 = designator(3, bytes.fromhex("3000000000000001"))
    eui = designator(2, bytes.fromhex("0011223344556677"))
    name = designator(8, b"iqn.2026-11.example:lun1\0\0\0\0", code_set=3)
    t10 = designator(1, b"IET     00010001", code_set=2)
    port = designator(3, bytes.fromhex("6000000000000000000000000000000f"), association=1)
    assert preferred_identifier([t10, naa3, eui, naa5, port]) == "naa.5000000000000001"
    assert preferred_identifier([t10, name, naa3, eui]) == "eui.0011223344556677"
    assert preferred_identifier([t10, name, naa3]) == "naa.3000000000000001"
    assert preferred_identifier([t10, name]) == "iqn.2026-11.example:lun1"
    assert preferred_identifier([port, t10]) == "t10.IET     00010001"
    assert preferred_identifier([port]) is None
    assert preferred_identifier([]) is None


def test_device_identification_errors() -> None:
    with pytest.raises(ScsiParseError, match=r"VPD page 0x83 truncated: 40 bytes, page needs 76"):
        parse_device_identification(TGT_83[:40])
    with pytest.raises(ScsiParseError, match="designator at byte 4 needs 40 bytes, page has 12"):
        parse_device_identification(page(0x83, T10[:12]))
    with pytest.raises(ScsiParseError, match="designator header cut off"):
        parse_device_identification(page(0x83, NAA3 + b"\x01\x03"))
    with pytest.raises(ScsiParseError, match="VPD page 0x83: data carries page 0x80"):
        parse_device_identification(page(0x80, b"x"))
    with pytest.raises(ScsiParseError, match="VPD page too short: 3 bytes, need 4"):
        parse_device_identification(b"\x00\x83\x00")


def test_vpd_full_length() -> None:
    assert vpd_full_length(TGT_83[:4]) == len(TGT_83) == 76


TGT_THIN_B0 = page(
    0xB0,
    bytes.fromhex(
        "00 80 0000 00000000 00000000 00000000 ffffffff ffffffff 00000000 00000000"
        " 0000000000000000".replace(" ", "")
    )
    + bytes(20),
)


def test_block_limits_tgt_thin() -> None:
    assert len(TGT_THIN_B0) == 0x40
    limits = parse_block_limits(TGT_THIN_B0)
    assert limits.max_compare_write == 128 and limits.max_transfer_length == 0
    assert limits.max_unmap_lba_count == limits.max_unmap_descriptors == 0xFFFFFFFF
    assert not limits.wsnz and not limits.ugavalid and limits.max_write_same_length == 0


def test_block_limits_all_fields() -> None:
    body = bytes.fromhex(
        "01 02 0003 00000004 00000005 00000006 00000007 00000008 00000009 8000000a"
        " 000000000000000b".replace(" ", "")
    )
    limits = parse_block_limits(page(0xB0, body))
    assert limits.wsnz and limits.ugavalid
    assert (
        limits.max_compare_write,
        limits.opt_xfer_granularity,
        limits.max_transfer_length,
        limits.opt_transfer_length,
        limits.max_prefetch,
        limits.max_unmap_lba_count,
        limits.max_unmap_descriptors,
        limits.opt_unmap_granularity,
        limits.unmap_granularity_alignment,
        limits.max_write_same_length,
    ) == (2, 3, 4, 5, 6, 7, 8, 9, 10, 11)


def test_block_limits_short_page_defaults_to_zero() -> None:
    # An SBC-2 era page of length 0x10: only up to maximum prefetch; a field cut in half reads 0.
    body = bytes.fromhex("0001 0008 00000400 00000010 00000020".replace(" ", ""))
    limits = parse_block_limits(page(0xB0, body))
    assert (limits.opt_xfer_granularity, limits.max_transfer_length) == (8, 0x400)
    assert limits.max_prefetch == 0x20
    assert limits.max_unmap_lba_count == limits.max_write_same_length == 0
    cut = parse_block_limits(page(0xB0, body)[:10])
    assert cut.max_transfer_length == 0 and cut.opt_xfer_granularity == 8


def test_block_device_characteristics() -> None:
    assert parse_block_device_characteristics(page(0xB1, bytes(60))).medium_rotation_rate == 0
    assert parse_block_device_characteristics(page(0xB1, b"\x00\x01")).medium_rotation_rate == 1
    assert parse_block_device_characteristics(page(0xB1, b"")).medium_rotation_rate == 0


def test_logical_block_provisioning() -> None:
    thin = parse_logical_block_provisioning(page(0xB2, bytes.fromhex("00e40200")))
    assert (thin.lbpu, thin.lbpws, thin.lbpws10, thin.lbprz) == (True, True, True, True)
    assert (thin.anc_sup, thin.dp, thin.provisioning_type) == (False, False, 2)
    thick = parse_logical_block_provisioning(page(0xB2, bytes(4)))
    assert not (thick.lbpu or thick.lbpws or thick.lbprz) and thick.provisioning_type == 0
    other = parse_logical_block_provisioning(page(0xB2, bytes.fromhex("0903")))
    assert other.threshold_exponent == 9 and other.anc_sup and other.dp
    with pytest.raises(ScsiParseError, match="VPD page 0xB2: data carries page 0xB0"):
        parse_logical_block_provisioning(TGT_THIN_B0)


def test_provisioning_facts_of_a_tgt_thin_lun() -> None:
    from poolbackend.scsi import parse_read_capacity16
    from poolbackend.scsi.provisioning import provisioning, provisioning_type_name

    rc16 = parse_read_capacity16(bytes.fromhex("000000000001ffff 00000200 00 03 c0 00") + bytes(16))
    facts = provisioning(
        rc16,
        parse_block_limits(TGT_THIN_B0),
        parse_logical_block_provisioning(page(0xB2, bytes.fromhex("00e40200"))),
    )
    assert (facts.lbpme, facts.lbprz, facts.lbpu, facts.lbpws, facts.lbpws10) == (True,) * 5
    assert facts.provisioning_type == 2 and facts.granularity == 1
    lines = dict(facts.lines())
    assert lines["Provisioning type:"] == "thin"
    assert lines["Max UNMAP LBA count:"] == "unlimited"
    assert lines["UNMAP (LBPU):"] == "yes"
    thick = provisioning(None, None, None)
    assert not thick.thin and dict(thick.lines())["Provisioning type:"].startswith("not reported")
    assert "Max UNMAP LBA count:" not in dict(thick.lines())
    assert provisioning_type_name(5) == "reserved (5)"
