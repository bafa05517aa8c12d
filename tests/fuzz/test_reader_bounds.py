"""Property tests for the PDU reader's memory bound and liveness, through the public API.

What tests/unit/test_iscsi_core.py already covers: a hostile DataSegmentLength fed in one
piece is a RemoteProtocolError, and random bytes only raise ISCSIError. What it did not:

* the error comes *before anything is buffered for the segment*, whatever the chunking (the
  reader never holds more than the 48-byte header when it refuses);
* after every feed the reader holds less than one maximal PDU (BHS + AHS + header digest +
  MaxRecvDataSegmentLength + pad + data digest), for any byte stream and chunking;
* never a hang: a PDU is processed as soon as its last byte arrives -- no complete PDU is
  left waiting for bytes the target will never send.
"""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poolbackend.iscsi import pdu as P
from poolbackend.iscsi.connection import Connection
from poolbackend.iscsi.digest import digest_bytes
from poolbackend.iscsi.errors import RemoteProtocolError
from poolbackend.iscsi.events import TaskCompleted
from poolbackend.scsi import cdb as C
from tests.fuzz.targets import logged_in_connection

MRDSL = 262144  # what LoginConfig declares by default


def _largest_pdu(conn: Connection) -> int:
    r = conn._reader
    return (
        P.BHS_LEN
        + 255 * 4
        + (4 if r.header_digest else 0)
        + r.max_data
        + 3
        + (4 if r.data_digest else 0)
    )


def _pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def _pdu(op: int, flags: int, data: bytes = b"", *, itt: int, ttt: int = P.NO_TAG,
         statsn: int = 0, f36: int = 0, f40: int = 0, digests: int = 0) -> bytes:  # fmt: skip
    bhs = bytearray(48)
    bhs[0], bhs[1] = op, flags
    bhs[5:8] = len(data).to_bytes(3, "big")
    struct.pack_into(">IIIIIII", bhs, 16, itt, ttt, statsn, 1, 64, f36, f40)
    out = bytes(bhs) + (digest_bytes(bhs) if digests & 1 else b"")
    if data:
        padded = data + bytes(-len(data) & 3)
        out += padded + (digest_bytes(padded) if digests & 2 else b"")
    return out


def test_reader_declares_our_mrdsl() -> None:
    conn = logged_in_connection(0)
    assert conn._reader.max_data == MRDSL


@settings(max_examples=200, deadline=None)
@given(
    mode=st.integers(0, 3),
    dlen=st.integers(MRDSL + 1, 0xFFFFFF),
    opcode=st.sampled_from(sorted(P.TARGET_OPCODES)),
    chunk=st.integers(1, 64),
)
def test_hostile_length_refused_once_the_header_is_in(
    mode: int, dlen: int, opcode: int, chunk: int
) -> None:
    conn = logged_in_connection(mode)
    header = bytearray(_pdu(opcode, 0x80, itt=P.NO_TAG, digests=mode & 1))
    header[5:8] = dlen.to_bytes(3, "big")
    stream = bytes(header) + bytes(4096)  # the "segment" the target starts to send
    fed = 0
    with pytest.raises(RemoteProtocolError, match="above our MaxRecvDataSegmentLength"):
        for i in range(0, len(stream), chunk):
            piece = stream[i : i + chunk]
            conn.receive_data(piece)
            fed += len(piece)
            assert conn._reader.buffered <= fed < P.BHS_LEN, "segment bytes were buffered"
    assert fed < P.BHS_LEN  # refused by the chunk that completed the BHS, not later


@settings(max_examples=300, deadline=None)
@given(
    mode=st.integers(0, 3),
    blob=st.binary(max_size=3000),
    cuts=st.lists(st.integers(0, 3000), max_size=40),
)
def test_reader_never_buffers_more_than_one_pdu(mode: int, blob: bytes, cuts: list[int]) -> None:
    conn = logged_in_connection(mode)
    conn.scsi_command(1, C.read16(0, 8), read_len=4096)
    # A plausible header first, so long random segments are actually being buffered.
    head = bytearray(_pdu(P.Op.DATA_IN, 0x00, itt=1, digests=mode & 1))
    head[5:8] = min(len(blob), 0xFFFFFF).to_bytes(3, "big")
    bound = _largest_pdu(conn)
    for piece in _pieces(bytes(head) + blob, cuts):
        try:
            conn.receive_data(piece)
        except RemoteProtocolError:
            return
        assert conn._reader.buffered < bound


@settings(max_examples=200, deadline=None)
@given(
    mode=st.integers(0, 3),
    pings=st.integers(1, 12),
    sizes=st.lists(st.integers(1, 1500), min_size=1, max_size=6),
    cuts=st.lists(st.integers(0, 20000), max_size=30),
)
def test_every_pdu_is_handled_when_its_last_byte_arrives(
    mode: int, pings: int, sizes: list[int], cuts: list[int]
) -> None:
    """Target pings are answered and a multi-PDU read completes with no byte to spare."""
    conn = logged_in_connection(mode)
    total = sum(sizes)
    itt = conn.scsi_command(1, C.read16(0, 1), read_len=total)
    conn.data_to_send()
    payload = bytes(i * 7 & 0xFF for i in range(total))
    stream = b"".join(
        _pdu(P.Op.NOP_IN, 0x80, itt=P.NO_TAG, ttt=100 + i, statsn=0x101, digests=mode)
        for i in range(pings)
    )
    offset = 0
    for n, size in enumerate(sizes):
        last = n == len(sizes) - 1
        stream += _pdu(P.Op.DATA_IN, 0x81 if last else 0x00, payload[offset : offset + size],
                       itt=itt, statsn=0x101, f36=n, f40=offset, digests=mode)  # fmt: skip
        offset += size
    events = []
    for piece in _pieces(stream, cuts):
        events += conn.receive_data(piece)
    assert conn._reader.buffered == 0
    (done,) = events
    assert isinstance(done, TaskCompleted) and bytes(done.result.data) == payload
    replies = b"".join(bytes(b) for b in conn.data_to_send())
    assert replies.count(bytes([0x40 | P.Op.NOP_OUT, 0x80])) >= pings  # I=1 NOP-Out per ping
