"""Sense data: tgt's fixed-format UA 29/00, descriptor format, garbage, retry classes."""

from __future__ import annotations

import pytest

from poolbackend.scsi import (
    ScsiStatus,
    SenseKey,
    asc_name,
    is_unit_attention,
    parse_sense,
    retry_class,
    sense_key_name,
    status_name,
)


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


TGT_UA = h("70 00 06 00000000 0a 00000000 29 00 00 000000")


def test_tgt_first_tur_unit_attention() -> None:
    sense = parse_sense(TGT_UA)
    assert sense is not None
    assert (sense.response_code, sense.is_descriptor, sense.deferred) == (0x70, False, False)
    assert (sense.key, sense.asc, sense.ascq) == (SenseKey.UNIT_ATTENTION, 0x29, 0x00)
    assert sense.information is None and sense.sense_key_specific is None
    assert sense.problem is None
    assert sense.describe() == (
        "UNIT ATTENTION: power on, reset, or bus device reset occurred (29/00)"
    )
    assert is_unit_attention(sense)
    assert retry_class(sense) == "ua_retry"


def test_fixed_with_information_and_sks() -> None:
    sense = parse_sense(h("f1 00 05 00001234 0a 00000000 24 00 00 c00004"))
    assert sense is not None and sense.deferred
    assert sense.information == 0x1234
    assert sense.sense_key_specific == 0x400004
    assert sense.describe() == "ILLEGAL REQUEST: invalid field in CDB (24/00) [deferred]"


def test_descriptor_format() -> None:
    data = h(
        "72 05 24 00 000000 14"
        " 00 0a 80 00 0000000000001234"  # information descriptor
        " 02 06 c0 0004 000000"  # sense-key specific: C/D=1, field pointer 4
    )
    sense = parse_sense(data)
    assert sense is not None
    assert (sense.response_code, sense.is_descriptor, sense.deferred) == (0x72, True, False)
    assert (sense.key, sense.asc, sense.ascq) == (5, 0x24, 0)
    assert sense.information == 0x1234
    assert sense.sense_key_specific == 0x400004
    assert sense.problem is None
    assert retry_class(sense) == "fatal"


def test_descriptor_format_minimal_and_deferred() -> None:
    sense = parse_sense(h("73 02 04 01 000000 00"))
    assert sense is not None and sense.deferred and sense.is_descriptor
    assert retry_class(sense) == "not_ready_retry"
    assert sense.describe().startswith("NOT READY: logical unit is in process of becoming ready")


def test_descriptor_truncated_descriptor_is_marked() -> None:
    sense = parse_sense(h("72 06 3f 0e 000000 0c 00 0a 80 00 00"))
    assert sense is not None
    assert (sense.key, sense.asc, sense.ascq) == (6, 0x3F, 0x0E)
    assert sense.problem == "sense descriptor at byte 8 truncated"
    assert "reported LUNs data has changed (3F/0E) [sense descriptor" in sense.describe()


def test_short_and_garbage_never_raise() -> None:
    assert parse_sense(None) is None
    assert parse_sense(b"") is None
    short = parse_sense(TGT_UA[:8])
    assert short is not None and short.key == 6 and short.asc == 0
    assert short.problem == "fixed sense truncated: 8 bytes, need 14"
    assert retry_class(short) == "ua_retry"
    tiny = parse_sense(b"\x72")
    assert tiny is not None and tiny.problem == "descriptor sense truncated: 1 bytes, need 8"
    garbage = parse_sense(b"\x00\x01\x02")
    assert garbage is not None and garbage.problem == "unknown sense response code 0x00"
    assert retry_class(garbage) == "fatal"


def test_tgt_unmap_quirk_good_status_with_sense() -> None:
    # tgt's UNMAP on a thin LUN: status GOOD *and* sense 05/25/00. Success is decided by the
    # status byte alone; the sense still parses for logging.
    status, sense = ScsiStatus.GOOD, parse_sense(h("70 00 05 00000000 0a 00000000 25 00 00 000000"))
    assert status_name(status) == "GOOD"
    assert sense is not None
    assert sense.describe() == "ILLEGAL REQUEST: logical unit not supported (25/00)"


@pytest.mark.parametrize(
    ("key", "asc", "ascq", "expected"),
    [
        (6, 0x2A, 0x09, "ua_retry"),
        (6, 0x3F, 0x0E, "ua_retry"),
        (2, 0x04, 0x01, "not_ready_retry"),
        (2, 0x04, 0x02, "fatal"),
        (2, 0x3A, 0x00, "fatal"),
        (5, 0x21, 0x00, "fatal"),
        (0, 0x00, 0x00, "fatal"),
    ],
)
def test_retry_class(key: int, asc: int, ascq: int, expected: str) -> None:
    sense = parse_sense(bytes([0x70, 0, key]) + bytes(9) + bytes([asc, ascq]))
    assert retry_class(sense) == expected


def test_retry_class_without_sense() -> None:
    assert retry_class(None) == "fatal"
    assert not is_unit_attention(None)


def test_names() -> None:
    assert [sense_key_name(k) for k in (0, 1, 2, 3, 4, 5, 6, 7)] == [
        "NO SENSE",
        "RECOVERED ERROR",
        "NOT READY",
        "MEDIUM ERROR",
        "HARDWARE ERROR",
        "ILLEGAL REQUEST",
        "UNIT ATTENTION",
        "DATA PROTECT",
    ]
    assert [sense_key_name(k) for k in (8, 9, 0xA, 0xB, 0xC, 0xD, 0xE)] == [
        "BLANK CHECK",
        "VENDOR SPECIFIC",
        "COPY ABORTED",
        "ABORTED COMMAND",
        "sense key 0xC",
        "VOLUME OVERFLOW",
        "MISCOMPARE",
    ]
    assert asc_name(0x21, 0x00) == "logical block address out of range"
    assert asc_name(0x29, 0x07) == "I_T nexus loss occurred"
    assert asc_name(0x55, 0x03) == "ASC/ASCQ 0x55/0x03"


@pytest.mark.parametrize(
    "pair",
    [
        (0x29, 0x00), (0x29, 0x01), (0x29, 0x02), (0x29, 0x03), (0x29, 0x04), (0x29, 0x05),
        (0x29, 0x06), (0x29, 0x07), (0x2A, 0x01), (0x2A, 0x09), (0x2A, 0x04), (0x3F, 0x0E),
        (0x3F, 0x03), (0x04, 0x00), (0x04, 0x01), (0x04, 0x02), (0x04, 0x03), (0x04, 0x0A),
        (0x04, 0x0B), (0x04, 0x0C), (0x04, 0x1B), (0x3A, 0x00), (0x20, 0x00), (0x21, 0x00),
        (0x24, 0x00), (0x25, 0x00), (0x26, 0x00), (0x1A, 0x00), (0x27, 0x00), (0x11, 0x00),
        (0x0C, 0x00), (0x1D, 0x00), (0x44, 0x00),
    ],
)  # fmt: skip
def test_asc_table_covers_doc(pair: tuple[int, int]) -> None:
    assert not asc_name(*pair).startswith("ASC/ASCQ")
