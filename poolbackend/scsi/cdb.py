"""CDB builders for the commands a storage pool needs (SPC-4 / SBC-3 layouts).

Builders validate their arguments (ValueError) so an out-of-range LBA or length never gets
silently truncated into a CDB that addresses the wrong blocks.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from enum import IntEnum


class Opcode(IntEnum):
    TEST_UNIT_READY = 0x00
    INQUIRY = 0x12
    MODE_SENSE_6 = 0x1A
    READ_CAPACITY_10 = 0x25
    READ_10 = 0x28
    WRITE_10 = 0x2A
    SYNCHRONIZE_CACHE_10 = 0x35
    WRITE_SAME_10 = 0x41
    UNMAP = 0x42
    MODE_SENSE_10 = 0x5A
    READ_16 = 0x88
    WRITE_16 = 0x8A
    SYNCHRONIZE_CACHE_16 = 0x91
    WRITE_SAME_16 = 0x93
    SERVICE_ACTION_IN_16 = 0x9E
    REPORT_LUNS = 0xA0


SA_READ_CAPACITY_16 = 0x10
SA_GET_LBA_STATUS = 0x12  # builder and parser: poolbackend.scsi.lbastatus
READ_CAPACITY_16_ALLOC = 32

_DPO = 0x10
_FUA = 0x08


def cdb_name(cdb: bytes) -> str:
    """Readable command name for messages, e.g. ``"READ CAPACITY(16)"`` or ``"opcode 0xC5"``."""
    if not cdb:
        return "empty CDB"
    if cdb[0] == Opcode.SERVICE_ACTION_IN_16 and len(cdb) > 1:
        if cdb[1] & 0x1F == SA_READ_CAPACITY_16:
            return "READ CAPACITY(16)"
        if cdb[1] & 0x1F == SA_GET_LBA_STATUS:
            return "GET LBA STATUS(16)"
    try:
        name = Opcode(cdb[0]).name
    except ValueError:
        return f"opcode 0x{cdb[0]:02X}"
    return re.sub(r"_(\d+)$", r"(\1)", name).replace("_", " ")


def _check(what: str, value: int, bits: int) -> int:
    if not 0 <= value < 1 << bits:
        raise ValueError(f"{what} {value} out of range 0..{(1 << bits) - 1}")
    return value


def _lba_blocks_10(op: Opcode, flags: int, lba: int, blocks: int) -> bytes:
    name = cdb_name(bytes((op,)))
    _check(f"{name} LBA", lba, 32)
    _check(f"{name} block count", blocks, 16)
    return struct.pack(">BBIBHB", op, flags, lba, 0, blocks, 0)


_LBA_BLOCKS_16 = struct.Struct(">BBQIBB")


def _lba_blocks_16(op: Opcode, flags: int, lba: int, blocks: int) -> bytes:
    # READ(16)/WRITE(16) are built once per transfer chunk: name the command only for errors.
    if not (0 <= lba < 1 << 64 and 0 <= blocks < 1 << 32):
        name = cdb_name(bytes((op,)))
        _check(f"{name} LBA", lba, 64)
        _check(f"{name} block count", blocks, 32)
    return _LBA_BLOCKS_16.pack(op, flags, lba, blocks, 0, 0)


def _rw_flags(fua: bool, dpo: bool) -> int:
    return (_FUA if fua else 0) | (_DPO if dpo else 0)


def tur() -> bytes:
    """TEST UNIT READY (not named ``test_*`` so pytest never collects it from an import)."""
    return bytes(6)


def inquiry(*, evpd: bool = False, page: int = 0, alloc: int = 255) -> bytes:
    """INQUIRY; the default allocation of 255 keeps byte 3 zero for SPC-2 era targets."""
    _check("INQUIRY page code", page, 8)
    _check("INQUIRY allocation length", alloc, 16)
    if page and not evpd:
        raise ValueError(f"INQUIRY page code 0x{page:02X} needs evpd=True")
    return struct.pack(">BBBHB", Opcode.INQUIRY, int(evpd), page, alloc, 0)


def report_luns(*, alloc: int = 16, select_report: int = 0) -> bytes:
    """REPORT LUNS; SPC-3 targets (tgt) reject an allocation length below 16."""
    _check("REPORT LUNS select report", select_report, 8)
    if not 16 <= alloc <= 0xFFFFFFFF:
        raise ValueError(f"REPORT LUNS allocation length {alloc} out of range 16..4294967295")
    return struct.pack(">BxB3xIxB", Opcode.REPORT_LUNS, select_report, alloc, 0)


def read_capacity10() -> bytes:
    return bytes((Opcode.READ_CAPACITY_10,)) + bytes(9)


def read_capacity16() -> bytes:
    return struct.pack(
        ">BBQIBB", Opcode.SERVICE_ACTION_IN_16, SA_READ_CAPACITY_16, 0, READ_CAPACITY_16_ALLOC, 0, 0
    )


def read10(lba: int, blocks: int, *, fua: bool = False, dpo: bool = False) -> bytes:
    return _lba_blocks_10(Opcode.READ_10, _rw_flags(fua, dpo), lba, blocks)


def write10(lba: int, blocks: int, *, fua: bool = False, dpo: bool = False) -> bytes:
    return _lba_blocks_10(Opcode.WRITE_10, _rw_flags(fua, dpo), lba, blocks)


def read16(lba: int, blocks: int, *, fua: bool = False, dpo: bool = False) -> bytes:
    return _lba_blocks_16(Opcode.READ_16, _rw_flags(fua, dpo), lba, blocks)


def write16(lba: int, blocks: int, *, fua: bool = False, dpo: bool = False) -> bytes:
    return _lba_blocks_16(Opcode.WRITE_16, _rw_flags(fua, dpo), lba, blocks)


def write_same16(
    lba: int, blocks: int, *, unmap: bool = False, anchor: bool = False, ndob: bool = False
) -> bytes:
    """WRITE SAME(16); ``ndob`` means no data-out (zeros), otherwise one block follows."""
    flags = (0x10 if anchor else 0) | (0x08 if unmap else 0) | (0x01 if ndob else 0)
    return _lba_blocks_16(Opcode.WRITE_SAME_16, flags, lba, blocks)


def unmap(param_len: int, *, anchor: bool = False) -> bytes:
    """UNMAP; ``param_len`` is ``len(unmap_parameter_list(...))``. ANCHOR is bit 0 here."""
    _check("UNMAP parameter list length", param_len, 16)
    return struct.pack(">BB4xBHB", Opcode.UNMAP, 0x01 if anchor else 0, 0, param_len, 0)


def unmap_parameter_list(ranges: Sequence[tuple[int, int]]) -> bytes:
    """UNMAP parameter data for ``(lba, block_count)`` ranges (callers split by VPD B0 limits)."""
    descriptors = b"".join(
        struct.pack(
            ">QI4x", _check("UNMAP descriptor LBA", lba, 64), _check("UNMAP block count", n, 32)
        )
        for lba, n in ranges
    )
    _check("UNMAP parameter data length", len(descriptors) + 6, 16)
    return struct.pack(">HH4x", len(descriptors) + 6, len(descriptors)) + descriptors


def synchronize_cache10(lba: int = 0, blocks: int = 0, *, immed: bool = False) -> bytes:
    """SYNCHRONIZE CACHE(10); ``blocks=0`` means from ``lba`` to the end of the LUN."""
    return _lba_blocks_10(Opcode.SYNCHRONIZE_CACHE_10, 0x02 if immed else 0, lba, blocks)


def synchronize_cache16(lba: int = 0, blocks: int = 0, *, immed: bool = False) -> bytes:
    """SYNCHRONIZE CACHE(16); ``blocks=0`` means from ``lba`` to the end of the LUN."""
    return _lba_blocks_16(Opcode.SYNCHRONIZE_CACHE_16, 0x02 if immed else 0, lba, blocks)


def mode_sense6(
    page: int = 0x3F, subpage: int = 0, *, pc: int = 0, dbd: bool = False, alloc: int = 255
) -> bytes:
    """MODE SENSE(6); page 0x3F returns all pages, ``pc`` 0 current .. 3 saved values."""
    _check("MODE SENSE(6) page code", page, 6)
    _check("MODE SENSE(6) subpage", subpage, 8)
    _check("MODE SENSE(6) page control", pc, 2)
    _check("MODE SENSE(6) allocation length", alloc, 8)
    return struct.pack(
        ">BBBBBB", Opcode.MODE_SENSE_6, 0x08 if dbd else 0, pc << 6 | page, subpage, alloc, 0
    )
