"""Property tests: parsers raise nothing but ScsiParseError, whatever the target sends."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from poolbackend.scsi import (
    ScsiParseError,
    decode_lun,
    parse_block_device_characteristics,
    parse_block_limits,
    parse_device_identification,
    parse_logical_block_provisioning,
    parse_read_capacity10,
    parse_read_capacity16,
    parse_report_luns,
    parse_sense,
    parse_standard_inquiry,
    parse_supported_pages,
    parse_unit_serial,
)

# Each parser with a prefix that gets random data past its first checks.
PARSERS: list[tuple[Callable[[bytes], object], bytes]] = [
    (decode_lun, b""),
    (parse_standard_inquiry, b""),
    (parse_report_luns, b""),
    (parse_read_capacity10, b""),
    (parse_read_capacity16, b""),
    (parse_supported_pages, b"\x00\x00"),
    (parse_unit_serial, b"\x00\x80"),
    (parse_device_identification, b"\x00\x83"),
    (parse_block_limits, b"\x00\xb0"),
    (parse_block_device_characteristics, b"\x00\xb1"),
    (parse_logical_block_provisioning, b"\x00\xb2"),
]


@pytest.mark.parametrize(("parser", "prefix"), PARSERS)
@given(data=st.binary(max_size=300))
def test_parsers_raise_only_scsi_parse_error(
    parser: Callable[[bytes], object], prefix: bytes, data: bytes
) -> None:
    for candidate in (data, prefix + data):
        try:
            parser(candidate)
        except ScsiParseError as err:
            assert str(err)


@given(st.binary(max_size=64), st.sampled_from([b"", b"\x70", b"\x72", b"\xf1", b"\x73"]))
def test_parse_sense_never_raises(data: bytes, prefix: bytes) -> None:
    sense = parse_sense(prefix + data)
    if sense is not None:
        assert sense.describe()


@given(st.lists(st.binary(min_size=4, max_size=20), max_size=6))
def test_device_identification_of_well_formed_designators(bodies: list[bytes]) -> None:
    designators = b"".join(b[:3] + bytes([len(b) - 4]) + b[4:] for b in bodies)
    data = b"\x00\x83" + len(designators).to_bytes(2, "big") + designators
    parsed = parse_device_identification(data).designators
    assert [d.value for d in parsed] == [b[4:] for b in bodies]
