"""The sans-IO core of one iSCSI connection (RFC 7143): bytes in, typed events out.

It owns sequencing (CmdSN window with serial arithmetic, ExpStatSN, ITT allocation), the
read path (Data-In reassembly into a preallocated buffer, status in the last Data-In,
residuals), the write path (immediate data, unsolicited Data-Out, R2T-driven Data-Out),
answers target NOP pings, and turns Reject/Async/TMF/Text/Logout PDUs into events. It never
touches sockets or clocks: adapters call :meth:`receive_data` and send :meth:`data_to_send`.

About 740 lines, on purpose: every PDU it sends or receives moves the same sequencing state
(CmdSN window, ITTs, ExpStatSN, the task table), so the read path, the write path and the
PDU handlers stay one class rather than parts that share its internals.
"""

from __future__ import annotations

import enum
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from poolbackend.iscsi import pdu as P
from poolbackend.iscsi.digest import Buffer, digest_bytes
from poolbackend.iscsi.errors import LocalProtocolError, RemoteProtocolError
from poolbackend.iscsi.events import (
    AsyncEvent,
    Event,
    LoginComplete,
    LoginRedirected,
    LogoutReply,
    NopReply,
    ScsiResult,
    TaskCompleted,
    TaskFailed,
    TextReply,
    TmfReply,
)
from poolbackend.iscsi.login import (
    LoginConfig,
    LoginMachine,
    LoginRedirect,
    LoginStep,
    SessionParams,
    encode_login_request,
)
from poolbackend.iscsi.textkeys import decode_pairs, encode_pairs
from poolbackend.scsi.lun import LunRef, lun_field

_A = TypeVar("_A")


MASK = 0xFFFFFFFF
REJECT_REASONS = {
    0x02: "data digest error",
    0x03: "SNACK reject",
    0x04: "protocol error",
    0x05: "command not supported",
    0x06: "too many immediate commands",
    0x07: "task in progress",
    0x08: "invalid data ACK",
    0x09: "invalid PDU field",
    0x0A: "long operation reject (target out of resources)",
    0x0C: "waiting for logout",
}
TMF_ABORT_TASK, TMF_LUN_RESET = 1, 5
TMF_NAMES = {TMF_ABORT_TASK: "ABORT TASK", TMF_LUN_RESET: "LOGICAL UNIT RESET"}
_RETIRED_MAX = 4096
# Data-Out BHS: opcode, flags, DataSegmentLength (TotalAHSLength 0), LUN, ITT, TTT,
# ExpStatSN, DataSN, BufferOffset.
_DATA_OUT = struct.Struct(">BBxxI8sII4xI4xII4x")
# SCSI Command BHS: opcode, flags, DataSegmentLength (TotalAHSLength 0), LUN, ITT,
# ExpectedDataTransferLength, CmdSN, ExpStatSN, CDB (zero-padded to 16 bytes).
_SCSI_CMD = struct.Struct(">BBxxI8sIIII16s")
# Every target PDU's BHS in one unpack: opcode, flags, byte 2 (response), byte 3 (status),
# LUN, ITT, TTT, StatSN, ExpCmdSN, MaxCmdSN, DataSN, BufferOffset, ResidualCount.
_FIELDS = struct.Struct(">BBBB4x8sIIIIIIII")
_unpack_fields = _FIELDS.unpack_from
_u32_at = struct.Struct(">I").unpack_from


def sn_lt(a: int, b: int) -> bool:
    """RFC 1982 serial 'a < b' for 32-bit sequence numbers."""
    return a != b and ((b - a) & MASK) < 0x80000000


def sn_le(a: int, b: int) -> bool:
    return a == b or sn_lt(a, b)


class State(enum.Enum):
    IDLE = "idle"
    LOGIN = "login"
    FULL_FEATURE = "full feature phase"
    LOGGED_OUT = "logged out"
    FAILED = "failed"


class Kind(enum.Enum):
    """What a non-SCSI task (:class:`_Task`) is; SCSI commands are :class:`_ScsiTask`."""

    TEXT = "text"
    NOP = "nop"
    TMF = "tmf"
    LOGOUT = "logout"


# Enum members and IntEnum opcodes as plain module constants for the per-PDU paths: on
# Python 3.11 each ``State.X`` / ``P.Op.X`` lookup costs ~0.3-0.5 µs (several per command).
_FFP = State.FULL_FEATURE
_LOGIN = State.LOGIN
_FAILED = State.FAILED
_LOGGED_OUT = State.LOGGED_OUT
_DATA_IN = int(P.Op.DATA_IN)
_SCSI_CMD_OP = int(P.Op.SCSI_CMD)
_DATA_OUT_OP = int(P.Op.DATA_OUT)


@dataclass(slots=True)
class _ScsiTask:
    """A SCSI command: its CDB, where its Data-In goes, what it writes, its CmdSN."""

    itt: int
    lun: bytes
    cdb: bytes
    read_len: int = 0
    read_buf: bytearray | memoryview | None = None
    received: int = 0
    next_datasn: int = 0
    write: memoryview | None = None
    cmd_sn: int = 0
    sent: bool = False


@dataclass(slots=True)
class _Task:
    """Any other request (Text, NOP-Out, task management, Logout)."""

    itt: int
    kind: Kind
    lun: bytes = bytes(8)
    text: bytearray = field(default_factory=bytearray)
    ref_itt: int = P.NO_TAG
    function: int = 0


class Connection:
    """One iSCSI connection/session at ErrorRecoveryLevel 0."""

    def __init__(self, login: LoginConfig, initial_cmd_sn: int = 1) -> None:
        self.login_config = login
        self.state = State.IDLE
        self.params = SessionParams()
        self.cmd_sn = initial_cmd_sn & MASK
        self.exp_cmd_sn = self.cmd_sn
        self.max_cmd_sn = self.cmd_sn
        self.exp_stat_sn = 0
        self.tsih = 0
        #: target NOP-In pings answered with a NOP-Out (tests prove pings are answered)
        self.pings_answered = 0
        self._reader = P.PDUReader(max(8192, login.options.max_recv_data_segment_length))
        self._reader.on_pdu = self._on_pdu
        self._reader.sink = self._sink
        self._events: list[Event] = []
        self._login = LoginMachine(login)
        self._out: list[Buffer] = []
        self._tasks: dict[int, _ScsiTask | _Task] = {}
        #: tags of SCSI tasks a task management function aborted: the target may still answer
        #: for them (it was completing them); such late PDUs are ignored and the tag is not
        #: handed out again until its final status came (oldest forgotten past _RETIRED_MAX)
        self._retired: dict[int, None] = {}
        self._waiting: deque[_ScsiTask] = deque()  # non-immediate commands held by the window
        self._lun_fields: dict[int, bytes] = {}
        self._next_itt = 1

    # -- public API --------------------------------------------------------------------
    def start_login(self) -> None:
        if self.state is not State.IDLE:
            raise LocalProtocolError(f"cannot log in: connection is in {self.state.value}")
        self.state = State.LOGIN
        self._out.append(self._login_pdu(self._login.start()))

    def data_to_send(self) -> list[Buffer]:
        out, self._out = self._out, []
        return out

    @property
    def outstanding(self) -> int:
        return len(self._tasks)

    @property
    def queued(self) -> int:
        return len(self._waiting)

    def scsi_command(
        self,
        lun: LunRef,
        cdb: bytes,
        *,
        read_len: int = 0,
        write_data: Buffer | None = None,
        read_into: bytearray | memoryview | None = None,
    ) -> int:
        """Queue a SCSI command; returns its ITT. ``read_into`` avoids a buffer allocation."""
        if self.state is not _FFP:
            self._require_ffp()  # raises
        if len(cdb) > 16:
            raise LocalProtocolError("CDBs longer than 16 bytes are not supported")
        if read_len and write_data is not None:
            raise LocalProtocolError("bidirectional commands are not supported")
        if read_into is not None and len(read_into) < read_len:
            raise LocalProtocolError("read buffer is smaller than the read length")
        fields = self._lun_fields
        field_ = fields.get(lun) if type(lun) is int else None
        if field_ is None:
            field_ = lun_field(lun)
            if isinstance(lun, int) and len(fields) < 4096:
                fields[lun] = field_
        tasks = self._tasks
        itt = self._next_itt
        if itt in tasks or itt in self._retired or itt == P.NO_TAG or itt == LoginMachine.ITT:
            itt = self._alloc_itt()  # the rules, in one place; the common case is inlined
        else:
            self._next_itt = (itt + 1) & MASK
        if type(cdb) is not bytes:
            cdb = bytes(cdb)
        task = _ScsiTask(itt, field_, cdb, read_len, read_into)
        if write_data is not None:
            task.write = memoryview(write_data).cast("B")
        tasks[itt] = task
        cmd_sn = self.cmd_sn
        if not self._waiting and ((self.max_cmd_sn - cmd_sn) & MASK) < 0x80000000:
            # inside the CmdSN window with nothing held back: straight out (sn_le inlined)
            task.cmd_sn = cmd_sn
            self.cmd_sn = (cmd_sn + 1) & MASK
            task.sent = True
            self._send_scsi(task)
        else:
            self._waiting.append(task)
            self._flush()
        return itt

    def text_request(self, pairs: list[tuple[str, str]]) -> int:
        self._require_ffp()
        task = _Task(self._alloc_itt(), Kind.TEXT)
        self._tasks[task.itt] = task
        self._send_text(task, encode_pairs(pairs), P.NO_TAG)
        return task.itt

    def nop_ping(self, data: bytes = b"") -> int:
        self._require_ffp()
        task = _Task(self._alloc_itt(), Kind.NOP)
        self._tasks[task.itt] = task
        bhs = P.new_bhs(P.Op.NOP_OUT, P.F_FINAL, immediate=True)
        P.put32(bhs, 16, task.itt)
        P.put32(bhs, 20, P.NO_TAG)
        self._emit_immediate(bhs, data)
        return task.itt

    def task_management(self, function: int, lun: LunRef = 0, ref_itt: int = P.NO_TAG) -> int:
        self._require_ffp()
        task = _Task(
            self._alloc_itt(), Kind.TMF, lun_field(lun), ref_itt=ref_itt, function=function
        )
        self._tasks[task.itt] = task
        bhs = P.new_bhs(P.Op.TMF_REQ, 0x80 | function, immediate=True)
        bhs[8:16] = task.lun
        P.put32(bhs, 16, task.itt)
        P.put32(bhs, 20, ref_itt)
        ref = self._tasks.get(ref_itt)
        P.put32(bhs, 32, ref.cmd_sn if isinstance(ref, _ScsiTask) and ref.sent else self.cmd_sn)
        self._emit_immediate(bhs)
        return task.itt

    def logout(self, reason: int = 0) -> int:
        self._require_ffp()
        task = _Task(self._alloc_itt(), Kind.LOGOUT)
        self._tasks[task.itt] = task
        bhs = P.new_bhs(P.Op.LOGOUT_REQ, 0x80 | reason, immediate=True)
        P.put32(bhs, 16, task.itt)
        P.put16(bhs, 20, self.login_config.cid)
        self._emit_immediate(bhs)
        return task.itt

    def receive_data(self, data: Buffer) -> list[Event]:
        """Feed received bytes (any chunking); returns the events they complete."""
        return self._consume(self._reader.feed, data)

    def recv_buffers(self) -> list[memoryview]:
        """Zero-copy receive, step 1: writable buffers the next bytes should be received into.

        Data-In payloads are received straight into the reading task's buffer. Pass the
        list to ``socket.recvmsg_into`` (or its first element to ``recv_into``), then call
        :meth:`recv_done` with the byte count. Equivalent to :meth:`receive_data`.
        """
        return self._reader.recv_buffers()

    def recv_done(self, nbytes: int) -> list[Event]:
        """Zero-copy receive, step 2: ``nbytes`` landed in the last :meth:`recv_buffers`."""
        return self._consume(self._reader.recv_done, nbytes)

    def _consume(self, step: Callable[[_A], object], arg: _A) -> list[Event]:
        """Run one reader step; a protocol violation fails the connection for good."""
        if self.state is _FAILED or self.state is _LOGGED_OUT:  # no tuple built per PDU
            return []
        try:
            step(arg)
        except RemoteProtocolError:
            self.state = State.FAILED
            self._events = []
            raise
        events, self._events = self._events, []
        return events

    def _on_pdu(self, pdu: P.PDU) -> None:
        if self.state is _FAILED or self.state is _LOGGED_OUT:  # no tuple built per PDU
            return
        ev = self._dispatch(pdu)
        if ev is not None:
            self._events.append(ev)

    def _sink(self, bhs: bytes, dlen: int) -> memoryview | None:
        """Where a Data-In payload goes: straight into its task's read buffer.

        Anything unexpected returns None (the PDU is staged) and is diagnosed on dispatch.
        """
        if bhs[0] & 0x3F != _DATA_IN or self.state is not _FFP:
            return None
        task = self._tasks.get(_u32_at(bhs, 16)[0])
        if type(task) is not _ScsiTask:
            return None
        offset = _u32_at(bhs, 40)[0]
        if offset + dlen > task.read_len:
            return None
        buf = task.read_buf
        if buf is None:
            if offset == 0 and dlen == task.read_len:
                return None  # a single-PDU read: the staged copy becomes the result
            buf = task.read_buf = bytearray(task.read_len)
        return memoryview(buf)[offset : offset + dlen]

    # -- internals ---------------------------------------------------------------------
    def _require_ffp(self) -> None:
        if self.state is not State.FULL_FEATURE:
            raise LocalProtocolError(f"connection is in {self.state.value}, not logged in")

    def _alloc_itt(self) -> int:
        while True:
            itt = self._next_itt
            self._next_itt = (itt + 1) & MASK
            if (
                itt != P.NO_TAG
                and itt != LoginMachine.ITT
                and itt not in self._tasks
                and itt not in self._retired
            ):
                return itt

    def _emit(self, bhs: bytearray, data: Buffer = b"") -> None:
        P.put32(bhs, 28, self.exp_stat_sn)
        self._out.extend(
            P.encode(
                bhs,
                data,
                header_digest=self.params.header_digest,
                data_digest=self.params.data_digest,
            )
        )

    def _emit_immediate(self, bhs: bytearray, data: Buffer = b"") -> None:
        P.put32(bhs, 24, self.cmd_sn)
        self._emit(bhs, data)

    def _flush(self) -> None:
        """Send queued commands while CmdSN is inside [ExpCmdSN, MaxCmdSN]."""
        waiting = self._waiting
        while waiting and ((self.max_cmd_sn - self.cmd_sn) & MASK) < 0x80000000:  # sn_le
            task = waiting.popleft()
            if task.itt not in self._tasks:
                continue
            task.cmd_sn = self.cmd_sn
            self.cmd_sn = (self.cmd_sn + 1) & MASK
            task.sent = True
            self._send_scsi(task)

    def _send_scsi(self, task: _ScsiTask) -> None:
        p = self.params
        flags = 0x01  # SIMPLE task attribute
        immediate: Buffer = b""
        unsolicited_end = 0
        write = task.write
        write_len = len(write) if write is not None else 0
        if task.read_len:
            flags |= P.F_READ
        if write is not None:
            flags |= P.F_WRITE
            first_burst = min(p.first_burst_length, write_len)
            sent = 0
            if p.immediate_data:
                sent = min(first_burst, p.max_xmit_data_segment_length)
                immediate = write[:sent]
            unsolicited_end = first_burst if not p.initial_r2t else sent
        n = len(immediate)
        if unsolicited_end <= n:
            flags |= P.F_FINAL
        bhs = _SCSI_CMD.pack(
            _SCSI_CMD_OP,
            flags,
            n,
            task.lun,
            task.itt,
            task.read_len or write_len,
            task.cmd_sn,
            self.exp_stat_sn,
            task.cdb,
        )
        out = self._out
        out.append(bhs)
        if p.header_digest:
            out.append(digest_bytes(bhs))
        if n:
            pad = P.PAD[n & 3]
            out.append(immediate)
            if pad:
                out.append(pad)
            if p.data_digest:
                out.append(digest_bytes(immediate, pad) if pad else digest_bytes(immediate))
        if unsolicited_end > n:
            self._send_data_out(task, n, unsolicited_end - n, P.NO_TAG)

    def _send_data_out(self, task: _ScsiTask, offset: int, length: int, ttt: int) -> None:
        """One sequence of Data-Out PDUs (RFC 7143 §11.7): the hot loop of every write.

        Each PDU is one packed header plus a view of the caller's data (never copied).
        """
        write = task.write
        assert write is not None
        p = self.params
        chunk = p.max_xmit_data_segment_length
        hd, dd = p.header_digest, p.data_digest
        pack = _DATA_OUT.pack
        out = self._out
        lun, itt, stat_sn = task.lun, task.itt, self.exp_stat_sn
        end = offset + length
        datasn = 0
        while offset < end:
            n = end - offset
            flags = P.F_FINAL
            if n > chunk:
                n, flags = chunk, 0
            bhs = pack(_DATA_OUT_OP, flags, n, lun, itt, ttt, stat_sn, datasn, offset)
            data = write[offset : offset + n]
            pad = P.PAD[n & 3]
            out.append(bhs)
            if hd:
                out.append(digest_bytes(bhs))
            out.append(data)
            if pad:
                out.append(pad)
            if dd:
                out.append(digest_bytes(data, pad) if pad else digest_bytes(data))
            offset += n
            datasn += 1

    def _send_text(self, task: _Task, data: bytes, ttt: int) -> None:
        bhs = P.new_bhs(P.Op.TEXT_REQ, P.F_FINAL, immediate=True)
        P.put32(bhs, 16, task.itt)
        P.put32(bhs, 20, ttt)
        self._emit_immediate(bhs, data)

    def _status_seen(self, pdu: P.PDU) -> None:
        nxt = (pdu.field32(24) + 1) & MASK
        if sn_lt(self.exp_stat_sn, nxt):
            self.exp_stat_sn = nxt

    def _dispatch(self, pdu: P.PDU) -> Event | None:
        state = self.state
        if state is _LOGIN:
            return self._on_login(pdu)
        if state is not _FFP:
            raise RemoteProtocolError(f"unexpected {pdu.name()} in state {self.state.value}")
        f = _unpack_fields(pdu.bhs)
        # the CmdSN window (ExpCmdSN, MaxCmdSN), in every target PDU; a MaxCmdSN below
        # ExpCmdSN - 1 is ignored
        # (sn_lt inlined: this runs for every PDU)
        exp, mx = f[8], f[9]
        if exp != self.exp_cmd_sn or mx != self.max_cmd_sn:
            below = (exp - 1 - mx) & MASK  # how far MaxCmdSN is below ExpCmdSN - 1
            if not below or below >= 0x80000000:
                d = (exp - self.exp_cmd_sn) & MASK
                if d and d < 0x80000000:
                    self.exp_cmd_sn = exp
                d = (mx - self.max_cmd_sn) & MASK
                if d and d < 0x80000000:
                    self.max_cmd_sn = mx
        if f[0] & 0x3F == _DATA_IN:
            event = self._data_in(pdu, f)
        else:
            handler = _HANDLERS.get(pdu.opcode)
            if handler is None:
                raise RemoteProtocolError(f"unexpected {pdu.name()} in full feature phase")
            event = handler(self, pdu)
        if self._waiting:
            self._flush()
        return event

    def _login_pdu(self, step: LoginStep) -> bytes:
        """Frame a Login Request with our sequence numbers (the machine decides its content)."""
        return encode_login_request(self.login_config, step, self.cmd_sn, self.exp_stat_sn)

    def _on_login(self, pdu: P.PDU) -> Event | None:
        if pdu.opcode == P.Op.LOGIN_RSP and pdu.bhs[36] == 0:
            self.exp_stat_sn = (pdu.field32(24) + 1) & MASK  # StatSN seen during login
        result = self._login.receive(pdu)
        if isinstance(result, LoginStep):
            self._out.append(self._login_pdu(result))
            return None
        if isinstance(result, LoginRedirect):
            self.state = State.LOGGED_OUT
            return LoginRedirected(result.address, result.permanent)
        self.params = result.params
        self.tsih = result.tsih
        self.exp_stat_sn = (result.stat_sn + 1) & MASK
        self.exp_cmd_sn = result.exp_cmd_sn
        self.max_cmd_sn = result.max_cmd_sn
        self.cmd_sn = result.exp_cmd_sn
        self._reader.max_data = self.params.max_recv_data_segment_length
        self._reader.header_digest = self.params.header_digest
        self._reader.data_digest = self.params.data_digest
        self.state = State.FULL_FEATURE
        return LoginComplete(self.params)

    def _unknown(self, pdu: P.PDU) -> RemoteProtocolError:
        return RemoteProtocolError(f"target sent {pdu.name()} for unknown task tag 0x{pdu.itt:08x}")

    def _scsi_task(self, pdu: P.PDU) -> _ScsiTask | None:
        """The SCSI task ``pdu`` is for; None for a task a task management function aborted
        (a late answer, to ignore: :meth:`_late`)."""
        task = self._tasks.get(pdu.itt)
        if not isinstance(task, _ScsiTask):
            if task is None and pdu.itt in self._retired:
                return None
            raise self._unknown(pdu)
        if not task.sent:  # held back by the CmdSN window: unknown to the target
            raise RemoteProtocolError(
                f"target sent {pdu.name()} for task tag 0x{pdu.itt:08x}, which was not sent yet"
            )
        return task

    def _task(self, pdu: P.PDU, kind: Kind) -> _Task:
        task = self._tasks.get(pdu.itt)
        if not isinstance(task, _Task) or task.kind is not kind:
            raise self._unknown(pdu)
        return task

    def _data_in(
        self,
        pdu: P.PDU,
        f: tuple[int, int, int, int, bytes, int, int, int, int, int, int, int, int],
    ) -> Event | None:
        task = self._tasks.get(f[5])
        flags = f[1]
        if type(task) is not _ScsiTask or not task.sent:
            task = self._scsi_task(pdu)  # raises, naming the problem
            if task is None:
                return self._late(pdu, bool(flags & P.F_STATUS))
        if flags & P.F_ACK:
            raise RemoteProtocolError("target asked for a DataACK (A bit) at ErrorRecoveryLevel 0")
        datasn, offset, n = f[10], f[11], len(pdu.data)
        if datasn != task.next_datasn:
            raise RemoteProtocolError(
                f"Data-In DataSN {datasn}, expected {task.next_datasn} (task 0x{task.itt:08x})"
            )
        task.next_datasn += 1
        if offset + n > task.read_len:
            raise RemoteProtocolError(
                f"Data-In of {n} bytes at offset {offset} exceeds the expected "
                f"{task.read_len} bytes"
            )
        if n:
            if not pdu.placed:  # else the reader received it in place already
                if task.read_buf is None:
                    if offset == 0 and n == task.read_len and flags & P.F_STATUS:
                        task.read_buf = pdu.data  # single-PDU read: no copy needed
                    else:
                        task.read_buf = bytearray(task.read_len)
                if task.read_buf is not pdu.data:
                    task.read_buf[offset : offset + n] = pdu.data
            if offset + n > task.received:
                task.received = offset + n
        if not flags & P.F_STATUS:
            return None
        if not flags & P.F_FINAL:
            raise RemoteProtocolError("Data-In with S bit but without F bit")
        nxt = (f[7] + 1) & MASK  # StatSN seen (sn_lt inlined)
        d = (nxt - self.exp_stat_sn) & MASK
        if d and d < 0x80000000:
            self.exp_stat_sn = nxt
        return self._complete(task, f[3], b"", f[12], flags)

    def _complete(
        self, task: _ScsiTask, status: int, sense: bytes, residual: int, flags: int
    ) -> Event:
        del self._tasks[task.itt]
        data: bytes | bytearray | memoryview = b""
        if task.read_buf is not None:
            data = memoryview(task.read_buf)[: task.received]
        return TaskCompleted(
            task.itt,
            ScsiResult(
                status,
                data,
                sense,
                residual,
                underflow=bool(flags & P.F_UNDERFLOW),
                overflow=bool(flags & P.F_OVERFLOW),
            ),
        )

    def _late(self, pdu: P.PDU, final: bool) -> Event | None:
        """A PDU for a task a task management function aborted, sent by a target that was
        completing it (RFC 7143 §11.6: a target may answer for a task it could not abort):
        ignored. With its final status the target can no longer answer for that tag, which
        may then be used again; the StatSN is acknowledged like any other."""
        if final:
            self._status_seen(pdu)
            self._retired.pop(pdu.itt, None)
        return None

    def _on_scsi_response(self, pdu: P.PDU) -> Event | None:
        task = self._scsi_task(pdu)
        if task is None:
            return self._late(pdu, True)
        self._status_seen(pdu)
        response = pdu.bhs[2]
        if response != 0:
            del self._tasks[task.itt]
            return TaskFailed(task.itt, f"target failure (iSCSI response 0x{response:02x})")
        sense = b""
        if len(pdu.data) >= 2:
            slen = P.u16(pdu.data, 0)
            sense = bytes(pdu.data[2 : 2 + slen])
        return self._complete(task, pdu.bhs[3], sense, pdu.field32(44), pdu.flags)

    def _on_r2t(self, pdu: P.PDU) -> Event | None:
        task = self._scsi_task(pdu)
        if task is None:
            return self._late(pdu, False)  # no data for an aborted write
        if task.write is None:
            raise RemoteProtocolError(f"R2T for a task that is not a write (0x{task.itt:08x})")
        offset, length = pdu.field32(40), pdu.field32(44)
        if offset + length > len(task.write) or length == 0:
            raise RemoteProtocolError(
                f"R2T asks for {length} bytes at offset {offset} of a {len(task.write)}-byte write"
            )
        if length > self.params.max_burst_length:
            raise RemoteProtocolError(
                f"R2T asks for {length} bytes, above MaxBurstLength {self.params.max_burst_length}"
            )
        self._send_data_out(task, offset, length, pdu.ttt)
        return None

    def _on_nop_in(self, pdu: P.PDU) -> Event | None:
        if pdu.itt == P.NO_TAG:
            if pdu.ttt != P.NO_TAG:  # target ping: echo TTT and LUN, ITT reserved, I=1
                bhs = P.new_bhs(P.Op.NOP_OUT, P.F_FINAL, immediate=True)
                bhs[8:16] = pdu.lun_bytes
                P.put32(bhs, 16, P.NO_TAG)
                P.put32(bhs, 20, pdu.ttt)
                self._emit_immediate(bhs)
                self.pings_answered += 1
            return None
        task = self._task(pdu, Kind.NOP)
        self._status_seen(pdu)
        del self._tasks[task.itt]
        return NopReply(task.itt, bytes(pdu.data))

    def _on_text(self, pdu: P.PDU) -> Event | None:
        task = self._task(pdu, Kind.TEXT)
        self._status_seen(pdu)
        task.text += pdu.data
        if len(task.text) > 16 * 1024 * 1024:
            raise RemoteProtocolError("Text Response data exceeds 16 MiB")
        if pdu.flags & P.F_FINAL:
            if pdu.flags & P.F_CONTINUE:
                raise RemoteProtocolError("Text Response with both F and C bits set")
            del self._tasks[task.itt]
            return TextReply(task.itt, decode_pairs(task.text, "Text Response"))
        if pdu.ttt == P.NO_TAG:
            raise RemoteProtocolError("non-final Text Response without a Target Transfer Tag")
        self._send_text(task, b"", pdu.ttt)  # ask for the next part (tgt may split a pair)
        return None

    def _on_tmf(self, pdu: P.PDU) -> Event | None:
        task = self._task(pdu, Kind.TMF)
        self._status_seen(pdu)
        del self._tasks[task.itt]
        response = pdu.bhs[2]
        aborted: list[_ScsiTask] = []
        if response == 0 and task.function == TMF_ABORT_TASK:
            ref = self._tasks.get(task.ref_itt)
            if type(ref) is _ScsiTask:
                aborted.append(ref)
        elif response == 0 and task.function == TMF_LUN_RESET:
            lun = task.lun
            aborted = [t for t in self._tasks.values() if type(t) is _ScsiTask and t.lun == lun]
        for t in aborted:  # each fails now, ahead of the TMF's own reply
            del self._tasks[t.itt]
            if t.sent:  # the target knew it: it may still answer for it
                self._retired[t.itt] = None
            self._events.append(TaskFailed(t.itt, f"aborted by {TMF_NAMES[task.function]}"))
        while len(self._retired) > _RETIRED_MAX:
            del self._retired[next(iter(self._retired))]
        return TmfReply(task.itt, response)

    def _on_logout(self, pdu: P.PDU) -> Event | None:
        task = self._task(pdu, Kind.LOGOUT)
        self._status_seen(pdu)
        del self._tasks[task.itt]
        self.state = State.LOGGED_OUT
        return LogoutReply(task.itt, pdu.bhs[2], P.u16(pdu.bhs, 40), P.u16(pdu.bhs, 42))

    def _on_async(self, pdu: P.PDU) -> Event | None:
        self._status_seen(pdu)
        b = pdu.bhs
        sense = b""
        if b[36] == 0 and len(pdu.data) >= 2:
            sense = bytes(pdu.data[2 : 2 + P.u16(pdu.data, 0)])
        return AsyncEvent(b[36], (P.u16(b, 38), P.u16(b, 40), P.u16(b, 42)), sense)

    def _on_reject(self, pdu: P.PDU) -> Event | None:
        self._status_seen(pdu)
        reason = pdu.bhs[2]
        text = REJECT_REASONS.get(reason, f"reason 0x{reason:02x}")
        if len(pdu.data) < P.BHS_LEN:
            raise RemoteProtocolError(f"target sent a Reject ({text}) without the rejected header")
        itt = P.u32(pdu.data, 16)
        task = self._tasks.pop(itt, None)
        if task is None:
            raise RemoteProtocolError(f"target rejected a PDU: {text}")
        return TaskFailed(itt, f"target rejected the request: {text}")


# Data-In is not here: _dispatch hands it to _data_in with the fields it already unpacked.
_HANDLERS: dict[int, Callable[[Connection, P.PDU], Event | None]] = {
    P.Op.SCSI_RSP: Connection._on_scsi_response,
    P.Op.R2T: Connection._on_r2t,
    P.Op.NOP_IN: Connection._on_nop_in,
    P.Op.TEXT_RSP: Connection._on_text,
    P.Op.TMF_RSP: Connection._on_tmf,
    P.Op.LOGOUT_RSP: Connection._on_logout,
    P.Op.ASYNC: Connection._on_async,
    P.Op.REJECT: Connection._on_reject,
}
