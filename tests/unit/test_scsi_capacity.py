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
