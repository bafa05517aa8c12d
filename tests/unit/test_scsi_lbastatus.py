"""GET LBA STATUS(16): the CDB, and the parser from bytes -- tgt 1.0.85's real answers and
every impossible one (which must fail, never describe blocks wrongly)."""

from __future__ import annotations

import pytest

from poolbackend.scsi import ScsiParseError
from poolbackend.scsi.cdb import cdb_name
from poolbackend.scsi.lbastatus import (
    DEFAULT_ALLOC,
    Extent,
    ProvisioningStatus,
    build_lba_status_data,
    get_lba_status16,
    is_get_lba_status,
    parse_lba_status,
)

M, D, A = ProvisioningStatus.MAPPED, ProvisioningStatus.DEALLOCATED, ProvisioningStatus.ANCHORED
BLOCKS = 131072  # a 64 MiB LUN of 512-byte blocks

# tgt 1.0.85, thin 64 MiB LUN, 4 KiB written at 1 MiB and 3 MiB at 10 MiB, asked from LBA 0
TGT_ANSWER = bytes.fromhex(
    "00000054000000000000000000000000000008000100000000000000000008000000000800000000"
    "0000000000000808000047f80100000000000000000050000000180000000000000000000000680000"
    "01980001000000"
)


def test_cdb() -> None:
    cdb = get_lba_status16(0x0102030405060708, 4096)
    assert cdb == bytes.fromhex("9e12 0102030405060708 00001000 00 00".replace(" ", ""))
    assert is_get_lba_status(cdb) and cdb_name(cdb) == "GET LBA STATUS(16)"
    assert len(get_lba_status16(0)) == 16 and get_lba_status16(0)[10:14] == (
        DEFAULT_ALLOC.to_bytes(4, "big")
    )
    for bad in ((-1, 4096), (1 << 64, 4096), (0, 23), (0, 1 << 32)):
        with pytest.raises(ValueError):
            get_lba_status16(*bad)


def test_tgt_answer() -> None:
    assert parse_lba_status(TGT_ANSWER, 0, BLOCKS, 4096) == (
        Extent(0, 2048, D),
        Extent(2048, 8, M),
        Extent(2056, 18424, D),
        Extent(20480, 6144, M),
        Extent(26624, 104448, D),
    )


def test_first_descriptor_containing_start_is_cut_to_it() -> None:
    data = build_lba_status_data([(0, 100, 0), (100, 28, 1)])
    assert parse_lba_status(data, 40, 128, 4096) == (Extent(40, 60, M), Extent(100, 28, D))


def test_statuses_anchored_and_mapped_or_unknown() -> None:
    data = build_lba_status_data([(0, 1, 2), (1, 1, 3), (2, 1, 0x10)])  # high nibble ignored
    got = parse_lba_status(data, 0, 3, 4096)
    assert [e.status for e in got] == [A, M, M]
    assert [e.mapped for e in got] == [False, True, True]
    assert A.label == "anchored"


def test_gap_is_reported_as_mapped() -> None:
    data = build_lba_status_data([(0, 10, 1), (20, 10, 1)])
    assert parse_lba_status(data, 0, 30, 4096) == (
        Extent(0, 10, D),
        Extent(10, 10, M),
        Extent(20, 10, D),
    )


def test_list_longer_than_the_allocation_uses_whole_descriptors() -> None:
    data = build_lba_status_data([(0, 10, 1), (10, 10, 0), (20, 10, 1)])
    cut = data[: 8 + 16 + 5]  # the target stopped at our allocation length
    assert parse_lba_status(cut, 0, 30, len(cut)) == (Extent(0, 10, D),)


BAD = {
    "header cut off": (bytes(7), "data too short"),
    "length not 4 + 16n": (bytes.fromhex("00000015") + bytes(20), "not 4 \\+ 16"),
    "no descriptors": (bytes.fromhex("00000004") + bytes(4), "not 4 \\+ 16"),
    "declared more than sent": (build_lba_status_data([(0, 10, 0), (10, 10, 1)])[:-16], "cut off"),
    "zero-length descriptor": (build_lba_status_data([(0, 0, 0)]), "has no blocks"),
    "beyond capacity": (build_lba_status_data([(0, 200, 1)]), "beyond the LUN"),
    "far beyond capacity": (build_lba_status_data([(2**63, 2**31, 1)]), "beyond the LUN"),
    "first misses start": (build_lba_status_data([(5, 10, 1)]), "does not contain the starting"),
    "out of order": (
        build_lba_status_data([(0, 10, 1), (30, 10, 0), (10, 10, 1)]),
        "out of order or overlapping",
    ),
    "overlapping": (build_lba_status_data([(0, 10, 1), (5, 10, 0)]), "overlapping"),
    "reserved status": (build_lba_status_data([(0, 10, 7)]), "status 7"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_impossible_answers_fail(name: str) -> None:
    data, message = BAD[name]
    with pytest.raises(ScsiParseError, match=message):
        parse_lba_status(data, 0, 128, 4096)


def test_start_beyond_the_lun_fails() -> None:
    with pytest.raises(ScsiParseError, match="has 128 blocks"):
        parse_lba_status(build_lba_status_data([(0, 128, 0)]), 128, 128, 4096)
