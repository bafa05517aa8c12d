"""Sense data (SPC-4 §4.5): fixed (0x70/0x71) and descriptor (0x72/0x73) formats.

:func:`parse_sense` takes the sense bytes proper (the iSCSI transport strips the 2-byte
SenseLength) and never raises: whatever a target sends, the caller gets the fields that could
be read, with ``problem`` saying what was missing, so an error message can always be built.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Literal

RetryClass = Literal["ua_retry", "not_ready_retry", "fatal"]


class SenseKey(IntEnum):
    NO_SENSE = 0x0
    RECOVERED_ERROR = 0x1
    NOT_READY = 0x2
    MEDIUM_ERROR = 0x3
    HARDWARE_ERROR = 0x4
    ILLEGAL_REQUEST = 0x5
    UNIT_ATTENTION = 0x6
    DATA_PROTECT = 0x7
    BLANK_CHECK = 0x8
    VENDOR_SPECIFIC = 0x9
    COPY_ABORTED = 0xA
    ABORTED_COMMAND = 0xB
    VOLUME_OVERFLOW = 0xD
    MISCOMPARE = 0xE


_ASC_NAMES = {
    (0x00, 0x00): "no additional sense information",
    (0x04, 0x00): "logical unit not ready, cause not reportable",
    (0x04, 0x01): "logical unit is in process of becoming ready",
    (0x04, 0x02): "logical unit not ready, initializing command required",
    (0x04, 0x03): "logical unit not ready, manual intervention required",
    (0x04, 0x0A): "logical unit not accessible, asymmetric access state transition",
    (0x04, 0x0B): "logical unit not accessible, target port in standby state",
    (0x04, 0x0C): "logical unit not accessible, target port in unavailable state",
    (0x04, 0x1B): "logical unit not ready, sanitize in progress",
    (0x0C, 0x00): "write error",
    (0x11, 0x00): "unrecovered read error",
    (0x1A, 0x00): "parameter list length error",
    (0x1D, 0x00): "miscompare during verify operation",
    (0x20, 0x00): "invalid command operation code",
    (0x21, 0x00): "logical block address out of range",
    (0x24, 0x00): "invalid field in CDB",
    (0x25, 0x00): "logical unit not supported",
    (0x26, 0x00): "invalid field in parameter list",
    (0x27, 0x00): "write protected",
    (0x29, 0x00): "power on, reset, or bus device reset occurred",
    (0x29, 0x01): "power on occurred",
    (0x29, 0x02): "SCSI bus reset occurred",
    (0x29, 0x03): "bus device reset function occurred",
    (0x29, 0x04): "device internal reset",
    (0x29, 0x05): "transceiver mode changed to single-ended",
    (0x29, 0x06): "transceiver mode changed to LVD",
    (0x29, 0x07): "I_T nexus loss occurred",
    (0x2A, 0x01): "mode parameters changed",
    (0x2A, 0x04): "reservations released",
    (0x2A, 0x09): "capacity data has changed",
    (0x3A, 0x00): "medium not present",
    (0x3F, 0x03): "inquiry data has changed",
    (0x3F, 0x0E): "reported LUNs data has changed",
    (0x44, 0x00): "internal target failure",
}


def sense_key_name(key: int) -> str:
    """``"UNIT ATTENTION"`` for 6; ``"sense key 0xN"`` for reserved values."""
    try:
        return SenseKey(key).name.replace("_", " ")
    except ValueError:
        return f"sense key 0x{key:X}"


def asc_name(asc: int, ascq: int) -> str:
    """Meaning of an ASC/ASCQ pair, or ``"ASC/ASCQ 0xNN/0xNN"`` when not in the table."""
    return _ASC_NAMES.get((asc, ascq), f"ASC/ASCQ 0x{asc:02X}/0x{ascq:02X}")


@dataclass(frozen=True)
class SenseData:
    response_code: int
    is_descriptor: bool
    deferred: bool
    key: int
    asc: int
    ascq: int
    information: int | None = None  # only when the target marked it valid
    sense_key_specific: int | None = None  # 23 bits after SKSV, only when SKSV is set
    problem: str | None = None  # set when the data was short or malformed

    def describe(self) -> str:
        """E.g. ``UNIT ATTENTION: power on, reset, or bus device reset occurred (29/00)``."""
        text = f"{sense_key_name(self.key)}: {asc_name(self.asc, self.ascq)}"
        text += f" ({self.asc:02X}/{self.ascq:02X})"
        if self.deferred:
            text += " [deferred]"
        if self.problem:
            text += f" [{self.problem}]"
        return text


def _fixed(data: bytes, code: int) -> SenseData:
    # Fields sit at fixed offsets; the additional length (byte 7) is not trusted to cut them.
    size = len(data)
    sks = data[15:18] if size >= 18 and data[15] & 0x80 else b""
    return SenseData(
        response_code=code,
        is_descriptor=False,
        deferred=code == 0x71,
        key=data[2] & 0x0F if size > 2 else 0,
        asc=data[12] if size > 12 else 0,
        ascq=data[13] if size > 13 else 0,
        information=int.from_bytes(data[3:7], "big") if data[0] & 0x80 and size >= 7 else None,
        sense_key_specific=int.from_bytes(sks, "big") & 0x7FFFFF if sks else None,
        problem=None if size >= 14 else f"fixed sense truncated: {size} bytes, need 14",
    )


def _descriptor(data: bytes, code: int) -> SenseData:
    size = len(data)
    information = sks = None
    problem = None if size >= 8 else f"descriptor sense truncated: {size} bytes, need 8"
    body = data[8 : 8 + data[7]] if size >= 8 else b""
    pos = 0
    while pos < len(body):
        if pos + 2 > len(body) or pos + 2 + body[pos + 1] > len(body):
            problem = f"sense descriptor at byte {8 + pos} truncated"
            break
        end = pos + 2 + body[pos + 1]
        kind, value = body[pos], body[pos + 2 : end]
        if kind == 0x00 and len(value) >= 10 and value[0] & 0x80:
            information = int.from_bytes(value[2:10], "big")
        elif kind == 0x02 and len(value) >= 3 and value[0] & 0x80:
            sks = int.from_bytes(value[0:3], "big") & 0x7FFFFF
        pos = end
    return SenseData(
        response_code=code,
        is_descriptor=True,
        deferred=code == 0x73,
        key=data[1] & 0x0F if size > 1 else 0,
        asc=data[2] if size > 2 else 0,
        ascq=data[3] if size > 3 else 0,
        information=information,
        sense_key_specific=sks,
        problem=problem,
    )


def parse_sense(data: bytes | None) -> SenseData | None:
    """Parse sense bytes; None for no data. Never raises (see the module docstring)."""
    if not data:
        return None
    code = data[0] & 0x7F
    if code in (0x70, 0x71):
        return _fixed(data, code)
    if code in (0x72, 0x73):
        return _descriptor(data, code)
    return SenseData(
        response_code=code,
        is_descriptor=False,
        deferred=False,
        key=0,
        asc=0,
        ascq=0,
        problem=f"unknown sense response code 0x{code:02X}",
    )


def is_unit_attention(sense: SenseData | None) -> bool:
    return sense is not None and sense.key == SenseKey.UNIT_ATTENTION


def retry_class(sense: SenseData | None) -> RetryClass:
    """How the transport should react to CHECK CONDITION with this sense.

    ``ua_retry``: any UNIT ATTENTION (29/00 after login or reset, 3F/0E, 2A/09, ...), retry
    at once; ``not_ready_retry``: NOT READY 04/01 (becoming ready), retry with backoff;
    ``fatal``: everything else, including missing sense.
    """
    if is_unit_attention(sense):
        return "ua_retry"
    if sense is not None and (sense.key, sense.asc, sense.ascq) == (SenseKey.NOT_READY, 4, 1):
        return "not_ready_retry"
    return "fatal"
