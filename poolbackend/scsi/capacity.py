"""READ CAPACITY(10)/(16) data (SBC-3 §5.15/§5.16).

Both return the *last* LBA: capacity is (last LBA + 1) x block length. libvirt's iscsi-direct
pool and iscsi-ls forget the + 1 and report 63M for a 64 MiB LUN.

The parsers are the one place where a target's capacity is checked before anything uses it
or sizes work by it (pool scan, transfer geometry, the tools): a block length that is not a
power of two in 512..65536, a last LBA of 2**64-1 (tgt's answer for an empty backing file:
0 blocks - 1 wrapped) or a size that does not fit in 64 bits raises :class:`ScsiParseError`.
"""

from __future__ import annotations

from dataclasses import dataclass

from poolbackend.scsi.errors import ScsiParseError

RC10_LENGTH = 8
RC16_LENGTH = 32
MIN_BLOCK_LENGTH = 512
MAX_BLOCK_LENGTH = 65536
MAX_CAPACITY_BYTES = (1 << 64) - 1  # libvirt's sizes are unsigned 64-bit byte counts


def _need(data: bytes, length: int, what: str) -> None:
    if len(data) < length:
        raise ScsiParseError(f"{what} data too short: {len(data)} bytes, need {length}")


def check_capacity(what: str, last_lba: int, block_length: int) -> None:
    """Refuse a capacity no real LUN can have; the message says what is impossible."""
    if not MIN_BLOCK_LENGTH <= block_length <= MAX_BLOCK_LENGTH or block_length & (
        block_length - 1
    ):
        raise ScsiParseError(
            f"{what} reports a block length of {block_length} bytes; "
            f"expected a power of two from {MIN_BLOCK_LENGTH} to {MAX_BLOCK_LENGTH}"
        )
    if last_lba == (1 << 64) - 1:
        raise ScsiParseError(
            f"{what} reports last LBA 2^64-1 (an empty or unreadable backing store: "
            "0 blocks minus one)"
        )
    if (last_lba + 1) * block_length > MAX_CAPACITY_BYTES:
        raise ScsiParseError(
            f"{what} reports {last_lba + 1} blocks of {block_length} bytes, more than 2^64-1 bytes"
        )


@dataclass(frozen=True)
class _Capacity:
    """Both READ CAPACITY forms report the *last* LBA; the size needs one block more."""

    last_lba: int
    block_length: int

    @property
    def block_count(self) -> int:
        return self.last_lba + 1

    @property
    def capacity_bytes(self) -> int:
        return self.block_count * self.block_length


@dataclass(frozen=True)
class ReadCapacity10(_Capacity):
    @property
    def needs_16(self) -> bool:
        """The LUN has 2**32 blocks or more: ask READ CAPACITY(16)."""
        return self.last_lba == 0xFFFFFFFF


def parse_read_capacity10(data: bytes) -> ReadCapacity10:
    _need(data, RC10_LENGTH, "READ CAPACITY(10)")
    last_lba = int.from_bytes(data[0:4], "big")
    block_length = int.from_bytes(data[4:8], "big")
    check_capacity("READ CAPACITY(10)", last_lba, block_length)
    return ReadCapacity10(last_lba=last_lba, block_length=block_length)


@dataclass(frozen=True)
class ReadCapacity16(_Capacity):
    p_type: int
    prot_en: bool
    p_i_exponent: int
    lbppbe: int  # logical blocks per physical block = 2**lbppbe
    lbpme: bool  # thin provisioned (UNMAP / WRITE SAME with UNMAP usable)
    lbprz: bool  # unmapped blocks read back as zeros
    lowest_aligned_lba: int


def parse_read_capacity16(data: bytes) -> ReadCapacity16:
    _need(data, RC16_LENGTH, "READ CAPACITY(16)")
    last_lba = int.from_bytes(data[0:8], "big")
    block_length = int.from_bytes(data[8:12], "big")
    check_capacity("READ CAPACITY(16)", last_lba, block_length)
    return ReadCapacity16(
        last_lba=last_lba,
        block_length=block_length,
        p_type=(data[12] >> 1) & 0x07,
        prot_en=bool(data[12] & 0x01),
        p_i_exponent=data[13] >> 4,
        lbppbe=data[13] & 0x0F,
        lbpme=bool(data[14] & 0x80),
        lbprz=bool(data[14] & 0x40),
        lowest_aligned_lba=int.from_bytes(data[14:16], "big") & 0x3FFF,
    )
