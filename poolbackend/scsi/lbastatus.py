"""GET LBA STATUS(16) (SBC-3 §5.7): which LBA extents of a thin LUN are mapped.

The CDB builder and a strict parser. A transfer skips what the parser calls deallocated, so a
wrong answer would silently drop data: every value is checked against the request and the
LUN's size, and anything impossible raises :class:`ScsiParseError` (callers then fail with
one line or read everything):

* the header or a descriptor is cut off, or the declared length is not 4 + 16·n;
* no descriptor at all, a descriptor of zero blocks;
* the first descriptor does not contain the starting LBA (it must, SBC-3 §5.7.2);
* a descriptor starts before the previous one ends (out of order or overlapping);
* a descriptor reaches beyond the LUN's last block;
* a provisioning status SBC does not define (4-15).

A gap between two descriptors says nothing about the blocks in it; they are reported as
mapped (read, never skipped). Status 3 (SBC-4: "mapped or unknown") is mapped too.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from poolbackend.scsi.cdb import SA_GET_LBA_STATUS as SERVICE_ACTION
from poolbackend.scsi.cdb import Opcode
from poolbackend.scsi.errors import ScsiParseError

OPCODE = Opcode.SERVICE_ACTION_IN_16
HEADER = 8
DESCRIPTOR = 16
DEFAULT_ALLOC = HEADER + DESCRIPTOR * 1024  # descriptors per command (tgt fills what fits)


class ProvisioningStatus(IntEnum):
    MAPPED = 0
    DEALLOCATED = 1
    ANCHORED = 2

    @property
    def label(self) -> str:
        return self.name.lower()


_STATUS = {
    0: ProvisioningStatus.MAPPED,
    1: ProvisioningStatus.DEALLOCATED,
    2: ProvisioningStatus.ANCHORED,
    3: ProvisioningStatus.MAPPED,  # SBC-4: mapped or unknown
}


@dataclass(frozen=True)
class Extent:
    lba: int
    blocks: int
    status: ProvisioningStatus

    @property
    def end(self) -> int:
        return self.lba + self.blocks

    @property
    def mapped(self) -> bool:
        """Blocks that hold data (anchored and deallocated ones have none)."""
        return self.status == ProvisioningStatus.MAPPED


_CDB = struct.Struct(">BBQIBB")


def get_lba_status16(lba: int, alloc: int = DEFAULT_ALLOC) -> bytes:
    """GET LBA STATUS(16) from ``lba``; ``alloc`` bytes of parameter data at most."""
    if not 0 <= lba < 1 << 64:
        raise ValueError(f"GET LBA STATUS LBA {lba} out of range 0..{(1 << 64) - 1}")
    if not HEADER + DESCRIPTOR <= alloc < 1 << 32:
        raise ValueError(
            f"GET LBA STATUS allocation length {alloc} out of range "
            f"{HEADER + DESCRIPTOR}..{(1 << 32) - 1}"
        )
    return _CDB.pack(OPCODE, SERVICE_ACTION, lba, alloc, 0, 0)


def is_get_lba_status(cdb: bytes) -> bool:
    return len(cdb) > 1 and cdb[0] == OPCODE and cdb[1] & 0x1F == SERVICE_ACTION


def parse_lba_status(data: bytes, start: int, block_count: int, alloc: int) -> tuple[Extent, ...]:
    """The extents from ``start`` that the answer describes, cut to begin at ``start``.

    ``block_count`` is the LUN's size in blocks, ``alloc`` the allocation length the CDB
    asked for (a list longer than that is cut by the target, legitimately: only whole
    descriptors within it are used). Gaps are filled with mapped extents; adjacent extents
    keep their own entries. Raises :class:`ScsiParseError` for anything impossible.
    """
    what = f"GET LBA STATUS from LBA {start}"
    if not 0 <= start < block_count:
        raise ScsiParseError(f"{what}: the LUN has {block_count} blocks")
    if len(data) < HEADER:
        raise ScsiParseError(f"{what}: data too short: {len(data)} bytes, need {HEADER}")
    declared = int.from_bytes(data[0:4], "big") + 4
    if declared < HEADER + DESCRIPTOR or (declared - HEADER) % DESCRIPTOR:
        raise ScsiParseError(
            f"{what}: parameter data length {declared - 4} is not 4 + 16 x descriptors (n >= 1)"
        )
    usable = min(declared, alloc)
    if len(data) < usable:
        raise ScsiParseError(
            f"{what}: data cut off: the target declared {declared} bytes and sent {len(data)}"
        )
    count = (usable - HEADER) // DESCRIPTOR
    if count == 0:
        raise ScsiParseError(f"{what}: no whole descriptor in {usable} bytes")
    extents: list[Extent] = []
    pos = start
    for i in range(count):
        off = HEADER + i * DESCRIPTOR
        lba = int.from_bytes(data[off : off + 8], "big")
        blocks = int.from_bytes(data[off + 8 : off + 12], "big")
        code = data[off + 12] & 0x0F
        where = f"{what}: descriptor {i} (LBA {lba}, {blocks} blocks)"
        if blocks == 0:
            raise ScsiParseError(f"{where} has no blocks")
        if lba + blocks > block_count:
            raise ScsiParseError(f"{where} reaches beyond the LUN's {block_count} blocks")
        status = _STATUS.get(code)
        if status is None:
            raise ScsiParseError(f"{where} has provisioning status {code}, which SBC reserves")
        if i == 0:
            if not lba <= start < lba + blocks:
                raise ScsiParseError(f"{where} does not contain the starting LBA")
            blocks -= start - lba
            lba = start
        elif lba < pos:
            raise ScsiParseError(
                f"{where} starts before the previous descriptor ends (LBA {pos}): "
                "out of order or overlapping"
            )
        elif lba > pos:  # a gap: unknown, so it is read
            extents.append(Extent(pos, lba - pos, ProvisioningStatus.MAPPED))
        extents.append(Extent(lba, blocks, status))
        pos = lba + blocks
    return tuple(extents)


def build_lba_status_data(extents: list[tuple[int, int, int]]) -> bytes:
    """Parameter data for ``(lba, blocks, status)`` descriptors (tests, fake targets)."""
    body = b"".join(struct.pack(">QIB3x", lba, n, st) for lba, n, st in extents)
    return (len(body) + 4).to_bytes(4, "big") + bytes(4) + body
