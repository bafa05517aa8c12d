"""Vital product data pages 0x00, 0x80, 0x83, 0xB0, 0xB1 and 0xB2 (SPC-4 / SBC-3).

Variable-length pages (0x00, 0x80, 0x83) must arrive complete, since a cut-off designator list
would silently change which identifier a volume gets; re-ask with :func:`vpd_full_length`
bytes. Fixed-layout pages (0xB0-0xB2) tolerate short pages: missing fields read as 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from poolbackend.scsi.errors import ScsiParseError

PAGE_SUPPORTED = 0x00
PAGE_UNIT_SERIAL = 0x80
PAGE_DEVICE_ID = 0x83
PAGE_BLOCK_LIMITS = 0xB0
PAGE_BLOCK_CHARACTERISTICS = 0xB1
PAGE_PROVISIONING = 0xB2

CODE_SET_ASCII = 2
CODE_SET_UTF8 = 3

ASSOCIATION_LU = 0

DESIGNATOR_T10 = 1
DESIGNATOR_EUI64 = 2
DESIGNATOR_NAA = 3
DESIGNATOR_SCSI_NAME = 8


def vpd_full_length(data: bytes) -> int:
    """Bytes the whole page occupies (4 + page length), to size a repeated INQUIRY."""
    if len(data) < 4:
        raise ScsiParseError(f"VPD page too short: {len(data)} bytes, need 4")
    return 4 + int.from_bytes(data[2:4], "big")


def _page(data: bytes, code: int, *, complete: bool) -> bytes:
    """The page cut to its declared length, after checking the header and the page code."""
    full = vpd_full_length(data)
    if data[1] != code:
        raise ScsiParseError(f"VPD page 0x{code:02X}: data carries page 0x{data[1]:02X}")
    if complete and len(data) < full:
        raise ScsiParseError(
            f"VPD page 0x{code:02X} truncated: {len(data)} bytes, page needs {full}"
        )
    return data[:full]


def _field(page: bytes, offset: int, size: int) -> int:
    """Big-endian field at ``offset``, or 0 when the page ends before it."""
    end = offset + size
    return int.from_bytes(page[offset:end], "big") if len(page) >= end else 0


@dataclass(frozen=True)
class SupportedPages:
    pages: tuple[int, ...]


def parse_supported_pages(data: bytes) -> SupportedPages:
    return SupportedPages(tuple(_page(data, PAGE_SUPPORTED, complete=True)[4:]))


@dataclass(frozen=True)
class UnitSerialNumber:
    serial: str  # surrounding spaces (tgt right-aligns) and NULs stripped


def parse_unit_serial(data: bytes) -> UnitSerialNumber:
    page = _page(data, PAGE_UNIT_SERIAL, complete=True)
    return UnitSerialNumber(page[4:].decode("ascii", "replace").strip(" \x00"))


@dataclass(frozen=True)
class Designator:
    protocol_id: int
    code_set: int
    piv: bool
    association: int
    designator_type: int
    value: bytes

    @property
    def text(self) -> str:
        """ASCII/UTF-8 designators as text (trailing NULs/spaces cut), binary ones as hex."""
        if self.code_set in (CODE_SET_ASCII, CODE_SET_UTF8):
            encoding = "ascii" if self.code_set == CODE_SET_ASCII else "utf-8"
            return self.value.decode(encoding, "replace").rstrip(" \x00")
        return self.value.hex()

    @property
    def naa(self) -> int | None:
        """The NAA field (2, 3, 5, 6) of an NAA designator, else None."""
        if self.designator_type != DESIGNATOR_NAA or not self.value:
            return None
        return self.value[0] >> 4


@dataclass(frozen=True)
class DeviceIdentification:
    designators: tuple[Designator, ...]


def parse_device_identification(data: bytes) -> DeviceIdentification:
    page = _page(data, PAGE_DEVICE_ID, complete=True)
    designators = []
    pos = 4
    while pos < len(page):
        if pos + 4 > len(page):
            raise ScsiParseError(f"VPD page 0x83: designator header cut off at byte {pos}")
        end = pos + 4 + page[pos + 3]
        if end > len(page):
            raise ScsiParseError(
                f"VPD page 0x83: designator at byte {pos} needs {end - pos} bytes, "
                f"page has {len(page) - pos}"
            )
        designators.append(
            Designator(
                protocol_id=page[pos] >> 4,
                code_set=page[pos] & 0x0F,
                piv=bool(page[pos + 1] & 0x80),
                association=(page[pos + 1] >> 4) & 0x03,
                designator_type=page[pos + 1] & 0x0F,
                value=bytes(page[pos + 4 : end]),
            )
        )
        pos = end
    return DeviceIdentification(tuple(designators))


def _identifier_rank(d: Designator) -> tuple[int, str] | None:
    """Preference (lower is better) and rendering of a logical unit designator."""
    if d.association != ASSOCIATION_LU or not d.value:
        return None
    if d.designator_type == DESIGNATOR_NAA:
        return {6: 0, 5: 1}.get(d.naa or 0, 3), "naa." + d.value.hex()
    if d.designator_type == DESIGNATOR_EUI64:
        return 2, "eui." + d.value.hex()
    if d.designator_type == DESIGNATOR_SCSI_NAME and d.text:
        return 4, d.text
    if d.designator_type == DESIGNATOR_T10 and d.text:
        return 5, "t10." + d.text
    return None


def preferred_identifier(designators: Iterable[Designator]) -> str | None:
    """A stable volume identity from the logical unit's designators (association 0).

    Order: NAA 6, NAA 5, EUI-64, other NAA (2/3), SCSI name string, T10 vendor id; the first
    designator of the best kind wins. Rendered as ``naa.<hex>``, ``eui.<hex>``, the SCSI name
    string itself or ``t10.<text>``.
    """
    ranked = [r for r in map(_identifier_rank, designators) if r is not None]
    return min(ranked, key=lambda r: r[0])[1] if ranked else None


@dataclass(frozen=True)
class BlockLimits:
    wsnz: bool
    max_compare_write: int
    opt_xfer_granularity: int
    max_transfer_length: int  # blocks; 0 = no limit
    opt_transfer_length: int
    max_prefetch: int
    max_unmap_lba_count: int
    max_unmap_descriptors: int
    opt_unmap_granularity: int
    ugavalid: bool
    unmap_granularity_alignment: int
    max_write_same_length: int


def parse_block_limits(data: bytes) -> BlockLimits:
    page = _page(data, PAGE_BLOCK_LIMITS, complete=False)
    alignment = _field(page, 32, 4)
    return BlockLimits(
        wsnz=bool(_field(page, 4, 1) & 0x01),
        max_compare_write=_field(page, 5, 1),
        opt_xfer_granularity=_field(page, 6, 2),
        max_transfer_length=_field(page, 8, 4),
        opt_transfer_length=_field(page, 12, 4),
        max_prefetch=_field(page, 16, 4),
        max_unmap_lba_count=_field(page, 20, 4),
        max_unmap_descriptors=_field(page, 24, 4),
        opt_unmap_granularity=_field(page, 28, 4),
        ugavalid=bool(alignment & 0x8000_0000),
        unmap_granularity_alignment=alignment & 0x7FFF_FFFF,
        max_write_same_length=_field(page, 36, 8),
    )


@dataclass(frozen=True)
class BlockDeviceCharacteristics:
    medium_rotation_rate: int  # 0 = not reported, 1 = non-rotating, else RPM


def parse_block_device_characteristics(data: bytes) -> BlockDeviceCharacteristics:
    page = _page(data, PAGE_BLOCK_CHARACTERISTICS, complete=False)
    return BlockDeviceCharacteristics(_field(page, 4, 2))


@dataclass(frozen=True)
class LogicalBlockProvisioning:
    threshold_exponent: int
    lbpu: bool
    lbpws: bool
    lbpws10: bool
    lbprz: bool
    anc_sup: bool
    dp: bool
    provisioning_type: int  # 0 full, 1 resource, 2 thin


def parse_logical_block_provisioning(data: bytes) -> LogicalBlockProvisioning:
    page = _page(data, PAGE_PROVISIONING, complete=False)
    flags = _field(page, 5, 1)
    return LogicalBlockProvisioning(
        threshold_exponent=_field(page, 4, 1),
        lbpu=bool(flags & 0x80),
        lbpws=bool(flags & 0x40),
        lbpws10=bool(flags & 0x20),
        lbprz=bool(flags & 0x04),
        anc_sup=bool(flags & 0x02),
        dp=bool(flags & 0x01),
        provisioning_type=_field(page, 6, 1) & 0x07,
    )
