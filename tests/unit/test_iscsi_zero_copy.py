"""The zero-copy receive path (recv_buffers/recv_done) against the copying one."""

from __future__ import annotations

import random

import pytest

from poolbackend.iscsi import pdu as P
from poolbackend.iscsi.connection import Connection
from poolbackend.iscsi.digest import digest_bytes
from poolbackend.iscsi.errors import RemoteProtocolError
from poolbackend.iscsi.events import TaskCompleted
from poolbackend.iscsi.login import LoginConfig
from poolbackend.iscsi.options import SessionOptions
from tests.unit.test_iscsi_core import logged_in, target_pdu

DIGESTS = [("HeaderDigest", "CRC32C"), ("DataDigest", "CRC32C")]


def session(digests: bool) -> Connection:
    cfg = LoginConfig(
        SessionOptions(initiator_name="iqn.2026-11.example:i", data_digest="None,CRC32C"),
        "iqn.2026-11.example:t",
    )
    return logged_in(cfg, DIGESTS if digests else [], maxcmdsn=40)  # all commands sent


def data_in(itt: int, data: bytes, offset: int, datasn: int, last: bool, digests: bool) -> bytes:
    flags = 0x81 if last else 0x00
    raw = target_pdu(0x25, flags, data, itt=itt, statsn=5, f36=datasn, f40=offset)
    if not digests:
        return raw
    n = len(data)
    body = raw[48:]
    out = raw[:48] + digest_bytes(raw[:48]) + body
    return out + (digest_bytes(body) if n else b"")


def scatter_receive(conn: Connection, stream: bytes, rng: random.Random) -> list[object]:
    """Deliver ``stream`` like a socket would: partial receives into the offered buffers."""
    events: list[object] = []
    pos = 0
    while pos < len(stream):
        bufs = conn.recv_buffers()
        room = sum(len(b) for b in bufs)
        assert room > 0
        n = min(room, len(stream) - pos, rng.choice((1, 7, 48, 100, 4096, 1 << 20)))
        left = n
        for b in bufs:
            k = min(len(b), left)
            b[:k] = stream[pos : pos + k]
            pos += k
            left -= k
        events += conn.recv_done(n)
    return events


@pytest.mark.parametrize("digests", [False, True])
@pytest.mark.parametrize("seed", range(8))
def test_data_in_lands_in_the_callers_buffer(digests: bool, seed: int) -> None:
    rng = random.Random(seed)
    conn = session(digests)
    reads = []
    stream = b""
    for _ in range(3):
        size = rng.choice((512, 4099, 65536, 300000))
        payload = rng.randbytes(size)
        into = bytearray(size + 16)
        itt = conn.scsi_command(1, b"\x88" + bytes(15), read_len=size, read_into=into)
        off = sn = 0
        while off < size:
            n = min(size - off, rng.choice((1, 3, 4096, 40000, 262144)))
            stream += data_in(itt, payload[off : off + n], off, sn, off + n >= size, digests)
            off += n
            sn += 1
        reads.append((itt, payload, into))
    events = scatter_receive(conn, stream, rng)
    assert [e.itt for e in events] == [r[0] for r in reads]  # type: ignore[attr-defined]
    for event, (_, payload, into) in zip(events, reads, strict=True):
        assert isinstance(event, TaskCompleted) and event.result.status == 0
        assert bytes(event.result.data) == payload
        assert into[: len(payload)] == payload  # received in place


def test_data_digest_error_in_a_directly_received_segment() -> None:
    conn = session(True)
    into = bytearray(6000)
    itt = conn.scsi_command(1, b"\x88" + bytes(15), read_len=6000, read_into=into)
    raw = bytearray(data_in(itt, bytes(range(250)) * 24, 0, 0, True, True))
    raw[-1] ^= 1
    with pytest.raises(RemoteProtocolError, match="data digest"):
        scatter_receive(conn, bytes(raw), random.Random(1))


def test_reader_feed_returns_pdus_of_any_size() -> None:
    reader = P.PDUReader(1 << 20)
    blobs = [target_pdu(0x20, 0x80, bytes([i]) * n, itt=i) for i, n in enumerate((0, 5, 70000))]
    pdus = reader.feed(b"".join(blobs))
    assert [len(p.data) for p in pdus] == [0, 5, 70000]
    assert bytes(pdus[2].data) == bytes([2]) * 70000
