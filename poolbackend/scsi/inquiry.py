"""Standard INQUIRY data (SPC-4 §6.6.2) and the names libiscsi's iscsi-inq prints."""

from __future__ import annotations

from dataclasses import dataclass

from poolbackend.scsi.errors import ScsiParseError

STANDARD_INQUIRY_MIN = 36

_DEVICE_TYPES = {
    0x00: "DIRECT_ACCESS",
    0x01: "SEQUENTIAL_ACCESS",
    0x02: "PRINTER",
    0x03: "PROCESSOR",
    0x04: "WRITE_ONCE",
    0x05: "MMC",
    0x06: "SCANNER",
    0x07: "OPTICAL_MEMORY",
    0x08: "MEDIA_CHANGER",
    0x09: "COMMUNICATIONS",
    0x0C: "STORAGE_ARRAY_CONTROLLER",
    0x0D: "ENCLOSURE_SERVICES",
    0x0E: "SIMPLIFIED_DIRECT_ACCESS",
    0x0F: "OPTICAL_CARD_READER",
    0x10: "BRIDGE_CONTROLLER",
    0x11: "OSD",
    0x12: "AUTOMATION",
    0x13: "SEQURITY_MANAGER",
    0x1E: "WELL_KNOWN_LUN",
    0x1F: "UNKNOWN",
}
_QUALIFIERS = {0: "CONNECTED", 1: "DISCONNECTED", 3: "NOT_SUPPORTED"}
_VERSIONS = {
    3: "ANSI INCITS 301-1997 (SPC)",
    4: "ANSI INCITS 351-2001 (SPC-2)",
    5: "ANSI INCITS 408-2005 (SPC-3)",
    6: "ANSI INCITS 513-2015 (SPC-4)",
}
_VERSION_DESCRIPTORS = {
    0x0120: "SPC",
    0x0180: "SBC",
    0x0200: "SSC",
    0x0260: "SPC-2",
    0x0300: "SPC-3",
    0x0320: "SBC-2",
    0x0460: "SPC-4",
    0x04C0: "SBC-3",
    0x0600: "SBC-4",
    0x0960: "iSCSI",
}


def device_type_name(device_type: int) -> str:
    """libiscsi's name (``DIRECT_ACCESS``, ``MMC``, ...); ``"unknown"`` for reserved codes."""
    return _DEVICE_TYPES.get(device_type, "unknown")


QUALIFIER_NO_LU = 3
"""Peripheral qualifier 3: the target has no logical unit at this LUN (SPC-4 6.6.2); tgt
answers INQUIRY this way for a LUN that does not exist."""


def peripheral_qualifier_name(qualifier: int) -> str:
    """libiscsi's name: ``CONNECTED`` (0), ``DISCONNECTED`` (1), ``NOT_SUPPORTED`` (3)."""
    return _QUALIFIERS.get(qualifier, "unknown")


def version_name(version: int) -> str:
    """Standard named by the VERSION byte, e.g. ``"ANSI INCITS 408-2005 (SPC-3)"`` for 5."""
    return _VERSIONS.get(version, "unknown")


def version_descriptor_name(code: int) -> str:
    """Name of a version descriptor (exact code, e.g. 0x04C0 -> ``"SBC-3"``) or ``"unknown"``."""
    return _VERSION_DESCRIPTORS.get(code, "unknown")


@dataclass(frozen=True)
class StandardInquiry:
    peripheral_qualifier: int
    device_type: int
    removable: bool
    version: int
    normaca: bool
    hisup: bool
    response_data_format: int
    sccs: bool
    acc: bool
    tpgs: int
    three_pc: bool
    protect: bool
    encserv: bool
    multip: bool
    sync: bool
    cmdque: bool
    vendor: str
    product: str
    revision: str
    version_descriptors: tuple[int, ...]

    @property
    def is_disk(self) -> bool:
        """A connected direct-access LUN: the only kind that becomes a pool volume with data."""
        return self.peripheral_qualifier == 0 and self.device_type == 0


def _text(raw: bytes) -> str:
    return raw.decode("ascii", "replace").strip(" \x00")


def parse_standard_inquiry(data: bytes) -> StandardInquiry:
    """Parse standard INQUIRY data (at least 36 bytes); descriptors only as far as data goes."""
    if len(data) < STANDARD_INQUIRY_MIN:
        raise ScsiParseError(
            f"standard INQUIRY data too short: {len(data)} bytes, need {STANDARD_INQUIRY_MIN}"
        )
    end = min(len(data), 5 + data[4], 74)
    descriptors = (int.from_bytes(data[i : i + 2], "big") for i in range(58, end - 1, 2))
    return StandardInquiry(
        peripheral_qualifier=data[0] >> 5,
        device_type=data[0] & 0x1F,
        removable=bool(data[1] & 0x80),
        version=data[2],
        normaca=bool(data[3] & 0x20),
        hisup=bool(data[3] & 0x10),
        response_data_format=data[3] & 0x0F,
        sccs=bool(data[5] & 0x80),
        acc=bool(data[5] & 0x40),
        tpgs=(data[5] >> 4) & 0x03,
        three_pc=bool(data[5] & 0x08),
        protect=bool(data[5] & 0x01),
        encserv=bool(data[6] & 0x40),
        multip=bool(data[6] & 0x10),
        sync=bool(data[7] & 0x10),
        cmdque=bool(data[7] & 0x02),
        vendor=_text(data[8:16]),
        product=_text(data[16:32]),
        revision=_text(data[32:36]),
        version_descriptors=tuple(d for d in descriptors if d),
    )
