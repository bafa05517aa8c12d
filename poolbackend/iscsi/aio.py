"""asyncio adapter over the sans-IO session core (:mod:`.core`): sockets, futures, one timer.

The policy is the core's: every wait is bounded and fails with a one-line
:class:`ISCSITimeout` naming the portal, what we waited for and the setting
(``SessionOptions.timeout_hint``). Connect and login are bounded by
``SessionOptions.timeout``; commands by liveness (:mod:`.liveness`): a target that keeps
sending or answers a NOP-Out ping is alive however long its queue, a silent one fails
``timeout`` after its last sign of life, and one command is capped at
:func:`~.liveness.command_cap`. After a lost connection the session logs in again with the
same ISID (the target reinstates, not leaks, the old session), re-drives outstanding
commands and drains the unit attention that follows. Here: the socket, one future per
request and one ``call_at(core.get_timer())``.

About 770 lines: the socket side (:class:`_Wire`), the adapter to the core and the command
helpers every caller uses (INQUIRY, READ CAPACITY, READ/WRITE, SendTargets, task
management) are one :class:`Session` that all of them share (``submit``, ``result_of``);
the command helpers are the part that could move out if it grows.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
from collections import deque
from collections.abc import Callable
from typing import TypeVar

from poolbackend.iscsi import pdu as P
from poolbackend.iscsi.connection import Connection
from poolbackend.iscsi.core import (
    Close,
    Connect,
    Done,
    Down,
    Failed,
    Ready,
    SessionCore,
    describe,
)
from poolbackend.iscsi.digest import Buffer
from poolbackend.iscsi.errors import (
    BadTargetData,
    CommandFailed,
    ConnectionFailed,
    ISCSIError,
    RemoteProtocolError,
)
from poolbackend.iscsi.events import (
    AsyncEvent,
    Event,
    LogoutReply,
    NopReply,
    ScsiResult,
    TaskCompleted,
    TaskFailed,
    TextReply,
    TmfReply,
)
from poolbackend.iscsi.login import SessionParams
from poolbackend.iscsi.options import SessionOptions, default_initiator_name
from poolbackend.iscsi.portal import Credentials, Portal
from poolbackend.scsi import cdb as C
from poolbackend.scsi.capacity import (
    ReadCapacity16,
    parse_read_capacity10,
    parse_read_capacity16,
)
from poolbackend.scsi.errors import ScsiParseError
from poolbackend.scsi.inquiry import StandardInquiry, parse_standard_inquiry
from poolbackend.scsi.lun import LunRef
from poolbackend.scsi.reportluns import ReportLuns, parse_report_luns
from poolbackend.scsi.sense import SenseData, SenseKey, is_unit_attention, parse_sense
from poolbackend.scsi.status import ScsiStatus, status_name
from poolbackend.text import printable

T = TypeVar("T")
# the CDBs of a LUN's identification, the same for every LUN: built once
_INQUIRY = C.inquiry(alloc=255)
_READ_CAPACITY16 = C.read_capacity16()
_READ_CAPACITY10 = C.read_capacity10()
_TUR = C.tur()
# statuses as plain ints for result_of, which runs per command (an IntEnum member lookup
# costs ~0.3 µs on Python 3.11)
_GOOD = int(ScsiStatus.GOOD)
_CHECK_CONDITION = int(ScsiStatus.CHECK_CONDITION)
_CONDITION_MET = int(ScsiStatus.CONDITION_MET)


async def _connect(host: str, port: int) -> socket.socket:
    """A connected non-blocking TCP socket (every resolved address is tried in turn)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except UnicodeError:  # the IDNA codec refuses control and format characters
        raise OSError(f"invalid host name '{printable(host)}'") from None
    error: OSError = OSError(f"no address for {printable(host)}")
    for family, kind, proto, _, addr in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, addr)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    raise error


class CheckCondition(CommandFailed):
    """CHECK CONDITION with parsed sense data."""

    def __init__(self, message: str, sense_data: SenseData | None, sense: bytes) -> None:
        super().__init__(message, ScsiStatus.CHECK_CONDITION, sense)
        self.sense_data = sense_data


def _sense_describe(sense: SenseData | None) -> str:
    return sense.describe() if sense is not None else "no sense data"


class _Wire:
    """Non-blocking socket I/O for one connection, straight on the event loop's selector.

    Receives go into the buffers the sans-IO core hands out (Data-In payloads land in the
    reading task's buffer: no user-space copy), and sends gather the core's buffer lists
    with ``sendmsg`` (large data segments are never joined or copied). Queued send buffers
    reference the caller's data, which stays untouched until its command completes anyway.
    The wire only moves bytes: it tells the session what arrived, that the peer took queued
    bytes (a sign of life) and that the connection ended.
    """

    IOV_MAX = 1024
    HIGH_WATER = 4 << 20

    def __init__(self, sock: socket.socket, session: Session, conn: Connection) -> None:
        self.sock = sock
        self.session = session
        self.core = session.core
        self.conn = conn  # the core's connection this socket carries
        self._loop = asyncio.get_running_loop()
        self._fd = sock.fileno()
        self._out: deque[Buffer] = deque()
        self.pending = 0  # queued bytes not yet accepted by the kernel
        self._drained: asyncio.Future[None] | None = None
        self._closed = False
        self._reading = True
        self._writing = False
        self._loop.add_reader(self._fd, self._readable)

    # -- receive -------------------------------------------------------------------------
    def _readable(self) -> None:
        core, sock, conn = self.core, self.sock, self.conn
        loop = self._loop
        try:
            for _ in range(64):  # bounded, so other callbacks (new commands) get their turn
                if core.conn is not conn:
                    break  # the core dropped this connection while we read
                bufs = core.recv_buffers()
                try:
                    if len(bufs) == 1:
                        want = len(bufs[0])
                        n = sock.recv_into(bufs[0])
                    else:
                        want = len(bufs[0]) + len(bufs[1])
                        n = sock.recvmsg_into(bufs)[0]
                except (BlockingIOError, InterruptedError):
                    break
                if n == 0:
                    self._stop_reading()
                    self.session._wire_lost(self, None)
                    return
                core.recv_done(n, loop.time())
                if n < want or core.has_events:
                    break
        except OSError as exc:
            self._stop_reading()
            self.session._wire_lost(self, exc)
            return
        self.session._pump()

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._fd)

    # -- send ----------------------------------------------------------------------------
    def write(self, bufs: list[Buffer]) -> None:
        if self._closed:
            return
        self._out.extend(bufs)
        self.pending += sum(map(len, bufs))
        self.flush()

    def flush(self) -> None:
        out = self._out
        while out and not self._closed:
            if len(out) == 1:
                batch = [out[0]]
            else:
                batch = list(itertools.islice(out, self.IOV_MAX))
            want = sum(map(len, batch))
            try:
                n = self.sock.sendmsg(batch) if len(batch) > 1 else self.sock.send(batch[0])
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError as exc:
                self._stop_reading()
                self.close()
                self.session._wire_lost(self, exc)
                return
            self.pending -= n
            left = n
            while out:  # drop what was sent (empty buffers included), trim a partial one
                size = len(out[0])
                if left >= size:
                    left -= size
                    out.popleft()
                else:
                    if left:
                        out[0] = memoryview(out[0])[left:]
                    break
            if n < want:
                break  # the socket buffer is full: continue when writable
        if self._closed:
            return
        if out:
            if not self._writing:
                self._writing = True
                self._loop.add_writer(self._fd, self._writable)
        elif self._writing:
            self._writing = False
            self._loop.remove_writer(self._fd)
        if self._drained is not None and self.pending <= self.HIGH_WATER // 4:
            if not self._drained.done():
                self._drained.set_result(None)
            self._drained = None

    def _writable(self) -> None:
        """The peer took some of what we queued: it is alive (e.g. reading a long write)."""
        before = self.pending
        self.flush()
        if self.pending < before and self.core.conn is self.conn:
            self.core.peer_read(self._loop.time())

    async def drain(self) -> None:
        if self.pending <= self.HIGH_WATER or self._closed:
            return
        if self._drained is None:
            self._drained = self._loop.create_future()
        await asyncio.shield(self._drained)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop_reading()
        if self._writing:
            self._writing = False
            self._loop.remove_writer(self._fd)
        self._out.clear()
        self.pending = 0
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)  # the waiter's command fails as connection lost
        self._drained = None
        self.sock.close()


class Session:
    """A logged-in iSCSI session (normal or discovery) on an asyncio event loop.

    All session policy (login, redirects, reconnect and re-drive, unit attentions, liveness
    and caps) is the sans-IO :class:`~.core.SessionCore`'s; this adapter moves bytes between
    it and a socket, opens and closes sockets when it asks, resolves one future per request
    and keeps one timer armed at ``core.get_timer()``.
    """

    def __init__(
        self,
        portal: Portal,
        target: str | None,
        options: SessionOptions | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        self.core = SessionCore(portal, target, options, credentials)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wire: _Wire | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._futures: dict[int, asyncio.Future[Event]] = {}
        self._callbacks: dict[int, Callable[[int, Event | ISCSIError], None]] = {}
        self._ready: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._pump_scheduled = False
        self._closed = False

    # -- the core's state, as before -------------------------------------------------------
    @property
    def options(self) -> SessionOptions:
        return self.core.options

    @property
    def credentials(self) -> Credentials | None:
        return self.core.credentials

    @property
    def portal(self) -> Portal:
        return self.core.portal

    @property
    def target(self) -> str | None:
        return self.core.target

    @property
    def isid(self) -> bytes:
        return self.core.isid

    @property
    def params(self) -> SessionParams:
        return self.core.params

    @property
    def reconnects(self) -> int:
        return self.core.reconnects

    @property
    def async_events(self) -> list[AsyncEvent]:
        return self.core.async_events

    @property
    def _conn(self) -> Connection | None:
        return self.core.conn

    @property
    def what(self) -> str:
        return self.core.what

    # -- construction --------------------------------------------------------------------
    @classmethod
    async def open(
        cls,
        portal: Portal,
        target: str | None,
        options: SessionOptions | None = None,
        credentials: Credentials | None = None,
    ) -> Session:
        """Connect and log in; ``target=None`` opens a discovery session."""
        session = cls(portal, target, options, credentials)
        await session._establish()
        return session

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _establish(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        self.core.open(loop.time())
        self._pump()
        try:
            await self._ready
        except BaseException:
            self._teardown()
            raise

    async def _open_tcp(self, portal: Portal) -> socket.socket:
        """A socket to ``portal``; unbounded here: the core's timer bounds the connect (its
        :class:`Down` cancels this task with the 'TCP connect did not complete' line)."""
        try:
            sock = await _connect(portal.host, portal.port)
        except socket.gaierror as exc:
            raise ConnectionFailed(
                f"portal {printable(str(portal))}: cannot resolve host "
                f"'{printable(portal.host)}': {exc.strerror}"
            ) from None
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc) or type(exc).__name__
            raise ConnectionFailed(
                f"portal {printable(str(portal))}: cannot connect: {printable(reason)}"
            ) from None
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    async def _connect_to(self, portal: Portal) -> None:
        """What a :class:`Connect` asks: a socket to ``portal``, then the core logs in."""
        core = self.core
        try:
            sock = await self._open_tcp(portal)
        except ISCSIError as exc:
            if self._connecting is asyncio.current_task():
                self._connecting = None
                core.connect_failed(self._now(), exc)
                self._pump()
            return
        if self._connecting is not asyncio.current_task():
            sock.close()  # no longer wanted (closed, or the core gave up meanwhile)
            return
        self._connecting = None
        core.connection_made(self._now())
        assert core.conn is not None
        self._wire = _Wire(sock, self, core.conn)
        self._pump()

    # -- the one place events are handled ---------------------------------------------------
    def _pump(self) -> None:
        """Act on the core's events, send its bytes, keep the one timer armed."""
        self._pump_scheduled = False
        core = self.core
        resolve = self._resolve
        for ev in core.events():
            kind = type(ev)
            if kind is Done:
                assert isinstance(ev, Done)
                resolve(ev.rid, ev.event)
            elif kind is Failed:
                assert isinstance(ev, Failed)
                resolve(ev.rid, ev.error)
            elif kind is Connect:
                assert isinstance(ev, Connect)
                self._close_wire()
                self._connecting = asyncio.ensure_future(self._connect_to(ev.portal))
            elif kind is Close:
                self._close_wire()
            elif kind is Ready:
                if self._ready is not None and not self._ready.done():
                    self._ready.set_result(None)
            elif kind is Down:
                assert isinstance(ev, Down)
                self._close_wire()
                if self._ready is not None and not self._ready.done():
                    self._ready.set_exception(ev.error)
        wire = self._wire
        if wire is not None:
            out = core.data_to_send()
            if out:
                wire.write(out)
        due = core.get_timer()
        if due is not None and (self._timer_at is None or due < self._timer_at):
            loop = self._loop or asyncio.get_running_loop()
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = due
            self._timer = loop.call_at(due, self._on_timer)

    def _resolve(self, rid: int, outcome: Event | ISCSIError) -> None:
        """Request ``rid`` ended: its future gets the event or the error, else its callback."""
        fut = self._futures.pop(rid, None)
        if fut is not None:
            if not fut.done():
                if isinstance(outcome, ISCSIError):
                    fut.set_exception(outcome)
                else:
                    fut.set_result(outcome)
        else:
            callback = self._callbacks.pop(rid, None)
            if callback is not None:
                callback(rid, outcome)

    def _pump_soon(self) -> None:
        """Pump once this loop iteration's callbacks have run: all the requests submitted
        in one iteration leave in one ``sendmsg``."""
        if not self._pump_scheduled:
            self._pump_scheduled = True
            (self._loop or asyncio.get_running_loop()).call_soon(self._pump)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.core.handle_timer(self._now())
        self._pump()

    def _wire_lost(self, wire: _Wire, exc: BaseException | None) -> None:
        """The socket of ``wire`` ended: EOF (None) or an OS error."""
        wire.close()
        if self._wire is wire:
            self._wire = None
        if self.core.conn is wire.conn:
            self.core.connection_lost(self._now(), exc)
        self._pump()

    def _close_wire(self) -> None:
        wire, self._wire = self._wire, None
        if wire is not None:
            wire.close()
        task, self._connecting = self._connecting, None
        if task is not None:
            task.cancel()

    def _teardown(self) -> None:
        self._closed = True
        self._close_wire()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_at = None
        self.core.close()
        self._pump_scheduled = True  # nothing more to send
        for ev in self.core.events():
            if isinstance(ev, Failed):
                self._resolve(ev.rid, ev.error)

    # -- requests ----------------------------------------------------------------------
    def _waiter(self, rid: int, urgent: bool) -> asyncio.Future[Event]:
        loop = self._loop or asyncio.get_running_loop()
        fut: asyncio.Future[Event] = loop.create_future()
        self._futures[rid] = fut
        self._send_now_or_soon(urgent)
        return fut

    def _send_now_or_soon(self, urgent: bool) -> None:
        """A lone (or urgent) request leaves at once; the requests submitted together in one
        loop iteration leave in one ``sendmsg`` (:meth:`_pump_soon`)."""
        if urgent or len(self._futures) + len(self._callbacks) == 1:
            self._pump()
        else:
            self._pump_soon()

    def _now(self) -> float:
        return (self._loop or asyncio.get_running_loop()).time()

    def submit(
        self,
        lun: LunRef,
        cdb: bytes,
        callback: Callable[[int, Event | ISCSIError], None],
        *,
        read_len: int = 0,
        read_into: bytearray | memoryview | None = None,
        timeout: float | None = None,
    ) -> int:
        """Start one SCSI command without a coroutine: ``callback(rid, outcome)`` gets its answer (a
        TaskCompleted or TaskFailed) or the error that ended it, from the event loop.

        The cheapest way to keep many reads in flight (``iscsi-perf``): no future and no
        task per command. Unit attentions are drained, reconnects re-drive it, the
        liveness rule bounds it, as for :meth:`execute`; other statuses are the caller's.
        """
        loop = self._loop or asyncio.get_running_loop()
        rid = self.core.submit_scsi(
            lun, cdb, loop.time(), read_len=read_len, read_into=read_into, timeout=timeout
        )
        callbacks = self._callbacks
        callbacks[rid] = callback
        if len(callbacks) + len(self._futures) == 1:  # _send_now_or_soon, inlined
            self._pump()
        elif not self._pump_scheduled:
            self._pump_scheduled = True
            loop.call_soon(self._pump)
        return rid

    async def execute(
        self,
        lun: LunRef,
        cdb: bytes,
        *,
        read_len: int = 0,
        write_data: Buffer | None = None,
        read_into: bytearray | memoryview | None = None,
        timeout: float | None = None,
        check: bool = True,
    ) -> ScsiResult:
        """Run one SCSI command; unit attentions are retried, CHECK CONDITION raises."""
        rid = self.core.submit_scsi(
            lun,
            cdb,
            self._now(),
            read_len=read_len,
            write_data=write_data,
            read_into=read_into,
            timeout=timeout,
        )
        urgent = write_data is not None
        fut = self._waiter(rid, urgent)
        if urgent:
            wire = self._wire
            if wire is not None and wire.pending > wire.HIGH_WATER:
                await wire.drain()  # a dead peer is found by the timer, which closes the wire
        return self.result_of(lun, cdb, await fut, check)

    def result_of(
        self, lun: LunRef, cdb: bytes, outcome: Event | ISCSIError, check: bool = True
    ) -> ScsiResult:
        """What :meth:`execute` returns or raises for a command's outcome: for :meth:`submit`
        callers, which get the outcome in their callback."""
        if isinstance(outcome, ISCSIError):
            raise outcome
        if isinstance(outcome, TaskFailed):
            raise CommandFailed(f"{self.what}: {describe(lun, cdb)} failed: {outcome.reason}")
        assert isinstance(outcome, TaskCompleted)
        result = outcome.result
        status = result.status
        if status == _GOOD:
            return result
        if status == _CHECK_CONDITION:
            sense = parse_sense(result.sense)
            if is_unit_attention(sense):  # the core drained all it may
                raise CommandFailed(
                    f"{self.what}: {describe(lun, cdb)}: still UNIT ATTENTION after "
                    f"{self.options.ua_retries} retries"
                )
            if not check:
                return result
            raise CheckCondition(
                f"{self.what}: {describe(lun, cdb)} failed: {_sense_describe(sense)}",
                sense,
                result.sense,
            )
        if status != _CONDITION_MET and check:
            raise CommandFailed(
                f"{self.what}: {describe(lun, cdb)} failed with SCSI status {status_name(status)}",
                status,
            )
        return result

    async def test_unit_ready(self, lun: LunRef) -> None:
        await self.execute(lun, _TUR)

    def parsed(self, lun: LunRef, parse: Callable[[bytes], T], data: Buffer) -> T:
        """``parse(data)``; short or impossible data fails this command (with the LUN named)."""
        try:
            return parse(bytes(data))
        except ScsiParseError as exc:
            raise BadTargetData(f"{self.what}: LUN {lun}: {exc}") from None

    async def inquiry(self, lun: LunRef) -> StandardInquiry:
        r = await self.execute(lun, _INQUIRY, read_len=255)
        return self.inquiry_data(lun, r)

    def inquiry_data(self, lun: LunRef, r: ScsiResult) -> StandardInquiry:
        """The standard INQUIRY data in ``r`` (the answer to ``C.inquiry(alloc=255)``)."""
        return self.parsed(lun, parse_standard_inquiry, r.data)

    async def vpd(self, lun: LunRef, page: int, alloc: int = 4096) -> bytes:
        r = await self.execute(lun, C.inquiry(evpd=True, page=page, alloc=alloc), read_len=alloc)
        return bytes(r.data)

    async def report_luns(self) -> list[int]:
        """The numbers of the usable LUNs (see :meth:`report_luns_data`)."""
        return list((await self.report_luns_data()).luns)

    async def report_luns_data(self) -> ReportLuns:
        """All LUN entries as reported, re-asking with a larger allocation when the list did
        not fit; entries that cannot be used are in ``refused``. A list cut off inside what
        was asked for, or with an impossible length, fails with one line."""
        alloc = 4096
        for _ in range(4):
            r = await self.execute(0, C.report_luns(alloc=alloc), read_len=alloc)
            parsed = self.parsed(0, parse_report_luns, r.data)
            if parsed.full_length <= alloc:
                if len(r.data) < parsed.full_length:
                    raise BadTargetData(
                        f"{self.what}: REPORT LUNS data cut off: the list is "
                        f"{parsed.full_length} bytes, the target sent {len(r.data)}"
                    )
                return parsed
            alloc = parsed.full_length
        raise RemoteProtocolError(f"{self.what}: REPORT LUNS list keeps growing")

    async def read_capacity16(self, lun: LunRef) -> ReadCapacity16 | None:
        """READ CAPACITY(16), or None when the LUN rejects it as ILLEGAL REQUEST."""
        try:
            r = await self.execute(lun, _READ_CAPACITY16, read_len=32)
        except CheckCondition as exc:
            return self._rc16_refused(exc)
        return self.parsed(lun, parse_read_capacity16, r.data)

    def read_capacity16_of(self, lun: LunRef, outcome: Event | ISCSIError) -> ReadCapacity16 | None:
        """:meth:`read_capacity16` for the outcome of ``C.read_capacity16()`` sent by
        :meth:`submit`."""
        try:
            r = self.result_of(lun, _READ_CAPACITY16, outcome)
        except CheckCondition as exc:
            return self._rc16_refused(exc)
        return self.parsed(lun, parse_read_capacity16, r.data)

    @staticmethod
    def _rc16_refused(exc: CheckCondition) -> None:
        if exc.sense_data is None or exc.sense_data.key != SenseKey.ILLEGAL_REQUEST:
            raise exc
        return None

    async def read_capacity10(self, lun: LunRef) -> tuple[int, int]:
        """(block count, block length) from READ CAPACITY(10)."""
        r = await self.execute(lun, _READ_CAPACITY10, read_len=8)
        return self.read_capacity10_data(lun, r)

    def read_capacity10_data(self, lun: LunRef, r: ScsiResult) -> tuple[int, int]:
        """(block count, block length) from the answer to ``C.read_capacity10()``."""
        rc10 = self.parsed(lun, parse_read_capacity10, r.data)
        if rc10.needs_16:
            raise CommandFailed(
                f"{self.what}: LUN {lun} is too large for READ CAPACITY(10) and rejects (16)"
            )
        return rc10.block_count, rc10.block_length

    async def read_capacity(self, lun: LunRef) -> tuple[int, int]:
        """(block count, block length): READ CAPACITY(16), falling back to (10) if unsupported."""
        rc16 = await self.read_capacity16(lun)
        if rc16 is None:
            return await self.read_capacity10(lun)
        return rc16.block_count, rc16.block_length

    async def read(
        self,
        lun: LunRef,
        lba: int,
        blocks: int,
        block_size: int,
        into: bytearray | memoryview | None = None,
    ) -> bytes | bytearray | memoryview:
        n = blocks * block_size
        r = await self.execute(lun, C.read16(lba, blocks), read_len=n, read_into=into)
        if r.underflow or len(r.data) != n:
            raise CommandFailed(
                f"{self.what}: READ(16) on LUN {lun} returned {len(r.data)} of {n} bytes"
            )
        return r.data

    async def write(self, lun: LunRef, lba: int, data: Buffer, block_size: int) -> None:
        n = len(data)
        if n % block_size:
            raise ValueError(f"write of {n} bytes is not a multiple of the {block_size}-byte block")
        await self.execute(lun, C.write16(lba, n // block_size), write_data=data)

    # -- other requests ----------------------------------------------------------------
    async def send_targets(self, value: str = "All") -> list[tuple[str, list[str]]]:
        """SendTargets: [(target name, [addresses])]; split replies are reassembled."""
        rid = self.core.submit_text([("SendTargets", value)], self._now())
        event = await self._waiter(rid, True)
        if isinstance(event, TaskFailed):
            raise CommandFailed(f"{self.what}: SendTargets failed: {event.reason}")
        assert isinstance(event, TextReply)
        targets: list[tuple[str, list[str]]] = []
        for key, val in event.pairs:
            if key == "TargetName":
                targets.append((val, []))
            elif key == "TargetAddress" and targets:
                targets[-1][1].append(val)
        return targets

    async def ping(self, data: bytes = b"") -> bytes:
        event = await self._waiter(self.core.submit_nop(self._now(), data), True)
        assert isinstance(event, NopReply)
        return event.data

    async def task_management(self, function: int, lun: LunRef = 0, ref_itt: int = P.NO_TAG) -> int:
        rid = self.core.submit_tmf(function, lun, self._now(), ref_itt=ref_itt)
        event = await self._waiter(rid, True)
        assert isinstance(event, TmfReply)
        return event.response

    async def logout(self) -> None:
        """Log out cleanly (bounded); the connection is closed afterwards in any case."""
        if self._closed:
            return
        self._closed = True
        try:
            rid = self.core.logout(self._now())
            if rid is not None:
                with contextlib.suppress(ISCSIError):
                    event = await self._waiter(rid, True)
                    assert isinstance(event, LogoutReply)
        finally:
            self._teardown()

    async def close(self) -> None:
        await self.logout()


__all__ = [
    "CheckCondition",
    "Credentials",
    "Portal",
    "Session",
    "SessionOptions",
    "default_initiator_name",
]
