"""SAM encoding of the 8-byte LUN field (BHS LUN and REPORT LUNS entries).

:func:`encode_lun` writes LUNs 0-255 in peripheral device addressing and 256-16383 in flat
space addressing, like tgt. A LUN the target reported is kept as :class:`Lun`, the entry
exactly as reported: commands address it with those bytes, and QEMU's iSCSI driver
(libiscsi), which copies its LUN number raw into the first two bytes of the field, is given
:attr:`Lun.qemu` (tgt's LUN 300, reported ``41 2c``, is QEMU LUN 16684; QEMU given 300 sends
``01 2c``, which tgt reads as LUN 44). Linux's LIO reports its LUN 300 as ``01 2c``
(peripheral addressing, the 16-bit number raw): that is LUN 300 and QEMU LUN 300.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from poolbackend.scsi.errors import ScsiParseError, UnsupportedLunFormat

MAX_LUN = 0x3FFF
_ZERO6 = bytes(6)
_HEX16 = re.compile("[0-9a-f]{16}").fullmatch
_METHODS = {0b10: "logical unit addressing", 0b11: "extended addressing (e.g. a well-known LU)"}


def encode_lun(lun: int) -> bytes:
    """Encode ``lun`` (0-16383) as a single-level 8-byte LUN; ValueError outside that range."""
    if not 0 <= lun <= MAX_LUN:
        raise ValueError(f"LUN {lun} out of range 0..{MAX_LUN}")
    first = 0x00 if lun <= 0xFF else 0x40 | (lun >> 8)
    return bytes((first, lun & 0xFF)) + bytes(6)


def refusal(entry: bytes) -> str | None:
    """Why an 8-byte LUN entry cannot be used, or None when it can.

    The one rule: a usable LUN is single-level and fits the first two bytes (bytes 2-7 zero),
    in peripheral or flat space addressing. Only those have one 14-bit number to show users
    and a 16-bit number QEMU's iSCSI driver can send.
    """
    if any(entry[2:8]):
        return "it is reported in more than two bytes, which QEMU's iSCSI driver cannot address"
    method = entry[0] >> 6
    if method in _METHODS:
        return f"{_METHODS[method]} is not supported (only peripheral and flat space)"
    return None


def decode_lun(raw: bytes) -> int:
    """Decode the first 8 bytes of ``raw`` as a single-level peripheral or flat space LUN:
    the 14 bits after the address method (``41 2c`` and LIO's ``01 2c`` are both 300).

    Anything :func:`refusal` refuses raises :class:`UnsupportedLunFormat`, which keeps the raw
    entry and the reason.
    """
    if len(raw) < 8:
        raise ScsiParseError(f"LUN field too short: {len(raw)} bytes, need 8")
    entry = bytes(raw[:8])
    if entry[2:8] != _ZERO6 or entry[0] >> 6 in _METHODS:  # refusal() only when it may refuse
        reason = refusal(entry)
        if reason is not None:
            raise UnsupportedLunFormat(entry, reason)
    return (entry[0] & 0x3F) << 8 | entry[1]


@dataclass(frozen=True, slots=True)
class Lun:
    """A LUN as the target reported it: the 8-byte entry, never re-encoded.

    ``str()`` is the decoded number shown to users (``unit:0:0:N``, messages).
    """

    raw: bytes

    def __post_init__(self) -> None:
        decode_lun(self.raw)  # refuses short fields and entries :func:`refusal` refuses
        if len(self.raw) != 8:
            raise ScsiParseError(f"LUN field is {len(self.raw)} bytes, need 8")

    @classmethod
    def of(cls, number: int) -> Lun:
        """The LUN numbered ``number`` in the encoding tgt and Linux use (for a number a user
        typed, e.g. in an iscsi:// URL; a scanned LUN keeps its reported entry instead)."""
        return cls(encode_lun(number))

    @classmethod
    def from_hex(cls, text: str) -> Lun:
        """Parse the 16 hex digits :attr:`hex` wrote; ScsiParseError when they are not."""
        if _HEX16(text) is None:
            raise ScsiParseError(f"LUN field '{text[:40]}' is not 16 lowercase hex digits")
        return cls(bytes.fromhex(text))

    @property
    def number(self) -> int:
        """The decoded LUN number users see."""
        return decode_lun(self.raw)

    @property
    def qemu(self) -> int:
        """The number QEMU's iSCSI driver needs in ``IQN/N``: bytes 0-1, big-endian."""
        return int.from_bytes(self.raw[:2], "big")

    @property
    def hex(self) -> str:
        """The reported entry as 16 hex digits."""
        return self.raw.hex()

    def __str__(self) -> str:
        return str(self.number)


LunRef = int | Lun
"""How the initiator API takes a LUN: a scanned :class:`Lun`, or a number to encode."""


def lun_field(lun: LunRef) -> bytes:
    """The 8 bytes for the BHS LUN field: the reported entry, or ``encode_lun(number)``."""
    return lun.raw if isinstance(lun, Lun) else encode_lun(lun)
