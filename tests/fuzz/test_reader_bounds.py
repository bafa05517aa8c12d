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
from poolbackend.iscsi.digest import digest_bytes
from poolbackend.iscsi.errors import RemoteProtocolError
from poolbackend.iscsi.events import TaskCompleted, TextReply
from poolbackend.iscsi.textkeys import encode_pairs
from poolbackend.scsi import cdb as C
from tests.fuzz.targets import ReaderWatch, largest_pdu, logged_in_connection

MRDSL = 262144  # what LoginConfig declares by default


def _pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def _pdu(op: int, flags: int, data: bytes = b"", *, itt: int, ttt: int = P.NO_TAG,
         statsn: int = 0, f36: int = 0, f40: int = 0, digests: int = 0,
         dlen: int | None = None) -> bytes:  # fmt: skip
    """A target PDU with correct digests; ``dlen`` overrides the DataSegmentLength field
    *before* the header digest is computed (a hostile length with a valid digest)."""
    bhs = bytearray(48)
    bhs[0], bhs[1] = op, flags
    bhs[5:8] = (len(data) if dlen is None else dlen).to_bytes(3, "big")
    struct.pack_into(">IIIIIII", bhs, 16, itt, ttt, statsn, 1, 64, f36, f40)
    out = bytes(bhs) + (digest_bytes(bhs) if digests & 1 else b"")
    if data:
        padded = data + bytes(-len(data) & 3)
        out += padded + (digest_bytes(padded) if digests & 2 else b"")
    return out


def test_reader_declares_our_mrdsl() -> None:
    conn = logged_in_connection(0)
    assert conn._reader.max_data == MRDSL
    assert largest_pdu(conn._reader) == 48 + 1020 + MRDSL + 3


def test_pdu_helper_digests_cover_the_patched_length() -> None:
    """Guards the helper itself: a header digest over the final header, so a hostile length
    is refused for its length, not for a digest mismatch."""
    raw = _pdu(P.Op.NOP_IN, 0x80, itt=P.NO_TAG, digests=1, dlen=MRDSL + 1)
    assert raw[5:8] == (MRDSL + 1).to_bytes(3, "big")
    assert raw[48:52] == digest_bytes(raw[:48])


@settings(max_examples=200, deadline=None)
@given(
    mode=st.integers(0, 3),
    dlen=st.one_of(st.integers(MRDSL + 1, MRDSL + 8), st.integers(MRDSL + 1, 0xFFFFFF)),
    opcode=st.sampled_from(sorted(P.TARGET_OPCODES)),
    cuts=st.lists(st.integers(0, 2 * MRDSL + 4300), max_size=40),
    before=st.integers(0, 2),
)
def test_hostile_length_refused_once_the_header_is_in(
    mode: int, dlen: int, opcode: int, cuts: list[int], before: int
) -> None:
    """After ``before`` valid maximal PDUs, a header claiming more than MRDSL (digest
    correct) is refused by the feed that completes its BHS, before any buffer is reserved
    for its segment and before any byte of the segment is taken (the staging buffer may
    still hold what that same feed brought along)."""
    conn = logged_in_connection(mode)
    total = before * MRDSL
    itt = conn.scsi_command(1, C.read16(0, max(1, total // 512)), read_len=max(512, total))
    conn.data_to_send()
    lead = b""
    for n in range(before):
        lead += _pdu(P.Op.DATA_IN, 0x00, bytes([n + 1]) * MRDSL, itt=itt, f36=n,
                     f40=n * MRDSL, statsn=0x101, digests=mode)  # fmt: skip
    header = _pdu(opcode, 0x80, itt=P.NO_TAG, statsn=0x101, digests=mode, dlen=dlen)
    stream = lead + header + bytes(4096)  # the "segment" the target starts to send
    watch = ReaderWatch(conn, stream)
    with pytest.raises(RemoteProtocolError, match="above our MaxRecvDataSegmentLength"):
        for piece in _pieces(stream, cuts):
            watch.fed += len(piece)
            conn.receive_data(piece)
            watch.check()  # at most the unfinished part of the current PDU
            assert watch.fed < len(lead) + P.BHS_LEN, "the hostile header was not refused"
    # refused by the feed that completed its BHS; no buffer was reserved for the segment
    assert watch.fed >= len(lead) + P.BHS_LEN and watch.consumed == len(lead)
    assert conn._reader._dest is None


@settings(max_examples=60, deadline=None)
@given(
    mode=st.integers(0, 3),
    sizes=st.lists(st.integers(MRDSL - 1100, MRDSL), min_size=2, max_size=3),
    text_size=st.integers(MRDSL - 300, MRDSL),
    cuts=st.lists(st.integers(0, 4 * MRDSL), max_size=40),
    small=st.integers(1, 3),
)
def test_reader_never_buffers_more_than_one_pdu(
    mode: int, sizes: list[int], text_size: int, cuts: list[int], small: int
) -> None:
    """Segments at and just below MRDSL, placed (Data-In) and staged (Text Response),
    between small PDUs, in arbitrary chunkings with correct digests: the stream is several
    maximal PDUs long, and after every feed the reader holds at most the unfinished part of
    the current PDU (tests.fuzz.targets.ReaderWatch), which is below one maximal PDU."""
    conn = logged_in_connection(mode)
    total = sum(sizes)
    itt = conn.scsi_command(1, C.read16(0, 1), read_len=total)
    text_itt = conn.text_request([("SendTargets", "All")])
    conn.data_to_send()
    payload = bytes(i * 13 & 0xFF for i in range(total))
    stream = b"".join(
        _pdu(P.Op.NOP_IN, 0x80, itt=P.NO_TAG, ttt=100 + i, statsn=0x101, digests=mode)
        for i in range(small)
    )
    offset = 0
    for n, size in enumerate(sizes):
        last = n == len(sizes) - 1
        stream += _pdu(P.Op.DATA_IN, 0x81 if last else 0x00, payload[offset : offset + size],
                       itt=itt, statsn=0x101, f36=n, f40=offset, digests=mode)  # fmt: skip
        offset += size
    text = encode_pairs([("TargetName", "iqn.2026-11.example:t")])
    text += b"TargetAddress=" + b"1" * (text_size - len(text) - len("TargetAddress=") - 1) + b"\0"
    assert len(text) == text_size
    stream += _pdu(P.Op.TEXT_RSP, 0x80, text, itt=text_itt, statsn=0x102, digests=mode)
    assert len(stream) > 2 * largest_pdu(conn._reader)  # buffering it all would show
    watch = ReaderWatch(conn, stream)
    events = []
    for piece in _pieces(stream, cuts):
        watch.fed += len(piece)
        events += conn.receive_data(piece)
        watch.check()
    assert conn._reader.buffered == 0 and watch.consumed == len(stream)
    assert watch.pdus == small + len(sizes) + 1
    done, reply = events
    assert isinstance(done, TaskCompleted) and bytes(done.result.data) == payload
    assert isinstance(reply, TextReply) and len(reply.pairs) == 2


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
