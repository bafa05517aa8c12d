"""The sans-IO core from bytes alone: what tgt sends, and what hostile targets send."""

from __future__ import annotations

import hashlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poolbackend.iscsi import pdu as P
from poolbackend.iscsi.chap import ChapInitiator
from poolbackend.iscsi.connection import Connection, sn_le, sn_lt
from poolbackend.iscsi.digest import Buffer, crc32c, digest_bytes
from poolbackend.iscsi.errors import (
    AuthenticationFailed,
    ISCSIError,
    LocalProtocolError,
    LoginFailed,
    RemoteProtocolError,
)
from poolbackend.iscsi.events import (
    LoginComplete,
    LoginRedirected,
    NopReply,
    TaskCompleted,
    TextReply,
)
from poolbackend.iscsi.login import LoginConfig
from poolbackend.iscsi.options import SessionOptions
from poolbackend.iscsi.textkeys import decode_pairs, encode_pairs
from tests.harness.tgt_keys import tgt_login_keys

OPTIONS = SessionOptions(initiator_name="iqn.2026-11.example:i")


def target_pdu(
    op: int,
    flags: int = 0x80,
    data: bytes = b"",
    *,
    itt: int = 0,
    ttt: int = P.NO_TAG,
    statsn: int = 0,
    expcmdsn: int = 1,
    maxcmdsn: int = 1,
    f36: int = 0,
    f40: int = 0,
    f44: int = 0,
    b2: int = 0,
    b3: int = 0,
    lun: bytes = bytes(8),
) -> bytes:
    bhs = bytearray(48)
    bhs[0], bhs[1], bhs[2], bhs[3] = op, flags, b2, b3
    bhs[5:8] = len(data).to_bytes(3, "big")
    bhs[8:16] = lun
    struct.pack_into(">IIIIIIII", bhs, 16, itt, ttt, statsn, expcmdsn, maxcmdsn, f36, f40, f44)
    return bytes(bhs[:48]) + data + b"\0" * (-len(data) & 3)


def login_rsp(
    flags: int,
    pairs: list[tuple[str, str]],
    *,
    status: int = 0,
    statsn: int = 0,
    tsih: int = 0,
    expcmdsn: int = 1,
    maxcmdsn: int = 2,
) -> bytes:
    raw = bytearray(
        target_pdu(
            0x23, flags, encode_pairs(pairs), statsn=statsn, expcmdsn=expcmdsn, maxcmdsn=maxcmdsn
        )
    )
    raw[14:16] = tsih.to_bytes(2, "big")
    raw[36], raw[37] = status >> 8, status & 0xFF
    return bytes(raw)


def sent_pdus(conn: Connection, digests: bool = False) -> list[P.PDU]:
    return split_pdus(conn.data_to_send(), digests)


def split_pdus(bufs: list[Buffer], digests: bool = False) -> list[P.PDU]:
    """Our PDUs, from the buffers an initiator queued (the reader takes only target PDUs)."""
    raw = b"".join(bytes(b) for b in bufs)
    out = []
    pos = 0
    while pos < len(raw):
        dlen = int.from_bytes(raw[pos + 5 : pos + 8], "big")
        size = 48 + (4 if digests else 0) + dlen + (-dlen & 3) + (4 if digests and dlen else 0)
        chunk = raw[pos : pos + size]
        out.append(P.PDU(chunk[:48], memoryview(chunk[48 + (4 if digests else 0) :][:dlen])))
        pos += size
    return out


def logged_in(
    cfg: LoginConfig | None = None,
    extra: list[tuple[str, str]] | None = None,
    maxcmdsn: int = 11,
) -> Connection:
    conn = Connection(cfg or LoginConfig(OPTIONS, "iqn.2026-11.example:t"), 10)
    conn.start_login()
    conn.data_to_send()
    pairs = list({**dict(tgt_login_keys()), **dict(extra or [])}.items())
    events = conn.receive_data(
        login_rsp(0x87, pairs, statsn=5, tsih=0x3200, expcmdsn=10, maxcmdsn=maxcmdsn)
    )
    assert isinstance(events[0], LoginComplete)
    return conn


def test_crc32c_vectors() -> None:
    assert digest_bytes(bytes(32)) == bytes.fromhex("aa36918a")
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E
    assert crc32c(b"1234", b"56789") == 0xE3069283


def test_serial_arithmetic_wraps() -> None:
    assert sn_lt(0xFFFFFFFF, 0) and not sn_lt(0, 0xFFFFFFFF)
    assert sn_le(5, 5) and sn_lt(5, 6) and not sn_lt(6, 5)


def test_tgt_operational_login_with_t0_round_trip() -> None:
    """tgt answers T=0 when it declares a non-default MaxRecvDataSegmentLength."""
    conn = Connection(LoginConfig(OPTIONS, "iqn.2026-11.example:t"), 1)
    conn.start_login()
    first = sent_pdus(conn)[0]
    assert first.bhs[0] == 0x43 and first.bhs[1] == 0x87  # immediate login, CSG=1 NSG=3 T=1
    keys = dict(decode_pairs(first.data))
    assert keys["SessionType"] == "Normal" and keys["HeaderDigest"] == "None,CRC32C"
    assert "IFMarker" not in keys
    ev = conn.receive_data(
        login_rsp(
            0x05,
            [
                ("TargetPortalGroupTag", "1"),
                ("HeaderDigest", "None"),
                ("DataDigest", "None"),
                ("MaxRecvDataSegmentLength", "65536"),
                ("InitialR2T", "Yes"),
                ("FirstBurstLength", "65536"),
            ],
        )
    )
    assert ev == []
    again = sent_pdus(conn)[0]
    assert again.bhs[1] == 0x87 and bytes(again.data) == b""  # empty request, no re-offer
    ev = conn.receive_data(login_rsp(0x87, [], statsn=7, tsih=0x3200, expcmdsn=1, maxcmdsn=2))
    assert isinstance(ev[0], LoginComplete)
    p = ev[0].params
    assert (
        p.max_xmit_data_segment_length == 65536 and p.initial_r2t and p.first_burst_length == 65536
    )
    assert p.target_portal_group_tag == 1 and conn.tsih == 0x3200 and conn.exp_stat_sn == 8


def test_chap_mutual_login() -> None:
    """The happy path; the reflection guard is in tests/unit/test_chap_algorithms.py."""
    chap = ChapInitiator("inuser", b"insecret12345", (5,), "outuser", b"outsecret12345")
    conn = Connection(LoginConfig(SessionOptions(initiator_name="iqn.i"), "iqn.t", chap=chap), 1)
    conn.start_login()
    assert dict(decode_pairs(sent_pdus(conn)[0].data))["AuthMethod"] == "CHAP,None"
    conn.receive_data(
        login_rsp(0x00 | 0 << 2, [("TargetPortalGroupTag", "1"), ("AuthMethod", "CHAP")])
    )
    assert dict(decode_pairs(sent_pdus(conn)[0].data)) == {"CHAP_A": "5"}
    challenge = bytes(range(50))
    conn.receive_data(
        login_rsp(0x00, [("CHAP_A", "5"), ("CHAP_I", "7"), ("CHAP_C", "0x" + challenge.hex())])
    )
    answer = dict(decode_pairs(sent_pdus(conn)[0].data))
    assert answer["CHAP_R"] == "0x" + hashlib.md5(b"\x07insecret12345" + challenge).hexdigest()
    my_chal = bytes.fromhex(answer["CHAP_C"][2:])
    assert my_chal != challenge and len(my_chal) >= 16
    good = hashlib.md5(bytes([int(answer["CHAP_I"])]) + b"outsecret12345" + my_chal).hexdigest()
    bad_conn_events = conn.receive_data(
        login_rsp(0x81, [("CHAP_N", "outuser"), ("CHAP_R", "0x" + good)])
    )
    assert bad_conn_events == []  # moved on to the operational stage
    assert sent_pdus(conn)[0].bhs[1] == 0x87


def test_mutual_chap_wrong_target_answer_fails() -> None:
    chap = ChapInitiator("u", b"secretsecret12", (5,), "outuser", b"outsecret12345")
    conn = Connection(LoginConfig(SessionOptions(initiator_name="iqn.i"), "iqn.t", chap=chap), 1)
    conn.start_login()
    conn.receive_data(login_rsp(0x00, [("AuthMethod", "CHAP")]))
    conn.data_to_send()
    conn.receive_data(
        login_rsp(0x00, [("CHAP_A", "5"), ("CHAP_I", "1"), ("CHAP_C", "0b" + "AAECAwQFBgcICQ==")])
    )
    answer = dict(decode_pairs(sent_pdus(conn)[0].data))
    assert answer["CHAP_R"].startswith("0b")  # answered in the target's encoding
    with pytest.raises(AuthenticationFailed, match="does not match"):
        conn.receive_data(login_rsp(0x81, [("CHAP_N", "outuser"), ("CHAP_R", "0x" + "00" * 16)]))


@pytest.mark.parametrize(
    ("status", "exc", "text"),
    [
        (0x0201, AuthenticationFailed, "authentication failed (status 0x0201)"),
        (0x0203, LoginFailed, "target not found (status 0x0203)"),
        (0x0300, LoginFailed, "target error (status 0x0300)"),
    ],
)
def test_login_status_errors(status: int, exc: type[Exception], text: str) -> None:
    conn = Connection(LoginConfig(SessionOptions(initiator_name="iqn.i"), "iqn.t"), 1)
    conn.start_login()
    with pytest.raises(exc, match=text.replace("(", r"\(").replace(")", r"\)")):
        conn.receive_data(login_rsp(0, [], status=status))


def test_login_redirect_event() -> None:
    conn = Connection(LoginConfig(SessionOptions(initiator_name="iqn.i"), "iqn.t"), 1)
    conn.start_login()
    ev = conn.receive_data(login_rsp(0, [("TargetAddress", "[::1]:3261,1")], status=0x0101))
    assert ev == [LoginRedirected("[::1]:3261,1", permanent=False)]


def test_command_before_login_is_local_error() -> None:
    conn = Connection(LoginConfig(SessionOptions(initiator_name="iqn.i"), "iqn.t"), 1)
    with pytest.raises(LocalProtocolError):
        conn.scsi_command(0, b"\0" * 6)


def test_window_gates_commands_and_reopens() -> None:
    conn = logged_in()  # ExpCmdSN 10, MaxCmdSN 11: two commands allowed
    itts = [conn.scsi_command(1, b"\0" * 6) for _ in range(4)]
    assert len(sent_pdus(conn)) == 2 and conn.queued == 2
    rsp = target_pdu(0x21, 0x80, itt=itts[0], statsn=5, expcmdsn=11, maxcmdsn=40)
    events = conn.receive_data(rsp)
    assert isinstance(events[0], TaskCompleted) and events[0].result.status == 0
    cmds = sent_pdus(conn)
    assert [P.u32(c.bhs, 24) for c in cmds] == [12, 13] and conn.queued == 0
    assert P.u32(cmds[0].bhs, 28) == 6  # ExpStatSN acknowledges StatSN 5


def test_read_reassembles_data_in_with_status_in_last_pdu() -> None:
    conn = logged_in()
    itt = conn.scsi_command(1, b"\x28" + bytes(9), read_len=12)
    conn.data_to_send()
    ev = conn.receive_data(
        target_pdu(0x25, 0x00, b"abcd", itt=itt, f36=0, f40=0)
        + target_pdu(0x25, 0x00, b"efgh", itt=itt, f36=1, f40=4)[:30]
    )
    assert ev == []
    ev = conn.receive_data(
        target_pdu(0x25, 0x00, b"efgh", itt=itt, f36=1, f40=4)[30:]
        + target_pdu(0x25, 0x81, b"ijkl", itt=itt, f36=2, f40=8, statsn=5)
    )
    assert bytes(ev[0].result.data) == b"abcdefghijkl"  # type: ignore[union-attr]


def test_check_condition_sense_is_returned() -> None:
    conn = logged_in()
    itt = conn.scsi_command(1, b"\0" * 6)
    sense = bytes([0x70, 0, 6, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x29, 0, 0, 0, 0, 0])
    ev = conn.receive_data(
        target_pdu(0x21, 0x80, len(sense).to_bytes(2, "big") + sense, itt=itt, b3=2, statsn=5)
    )
    assert ev[0].result.status == 2 and ev[0].result.sense == sense  # type: ignore[union-attr]


def test_write_sends_immediate_data_then_answers_r2t_in_mrdsl_chunks() -> None:
    conn = logged_in(extra=[("MaxRecvDataSegmentLength", "8192")])
    data = bytes(range(256)) * 256  # 64 KiB
    itt = conn.scsi_command(1, b"\x8a" + bytes(15), write_data=data)
    cmd = sent_pdus(conn)
    assert (
        len(cmd) == 1 and bytes(cmd[0].data) == data[:8192]
    )  # immediate data only (InitialR2T=Yes)
    assert cmd[0].bhs[1] & 0x80  # F: no unsolicited Data-Out follows
    conn.receive_data(target_pdu(0x31, 0x80, itt=itt, ttt=0xA080A80A, f36=0, f40=8192, f44=57344))
    outs = sent_pdus(conn)
    assert len(outs) == 7
    assert [P.u32(o.bhs, 36) for o in outs] == list(range(7))  # DataSN from 0 per R2T
    assert all(P.u32(o.bhs, 20) == 0xA080A80A for o in outs)
    assert outs[-1].bhs[1] == 0x80 and outs[0].bhs[1] == 0
    assert b"".join(bytes(o.data) for o in outs) == data[8192:]


def test_r2t_beyond_the_write_is_a_protocol_error() -> None:
    conn = logged_in()
    itt = conn.scsi_command(1, b"\x8a" + bytes(15), write_data=bytes(1024))
    with pytest.raises(RemoteProtocolError, match="R2T asks for"):
        conn.receive_data(target_pdu(0x31, 0x80, itt=itt, ttt=1, f40=512, f44=4096))


def test_target_ping_is_answered_with_echoed_ttt_and_lun() -> None:
    conn = logged_in()
    lun = bytes([0, 3]) + bytes(6)
    assert conn.receive_data(target_pdu(0x20, 0x80, itt=P.NO_TAG, ttt=7, statsn=6, lun=lun)) == []
    reply = sent_pdus(conn)[0]
    assert reply.bhs[0] == 0x40 and P.u32(reply.bhs, 16) == P.NO_TAG and P.u32(reply.bhs, 20) == 7
    assert reply.bhs[8:16] == lun
    assert conn.exp_stat_sn == 6  # pings do not advance StatSN


def test_own_ping_reply() -> None:
    conn = logged_in()
    itt = conn.nop_ping(b"hi")
    conn.data_to_send()
    assert conn.receive_data(target_pdu(0x20, 0x80, b"hi", itt=itt, statsn=5)) == [
        NopReply(itt, b"hi")
    ]


def test_split_sendtargets_reply_is_reassembled() -> None:
    """tgt splits a key=value pair across Text Responses with C=0 and a TTT."""
    conn = logged_in(LoginConfig(SessionOptions(initiator_name="iqn.i"), None))
    itt = conn.text_request([("SendTargets", "All")])
    assert dict(decode_pairs(sent_pdus(conn)[0].data)) == {"SendTargets": "All"}
    whole = encode_pairs(
        [
            ("TargetName", "iqn.2026-11.example:a"),
            ("TargetAddress", "127.0.0.1:3260,1"),
            ("TargetName", "iqn.2026-11.example:b"),
            ("TargetAddress", "127.0.0.1:3260,1"),
        ]
    )
    assert conn.receive_data(target_pdu(0x24, 0x00, whole[:30], itt=itt, ttt=1, statsn=5)) == []
    cont = sent_pdus(conn)[0]
    assert P.u32(cont.bhs, 20) == 1 and bytes(cont.data) == b""
    ev = conn.receive_data(target_pdu(0x24, 0x80, whole[30:], itt=itt, statsn=6))
    assert isinstance(ev[0], TextReply) and [v for k, v in ev[0].pairs if k == "TargetName"] == [
        "iqn.2026-11.example:a",
        "iqn.2026-11.example:b",
    ]


def test_hostile_data_segment_length_is_refused_before_buffering() -> None:
    conn = logged_in()
    hostile = bytearray(target_pdu(0x25, 0x81))
    hostile[5:8] = b"\xff\xff\xff"
    with pytest.raises(RemoteProtocolError, match="above our MaxRecvDataSegmentLength"):
        conn.receive_data(bytes(hostile))


def test_header_digest_mismatch_is_detected() -> None:
    conn = logged_in(extra=[("HeaderDigest", "CRC32C")])
    assert conn.params.header_digest
    raw = target_pdu(0x20, 0x80, itt=P.NO_TAG, ttt=1)
    with pytest.raises(RemoteProtocolError, match="header digest"):
        conn.receive_data(raw + b"\0\0\0\0")
    conn2 = logged_in(extra=[("HeaderDigest", "CRC32C")])
    conn2.receive_data(raw + digest_bytes(raw))
    assert sent_pdus(conn2, digests=True)[0].bhs[0] == 0x40


def test_unknown_itt_is_a_protocol_error() -> None:
    conn = logged_in()
    with pytest.raises(RemoteProtocolError, match="unknown task tag"):
        conn.receive_data(target_pdu(0x21, 0x80, itt=999, statsn=5))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_only_raise_protocol_errors(blob: bytes) -> None:
    conn = logged_in()
    conn.scsi_command(1, b"\x28" + bytes(9), read_len=4096)
    try:
        conn.receive_data(blob)
    except ISCSIError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 47), st.integers(0, 255)), max_size=6))
def test_mutated_tgt_replies_only_raise_protocol_errors(mutations: list[tuple[int, int]]) -> None:
    conn = logged_in()
    itt = conn.scsi_command(1, b"\x28" + bytes(9), read_len=8)
    raw = bytearray(target_pdu(0x25, 0x81, b"abcdefgh", itt=itt, statsn=5))
    for off, val in mutations:
        raw[off] = val
    try:
        conn.receive_data(bytes(raw))
    except ISCSIError:
        pass


def test_unsolicited_data_out_when_initial_r2t_is_no() -> None:
    conn = logged_in(
        extra=[
            ("InitialR2T", "No"),
            ("MaxRecvDataSegmentLength", "8192"),
            ("FirstBurstLength", "32768"),
        ]
    )
    data = bytes(range(256)) * 256  # 64 KiB
    conn.scsi_command(1, b"\x8a" + bytes(15), write_data=data)
    pdus = sent_pdus(conn)
    assert pdus[0].bhs[1] & 0x80 == 0  # F=0: unsolicited Data-Out follows
    assert bytes(pdus[0].data) == data[:8192]
    outs = pdus[1:]
    assert len(outs) == 3 and all(P.u32(o.bhs, 20) == P.NO_TAG for o in outs)
    assert [P.u32(o.bhs, 40) for o in outs] == [8192, 16384, 24576]
    assert outs[-1].bhs[1] == 0x80  # end of the first burst (FirstBurstLength 32768)


def test_reject_fails_the_referenced_task() -> None:
    conn = logged_in()
    itt = conn.scsi_command(1, b"\0" * 6)
    rejected = sent_pdus(conn)[0].bhs
    events = conn.receive_data(target_pdu(0x3F, 0x80, rejected, itt=P.NO_TAG, b2=0x09, statsn=5))
    assert len(events) == 1 and events[0].itt == itt  # type: ignore[union-attr]
    assert "invalid PDU field" in events[0].reason  # type: ignore[union-attr]
    assert conn.outstanding == 0


def test_async_logout_request_event() -> None:
    conn = logged_in()
    raw = bytearray(target_pdu(0x32, 0x80, itt=P.NO_TAG, statsn=5, f36=0))
    raw[36], raw[42:44] = 1, (5).to_bytes(2, "big")  # event 1, Parameter3 = 5 s
    (event,) = conn.receive_data(bytes(raw))
    assert event.event == 1 and event.parameters == (0, 0, 5)  # type: ignore[union-attr]


@pytest.mark.parametrize("opcode", [0x21, 0x25, 0x31])  # SCSI Response, Data-In, R2T
def test_answer_for_a_command_held_back_by_the_window_is_a_protocol_error(opcode: int) -> None:
    conn = logged_in()  # window of two: the third command is queued, never sent
    itts = [conn.scsi_command(1, b"\x2a" + bytes(9), write_data=bytes(4096)) for _ in range(3)]
    assert conn.queued == 1
    with pytest.raises(RemoteProtocolError, match="which was not sent yet"):
        conn.receive_data(target_pdu(opcode, 0x80, itt=itts[2], statsn=5))
