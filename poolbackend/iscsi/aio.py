"""asyncio adapter over the sans-IO core: sockets, timeouts, pipelining, reconnect.

Every wait is bounded and fails with a one-line :class:`ISCSITimeout` naming the portal,
what we waited for and the setting (``SessionOptions.timeout_hint``). Connect and login are
bounded by ``SessionOptions.timeout``; commands by liveness (:mod:`.liveness`): a target
that keeps sending or answers a NOP-Out ping is alive however long its queue, a silent one
fails ``timeout`` after its last sign of life, and one command is capped at
:func:`~.liveness.command_cap`. One timer per session, not one per command. After a lost connection
the session logs in again with the same ISID (the target reinstates, not leaks, the old
session), re-drives outstanding commands and drains the unit attention that follows.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import secrets
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TypeVar

from poolbackend.iscsi import pdu as P
from poolbackend.iscsi.chap import ChapInitiator
from poolbackend.iscsi.connection import Connection, State
from poolbackend.iscsi.core import SessionOptions, default_initiator_name
from poolbackend.iscsi.digest import Buffer
from poolbackend.iscsi.errors import (
    BadTargetData,
    CommandFailed,
    ConnectionFailed,
    ISCSIError,
    ISCSITimeout,
    LoginFailed,
    RemoteProtocolError,
)
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
from poolbackend.iscsi.liveness import Action, Liveness, command_cap
from poolbackend.iscsi.login import LoginConfig, SessionParams
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
from poolbackend.scsi.sense import SenseData, parse_sense
from poolbackend.scsi.status import ScsiStatus, status_name
from poolbackend.text import printable

T = TypeVar("T")
#: what we wait for, for messages, built only when one is needed: a text, a callable, or
#: (LUN, CDB) of a SCSI command (no per-command closure on the hot path)
What = str | Callable[[], str] | tuple[LunRef, bytes]
MAX_REDIRECTS = 5


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


class _ConnectionLost(Exception):
    """Internal: the TCP connection died while a request was outstanding."""


class _Expired(Exception):
    """Internal: a request is given up; ``message(what)`` says why."""

    def __init__(self, message: Callable[[str], str]) -> None:
        super().__init__()
        self.message = message


def _describe(what: What) -> str:
    if isinstance(what, str):
        return what
    if isinstance(what, tuple):
        return f"{C.cdb_name(what[1])} on LUN {what[0]}"
    return what()


def _sense_describe(sense: SenseData | None) -> str:
    return sense.describe() if sense is not None else "no sense data"


class _Wire:
    """Non-blocking socket I/O for one connection, straight on the event loop's selector.

    Receives go into the buffers the sans-IO core hands out (Data-In payloads land in the
    reading task's buffer: no user-space copy), and sends gather the core's buffer lists
    with ``sendmsg`` (large data segments are never joined or copied). Queued send buffers
    reference the caller's data, which stays untouched until its command completes anyway.
    """

    IOV_MAX = 1024
    HIGH_WATER = 4 << 20

    def __init__(
        self,
        sock: socket.socket,
        conn: Connection,
        deliver: Callable[[list[Event]], None],
        lost: Callable[[BaseException | None], None],
    ) -> None:
        self.sock = sock
        self.conn = conn
        self._deliver = deliver
        self._lost = lost
        self._loop = asyncio.get_running_loop()
        self._fd = sock.fileno()
        self._out: deque[Buffer] = deque()
        self.pending = 0  # queued bytes not yet accepted by the kernel
        self._drained: asyncio.Future[None] | None = None
        self._closed = False
        self._reading = True
        self._writing = False
        #: loop time of the last sign of life: bytes received, or queued bytes the peer took
        self.last_progress = self._loop.time()
        self._loop.add_reader(self._fd, self._readable)

    # -- receive -------------------------------------------------------------------------
    def _readable(self) -> None:
        conn, sock = self.conn, self.sock
        try:
            for _ in range(64):  # bounded, so other callbacks (new commands) get their turn
                bufs = conn.recv_buffers()
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
                    self._lost(None)
                    return
                self.last_progress = self._loop.time()
                events = conn.recv_done(n)
                if events:
                    self._deliver(events)
                    break
                if n < want:
                    break
        except (ISCSIError, OSError) as exc:
            self._stop_reading()
            self._lost(exc)
            return
        out = conn.data_to_send()  # login steps, NOP-Out answers, Data-Out for R2Ts
        if out:
            self.write(out)

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
                self._lost(exc)
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
        if self.pending < before:
            self.last_progress = self._loop.time()

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
    """A logged-in iSCSI session (normal or discovery) on an asyncio event loop."""

    def __init__(
        self,
        portal: Portal,
        target: str | None,
        options: SessionOptions | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        self.portal = portal
        self.target = target
        self.options = options or SessionOptions()
        self.credentials = credentials
        # Random-format ISID (top bits 10), fixed for the session's life so that a
        # reconnect reinstates the old session on the target instead of leaking it.
        self.isid = self.options.isid or bytes([0x80]) + secrets.token_bytes(5)
        self.params = SessionParams()
        #: reconnects over the session's whole life (statistics)
        self.reconnects = 0
        #: reconnects since a command last completed; at most ``options.max_reconnects``
        self._reconnects_without_progress = 0
        self._conn: Connection | None = None
        self._wire: _Wire | None = None
        self._nop_task: asyncio.Task[None] | None = None
        self._futures: dict[int, asyncio.Future[Event]] = {}
        #: per request: (loop time when its cap runs out, the cap) -- checked by the one timer
        self._caps: dict[int, tuple[float, float]] = {}
        self._liveness: Liveness | None = None
        self._ping_itt: int | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._login_future: asyncio.Future[Event] | None = None
        self._reconnect_lock = asyncio.Lock()
        self._generation = 0
        #: (generation, message) of a failed reconnect: at ERL 0 the session is then dead,
        #: and every command that was waiting on it fails at once with the same cause
        self._reconnect_failed: tuple[int, str] | None = None
        self._closed = False
        self._last_error: BaseException | None = None
        self.async_events: list[AsyncEvent] = []
        self._send_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._default_cap = command_cap(self.options.timeout)

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

    @property
    def what(self) -> str:
        where = f"portal {printable(str(self.portal))}"
        return where + (f" target {printable(self.target)}" if self.target else "")

    def _within(self, limit: float) -> str:
        """``within N s``, naming the setting that controls it when we know it."""
        hint = self.options.timeout_hint
        return f"within {limit:g} s" + (f" ({hint})" if hint else "")

    async def _bounded(self, aw: Awaitable[T], what: What, timeout: float | None = None) -> T:
        limit = self.options.timeout if timeout is None else timeout
        try:
            return await asyncio.wait_for(aw, limit)
        except TimeoutError:
            text = _describe(what)
            raise ISCSITimeout(f"{self.what}: no answer to {text} {self._within(limit)}") from None

    async def _establish(self) -> None:
        portal = self.portal
        for _ in range(MAX_REDIRECTS + 1):
            redirect = await self._login_once(portal)
            if redirect is None:
                return
            try:
                portal = Portal.parse(redirect.address)
            except ValueError as exc:
                raise RemoteProtocolError(
                    f"{self.what}: target redirected to an invalid address {redirect.address!r}"
                ) from exc
            if redirect.permanent:
                self.portal = portal
        raise LoginFailed(f"{self.what}: more than {MAX_REDIRECTS} login redirections", 1, 0)

    async def _open_tcp(self, portal: Portal) -> socket.socket:
        try:
            sock = await self._bounded(_connect(portal.host, portal.port), "TCP connect")
        except ISCSITimeout:
            raise ISCSITimeout(
                f"portal {printable(str(portal))}: TCP connect did not complete "
                f"{self._within(self.options.timeout)}"
            ) from None
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

    async def _login_once(self, portal: Portal) -> LoginRedirected | None:
        sock = await self._open_tcp(portal)
        chap = None
        if self.credentials is not None:
            c = self.credentials
            chap = ChapInitiator(
                c.username,
                c.secret,
                self.options.chap_algorithms,
                c.target_username,
                c.target_secret,
            )
        o = self.options
        config = LoginConfig(
            initiator_name=o.initiator_name,
            target_name=self.target,
            isid=self.isid,
            chap=chap,
            header_digest="None" if self.target is None else o.header_digest,
            data_digest="None" if self.target is None else o.data_digest,
            max_recv_data_segment_length=o.max_recv_data_segment_length,
            max_burst_length=o.max_burst_length,
            first_burst_length=o.first_burst_length,
        )
        conn = Connection(config, initial_cmd_sn=secrets.randbelow(1 << 31) + 1)
        self._loop = asyncio.get_running_loop()
        self._default_cap = command_cap(o.timeout)
        self._generation += 1
        gen = self._generation
        self._conn = conn
        self._wire = _Wire(sock, conn, self._deliver_all, lambda exc: self._lost(conn, gen, exc))
        loop = asyncio.get_running_loop()
        self._login_future = loop.create_future()
        conn.start_login()
        self._write_out()
        try:
            event = await self._bounded(asyncio.shield(self._login_future), "login")
        except BaseException:
            await self._drop()
            raise
        finally:
            self._login_future = None
        if isinstance(event, LoginRedirected):
            await self._drop()
            return event
        assert isinstance(event, LoginComplete)
        self.params = event.params
        self._liveness = Liveness(o.timeout, last_progress=loop.time())
        self._ping_itt = None
        if o.nop_interval and self._nop_task is None:
            self._nop_task = asyncio.create_task(self._keepalive(o.nop_interval))
        return None

    # -- I/O plumbing --------------------------------------------------------------------
    def _write_out(self) -> None:
        if self._conn is None or self._wire is None:
            return
        bufs = self._conn.data_to_send()
        if bufs:
            self._wire.write(bufs)

    def _deliver_all(self, events: list[Event]) -> None:
        futures = self._futures
        for event in events:
            if type(event) is TaskCompleted:  # the common case, straight to its waiter
                fut = futures.pop(event.itt, None)
                if fut is not None and not fut.done():
                    fut.set_result(event)
            else:
                self._deliver(event)

    def _lost(self, conn: Connection, gen: int, exc: BaseException | None) -> None:
        """The connection of generation ``gen`` ended: EOF (None), an error or bad data."""
        error: BaseException
        if exc is None:
            if conn.state is State.LOGGED_OUT:
                return
            error = ConnectionFailed(f"{self.what}: target closed the connection")
        elif isinstance(exc, ISCSIError):
            exc.args = (f"{self.what}: {exc}",)  # name the portal, keep the error class
            error = exc
        else:
            assert isinstance(exc, OSError)
            error = ConnectionFailed(f"{self.what}: connection lost: {exc.strerror or exc}")
        if gen == self._generation:
            self._fail_all(error)

    def _fail_all(self, error: BaseException) -> None:
        lf = self._login_future
        if lf is not None and not lf.done():
            lf.set_exception(error)
        futures, self._futures = self._futures, {}
        for fut in futures.values():
            if not fut.done():
                fut.set_exception(_ConnectionLost(str(error)))
        self._last_error = error
        if self._conn is not None and self._conn.state is State.FULL_FEATURE:
            self._conn.state = State.FAILED

    def _deliver(self, event: Event) -> None:
        if isinstance(event, NopReply) and event.itt == self._ping_itt:  # our liveness ping
            self._ping_itt = None
            if self._liveness is not None:
                self._liveness.ping_answered(asyncio.get_running_loop().time())
            return
        if isinstance(event, (LoginComplete, LoginRedirected)):
            if self._login_future is not None and not self._login_future.done():
                self._login_future.set_result(event)
            return
        if isinstance(event, AsyncEvent):
            self.async_events.append(event)
            if event.event in (1, 2, 3, 4) and self._conn is not None:
                # ERL 0: the target wants us gone; treat as a lost connection and reconnect.
                self._fail_all(
                    ConnectionFailed(
                        f"{self.what}: target requested logout (async event {event.event})"
                    )
                )
            return
        fut = self._futures.pop(event.itt, None)
        if fut is not None and not fut.done():
            fut.set_result(event)

    async def _drop(self) -> None:
        self._drop_now()

    def _drop_now(self) -> None:
        self._generation += 1
        wire, self._wire = self._wire, None
        if wire is not None:
            wire.close()

    def _send_soon(self, loop: asyncio.AbstractEventLoop) -> None:
        """Send what the core queued once this loop iteration's callbacks have run: all the
        PDUs submitted in one iteration leave in one ``sendmsg``."""
        if not self._send_scheduled:
            self._send_scheduled = True
            loop.call_soon(self._send_now)

    def _send_now(self) -> None:
        self._send_scheduled = False
        self._write_out()

    def _register(self, itt: int, timeout: float | None, urgent: bool) -> asyncio.Future[Event]:
        """A future for the answer to request ``itt``, its cap noted for the one timer.

        Unless ``urgent`` (a write, whose queued data must be counted now), a request that is
        not alone goes out with the others of this loop iteration (:meth:`_send_soon`).
        """
        loop = self._loop or asyncio.get_running_loop()
        fut: asyncio.Future[Event] = loop.create_future()
        now = loop.time()
        futures = self._futures
        if not futures and self._liveness is not None:
            self._liveness.busy(now)  # silence counts from the first command, not before
        futures[itt] = fut
        cap = self._default_cap if timeout is None else timeout
        self._caps[itt] = (now + cap, cap)
        if self._timer is None:
            self._arm(loop)
        if urgent or len(futures) == 1:
            self._write_out()
        else:
            self._send_soon(loop)
        return fut

    def _expired(self, itt: int, wire: _Wire | None, message: str) -> ISCSITimeout:
        """Request ``itt`` is given up: the error to raise, after the connection is dealt with."""
        self._futures.pop(itt, None)
        exc = ISCSITimeout(message)
        if self._wire is wire and wire is not None:
            # One command over its cap on a live target: its result can't be trusted at
            # ERL 0, so the connection goes; the others reconnect and are re-driven.
            self._drop_now()
            self._fail_all(ConnectionFailed(message))
        elif self._conn is not None:
            self._conn.state = State.FAILED
        return exc

    async def _await(
        self, itt: int, what: What, timeout: float | None, *, urgent: bool = True
    ) -> Event:
        """Wait for the answer to request ``itt``; the liveness timer bounds the wait."""
        wire = self._wire
        fut = self._register(itt, timeout, urgent)
        try:
            if wire is not None and wire.pending > wire.HIGH_WATER:
                await wire.drain()  # a dead peer is found by the timer, which closes the wire
            return await fut
        except _Expired as exc:
            raise self._expired(itt, wire, exc.message(_describe(what))) from None
        except ISCSITimeout as exc:
            raise self._expired(itt, wire, str(exc)) from None
        except (ConnectionError, OSError) as exc:
            self._futures.pop(itt, None)
            raise _ConnectionLost(str(exc)) from None
        finally:
            self._caps.pop(itt, None)

    # -- liveness: one timer per session ---------------------------------------------
    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        live = self._liveness
        if live is None or not self._futures:
            return
        due = min(live.due(), min((c[0] for c in self._caps.values()), default=live.due()))
        self._timer = loop.call_at(due, self._tick)

    def _tick(self) -> None:
        """Check the outstanding requests: ping a quiet target, give up on a dead one."""
        self._timer = None
        live = self._liveness
        if live is None or not self._futures:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._wire is not None:
            live.progress(self._wire.last_progress)
        for itt, (deadline, cap) in list(self._caps.items()):
            fut = self._futures.get(itt)
            if now >= deadline and fut is not None and not fut.done():
                fut.set_exception(_Expired(self._cap_message(cap)))
        action = live.check(now)
        if action is Action.PING:
            conn = self._conn
            live.pinged(now)
            if conn is not None and conn.state is State.FULL_FEATURE and self._ping_itt is None:
                self._ping_itt = conn.nop_ping()
                self._write_out()
        elif action is Action.DEAD:
            message = self._dead_message()
            for fut in self._futures.values():
                if not fut.done():
                    fut.set_exception(_Expired(message))
            self._drop_now()  # also ends a wait for the send buffer to drain
            if self._conn is not None:
                self._conn.state = State.FAILED
            return
        self._arm(loop)

    def _dead_message(self) -> Callable[[str], str]:
        within = self._within(self.options.timeout)
        return lambda text: f"{self.what}: no answer to {text} nor to a NOP-Out ping {within}"

    def _cap_message(self, cap: float) -> Callable[[str], str]:
        hint = self.options.timeout_hint
        why = "3 x the timeout, at least 30 s" + (f"; {hint}" if hint else "")
        return lambda text: (
            f"{self.what}: no answer to {text} within {cap:g} s, the limit for one command "
            f"on a target that is alive ({why})"
        )

    async def _reconnect(self, generation: int, why: str) -> None:
        async with self._reconnect_lock:
            if (
                self._generation != generation
                and self._conn is not None
                and self._conn.state is State.FULL_FEATURE
            ):
                return  # someone else already reconnected
            message = why if why.startswith(("portal", "target")) else f"{self.what}: {why}"
            if not self.options.reconnect or self._closed:
                raise ConnectionFailed(message)
            if self._reconnects_without_progress >= self.options.max_reconnects:
                raise ConnectionFailed(
                    f"{message} (gave up after {self._reconnects_without_progress} reconnects "
                    f"without progress: max_reconnects={self.options.max_reconnects})"
                    if self._reconnects_without_progress
                    else message
                )
            failed = self._reconnect_failed
            if failed is not None and generation <= failed[0]:
                raise ConnectionFailed(failed[1])
            self.reconnects += 1
            self._reconnects_without_progress += 1
            await self._drop()
            await asyncio.sleep(min(self.params.default_time2wait, 2, self.options.timeout))
            try:
                await self._establish()
            except ISCSIError as exc:
                self._reconnect_failed = (self._generation, str(exc))
                raise

    def _live_conn(self) -> Connection:
        conn = self._conn
        if self._closed or conn is None:
            raise ISCSIError(f"{self.what}: session is closed")
        return conn

    async def _with_reconnect(self, op: Callable[[Connection], Awaitable[T]]) -> T:
        while True:
            conn = self._live_conn()
            gen = self._generation
            if conn.state is not State.FULL_FEATURE:
                await self._reconnect(gen, str(self._last_error or "connection lost"))
                continue
            try:
                result = await op(conn)
            except _ConnectionLost as exc:
                await self._reconnect(gen, str(exc))
                continue
            if gen == self._generation:
                # A command completed on the current connection: the session makes
                # progress, so the reconnect budget limits only consecutive failures.
                self._reconnects_without_progress = 0
            return result

    # -- SCSI --------------------------------------------------------------------------
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
        what = (lun, cdb)
        urgent = write_data is not None
        for _ in range(self.options.ua_retries + 1):
            conn = self._conn
            gen = self._generation
            if conn is not None and conn.state is State.FULL_FEATURE and not self._closed:
                # The common case, without the reconnect wrapper's closure.
                itt = conn.scsi_command(
                    lun, cdb, read_len=read_len, write_data=write_data, read_into=read_into
                )
                try:
                    if urgent:
                        event = await self._await(itt, what, timeout)
                    else:  # _await inlined: one coroutine frame less per command
                        wire = self._wire
                        fut = self._register(itt, timeout, False)
                        try:
                            event = await fut
                        except _Expired as exc:
                            raise self._expired(itt, wire, exc.message(_describe(what))) from None
                        finally:
                            self._caps.pop(itt, None)
                except _ConnectionLost as exc:
                    await self._reconnect(gen, str(exc))
                    event = await self._with_reconnect(
                        self._scsi_once(lun, cdb, read_len, write_data, read_into, timeout)
                    )
                else:
                    if gen == self._generation:
                        self._reconnects_without_progress = 0
            else:
                event = await self._with_reconnect(
                    self._scsi_once(lun, cdb, read_len, write_data, read_into, timeout)
                )
            if isinstance(event, TaskFailed):
                raise CommandFailed(f"{self.what}: {_describe(what)} failed: {event.reason}")
            assert isinstance(event, TaskCompleted)
            result = event.result
            if result.status == ScsiStatus.CHECK_CONDITION:
                sense = parse_sense(result.sense)
                if sense is not None and sense.key == 6:  # UNIT ATTENTION: not executed, retry
                    continue
                if not check:
                    return result
                raise CheckCondition(
                    f"{self.what}: {_describe(what)} failed: {_sense_describe(sense)}",
                    sense,
                    result.sense,
                )
            if result.status not in (ScsiStatus.GOOD, ScsiStatus.CONDITION_MET) and check:
                raise CommandFailed(
                    f"{self.what}: {_describe(what)} failed with SCSI status "
                    f"{status_name(result.status)}",
                    result.status,
                )
            return result
        raise CommandFailed(
            f"{self.what}: {_describe(what)}: still UNIT ATTENTION after "
            f"{self.options.ua_retries} retries"
        )

    def _scsi_once(
        self,
        lun: LunRef,
        cdb: bytes,
        read_len: int,
        write_data: Buffer | None,
        read_into: bytearray | memoryview | None,
        timeout: float | None,
    ) -> Callable[[Connection], Awaitable[Event]]:
        """One submission of a SCSI command, for :meth:`_with_reconnect` (the slow path)."""

        async def once(conn: Connection) -> Event:
            itt = conn.scsi_command(
                lun, cdb, read_len=read_len, write_data=write_data, read_into=read_into
            )
            return await self._await(itt, (lun, cdb), timeout)

        return once

    async def test_unit_ready(self, lun: LunRef) -> None:
        await self.execute(lun, C.tur())

    def _parsed(self, lun: LunRef, parse: Callable[[bytes], T], data: Buffer) -> T:
        """``parse(data)``; short or impossible data fails this command (with the LUN named)."""
        try:
            return parse(bytes(data))
        except ScsiParseError as exc:
            raise BadTargetData(f"{self.what}: LUN {lun}: {exc}") from None

    async def inquiry(self, lun: LunRef) -> StandardInquiry:
        r = await self.execute(lun, C.inquiry(alloc=255), read_len=255)
        return self._parsed(lun, parse_standard_inquiry, r.data)

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
            parsed = self._parsed(0, parse_report_luns, r.data)
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
            r = await self.execute(lun, C.read_capacity16(), read_len=32)
        except CheckCondition as exc:
            if exc.sense_data is None or exc.sense_data.key != 5:
                raise
            return None
        return self._parsed(lun, parse_read_capacity16, r.data)

    async def read_capacity10(self, lun: LunRef) -> tuple[int, int]:
        """(block count, block length) from READ CAPACITY(10)."""
        r = await self.execute(lun, C.read_capacity10(), read_len=8)
        rc10 = self._parsed(lun, parse_read_capacity10, r.data)
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
    async def _simple(self, submit: Callable[[Connection], int], what: str) -> Event:
        async def once(conn: Connection) -> Event:
            return await self._await(submit(conn), what, None)

        return await self._with_reconnect(once)

    async def send_targets(self, value: str = "All") -> list[tuple[str, list[str]]]:
        """SendTargets: [(target name, [addresses])]; split replies are reassembled."""
        event = await self._simple(
            lambda c: c.text_request([("SendTargets", value)]), "SendTargets"
        )
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
        event = await self._simple(lambda c: c.nop_ping(data), "NOP-Out ping")
        assert isinstance(event, NopReply)
        return event.data

    async def task_management(self, function: int, lun: LunRef = 0, ref_itt: int = P.NO_TAG) -> int:
        event = await self._simple(
            lambda c: c.task_management(function, lun, ref_itt), "task management request"
        )
        assert isinstance(event, TmfReply)
        return event.response

    async def _keepalive(self, interval: float) -> None:
        while not self._closed:
            await asyncio.sleep(interval)
            conn = self._conn
            if conn is None or conn.state is not State.FULL_FEATURE or self._futures:
                continue
            with contextlib.suppress(ISCSIError, _ConnectionLost):
                await self._await(conn.nop_ping(), "keep-alive NOP-Out", None)

    async def logout(self) -> None:
        """Log out cleanly (bounded); the connection is closed afterwards in any case."""
        if self._closed:
            return
        self._closed = True
        if self._nop_task is not None:
            self._nop_task.cancel()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        conn = self._conn
        try:
            if conn is not None and conn.state is State.FULL_FEATURE:
                event = await self._await(conn.logout(0), "Logout", None)
                assert isinstance(event, LogoutReply)
        except (ISCSIError, _ConnectionLost):
            pass
        finally:
            await self._drop()

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
