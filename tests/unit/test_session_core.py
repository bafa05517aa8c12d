"""The sans-IO session core from bytes and a fake clock: no sockets, no sleeps.

A scripted target (:class:`Peer`) reads the PDUs the core queued and answers with bytes;
time is whatever ``now`` the test passes. Covers redirect, reconnect with re-drive, unit
attention, a silent target, a slow but alive target and a NOP ping answered late.
"""

from __future__ import annotations

from itertools import count

import pytest

from poolbackend.iscsi import pdu as P
from poolbackend.iscsi.core import (
    TRANSITIONS,
    Close,
    Connect,
    CoreEvent,
    Done,
    Down,
    Failed,
    Phase,
    Ready,
    SessionCore,
    SessionOptions,
)
from poolbackend.iscsi.errors import ConnectionFailed, ISCSITimeout, LocalProtocolError
from poolbackend.iscsi.events import TaskCompleted, TaskFailed, TmfReply
from poolbackend.iscsi.portal import Portal
from poolbackend.iscsi.textkeys import decode_pairs, encode_pairs
from poolbackend.scsi import cdb as C
from tests.harness.tgt_keys import tgt_login_keys
from tests.unit.test_iscsi_core import split_pdus, target_pdu

TARGET = "iqn.2026-11.example:core"
PORTAL = Portal("192.0.2.1", 3260)
UA_SENSE = bytes([0x70, 0, 0x06, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x29, 0x00, 0, 0, 0, 0])
LOGIN_KEYS = tgt_login_keys()


def fixed_random() -> object:
    """A deterministic random_bytes(n): the core takes its randomness as an input."""
    seq = count(1)
    return lambda n: bytes(next(seq) & 0xFF for _ in range(n))


class Peer:
    """The target side, in bytes: parses what the core sends and answers."""

    def __init__(self, core: SessionCore) -> None:
        self.core = core
        self.stat_sn = 1000
        self.max_ahead = 64
        self.exp_cmd_sn = 0

    def pdus(self) -> list[P.PDU]:
        out = split_pdus(self.core.data_to_send())
        for pdu in out:
            if pdu.opcode == P.Op.SCSI_CMD:
                self.exp_cmd_sn = max(self.exp_cmd_sn, pdu.field32(24) + 1)
        return out

    def bhs(self, op: int, flags: int, itt: int, data: bytes = b"", *, b2: int = 0, b3: int = 0,
            ttt: int = P.NO_TAG, f36: int = 0, f40: int = 0, f44: int = 0) -> bytes:  # fmt: skip
        stat_sn = self.stat_sn
        self.stat_sn += 1
        exp = self.exp_cmd_sn
        return target_pdu(
            op,
            flags,
            data,
            itt=itt,
            ttt=ttt,
            statsn=stat_sn,
            expcmdsn=exp,
            maxcmdsn=exp + self.max_ahead,
            f36=f36,
            f40=f40,
            f44=f44,
            b2=b2,
            b3=b3,
        )

    def send(self, raw: bytes, now: float) -> list[CoreEvent]:
        self.core.receive_data(raw, now)
        return self.core.events()

    def login(self, now: float, pairs: list[tuple[str, str]] | None = None,
              status: int = 0) -> tuple[P.PDU, list[CoreEvent]]:  # fmt: skip
        (req,) = self.pdus()
        assert req.opcode == P.Op.LOGIN_REQ
        self.exp_cmd_sn = req.field32(24)
        flags = 0x87 if status == 0 else 0x00
        raw = bytearray(self.bhs(0x23, flags, req.itt, encode_pairs(pairs or LOGIN_KEYS)))
        raw[8:14] = req.bhs[8:14]  # ISID
        raw[14:16] = (0x1234).to_bytes(2, "big") if status == 0 else b"\0\0"
        raw[36], raw[37] = status >> 8, status & 0xFF
        return req, self.send(bytes(raw), now)

    def scsi_response(self, cmd: P.PDU, now: float, status: int = 0,
                      sense: bytes = b"") -> list[CoreEvent]:  # fmt: skip
        data = len(sense).to_bytes(2, "big") + sense if sense else b""
        return self.send(self.bhs(0x21, 0x80, cmd.itt, data, b3=status), now)

    def nop_in(self, ping: P.PDU, now: float) -> list[CoreEvent]:
        return self.send(self.bhs(0x20, 0x80, ping.itt), now)


def new_core(timeout: float = 10.0, **kw: object) -> SessionCore:
    opts = SessionOptions(initiator_name="iqn.2026-11.example:i", timeout=timeout, **kw)  # type: ignore[arg-type]
    return SessionCore(PORTAL, TARGET, opts, random_bytes=fixed_random())  # type: ignore[arg-type]


def logged_in(core: SessionCore, now: float = 0.0) -> Peer:
    core.open(now)
    assert core.events() == [Connect(PORTAL)]
    core.connection_made(now)
    peer = Peer(core)
    _, events = peer.login(now)
    assert [type(e) for e in events] == [Ready]
    assert core.phase is Phase.READY
    return peer


def fire(core: SessionCore, now: float) -> list[CoreEvent]:
    """The adapter's one timer: it fires at get_timer() (never before), the core decides."""
    due = core.get_timer()
    assert due is not None and due <= now, (due, now)
    core.handle_timer(now)
    return core.events()


def test_redirect_temporary_then_login_at_the_new_address() -> None:
    core = new_core()
    core.open(0.0)
    assert core.events() == [Connect(PORTAL)]
    core.connection_made(0.0)
    peer = Peer(core)
    first, events = peer.login(0.5, [("TargetAddress", "198.51.100.7:3261,1")], status=0x0101)
    assert events == [Close(), Connect(Portal("198.51.100.7", 3261))]
    assert core.phase is Phase.CONNECTING and core.portal == PORTAL  # temporary
    core.connection_made(1.0)
    again, events = peer.login(1.0)
    assert [type(e) for e in events] == [Ready]
    assert again.bhs[8:14] == first.bhs[8:14]  # same ISID at the new address


def test_redirect_permanent_moves_the_portal_and_loops_are_bounded() -> None:
    core = new_core()
    core.open(0.0)
    core.events()
    peer = Peer(core)
    for i in range(6):
        core.connection_made(float(i))
        _, events = peer.login(float(i), [("TargetAddress", f"10.0.0.{i}:3260")], status=0x0102)
        if i < 5:
            assert events[-1] == Connect(Portal(f"10.0.0.{i}", 3260))
            assert core.portal == Portal(f"10.0.0.{i}", 3260)
    assert isinstance(events[-1], Down)
    assert "more than 5 login redirections" in str(events[-1].error)


def test_reconnect_after_a_lost_connection_redrives_outstanding_commands() -> None:
    core = new_core()
    peer = logged_in(core)
    tur = core.submit_scsi(1, C.tur(), 1.0)
    read = core.submit_scsi(2, C.read16(8, 1), 1.0, read_len=512)
    sent = peer.pdus()
    assert [p.opcode for p in sent] == [P.Op.SCSI_CMD, P.Op.SCSI_CMD]
    core.connection_lost(1.5, None)  # EOF from the target
    assert core.events() == [Close()]
    assert core.phase is Phase.WAITING
    assert core.get_timer() == 3.5  # DefaultTime2Wait = 2
    assert fire(core, 3.5) == [Connect(PORTAL)]
    core.connection_made(3.6)
    login, events = peer.login(3.7)
    assert [type(e) for e in events] == [Ready]
    assert login.bhs[8:14] == core.isid and core.reconnects == 1
    redriven = peer.pdus()  # both commands again, in order, on the new connection
    assert [bytes(p.bhs[32:48]) for p in redriven] == [bytes(p.bhs[32:48]) for p in sent]
    done = peer.scsi_response(redriven[0], 4.0)
    done += peer.send(peer.bhs(0x25, 0x81, redriven[1].itt, bytes(512)), 4.0)
    assert [(type(e), e.rid) for e in done if isinstance(e, Done)] == [(Done, tur), (Done, read)]
    assert core.reconnects_without_progress == 0


def test_reconnect_budget_is_spent_without_progress() -> None:
    core = new_core(max_reconnects=1)
    peer = logged_in(core)
    rid = core.submit_scsi(1, C.tur(), 1.0)
    peer.pdus()
    core.connection_lost(1.0, ConnectionResetError(104, "Connection reset by peer"))
    fire(core, 3.0)
    core.connection_made(3.0)
    peer.login(3.0)
    peer.pdus()
    core.connection_lost(4.0, None)
    events = core.events()
    failed = [e for e in events if isinstance(e, Failed)]
    assert [f.rid for f in failed] == [rid]
    assert isinstance(failed[0].error, ConnectionFailed)
    assert "gave up after 1 reconnects without progress: max_reconnects=1" in str(failed[0].error)
    assert core.phase is Phase.DEAD


def test_unit_attention_is_drained_in_the_core() -> None:
    core = new_core()
    peer = logged_in(core)
    rid = core.submit_scsi(1, C.tur(), 1.0)
    (cmd,) = peer.pdus()
    assert peer.scsi_response(cmd, 1.1, status=0x02, sense=UA_SENSE) == []  # no event out
    (again,) = peer.pdus()  # the same CDB, sent again with a new tag
    assert again.bhs[32:48] == cmd.bhs[32:48] and again.itt != cmd.itt
    (done,) = peer.scsi_response(again, 1.2)
    assert isinstance(done, Done) and done.rid == rid
    assert isinstance(done.event, TaskCompleted) and done.event.result.status == 0


def test_unit_attention_retries_are_bounded() -> None:
    core = new_core(ua_retries=2)
    peer = logged_in(core)
    rid = core.submit_scsi(1, C.tur(), 1.0)
    for _ in range(2):
        (cmd,) = peer.pdus()
        assert peer.scsi_response(cmd, 1.1, status=0x02, sense=UA_SENSE) == []
    (cmd,) = peer.pdus()
    (done,) = peer.scsi_response(cmd, 1.1, status=0x02, sense=UA_SENSE)
    assert isinstance(done, Done) and done.rid == rid  # the caller sees the last UA


def test_silent_target_fails_within_the_timeout_after_a_ping() -> None:
    core = new_core(timeout=9.0, timeout_hint="--timeout 9")
    peer = logged_in(core)
    rid = core.submit_scsi(1, C.tur(), 10.0)
    peer.pdus()
    assert core.get_timer() == pytest.approx(13.0)  # quiet for timeout / 3: ping
    assert fire(core, 13.0) == []
    (ping,) = peer.pdus()
    assert ping.opcode == P.Op.NOP_OUT and ping.bhs[0] & 0x40 and ping.itt != P.NO_TAG
    assert core.get_timer() == pytest.approx(19.0)
    events = fire(core, 19.0)
    failed = [e for e in events if isinstance(e, Failed)]
    assert [f.rid for f in failed] == [rid]
    assert isinstance(failed[0].error, ISCSITimeout)
    assert str(failed[0].error) == (
        f"portal {PORTAL} target {TARGET}: no answer to TEST UNIT READY on LUN 1 nor to a "
        "NOP-Out ping within 9 s (--timeout 9)"
    )
    assert Close() in events and core.phase is Phase.DISCONNECTED


def test_slow_but_alive_target_long_queue_no_ping_no_failure() -> None:
    core = new_core(timeout=9.0)
    peer = logged_in(core)
    rids = [core.submit_scsi(1, C.tur(), 0.0) for _ in range(12)]
    cmds = peer.pdus()
    done: list[int] = []
    now = 0.0
    for cmd in cmds:  # one completion every 2 s: the last waits 24 s, far past the timeout
        now += 2.0
        due = core.get_timer()
        assert due is not None and due > now - 2.0
        if due <= now:
            assert fire(core, due) == []
        done += [e.rid for e in peer.scsi_response(cmd, now) if isinstance(e, Done)]
    assert done == rids
    assert not [p for p in peer.pdus() if p.opcode == P.Op.NOP_OUT]  # never needed a ping


def test_nop_ping_answered_late_keeps_the_connection() -> None:
    core = new_core(timeout=9.0)
    peer = logged_in(core)
    rid = core.submit_scsi(1, C.tur(), 0.0)
    (cmd,) = peer.pdus()
    assert fire(core, 3.0) == []
    (ping,) = peer.pdus()
    assert core.get_timer() == pytest.approx(9.0)
    assert peer.nop_in(ping, 8.5) == []  # late, but inside the timeout: alive
    assert core.get_timer() == pytest.approx(11.5)  # silence counts again from the answer
    assert fire(core, 11.5) == []  # quiet again: a second ping, nothing fails
    (ping2,) = peer.pdus()
    assert ping2.opcode == P.Op.NOP_OUT
    (done,) = peer.scsi_response(cmd, 12.0)
    assert isinstance(done, Done) and done.rid == rid
    assert core.phase is Phase.READY


def test_one_command_over_its_cap_fails_and_the_others_are_redriven() -> None:
    core = new_core(timeout=9.0)
    peer = logged_in(core)
    slow = core.submit_scsi(1, C.tur(), 0.0, timeout=5.0)
    other = core.submit_scsi(2, C.tur(), 0.0)
    cmds = peer.pdus()
    peer.send(peer.bhs(0x20, 0x80, P.NO_TAG, ttt=7), 2.0)  # target's own NOP-In: life
    peer.pdus()
    events = fire(core, 5.0)
    failed = [e for e in events if isinstance(e, Failed)]
    assert [f.rid for f in failed] == [slow]
    assert "the limit for one command on a target that is alive" in str(failed[0].error)
    assert Close() in events and core.phase is Phase.WAITING
    fire(core, 7.0)
    core.connection_made(7.0)
    peer.login(7.0)
    (again,) = peer.pdus()
    assert again.bhs[32:48] == cmds[1].bhs[32:48]
    (done,) = peer.scsi_response(again, 7.5)
    assert isinstance(done, Done) and done.rid == other


def test_login_refusal_is_down_with_the_portal_named() -> None:
    core = new_core()
    core.open(0.0)
    core.events()
    core.connection_made(0.0)
    _, events = Peer(core).login(0.1, [], status=0x0201)
    assert isinstance(events[-1], Down)
    assert str(events[-1].error).startswith(f"portal {PORTAL} target {TARGET}: ")
    assert core.phase is Phase.DEAD


def test_login_timeout_from_the_clock() -> None:
    core = new_core(timeout=4.0)
    core.open(0.0)
    core.events()
    core.connection_made(1.0)
    assert core.get_timer() == 5.0
    (down,) = fire(core, 5.0)[-1:]
    assert isinstance(down, Down) and "no answer to login within 4 s" in str(down.error)


def test_tcp_connect_that_never_completes_fails_at_the_timeout() -> None:
    """The core alone bounds the TCP connect (the adapter waits for the socket unbounded)."""
    core = new_core(timeout=4.0)
    core.open(0.0)
    assert core.events() == [Connect(PORTAL)]
    assert core.get_timer() == 4.0
    (down,) = fire(core, 4.0)
    assert isinstance(down, Down) and isinstance(down.error, ISCSITimeout)
    assert str(down.error) == f"portal {PORTAL}: TCP connect did not complete within 4 s"
    assert core.phase is Phase.DEAD


def test_phases_change_only_through_the_table() -> None:
    core = new_core()
    with pytest.raises(LocalProtocolError):
        core.connection_made(0.0)  # nothing asked for a connection
    assert (Phase.READY, "lost, busy") in TRANSITIONS
    assert all(src is not Phase.CLOSED for src, _ in TRANSITIONS)


def test_text_request_and_chap_randomness_as_input() -> None:
    core = new_core()
    peer = logged_in(core)
    rid = core.submit_text([("SendTargets", "All")], 1.0)
    (req,) = peer.pdus()
    assert decode_pairs(bytes(req.data), "t") == [("SendTargets", "All")]
    (done,) = peer.send(peer.bhs(0x24, 0x80, req.itt, encode_pairs([("TargetName", TARGET)])), 1)
    assert isinstance(done, Done) and done.rid == rid
    # the same inputs give the same ISID: randomness is an input
    assert new_core().isid == new_core().isid


def test_small_data_in_is_received_with_what_follows_it() -> None:
    """Batching: a 4 KiB Data-In that arrived in part leaves room for the next PDUs in the
    same receive (the zero-copy split would read exactly one PDU per receive)."""
    core = new_core()
    peer = logged_in(core)
    bufs = [bytearray(4096) for _ in range(8)]
    rids = [
        core.submit_scsi(1, C.read16(8 * i, 8), 0.0, read_len=4096, read_into=bufs[i])
        for i in range(8)
    ]
    cmds = peer.pdus()
    wire = b"".join(peer.bhs(0x25, 0x81, c.itt, bytes([i]) * 4096) for i, c in enumerate(cmds))
    first = core.recv_buffers()
    first[0][:2048] = wire[:2048]  # a header and half its data arrive
    core.recv_done(2048, 1.0)
    nxt = core.recv_buffers()
    assert len(nxt) == 1 and len(nxt[0]) >= len(wire) - 2048  # room for all the rest
    nxt[0][: len(wire) - 2048] = wire[2048:]
    core.recv_done(len(wire) - 2048, 1.0)
    done = [e.rid for e in core.events() if isinstance(e, Done)]
    assert done == rids  # every PDU of that one receive parsed and completed
    assert all(bytes(b) == bytes([i]) * 4096 for i, b in enumerate(bufs))


def test_lun_reset_with_writes_in_flight_late_answers_are_ignored() -> None:
    """LOGICAL UNIT RESET with writes in flight ("SCSI_RSP for unknown task tag", seen once).

    The target may complete a write just before the reset (answered normally) and, having
    been executing it already, answer another one after its TMF response: that late SCSI
    Response (or Data-In, R2T) is for a task the reset aborted. It must be ignored (its
    StatSN still acknowledged), never fail the session, never complete another request;
    the writes the reset aborted fail at once instead of waiting for their cap; the tag of
    an aborted task is not reused while the target may still answer for it.
    """
    core = new_core()
    peer = logged_in(core)
    writes = [
        core.submit_scsi(1, C.write16(i, 1), 1.0, write_data=bytes([i]) * 512) for i in range(3)
    ]
    other = core.submit_scsi(2, C.tur(), 1.0)  # another LUN: the reset does not touch it
    cmds = peer.pdus()
    assert [p.opcode for p in cmds] == [P.Op.SCSI_CMD] * 4
    reset = core.submit_tmf(5, 1, 1.1)
    (tmf,) = peer.pdus()
    assert tmf.opcode == P.Op.TMF_REQ

    done = peer.scsi_response(cmds[0], 1.2)  # completed before the reset: a normal answer
    assert [(type(e), e.rid) for e in done] == [(Done, writes[0])]
    done = peer.send(peer.bhs(0x22, 0x80, tmf.itt, b2=0), 1.3)  # function complete
    by_rid = {e.rid: e.event for e in done if isinstance(e, Done)}
    assert set(by_rid) == {reset, writes[1], writes[2]}
    assert isinstance(by_rid[reset], TmfReply) and by_rid[reset].response == 0
    for rid in writes[1:]:
        failed = by_rid[rid]
        assert isinstance(failed, TaskFailed)
        assert failed.reason == "aborted by LOGICAL UNIT RESET"

    # the tag of an aborted task is not handed out again (as if the counter wrapped to it)
    assert core.conn is not None
    core.conn._next_itt = cmds[1].itt
    again = core.submit_scsi(1, C.tur(), 1.4)
    (tur,) = peer.pdus()
    assert tur.itt not in (cmds[1].itt, cmds[2].itt)

    # late answers for the aborted writes: ignored, nothing completes, the session lives
    late = peer.scsi_response(cmds[1], 1.5)
    late += peer.send(peer.bhs(0x31, 0x80, cmds[2].itt, ttt=7, f40=512, f44=512), 1.5)  # R2T
    late += peer.send(peer.bhs(0x25, 0x81, cmds[2].itt, bytes(512)), 1.5)  # Data-In + status
    assert late == []
    assert core.phase is Phase.READY
    # ExpStatSN acknowledges the late statuses too
    ping = core.submit_nop(1.6)
    (nop,) = peer.pdus()
    assert nop.field32(28) == peer.stat_sn

    done = peer.scsi_response(tur, 1.7) + peer.scsi_response(cmds[3], 1.7)
    done += peer.nop_in(nop, 1.7)
    assert [e.rid for e in done if isinstance(e, Done)] == [again, other, ping]
    assert all(
        isinstance(e.event, TaskCompleted) and e.event.result.status == 0
        for e in done
        if isinstance(e, Done) and e.rid != ping
    )


def test_abort_task_fails_its_request_and_ignores_a_late_answer() -> None:
    core = new_core()
    peer = logged_in(core)
    write = core.submit_scsi(1, C.write16(0, 1), 1.0, write_data=bytes(512))
    other = core.submit_scsi(1, C.tur(), 1.0)  # same LUN, not the aborted task
    cmd, tur = peer.pdus()
    abort = core.submit_tmf(1, 1, 1.1, ref_rid=write)
    (tmf,) = peer.pdus()
    assert tmf.field32(20) == cmd.itt  # Referenced Task Tag
    done = peer.send(peer.bhs(0x22, 0x80, tmf.itt, b2=0), 1.2)
    by_rid = {e.rid: e.event for e in done if isinstance(e, Done)}
    assert set(by_rid) == {write, abort}
    failed = by_rid[write]
    assert isinstance(failed, TaskFailed) and failed.reason == "aborted by ABORT TASK"
    assert peer.scsi_response(cmd, 1.3) == []  # late: ignored
    done = peer.scsi_response(tur, 1.4)
    assert [e.rid for e in done if isinstance(e, Done)] == [other]
    assert core.phase is Phase.READY
