"""iSCSI PDU framing (RFC 7143 §11): the 48-byte BHS, AHS, padding and digests.

Encoding produces a list of buffers so large data segments are sent without copying; the
:class:`PDUReader` turns any chunking of the byte stream into whole PDUs and checks lengths
*before* buffering a data segment, so a hostile DataSegmentLength cannot make us allocate.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from poolbackend.iscsi.digest import Buffer, digest_bytes
from poolbackend.iscsi.errors import RemoteProtocolError

BHS_LEN = 48
NO_TAG = 0xFFFFFFFF
_PAD = (b"", b"\0\0\0", b"\0\0", b"\0")


class Op(enum.IntEnum):
    """Opcodes (RFC 7143 §11.2.1.2)."""

    NOP_OUT = 0x00
    SCSI_CMD = 0x01
    TMF_REQ = 0x02
    LOGIN_REQ = 0x03
    TEXT_REQ = 0x04
    DATA_OUT = 0x05
    LOGOUT_REQ = 0x06
    SNACK = 0x10
    NOP_IN = 0x20
    SCSI_RSP = 0x21
    TMF_RSP = 0x22
    LOGIN_RSP = 0x23
    TEXT_RSP = 0x24
    DATA_IN = 0x25
    LOGOUT_RSP = 0x26
    R2T = 0x31
    ASYNC = 0x32
    REJECT = 0x3F


TARGET_OPCODES = frozenset(op for op in Op if op >= 0x20)

# Byte-1 flag bits shared by several PDUs.
F_FINAL = 0x80
F_CONTINUE = 0x40  # Login/Text C bit
F_READ = 0x40  # SCSI Command R bit
F_WRITE = 0x20  # SCSI Command W bit
F_OVERFLOW = 0x04
F_UNDERFLOW = 0x02
F_STATUS = 0x01  # Data-In S bit
F_ACK = 0x40  # Data-In A bit
F_TRANSIT = 0x80  # Login T bit


def pad_len(n: int) -> int:
    return -n & 3


def u32(buf: Buffer, off: int) -> int:
    return int.from_bytes(buf[off : off + 4], "big")


def u16(buf: Buffer, off: int) -> int:
    return int.from_bytes(buf[off : off + 2], "big")


@dataclass(slots=True)
class PDU:
    """A received PDU: the raw BHS plus its data segment (a view into the reader's buffer)."""

    bhs: bytes
    data: memoryview

    @property
    def opcode(self) -> int:
        return self.bhs[0] & 0x3F

    @property
    def flags(self) -> int:
        return self.bhs[1]

    @property
    def itt(self) -> int:
        return u32(self.bhs, 16)

    @property
    def ttt(self) -> int:
        return u32(self.bhs, 20)

    @property
    def lun_bytes(self) -> bytes:
        return self.bhs[8:16]

    def field32(self, off: int) -> int:
        return u32(self.bhs, off)

    def name(self) -> str:
        try:
            return Op(self.opcode).name
        except ValueError:
            return f"opcode 0x{self.opcode:02x}"


def new_bhs(op: int, flags: int, *, immediate: bool = False) -> bytearray:
    bhs = bytearray(BHS_LEN)
    bhs[0] = op | (0x40 if immediate else 0)
    bhs[1] = flags
    return bhs


def put32(bhs: bytearray, off: int, value: int) -> None:
    struct.pack_into(">I", bhs, off, value & 0xFFFFFFFF)


def put16(bhs: bytearray, off: int, value: int) -> None:
    struct.pack_into(">H", bhs, off, value & 0xFFFF)


def encode(
    bhs: bytearray, data: Buffer = b"", *, header_digest: bool = False, data_digest: bool = False
) -> list[Buffer]:
    """Finish ``bhs`` (DataSegmentLength) and return the wire buffers of the whole PDU."""
    n = len(data)
    if n > 0xFFFFFF:
        raise ValueError(f"data segment of {n} bytes does not fit a PDU")
    bhs[4] = 0
    bhs[5:8] = n.to_bytes(3, "big")
    out: list[Buffer] = [bytes(bhs)]
    if header_digest:
        out.append(digest_bytes(bhs))
    if n:
        pad = _PAD[n & 3]
        out.append(data)
        if pad:
            out.append(pad)
        if data_digest:
            out.append(digest_bytes(data, pad) if pad else digest_bytes(data))
    return out


class PDUReader:
    """Reassembles PDUs from arbitrarily chunked bytes.

    ``max_data`` is our MaxRecvDataSegmentLength: a larger DataSegmentLength is a protocol
    error raised before anything is buffered for it. Digests are checked when enabled.
    """

    def __init__(self, max_data: int = 8192) -> None:
        self.max_data = max_data
        self.header_digest = False
        self.data_digest = False
        self._buf = bytearray()
        self._pos = 0

    def feed(self, data: Buffer) -> list[PDU]:
        buf = self._buf
        if self._pos and self._pos >= len(buf):
            buf.clear()
            self._pos = 0
        buf += data
        pdus: list[PDU] = []
        while True:
            pdu = self._next()
            if pdu is None:
                break
            pdus.append(pdu)
        if self._pos > 65536 and self._pos * 2 > len(buf):
            del buf[: self._pos]
            self._pos = 0
        return pdus

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def _next(self) -> PDU | None:
        buf, pos = self._buf, self._pos
        avail = len(buf) - pos
        if avail < BHS_LEN:
            return None
        ahs_len = buf[pos + 4] * 4
        dlen = int.from_bytes(buf[pos + 5 : pos + 8], "big")
        opcode = buf[pos] & 0x3F
        if opcode not in TARGET_OPCODES:
            raise RemoteProtocolError(f"received unknown or initiator-only opcode 0x{opcode:02x}")
        if dlen > self.max_data:
            raise RemoteProtocolError(
                f"target sent a {dlen}-byte data segment, above our "
                f"MaxRecvDataSegmentLength {self.max_data}"
            )
        hd = 4 if self.header_digest else 0
        dd = 4 if (self.data_digest and dlen) else 0
        total = BHS_LEN + ahs_len + hd + dlen + pad_len(dlen) + dd
        if avail < total:
            return None
        hdr_end = pos + BHS_LEN + ahs_len
        bhs = bytes(buf[pos : pos + BHS_LEN])
        if hd:
            got = bytes(buf[hdr_end : hdr_end + 4])
            if got != digest_bytes(memoryview(buf)[pos:hdr_end]):
                raise RemoteProtocolError("header digest (CRC32C) mismatch")
        dstart = hdr_end + hd
        dend = dstart + dlen
        # Copy out the data segment so later buffer compaction cannot disturb it.
        data = memoryview(bytes(memoryview(buf)[dstart:dend])) if dlen else memoryview(b"")
        if dd:
            padded_end = dend + pad_len(dlen)
            got = bytes(buf[padded_end : padded_end + 4])
            if got != digest_bytes(memoryview(buf)[dstart:padded_end]):
                raise RemoteProtocolError("data digest (CRC32C) mismatch")
        self._pos = pos + total
        return PDU(bhs, data)
