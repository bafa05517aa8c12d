"""SCSI status byte values (SAM), as carried in the iSCSI SCSI Response."""

from __future__ import annotations

from enum import IntEnum


class ScsiStatus(IntEnum):
    GOOD = 0x00
    CHECK_CONDITION = 0x02
    CONDITION_MET = 0x04
    BUSY = 0x08
    RESERVATION_CONFLICT = 0x18
    TASK_SET_FULL = 0x28
    ACA_ACTIVE = 0x30
    TASK_ABORTED = 0x40


def status_name(status: int) -> str:
    """``"CHECK CONDITION"`` for 0x02; ``"status 0xNN"`` for values SAM does not define."""
    try:
        return ScsiStatus(status).name.replace("_", " ")
    except ValueError:
        return f"status 0x{status:02X}"
