"""REPORT LUNS parameter data (SPC-4 §6.33): 8-byte header, then 8-byte SAM LUN entries."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from poolbackend.scsi.errors import ScsiParseError, UnsupportedLunFormat
from poolbackend.scsi.lun import decode_lun, encode_lun


@dataclass(frozen=True)
class ReportLuns:
    luns: tuple[int, ...]  # decoded LUN numbers, in target order
    full_length: int  # 8 + LUN list length; re-ask with this allocation if > len(data)
    unsupported: tuple[bytes, ...] = ()  # raw entries in address methods decode_lun refuses


def parse_report_luns(data: bytes) -> ReportLuns:
    """Decode the entries present in ``data``; a cut-off final entry is ignored."""
    if len(data) < 8:
        raise ScsiParseError(f"REPORT LUNS data too short: {len(data)} bytes, need 8")
    full_length = 8 + int.from_bytes(data[0:4], "big")
    end = min(len(data), full_length)
    luns: list[int] = []
    unsupported: list[bytes] = []
    for pos in range(8, end - 7, 8):
        try:
            luns.append(decode_lun(data[pos : pos + 8]))
        except UnsupportedLunFormat as err:
            unsupported.append(err.raw)
    return ReportLuns(tuple(luns), full_length, tuple(unsupported))


def build_report_luns_data(luns: Iterable[int]) -> bytes:
    """REPORT LUNS data as a target would send it (for tests and fake targets)."""
    entries = b"".join(encode_lun(lun) for lun in luns)
    return len(entries).to_bytes(4, "big") + bytes(4) + entries
