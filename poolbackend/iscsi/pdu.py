"""iSCSI PDU framing (RFC 7143 §11): the 48-byte BHS, AHS, padding and digests.

Encoding produces a list of buffers so large data segments are sent without copying; the
:class:`PDUReader` turns any chunking of the byte stream into whole PDUs and checks lengths
*before* buffering a data segment, so a hostile DataSegmentLength cannot make us allocate.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from dataclasses import dataclass

from poolbackend.iscsi.digest import Buffer, digest_bytes
from poolbackend.iscsi.errors import RemoteProtocolError

BHS_LEN = 48
NO_TAG = 0xFFFFFFFF
# Padding after a data segment of n bytes: PAD[n & 3].
PAD = (b"", b"\0\0\0", b"\0\0", b"\0")
_EMPTY = memoryview(b"")
_u32_at = struct.Struct(">I").unpack_from


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
    placed: bool = False  # the data segment was received straight into the sink's buffer

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
        pad = PAD[n & 3]
        out.append(data)
        if pad:
            out.append(pad)
        if data_digest:
            out.append(digest_bytes(data, pad) if pad else digest_bytes(data))
    return out


class PDUReader:
    """Reassembles PDUs from arbitrarily chunked bytes, with zero-copy receive.

    Two ways in: :meth:`feed` (copy some bytes in, get whole PDUs back) or the zero-copy
    pair :meth:`recv_buffers` / :meth:`recv_done`: the I/O layer receives straight into the
    buffers we hand out. Headers and small PDUs land in a fixed staging buffer; a data
    segment for which :attr:`sink` returns a destination (the read buffer of a Data-In's
    task) is received straight into that destination, so bulk reads are never copied in
    user space. Whole PDUs go to :attr:`on_pdu` as soon as they are complete, before the
    next header is parsed, so the consumer's state is current for the next :attr:`sink`.

    ``max_data`` is our MaxRecvDataSegmentLength: a larger DataSegmentLength is a protocol
    error raised before anything is buffered for it. Digests are checked when enabled.
    """

    STAGE = 65536  # staging buffer; a header (BHS + AHS + digest) always fits past its end
    BULK = 32768  # after a directly received segment this large, read headers exactly
    #: a data segment up to this size is received into staging with whatever follows it
    #: (many small PDUs per receive) and copied out once whole; larger ones go in place
    SMALL = 16384

    def __init__(self, max_data: int = 8192) -> None:
        self.max_data = max_data
        self.header_digest = False
        self.data_digest = False
        #: destination for a data segment, given the BHS and its DataSegmentLength; None
        #: means "stage or allocate it here". Called once per header, in stream order.
        self.sink: Callable[[bytes, int], memoryview | None] | None = None
        self.on_pdu: Callable[[PDU], None] = self._collect
        self._stage = bytearray(self.STAGE + BHS_LEN + 1024 + 8)
        self._sv = memoryview(self._stage)
        self._start = 0
        self._end = 0
        self._collected: list[PDU] = []
        # The PDU whose data segment is being received out of the staging buffer.
        self._bhs = b""
        self._dest: memoryview | None = None
        self._placed = False
        self._dpos = 0  # bytes of _dest filled so far
        self._trailer = -1  # pad + data digest bytes still due for _dest (-1: none pending)
        self._bulk = False

    # -- copying interface ------------------------------------------------------------
    def feed(self, data: Buffer) -> list[PDU]:
        """Consume ``data`` (any chunking); PDUs completed by it are returned.

        With :attr:`on_pdu` replaced, PDUs go there instead and the list is empty.
        """
        src = memoryview(data).cast("B") if not isinstance(data, bytes) else memoryview(data)
        pos, n = 0, len(src)
        while pos < n:
            dst = self.recv_buffers()[0]
            k = min(len(dst), n - pos)
            dst[:k] = src[pos : pos + k]
            pos += k
            self.recv_done(k)
        out, self._collected = self._collected, []
        return out

    def _collect(self, pdu: PDU) -> None:
        self._collected.append(pdu)

    @property
    def buffered(self) -> int:
        return self._end - self._start + (self._dpos if self._dest is not None else 0)

    # -- zero-copy interface ----------------------------------------------------------
    def recv_buffers(self) -> list[memoryview]:
        """Where the next received bytes go, in order (a scatter list of writable views).

        Receiving fewer bytes than offered is fine; call :meth:`recv_done` with the count.
        """
        start, end = self._start, self._end
        # After parsing, the staging buffer holds less than one header (+ trailer): cheap
        # to move down.
        if start == end:
            self._start = self._end = start = end = 0
        elif end > self.STAGE // 2:
            self._stage[: end - start] = self._sv[start:end]
            self._start, self._end = 0, end - start
            start, end = 0, end - start
        hd = 4 if self.header_digest else 0
        dest = self._dest
        trailer = self._trailer if dest is not None else 0
        if dest is not None and self._dpos < len(dest):
            # The rest of this data segment, then exactly its trailer and the next BHS: one
            # receive completes this PDU without pulling the next one's data into staging.
            return [dest[self._dpos :], self._sv[end : end + trailer + BHS_LEN + hd]]
        if self._bulk:
            # Bulk transfer: read exactly the rest of the trailer and the next header, so the
            # next data segment can be received in place.
            need = trailer + BHS_LEN + hd
            avail = end - start
            if avail >= trailer + BHS_LEN:
                need += self._stage[start + trailer + 4] * 4
            return [self._sv[end : start + need]]
        return [self._sv[end : self.STAGE]]

    def recv_done(self, nbytes: int) -> None:
        """``nbytes`` were received into the buffers of the last :meth:`recv_buffers`."""
        dest = self._dest
        if dest is not None and self._dpos < len(dest):
            k = len(dest) - self._dpos
            if nbytes < k:
                self._dpos += nbytes
                return
            self._dpos += k
            nbytes -= k
        self._end += nbytes
        self._parse()

    # -- parsing ----------------------------------------------------------------------
    def _finish(self) -> bool:
        """Complete the pending PDU once its trailer is in; False while it is not."""
        dest = self._dest
        assert dest is not None
        trailer = self._trailer
        start = self._start
        if self._end - start < trailer:
            return False
        if self.data_digest:
            pad = trailer - 4
            got = bytes(self._sv[start + pad : start + trailer])
            if pad:
                ok = got == digest_bytes(dest, self._sv[start : start + pad])
            else:
                ok = got == digest_bytes(dest)
            if not ok:
                raise RemoteProtocolError("data digest (CRC32C) mismatch")
        self._start = start + trailer
        self._dest = None
        self._dpos = 0
        self._trailer = -1
        self.on_pdu(PDU(self._bhs, dest, self._placed))
        return True

    def _parse(self) -> None:
        sv, stage = self._sv, self._stage
        while True:
            if self._dest is not None:
                if self._dpos < len(self._dest) or not self._finish():
                    return
            pos, end = self._start, self._end
            avail = end - pos
            if avail < BHS_LEN:
                return
            opcode = stage[pos] & 0x3F
            if opcode not in TARGET_OPCODES:
                raise RemoteProtocolError(
                    f"received unknown or initiator-only opcode 0x{opcode:02x}"
                )
            word = _u32_at(stage, pos + 4)[0]  # TotalAHSLength and DataSegmentLength
            dlen = word & 0xFFFFFF
            if dlen > self.max_data:
                raise RemoteProtocolError(
                    f"target sent a {dlen}-byte data segment, above our "
                    f"MaxRecvDataSegmentLength {self.max_data}"
                )
            hdr_end = pos + BHS_LEN + (word >> 24) * 4
            hd = 4 if self.header_digest else 0
            if end < hdr_end + hd:
                return
            if hd:
                got = bytes(sv[hdr_end : hdr_end + 4])
                if got != digest_bytes(sv[pos:hdr_end]):
                    raise RemoteProtocolError("header digest (CRC32C) mismatch")
            bhs = bytes(sv[pos : pos + BHS_LEN])
            dstart = hdr_end + hd
            if not dlen:
                self._start = dstart
                self.on_pdu(PDU(bhs, _EMPTY))
                continue
            trailer = (-dlen & 3) + (4 if self.data_digest else 0)  # pad_len, inlined
            have = end - dstart
            if dlen <= self.SMALL and have < dlen + trailer:
                # A small PDU not yet whole: wait for the rest in staging (there is room:
                # staging is compacted below half full), and receive what follows with it.
                self._bulk = False
                return
            sink = self.sink
            dest = sink(bhs, dlen) if sink is not None else None
            if dest is None:
                if have >= dlen + trailer and not self.data_digest:
                    # A small PDU entirely staged: copy it out (staging is reused).
                    self._start = dstart + dlen + trailer
                    self._bulk = False
                    self.on_pdu(PDU(bhs, memoryview(bytes(sv[dstart : dstart + dlen]))))
                    continue
                dest = memoryview(bytearray(dlen))
                self._placed = False
            elif have >= dlen + trailer and not self.data_digest:
                # A small Data-In entirely staged: into its task's buffer and done (the
                # common 4 KiB read), without staging it as the pending PDU first.
                dest[:] = sv[dstart : dstart + dlen]
                self._start = dstart + dlen + trailer
                self._bulk = False
                self.on_pdu(PDU(bhs, dest, True))
                continue
            else:
                self._placed = True
            k = dlen if have >= dlen else have
            dest[:k] = sv[dstart : dstart + k]
            self._start = dstart + k
            self._bhs, self._dest, self._dpos, self._trailer = bhs, dest, k, trailer
            self._bulk = dlen >= self.BULK
