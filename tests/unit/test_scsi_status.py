"""SCSI status byte names."""

from __future__ import annotations

import pytest

from poolbackend.scsi import ScsiStatus, status_name


@pytest.mark.parametrize(
    ("status", "name"),
    [
        (0x00, "GOOD"),
        (0x02, "CHECK CONDITION"),
        (0x04, "CONDITION MET"),
        (0x08, "BUSY"),
        (0x18, "RESERVATION CONFLICT"),
        (0x28, "TASK SET FULL"),
        (0x30, "ACA ACTIVE"),
        (0x40, "TASK ABORTED"),
        (0x22, "status 0x22"),
    ],
)
def test_status_name(status: int, name: str) -> None:
    assert status_name(status) == name


def test_status_is_int() -> None:
    assert ScsiStatus(0x02) is ScsiStatus.CHECK_CONDITION
    assert int(ScsiStatus.TASK_ABORTED) == 0x40
