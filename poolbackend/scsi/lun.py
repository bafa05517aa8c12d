"""SAM encoding of the 8-byte LUN field (BHS LUN and REPORT LUNS entries).

LUNs 0-255 use peripheral device addressing and 256-16383 flat space addressing, like tgt and
the Linux initiator; libiscsi's bare 16-bit LUN breaks every LUN above 255 (LUN 300 reaches
tgt as LUN 44).
"""

from __future__ import annotations

from poolbackend.scsi.errors import ScsiParseError, UnsupportedLunFormat

MAX_LUN = 0x3FFF


def encode_lun(lun: int) -> bytes:
    """Encode ``lun`` (0-16383) as a single-level 8-byte LUN; ValueError outside that range."""
    if not 0 <= lun <= MAX_LUN:
        raise ValueError(f"LUN {lun} out of range 0..{MAX_LUN}")
    first = 0x00 if lun <= 0xFF else 0x40 | (lun >> 8)
    return bytes((first, lun & 0xFF)) + bytes(6)


def decode_lun(raw: bytes) -> int:
    """Decode the first 8 bytes of ``raw`` as a single-level peripheral or flat space LUN.

    Anything else (peripheral with a bus number, logical unit 10b or extended 11b addressing,
    multi-level LUNs) raises :class:`UnsupportedLunFormat`, which keeps the raw entry; such a
    LUN could not be addressed with :func:`encode_lun` anyway.
    """
    if len(raw) < 8:
        raise ScsiParseError(f"LUN field too short: {len(raw)} bytes, need 8")
    entry = bytes(raw[:8])
    if not any(entry[2:]):
        if entry[0] == 0x00:
            return entry[1]
        if entry[0] >> 6 == 0b01:
            return (entry[0] & 0x3F) << 8 | entry[1]
    raise UnsupportedLunFormat(entry)
