"""Standard INQUIRY against tgt 1.0.85's LUN 1 reply (66 bytes)."""

from __future__ import annotations

import pytest

from poolbackend.scsi import (
    ScsiParseError,
    device_type_name,
    parse_standard_inquiry,
    peripheral_qualifier_name,
    version_descriptor_name,
    version_name,
)

TGT_LUN1 = (
    bytes.fromhex("0000 0512 3d00 0002")
    + b"IET     VIRTUAL-DISK    0001"
    + bytes(22)
    + bytes.fromhex("04c0 0960 0300 0000")
)


def test_tgt_disk() -> None:
    assert len(TGT_LUN1) == 66
    inq = parse_standard_inquiry(TGT_LUN1)
    assert (inq.peripheral_qualifier, inq.device_type, inq.removable) == (0, 0, False)
    assert (inq.version, inq.hisup, inq.response_data_format) == (5, True, 2)
    assert (inq.normaca, inq.sccs, inq.acc, inq.tpgs, inq.three_pc, inq.protect) == (
        False,
        False,
        False,
        0,
        False,
        False,
    )
    assert (inq.encserv, inq.multip, inq.sync, inq.cmdque) == (False, False, False, True)
    assert (inq.vendor, inq.product, inq.revision) == ("IET", "VIRTUAL-DISK", "0001")
    assert inq.version_descriptors == (0x04C0, 0x0960, 0x0300)
    assert inq.is_disk


def test_iscsi_inq_names() -> None:
    inq = parse_standard_inquiry(TGT_LUN1)
    assert peripheral_qualifier_name(inq.peripheral_qualifier) == "CONNECTED"
    assert device_type_name(inq.device_type) == "DIRECT_ACCESS"
    assert f"{inq.version} {version_name(inq.version)}" == "5 ANSI INCITS 408-2005 (SPC-3)"
    lines = [f"{d:04x} {version_descriptor_name(d)}" for d in inq.version_descriptors]
    assert lines == ["04c0 SBC-3", "0960 iSCSI", "0300 SPC-3"]
    assert version_descriptor_name(0x1234) == "unknown"


@pytest.mark.parametrize(
    ("code", "name"),
    [(0x0C, "STORAGE_ARRAY_CONTROLLER"), (0x05, "MMC"), (0x1F, "UNKNOWN"), (0x0A, "unknown")],
)
def test_device_type_names(code: int, name: str) -> None:
    assert device_type_name(code) == name


def test_controller_and_missing_lun() -> None:
    controller = parse_standard_inquiry(bytes([0x0C]) + TGT_LUN1[1:])
    assert controller.device_type == 0x0C and not controller.is_disk
    missing = parse_standard_inquiry(bytes([0x7F]) + TGT_LUN1[1:36])
    assert (missing.peripheral_qualifier, missing.device_type) == (3, 0x1F)
    assert peripheral_qualifier_name(3) == "NOT_SUPPORTED"


def test_flag_bits() -> None:
    data = bytearray(TGT_LUN1)
    data[1], data[3], data[5], data[6], data[7] = 0x80, 0x32, 0xF9, 0x50, 0x12
    inq = parse_standard_inquiry(bytes(data))
    assert inq.removable and inq.normaca and inq.hisup and inq.response_data_format == 2
    assert inq.sccs and inq.acc and inq.tpgs == 3 and inq.three_pc and inq.protect
    assert inq.encserv and inq.multip and inq.sync and inq.cmdque


def test_descriptors_limited_by_additional_length_and_data() -> None:
    assert parse_standard_inquiry(TGT_LUN1[:64]).version_descriptors == (0x04C0, 0x0960, 0x0300)
    assert parse_standard_inquiry(TGT_LUN1[:61]).version_descriptors == (0x04C0,)
    short_claim = TGT_LUN1[:4] + bytes([31]) + TGT_LUN1[5:]
    assert parse_standard_inquiry(short_claim).version_descriptors == ()
    assert parse_standard_inquiry(TGT_LUN1 + bytes(100)).version_descriptors == (
        0x4C0,
        0x960,
        0x300,
    )


def test_too_short() -> None:
    with pytest.raises(ScsiParseError, match="standard INQUIRY data too short: 35 bytes, need 36"):
        parse_standard_inquiry(TGT_LUN1[:35])
