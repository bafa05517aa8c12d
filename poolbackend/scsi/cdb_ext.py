"""CDB builders beyond what a storage pool needs: every command the conformance tool sends.

Layouts are SBC-3 / SPC-4's. Like :mod:`poolbackend.scsi.cdb`, builders check their
arguments (ValueError) so a value never wraps silently into another field; a few fields a
conformance test must be able to set to reserved values (a PROTECT field, a service action)
are taken as raw numbers in their full field width. Commands the pool already builds the
same way are the pool's builders, re-exported here so the tests use one module.
"""

from __future__ import annotations

import struct
from enum import IntEnum

from poolbackend.scsi.cdb import _DPO, _FUA, _check
from poolbackend.scsi.cdb import SA_GET_LBA_STATUS as SA_GET_LBA_STATUS
from poolbackend.scsi.cdb import SA_READ_CAPACITY_16 as SA_READ_CAPACITY_16
from poolbackend.scsi.cdb import mode_sense6 as mode_sense6
from poolbackend.scsi.cdb import read_capacity10 as read_capacity10
from poolbackend.scsi.cdb import synchronize_cache10 as synchronize_cache10
from poolbackend.scsi.cdb import unmap as unmap
from poolbackend.scsi.cdb import unmap_parameter_list as unmap_parameter_list
from poolbackend.scsi.lbastatus import get_lba_status16


class Op(IntEnum):
    """Operation codes used by the conformance tool (SPC-4 / SBC-3)."""

    TEST_UNIT_READY = 0x00
    READ_6 = 0x08
    WRITE_6 = 0x0A
    INQUIRY = 0x12
    MODE_SELECT_6 = 0x15
    RESERVE_6 = 0x16
    RELEASE_6 = 0x17
    MODE_SENSE_6 = 0x1A
    START_STOP_UNIT = 0x1B
    PREVENT_ALLOW = 0x1E
    READ_CAPACITY_10 = 0x25
    READ_10 = 0x28
    WRITE_10 = 0x2A
    WRITE_VERIFY_10 = 0x2E
    VERIFY_10 = 0x2F
    PRE_FETCH_10 = 0x34
    SYNCHRONIZE_CACHE_10 = 0x35
    READ_DEFECT_DATA_10 = 0x37
    WRITE_SAME_10 = 0x41
    UNMAP = 0x42
    SANITIZE = 0x48
    PERSISTENT_RESERVE_IN = 0x5E
    PERSISTENT_RESERVE_OUT = 0x5F
    EXTENDED_COPY = 0x83
    RECEIVE_COPY_RESULTS = 0x84
    READ_16 = 0x88
    COMPARE_AND_WRITE = 0x89
    WRITE_16 = 0x8A
    ORWRITE_16 = 0x8B
    WRITE_VERIFY_16 = 0x8E
    VERIFY_16 = 0x8F
    PRE_FETCH_16 = 0x90
    SYNCHRONIZE_CACHE_16 = 0x91
    WRITE_SAME_16 = 0x93
    SERVICE_ACTION_IN_16 = 0x9E
    WRITE_ATOMIC_16 = 0x9C
    REPORT_LUNS = 0xA0
    MAINTENANCE_IN = 0xA3
    READ_12 = 0xA8
    WRITE_12 = 0xAA
    WRITE_VERIFY_12 = 0xAE
    VERIFY_12 = 0xAF
    READ_DEFECT_DATA_12 = 0xB7


SA_REPORT_SUPPORTED_OPCODES = 0x0C

get_lba_status = get_lba_status16


def lba_cdb(op: int, lba: int, blocks: int, *, size: int, byte1: int = 0, group: int = 0) -> bytes:
    """A 10-, 12- or 16-byte CDB of the READ/WRITE shape: op, byte 1 (flags), LBA, length."""
    _check("byte 1", byte1, 8)
    _check("group number", group, 5)
    if size == 10:
        _check("LBA", lba, 32)
        _check("transfer length", blocks, 16)
        return struct.pack(">BBIBHB", op, byte1, lba, group, blocks, 0)
    if size == 12:
        _check("LBA", lba, 32)
        _check("transfer length", blocks, 32)
        return struct.pack(">BBIIBB", op, byte1, lba, blocks, group, 0)
    if size == 16:
        _check("LBA", lba, 64)
        _check("transfer length", blocks, 32)
        return struct.pack(">BBQIBB", op, byte1, lba, blocks, group, 0)
    raise ValueError(f"no {size}-byte form of opcode 0x{op:02X}")


def rw_byte1(*, protect: int = 0, dpo: bool = False, fua: bool = False) -> int:
    """Byte 1 of READ/WRITE(10/12/16): RDPROTECT/WRPROTECT (bits 7-5), DPO, FUA."""
    _check("PROTECT field", protect, 3)
    return protect << 5 | (_DPO if dpo else 0) | (_FUA if fua else 0)


def verify_byte1(*, protect: int = 0, dpo: bool = False, bytchk: int = 0) -> int:
    """Byte 1 of VERIFY / WRITE AND VERIFY: VRPROTECT/WRPROTECT, DPO, BYTCHK (bits 2-1)."""
    _check("PROTECT field", protect, 3)
    _check("BYTCHK", bytchk, 2)
    return protect << 5 | (_DPO if dpo else 0) | bytchk << 1


def read6(lba: int, blocks: int) -> bytes:
    """READ(6): 21-bit LBA; a transfer length of 0 means 256 blocks (SBC-3 §5.8)."""
    _check("READ(6) LBA", lba, 21)
    _check("READ(6) transfer length", blocks, 8)
    return struct.pack(">BBHBB", Op.READ_6, lba >> 16, lba & 0xFFFF, blocks, 0)


def prefetch(lba: int, blocks: int, *, size: int, immed: bool = False, group: int = 0) -> bytes:
    """PRE-FETCH(10)/(16); IMMED is bit 1 of byte 1."""
    op = Op.PRE_FETCH_10 if size == 10 else Op.PRE_FETCH_16
    return lba_cdb(op, lba, blocks, size=size, byte1=0x02 if immed else 0, group=group)


def write_same(
    lba: int,
    blocks: int,
    *,
    size: int,
    protect: int = 0,
    anchor: bool = False,
    unmap: bool = False,
    ndob: bool = False,
    group: int = 0,
) -> bytes:
    """WRITE SAME(10)/(16): WRPROTECT, ANCHOR (bit 4), UNMAP (bit 3), NDOB (bit 0, 16 only)."""
    _check("WRPROTECT", protect, 3)
    if ndob and size != 16:
        raise ValueError("NDOB exists only in WRITE SAME(16)")
    byte1 = protect << 5 | (0x10 if anchor else 0) | (0x08 if unmap else 0) | int(ndob)
    op = Op.WRITE_SAME_10 if size == 10 else Op.WRITE_SAME_16
    return lba_cdb(op, lba, blocks, size=size, byte1=byte1, group=group)


def compare_and_write(
    lba: int, blocks: int, *, protect: int = 0, dpo: bool = False, fua: bool = False
) -> bytes:
    """COMPARE AND WRITE: the data-out holds 2 x blocks blocks (verify data, then write data)."""
    _check("COMPARE AND WRITE LBA", lba, 64)
    _check("NUMBER OF LOGICAL BLOCKS", blocks, 8)
    byte1 = rw_byte1(protect=protect, dpo=dpo, fua=fua)
    return struct.pack(">BBQ3xBBB", Op.COMPARE_AND_WRITE, byte1, lba, blocks, 0, 0)


def write_atomic16(
    lba: int, blocks: int, *, protect: int = 0, dpo: bool = False, fua: bool = False
) -> bytes:
    """WRITE ATOMIC(16) (SBC-4): 16-bit transfer length in bytes 12-13."""
    _check("WRITE ATOMIC(16) LBA", lba, 64)
    _check("WRITE ATOMIC(16) transfer length", blocks, 16)
    byte1 = rw_byte1(protect=protect, dpo=dpo, fua=fua)
    return struct.pack(">BBQHHBB", Op.WRITE_ATOMIC_16, byte1, lba, 0, blocks, 0, 0)


def read_capacity16(alloc: int = 32, *, pmi: bool = False, lba: int = 0) -> bytes:
    """READ CAPACITY(16) with any allocation length (the pool's builder always asks for 32)."""
    _check("READ CAPACITY(16) allocation length", alloc, 32)
    _check("READ CAPACITY(16) LBA", lba, 64)
    return struct.pack(
        ">BBQIBB", Op.SERVICE_ACTION_IN_16, SA_READ_CAPACITY_16, lba, alloc, int(pmi), 0
    )


def inquiry(*, evpd: bool = False, page: int = 0, alloc: int = 255) -> bytes:
    """INQUIRY without the pool builder's guard, so a test can send a page code without EVPD."""
    _check("INQUIRY page code", page, 8)
    _check("INQUIRY allocation length", alloc, 16)
    return struct.pack(">BBBHB", Op.INQUIRY, int(evpd), page, alloc, 0)


def mode_select6(param_len: int, *, pf: bool = True, sp: bool = False) -> bytes:
    _check("MODE SELECT(6) parameter list length", param_len, 8)
    byte1 = (0x10 if pf else 0) | (0x01 if sp else 0)
    return struct.pack(">BBBBBB", Op.MODE_SELECT_6, byte1, 0, 0, param_len, 0)


def report_supported_opcodes(
    *,
    options: int = 0,
    opcode: int = 0,
    service_action: int = 0,
    rctd: bool = False,
    alloc: int = 65535,
) -> bytes:
    """REPORT SUPPORTED OPERATION CODES (MAINTENANCE IN / 0x0C); ``options`` 0 = all."""
    _check("REPORTING OPTIONS", options, 3)
    _check("REQUESTED OPERATION CODE", opcode, 8)
    _check("REQUESTED SERVICE ACTION", service_action, 16)
    _check("allocation length", alloc, 32)
    byte2 = (0x80 if rctd else 0) | options
    return struct.pack(
        ">BBBBHIBB",
        Op.MAINTENANCE_IN,
        SA_REPORT_SUPPORTED_OPCODES,
        byte2,
        opcode,
        service_action,
        alloc,
        0,
        0,
    )


def reserve6() -> bytes:
    return bytes((Op.RESERVE_6, 0, 0, 0, 0, 0))


def release6() -> bytes:
    return bytes((Op.RELEASE_6, 0, 0, 0, 0, 0))


def start_stop_unit(
    *,
    immed: bool = False,
    power_condition: int = 0,
    no_flush: bool = False,
    loej: bool = False,
    start: bool = False,
) -> bytes:
    _check("POWER CONDITION", power_condition, 4)
    byte4 = power_condition << 4 | (0x04 if no_flush else 0) | (0x02 if loej else 0) | int(start)
    return bytes((Op.START_STOP_UNIT, int(immed), 0, 0, byte4, 0))


def prevent_allow(prevent: int) -> bytes:
    """PREVENT ALLOW MEDIUM REMOVAL: ``prevent`` 0 allow, 1 prevent (2, 3 obsolete)."""
    _check("PREVENT", prevent, 2)
    return bytes((Op.PREVENT_ALLOW, 0, 0, 0, prevent, 0))


def read_defect_data10(*, plist: bool, glist: bool, fmt: int = 0, alloc: int = 4) -> bytes:
    _check("DEFECT LIST FORMAT", fmt, 3)
    _check("allocation length", alloc, 16)
    byte2 = (0x10 if plist else 0) | (0x08 if glist else 0) | fmt
    return struct.pack(">BBB4xHB", Op.READ_DEFECT_DATA_10, 0, byte2, alloc, 0)


def read_defect_data12(*, plist: bool, glist: bool, fmt: int = 0, alloc: int = 8) -> bytes:
    _check("DEFECT LIST FORMAT", fmt, 3)
    _check("allocation length", alloc, 32)
    byte1 = (0x10 if plist else 0) | (0x08 if glist else 0) | fmt
    return struct.pack(">BBIIBB", Op.READ_DEFECT_DATA_12, byte1, 0, alloc, 0, 0)


def sanitize(
    service_action: int, param_len: int = 0, *, immed: bool = False, ause: bool = False
) -> bytes:
    """SANITIZE (SBC-3 §5.19): 1 OVERWRITE, 2 BLOCK ERASE, 3 CRYPTOGRAPHIC ERASE, 0x1F EXIT."""
    _check("SANITIZE service action", service_action, 5)
    _check("SANITIZE parameter list length", param_len, 16)
    byte1 = (0x80 if immed else 0) | (0x20 if ause else 0) | service_action
    return struct.pack(">BB5xHB", Op.SANITIZE, byte1, param_len, 0)


def persistent_reserve_in(service_action: int, alloc: int = 8192) -> bytes:
    """PERSISTENT RESERVE IN: 0 READ KEYS, 1 READ RESERVATION, 2 REPORT CAPABILITIES, 3 FULL."""
    _check("PRIN service action", service_action, 5)
    _check("allocation length", alloc, 16)
    return struct.pack(">BB5xHB", Op.PERSISTENT_RESERVE_IN, service_action, alloc, 0)


class ProutAction(IntEnum):
    REGISTER = 0x00
    RESERVE = 0x01
    RELEASE = 0x02
    CLEAR = 0x03
    PREEMPT = 0x04
    PREEMPT_AND_ABORT = 0x05
    REGISTER_AND_IGNORE = 0x06


class PrType(IntEnum):
    WRITE_EXCLUSIVE = 0x1
    EXCLUSIVE_ACCESS = 0x3
    WRITE_EXCLUSIVE_REGISTRANTS_ONLY = 0x5
    EXCLUSIVE_ACCESS_REGISTRANTS_ONLY = 0x6
    WRITE_EXCLUSIVE_ALL_REGISTRANTS = 0x7
    EXCLUSIVE_ACCESS_ALL_REGISTRANTS = 0x8


PROUT_PARAM_LEN = 24


def persistent_reserve_out(service_action: int, pr_type: int = 0, scope: int = 0) -> bytes:
    """PERSISTENT RESERVE OUT with the basic 24-byte parameter list."""
    _check("PROUT service action", service_action, 5)
    _check("PR type", pr_type, 4)
    _check("scope", scope, 4)
    return struct.pack(
        ">BBBxxIB",
        Op.PERSISTENT_RESERVE_OUT,
        service_action,
        scope << 4 | pr_type,
        PROUT_PARAM_LEN,
        0,
    )


def prout_parameters(
    key: int,
    sa_key: int,
    *,
    aptpl: bool = False,
    all_tg_pt: bool = False,
    spec_i_pt: bool = False,
) -> bytes:
    """The basic PERSISTENT RESERVE OUT parameter list (SPC-4 §6.15.3)."""
    _check("reservation key", key, 64)
    _check("service action reservation key", sa_key, 64)
    flags = (0x08 if spec_i_pt else 0) | (0x04 if all_tg_pt else 0) | (0x01 if aptpl else 0)
    return struct.pack(">QQ4xBxH", key, sa_key, flags, 0)


def extended_copy(param_len: int) -> bytes:
    """EXTENDED COPY (LID1, service action 0): parameter list length in bytes 10-13."""
    _check("EXTENDED COPY parameter list length", param_len, 32)
    return struct.pack(">BB8xIBB", Op.EXTENDED_COPY, 0, param_len, 0, 0)


def receive_copy_results(service_action: int, *, list_id: int = 0, alloc: int = 1024) -> bytes:
    """RECEIVE COPY RESULTS: 0 COPY STATUS, 3 OPERATING PARAMETERS (LID1)."""
    _check("RECEIVE COPY RESULTS service action", service_action, 5)
    _check("list identifier", list_id, 8)
    _check("allocation length", alloc, 32)
    return struct.pack(">BBB7xIBB", Op.RECEIVE_COPY_RESULTS, service_action, list_id, alloc, 0, 0)


def command_name(op: int) -> str:
    """``WRITE AND VERIFY(16)``-style name of an opcode (``opcode 0xNN`` when unknown)."""
    try:
        name = Op(op).name
    except ValueError:
        return f"opcode 0x{op:02X}"
    base, _, size = name.rpartition("_")
    if size.isdigit():
        name = f"{base}({size})"
    return name.replace("WRITE_VERIFY", "WRITE AND VERIFY").replace("_", " ")
