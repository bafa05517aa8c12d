"""SAM LUN encoding: peripheral 0-255, flat space 256-16383, tgt's LUN 300 = 41 2c."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from poolbackend.scsi import ScsiParseError, UnsupportedLunFormat, decode_lun, encode_lun


@pytest.mark.parametrize(
    ("lun", "raw"),
    [
        (0, "0000000000000000"),
        (1, "0001000000000000"),
        (255, "00ff000000000000"),
        (256, "4100000000000000"),
        (300, "412c000000000000"),
        (16383, "7fff000000000000"),
    ],
)
def test_encode_decode_known(lun: int, raw: str) -> None:
    assert encode_lun(lun).hex() == raw
    assert decode_lun(bytes.fromhex(raw)) == lun


@pytest.mark.parametrize("lun", [-1, 16384, 2**64])
def test_encode_out_of_range(lun: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        encode_lun(lun)


def test_flat_space_small_lun_decodes_to_same_number() -> None:
    assert decode_lun(bytes.fromhex("4005000000000000")) == 5


def test_peripheral_with_bus_bits_is_the_16_bit_number() -> None:
    # Linux's LIO reports its LUN 300 as 01 2c (int_to_scsilun: the number raw)
    assert decode_lun(bytes.fromhex("012c000000000000")) == 300
    assert decode_lun(bytes.fromhex("0201000000000000")) == 513


@pytest.mark.parametrize(
    "raw",
    [
        "c101000000000000",  # extended addressing: REPORT LUNS well-known LU
        "8001000000000000",  # logical unit addressing
        "0001000200000000",  # second-level LUN
    ],
)
def test_unsupported_address_methods(raw: str) -> None:
    with pytest.raises(UnsupportedLunFormat) as info:
        decode_lun(bytes.fromhex(raw))
    assert info.value.raw == bytes.fromhex(raw)
    assert isinstance(info.value, ScsiParseError)


def test_decode_short_and_long_input() -> None:
    with pytest.raises(ScsiParseError, match="LUN field too short: 2 bytes"):
        decode_lun(b"\x00\x01")
    assert decode_lun(encode_lun(300) + b"\xff\xff") == 300


@given(st.integers(min_value=0, max_value=16383))
def test_round_trip(lun: int) -> None:
    raw = encode_lun(lun)
    assert len(raw) == 8
    assert decode_lun(raw) == lun
