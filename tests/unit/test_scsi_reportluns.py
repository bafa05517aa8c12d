"""REPORT LUNS data: tgt's flat-space LUN 300, truncation and re-ask sizing."""

from __future__ import annotations

import pytest

from poolbackend.scsi import ScsiParseError, build_report_luns_data, parse_report_luns

TGT_0_1_300 = bytes.fromhex("00000018 00000000 0000000000000000 0001000000000000 412c000000000000")


def test_tgt_list_with_lun_300() -> None:
    report = parse_report_luns(TGT_0_1_300)
    assert report.luns == (0, 1, 300)
    assert report.full_length == len(TGT_0_1_300) == 32
    assert report.unsupported == ()


def test_build_matches_tgt_bytes() -> None:
    assert build_report_luns_data([0, 1, 300]) == TGT_0_1_300
    assert build_report_luns_data([]) == bytes(8)


def test_alloc_16_then_reask() -> None:
    first = parse_report_luns(TGT_0_1_300[:16])
    assert first.luns == (0,)
    assert first.full_length == 32 > 16


def test_truncated_final_entry_ignored_but_last_full_entry_kept() -> None:
    # pyscsi slices data[8:length+4] and loses half of the last entry; we must not.
    assert parse_report_luns(TGT_0_1_300[:31]).luns == (0, 1)
    assert parse_report_luns(TGT_0_1_300 + bytes(16)).luns == (0, 1, 300)


def test_unsupported_entries_kept_aside() -> None:
    data = bytes.fromhex("00000010 00000000 c101000000000000 0002000000000000")
    report = parse_report_luns(data)
    assert report.luns == (2,)
    assert report.unsupported == (bytes.fromhex("c101000000000000"),)
    assert report.full_length == 24


def test_too_short() -> None:
    with pytest.raises(ScsiParseError, match="REPORT LUNS data too short: 4 bytes, need 8"):
        parse_report_luns(TGT_0_1_300[:4])


def test_round_trip() -> None:
    luns = [0, 7, 255, 256, 1000, 16383]
    assert parse_report_luns(build_report_luns_data(luns)).luns == tuple(luns)


def _header(list_length: int) -> bytes:
    return list_length.to_bytes(4, "big") + bytes(4)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (_header(12) + bytes(12), "list length 12 is not a multiple of the 8-byte entry"),
        (_header(0xFFFFFFF8), "list length 4294967288 bytes is absurd"),
        (_header(8 * 65537), "more than 65536 LUNs"),
    ],
)
def test_impossible_list_length_refused(data: bytes, problem: str) -> None:
    with pytest.raises(ScsiParseError, match=problem):
        parse_report_luns(data)


def test_largest_list_accepted() -> None:
    assert parse_report_luns(_header(8 * 65536)).full_length == 8 + 8 * 65536


def test_declared_length_is_authoritative() -> None:
    data = bytearray(build_report_luns_data([0, 1, 2]))
    data[0:4] = (8).to_bytes(4, "big")  # the length lies smaller: only LUN 0 counts
    assert parse_report_luns(bytes(data)).luns == (0,)
