"""REPORT LUNS parameter data (SPC-4 §6.33): 8-byte header, then 8-byte SAM LUN entries.

The LUN list length is checked before anything is sized by it: it must be a multiple of 8
and at most :data:`MAX_LIST_LENGTH` (a lying length must not make the caller allocate
gigabytes). The declared length is authoritative: bytes after it are ignored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from poolbackend.scsi.errors import ScsiParseError
from poolbackend.scsi.lun import Lun, encode_lun, refusal

MAX_ENTRIES = 65536
MAX_LIST_LENGTH = 8 * MAX_ENTRIES


@dataclass(frozen=True)
class ReportLuns:
    """The usable LUNs as reported, and the refused entries with the reason for each.

    An entry is refused when :func:`poolbackend.scsi.lun.refusal` refuses it, or when an
    earlier entry has the same number (two entries would be one volume name).
    """

    entries: tuple[Lun, ...]  # in target order, as reported
    full_length: int  # 8 + LUN list length; re-ask with this allocation if > len(data)
    refused: tuple[tuple[bytes, str], ...] = ()  # (raw entry, why it is left out)

    @property
    def luns(self) -> tuple[int, ...]:
        """The decoded numbers of :attr:`entries`."""
        return tuple(lun.number for lun in self.entries)

    @property
    def unsupported(self) -> tuple[bytes, ...]:
        """The raw refused entries."""
        return tuple(raw for raw, _ in self.refused)


def refused_line(raw: bytes, reason: str) -> str:
    """The one line for a refused entry: ``LUN <hex> left out: <reason>``."""
    return f"LUN {raw.hex()} left out: {reason}"


def parse_report_luns(data: bytes) -> ReportLuns:
    """Split the entries present in ``data``; a cut-off final entry is ignored."""
    if len(data) < 8:
        raise ScsiParseError(f"REPORT LUNS data too short: {len(data)} bytes, need 8")
    list_length = int.from_bytes(data[0:4], "big")
    if list_length % 8:
        raise ScsiParseError(
            f"REPORT LUNS list length {list_length} is not a multiple of the 8-byte entry"
        )
    if list_length > MAX_LIST_LENGTH:
        raise ScsiParseError(
            f"REPORT LUNS list length {list_length} bytes is absurd (more than {MAX_ENTRIES} LUNs)"
        )
    full_length = 8 + list_length
    end = min(len(data), full_length)
    entries: list[Lun] = []
    seen: dict[int, bytes] = {}
    refused: list[tuple[bytes, str]] = []
    for pos in range(8, end - 7, 8):
        raw = bytes(data[pos : pos + 8])
        reason = refusal(raw)
        if reason is None:
            lun = Lun(raw)
            first = seen.setdefault(lun.number, raw)
            if first is raw:
                entries.append(lun)
                continue
            reason = f"LUN {lun.number} is reported twice (also as {first.hex()})"
        refused.append((raw, reason))
    return ReportLuns(tuple(entries), full_length, tuple(refused))


def build_report_luns_data(luns: Iterable[int | bytes]) -> bytes:
    """REPORT LUNS data as a target would send it (for tests and fake targets); ``bytes``
    items are raw 8-byte entries."""
    entries = b"".join(lun if isinstance(lun, bytes) else encode_lun(lun) for lun in luns)
    return len(entries).to_bytes(4, "big") + bytes(4) + entries
