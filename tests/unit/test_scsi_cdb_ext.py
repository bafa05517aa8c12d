"""CDB builders of :mod:`poolbackend.scsi.cdb_ext`, checked byte by byte against SBC-3/SPC-4."""

from __future__ import annotations

import pytest

from poolbackend.scsi import cdb_ext as X


def test_lba_cdb_forms() -> None:
    assert X.lba_cdb(0x28, 0x01020304, 0x0506, size=10, byte1=0x18, group=3) == bytes.fromhex(
        "28 18 01020304 03 0506 00"
    )
    assert X.lba_cdb(0xA8, 0x01020304, 0x05060708, size=12) == bytes.fromhex(
        "a8 00 01020304 05060708 00 00"
    )
    assert X.lba_cdb(0x88, 2**63, 256, size=16, byte1=X.rw_byte1(protect=7)) == bytes.fromhex(
        "88 e0 8000000000000000 00000100 00 00"
    )
    with pytest.raises(ValueError, match="LBA 4294967296 out of range"):
        X.lba_cdb(0x28, 1 << 32, 1, size=10)
    with pytest.raises(ValueError, match="transfer length 65536"):
        X.lba_cdb(0x28, 0, 1 << 16, size=10)


def test_read6_and_verify_flags() -> None:
    assert X.read6(0x1ABCDE, 0) == bytes.fromhex("08 1a bcde 00 00")
    with pytest.raises(ValueError):
        X.read6(1 << 21, 1)
    assert X.verify_byte1(protect=1, dpo=True, bytchk=1) == 0x32


def test_service_action_and_parameter_commands() -> None:
    assert X.get_lba_status(5, 24) == bytes.fromhex("9e 12 0000000000000005 00000018 00 00")
    assert X.read_capacity16(0) == bytes.fromhex("9e 10" + "00" * 8 + "00000000 00 00")
    assert X.compare_and_write(7, 2, fua=True) == bytes.fromhex(
        "89 08 0000000000000007 000000 02 00 00"
    )
    assert X.write_same(1, 8, size=16, unmap=True, ndob=True) == bytes.fromhex(
        "93 09 0000000000000001 00000008 00 00"
    )
    assert X.report_supported_opcodes(options=1, opcode=0x28, rctd=True, alloc=512) == (
        bytes.fromhex("a3 0c 81 28 0000 00000200 00 00")
    )
    assert X.persistent_reserve_in(0, 0x2000) == bytes.fromhex("5e 00 0000000000 2000 00")
    assert X.persistent_reserve_out(X.ProutAction.RESERVE, X.PrType.WRITE_EXCLUSIVE) == (
        bytes.fromhex("5f 01 01 0000 00000018 00")
    )
    assert X.prout_parameters(0x1122, 0x3344, aptpl=True) == bytes.fromhex(
        "0000000000001122 0000000000003344 00000000 01 00 0000"
    )
    assert X.start_stop_unit(loej=True, start=True) == bytes.fromhex("1b 00 00 00 03 00")
    assert X.sanitize(2, immed=True) == bytes.fromhex("48 82 0000000000 0000 00")
    assert X.extended_copy(0x40) == bytes.fromhex("83 00" + "00" * 8 + "00000040 00 00")
    assert X.receive_copy_results(3, alloc=0x100) == bytes.fromhex(
        "84 03 00" + "00" * 7 + "00000100 00 00"
    )
    assert X.read_defect_data12(plist=True, glist=True, alloc=8) == bytes.fromhex(
        "b7 18 00000000 00000008 00 00"
    )
    for cdb in (X.reserve6(), X.release6(), X.prevent_allow(1), X.mode_select6(12)):
        assert len(cdb) == 6


def test_command_names() -> None:
    assert X.command_name(0x2E) == "WRITE AND VERIFY(10)"
    assert X.command_name(0x88) == "READ(16)"
    assert X.command_name(0xFE) == "opcode 0xFE"


def test_extended_copy_parameter_list_layout() -> None:
    """SPC-4 §6.3.2 (LID1 header), §6.3.7.5 (block to block segment descriptor)."""
    from poolbackend.conformance.scsi_misc import segment_b2b, xcopy_params

    seg = segment_b2b(0, 1, 8, 0x10, 0x20)
    assert seg == bytes.fromhex("02 00 0018 0000 0001 0000 0008 0000000000000010 0000000000000020")
    params = xcopy_params([bytes(32)], [seg])
    assert params[:16] == bytes.fromhex("00 18 0020 00000000 0000001c 00000000")
    assert len(params) == 16 + 32 + 28
