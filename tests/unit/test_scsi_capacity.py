"""READ CAPACITY(10)/(16): tgt's 64 MiB LUN is 131072 blocks, not 131071."""

from __future__ import annotations

import pytest

from poolbackend.scsi import ScsiParseError, parse_read_capacity10, parse_read_capacity16

TGT_RC16 = bytes.fromhex("000000000001ffff 00000200 00 03 00 00".replace(" ", "")) + bytes(16)


def test_tgt_rc16() -> None:
    cap = parse_read_capacity16(TGT_RC16)
    assert (cap.last_lba, cap.block_length) == (131071, 512)
    assert cap.block_count == 131072
    assert cap.capacity_bytes == 67108864
    assert (cap.lbppbe, cap.p_i_exponent, cap.p_type, cap.prot_en) == (3, 0, 0, False)
    assert (cap.lbpme, cap.lbprz, cap.lowest_aligned_lba) == (False, False, 0)


def test_rc16_bits() -> None:
    data = bytes.fromhex("0000000100000000 00001000 0b 52 c0 07".replace(" ", "")) + bytes(16)
    cap = parse_read_capacity16(data + b"extra")
    assert cap.capacity_bytes == (2**32 + 1) * 4096
    assert (cap.p_type, cap.prot_en, cap.p_i_exponent, cap.lbppbe) == (5, True, 5, 2)
    assert (cap.lbpme, cap.lbprz, cap.lowest_aligned_lba) == (True, True, 7)


def test_tgt_rc10() -> None:
    cap = parse_read_capacity10(bytes.fromhex("0001ffff00000200"))
    assert cap.capacity_bytes == 67108864 and cap.block_count == 131072
    assert not cap.needs_16
    assert parse_read_capacity10(bytes.fromhex("ffffffff00000200")).needs_16


def test_short_data() -> None:
    with pytest.raises(
        ScsiParseError, match=r"READ CAPACITY\(16\) data too short: 12 bytes, need 32"
    ):
        parse_read_capacity16(TGT_RC16[:12])
    with pytest.raises(
        ScsiParseError, match=r"READ CAPACITY\(10\) data too short: 7 bytes, need 8"
    ):
        parse_read_capacity10(bytes(7))


def _rc16(last_lba: int, block_length: int) -> bytes:
    return last_lba.to_bytes(8, "big") + block_length.to_bytes(4, "big") + bytes(20)


def _rc10(last_lba: int, block_length: int) -> bytes:
    return last_lba.to_bytes(4, "big") + block_length.to_bytes(4, "big")


@pytest.mark.parametrize(
    ("last_lba", "block_length", "problem"),
    [
        (2**64 - 1, 512, r"last LBA 2\^64-1"),  # tgt's answer for an empty backing file
        (2**55 - 1, 512, r"more than 2\^64-1 bytes"),  # exactly 2**64 bytes
        (2**63, 4096, r"more than 2\^64-1 bytes"),
        (131071, 0, "block length of 0 bytes"),
        (131071, 3, "block length of 3 bytes"),
        (131071, 256, "block length of 256 bytes"),
        (131071, 520, "block length of 520 bytes"),
        (131071, 1 << 20, "block length of 1048576 bytes"),
        (0, 0, "block length of 0 bytes"),  # capacity 0
    ],
)
def test_impossible_capacity_refused(last_lba: int, block_length: int, problem: str) -> None:
    with pytest.raises(ScsiParseError, match=r"READ CAPACITY\(16\) reports .*" + problem):
        parse_read_capacity16(_rc16(last_lba, block_length))
    if last_lba < 2**32:
        with pytest.raises(ScsiParseError, match=r"READ CAPACITY\(10\) reports"):
            parse_read_capacity10(_rc10(last_lba, block_length))


@pytest.mark.parametrize("block_length", [512, 1024, 2048, 4096, 8192, 65536])
def test_possible_capacities_pass(block_length: int) -> None:
    assert parse_read_capacity16(_rc16(0, block_length)).capacity_bytes == block_length
    largest = (2**64 - 1) // block_length  # blocks that still fit in 64-bit bytes
    assert parse_read_capacity16(_rc16(largest - 1, block_length)).block_count == largest
    assert parse_read_capacity10(_rc10(0xFFFFFFFF, block_length)).needs_16


def test_scsi_parse_error_is_the_scsi_packages_own() -> None:
    """Its own tree (not ValueError, not the application's), mapped to a one-line user error
    with the same text by the application's one mapping."""
    from poolbackend.errors import PoolBackendError, TargetError, user_error
    from poolbackend.scsi.errors import ScsiError

    assert issubclass(ScsiParseError, ScsiError)
    assert not issubclass(ScsiParseError, (PoolBackendError, ValueError))
    mapped = user_error(ScsiParseError("READ CAPACITY(16) data too short"))
    assert isinstance(mapped, TargetError)
    assert str(mapped) == "READ CAPACITY(16) data too short"
