"""asyncio adapter over the sans-IO core: sockets, timeouts, pipelining, reconnect.

Every wait is bounded by ``SessionOptions.timeout`` and fails with a one-line
:class:`ISCSITimeout` naming the portal and what we waited for. After a lost connection
the session logs in again with the same ISID (the target reinstates, not leaks, the old
session), re-drives outstanding commands and drains the unit attention that follows.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from poolbackend.iscsi import pdu as P
from poolbackend.iscsi.chap import ChapInitiator
from poolbackend.iscsi.connection import Connection, State
from poolbackend.iscsi.digest import Buffer
from poolbackend.iscsi.errors import (
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
from poolbackend.iscsi.login import LoginConfig, SessionParams
from poolbackend.iscsi.portal import Credentials, Portal
from poolbackend.scsi import cdb as C
from poolbackend.scsi.capacity import (
    ReadCapacity16,
    parse_read_capacity10,
    parse_read_capacity16,
)
from poolbackend.scsi.inquiry import StandardInquiry, parse_standard_inquiry
from poolbackend.scsi.reportluns import parse_report_luns
from poolbackend.scsi.sense import SenseData, parse_sense
from poolbackend.scsi.status import ScsiStatus, status_name

T = TypeVar("T")
What = str | Callable[[], str]  # what we wait for, for messages; callables are built lazily
MAX_REDIRECTS = 5
READ_CHUNK = 1 << 20


def default_initiator_name() -> str:
    """A stable IQN for this host, like open-iscsi's generated InitiatorName."""
    host = socket.gethostname().split(".")[0].lower() or "localhost"
    safe = "".join(c if c.isalnum() or c in "-." else "-" for c in host)
    return f"iqn.2026-11.dev.poolbackend:{safe}"


@dataclass
class SessionOptions:
    initiator_name: str = field(default_factory=default_initiator_name)
    timeout: float = 10.0
    header_digest: str = "None,CRC32C"
    data_digest: str = "None"
    chap_algorithms: tuple[int, ...] = (5,)
    max_recv_data_segment_length: int = 262144
    max_burst_length: int = 16776192
    first_burst_length: int = 262144
    reconnect: bool = True
    max_reconnects: int = 3
    ua_retries: int = 16
    nop_interval: float | None = None
    isid: bytes | None = None


class CheckCondition(CommandFailed):
    """CHECK CONDITION with parsed sense data."""

    def __init__(self, message: str, sense_data: SenseData | None, sense: bytes) -> None:
        super().__init__(message, ScsiStatus.CHECK_CONDITION, sense)
        self.sense_data = sense_data


class _ConnectionLost(Exception):
    """Internal: the TCP connection died while a request was outstanding."""


def _sense_describe(sense: SenseData | None) -> str:
    return sense.describe() if sense is not None else "no sense data"


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
        self.reconnects = 0
        self._conn: Connection | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._read_task: asyncio.Task[None] | None = None
        self._nop_task: asyncio.Task[None] | None = None
        self._futures: dict[int, asyncio.Future[Event]] = {}
        self._login_future: asyncio.Future[Event] | None = None
        self._reconnect_lock = asyncio.Lock()
        self._generation = 0
        self._closed = False
        self._last_error: BaseException | None = None
        self.async_events: list[AsyncEvent] = []

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
        return f"portal {self.portal}" + (f" target {self.target}" if self.target else "")

    async def _bounded(self, aw: Awaitable[T], what: What, timeout: float | None = None) -> T:
        limit = self.options.timeout if timeout is None else timeout
        try:
            return await asyncio.wait_for(aw, limit)
        except TimeoutError:
            text = what if isinstance(what, str) else what()
            raise ISCSITimeout(f"{self.what}: no answer to {text} within {limit:g} s") from None

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

    async def _open_tcp(self, portal: Portal) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            reader, writer = await self._bounded(
                asyncio.open_connection(portal.host, portal.port, limit=1 << 22), "TCP connect"
            )
        except ISCSITimeout:
            raise ISCSITimeout(
                f"portal {portal}: TCP connect did not complete within {self.options.timeout:g} s"
            ) from None
        except socket.gaierror as exc:
            raise ConnectionFailed(
                f"portal {portal}: cannot resolve host {portal.host!r}: {exc.strerror}"
            ) from None
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc) or type(exc).__name__
            raise ConnectionFailed(f"portal {portal}: cannot connect: {reason}") from None
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return reader, writer

    async def _login_once(self, portal: Portal) -> LoginRedirected | None:
        reader, writer = await self._open_tcp(portal)
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
        self._conn, self._reader, self._writer = conn, reader, writer
        self._generation += 1
        loop = asyncio.get_running_loop()
        self._login_future = loop.create_future()
        conn.start_login()
        self._write_out()
        self._read_task = asyncio.create_task(self._read_loop(conn, reader, self._generation))
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
        if o.nop_interval and self._nop_task is None:
            self._nop_task = asyncio.create_task(self._keepalive(o.nop_interval))
        return None

    # -- I/O plumbing --------------------------------------------------------------------
    def _write_out(self) -> None:
        if self._conn is None or self._writer is None:
            return
        bufs = self._conn.data_to_send()
        if bufs:
            self._writer.writelines(bufs)

    async def _read_loop(self, conn: Connection, reader: asyncio.StreamReader, gen: int) -> None:
        error: BaseException
        try:
            while True:
                data = await reader.read(READ_CHUNK)
                if not data:
                    if conn.state is State.LOGGED_OUT:
                        return
                    error = ConnectionFailed(f"{self.what}: target closed the connection")
                    break
                for event in conn.receive_data(data):
                    self._deliver(event)
                self._write_out()
        except ISCSIError as exc:
            exc.args = (f"{self.what}: {exc}",)  # name the portal, keep the error class
            error = exc
        except OSError as exc:
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
        self._generation += 1
        task, self._read_task = self._read_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _await(self, itt: int, what: What, timeout: float | None) -> Event:
        fut: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        self._futures[itt] = fut
        self._write_out()
        writer = self._writer
        try:
            if writer is not None and writer.transport.get_write_buffer_size() > (4 << 20):
                await self._bounded(writer.drain(), what, timeout)
            return await self._bounded(fut, what, timeout)
        except ISCSITimeout:
            self._futures.pop(itt, None)
            await self._drop()  # results of a timed-out task can't be trusted at ERL 0
            if self._conn is not None:
                self._conn.state = State.FAILED
            raise
        except (ConnectionError, OSError) as exc:
            self._futures.pop(itt, None)
            raise _ConnectionLost(str(exc)) from None

    async def _reconnect(self, generation: int, why: str) -> None:
        async with self._reconnect_lock:
            if (
                self._generation != generation
                and self._conn is not None
                and self._conn.state is State.FULL_FEATURE
            ):
                return  # someone else already reconnected
            if (
                not self.options.reconnect
                or self._closed
                or self.reconnects >= self.options.max_reconnects
            ):
                raise ConnectionFailed(
                    why if why.startswith(("portal", "target")) else f"{self.what}: {why}"
                )
            self.reconnects += 1
            await self._drop()
            await asyncio.sleep(min(self.params.default_time2wait, 2, self.options.timeout))
            await self._establish()

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
                return await op(conn)
            except _ConnectionLost as exc:
                await self._reconnect(gen, str(exc))

    # -- SCSI --------------------------------------------------------------------------
    async def execute(
        self,
        lun: int,
        cdb: bytes,
        *,
        read_len: int = 0,
        write_data: Buffer | None = None,
        read_into: bytearray | memoryview | None = None,
        timeout: float | None = None,
        check: bool = True,
    ) -> ScsiResult:
        """Run one SCSI command; unit attentions are retried, CHECK CONDITION raises."""

        def what() -> str:  # built only for messages: this is the per-command hot path
            return f"{C.cdb_name(cdb)} on LUN {lun}"

        async def once(conn: Connection) -> Event:
            itt = conn.scsi_command(
                lun, cdb, read_len=read_len, write_data=write_data, read_into=read_into
            )
            return await self._await(itt, what, timeout)

        for _ in range(self.options.ua_retries + 1):
            event = await self._with_reconnect(once)
            if isinstance(event, TaskFailed):
                raise CommandFailed(f"{self.what}: {what()} failed: {event.reason}")
            assert isinstance(event, TaskCompleted)
            result = event.result
            if result.status == ScsiStatus.CHECK_CONDITION:
                sense = parse_sense(result.sense)
                if sense is not None and sense.key == 6:  # UNIT ATTENTION: not executed, retry
                    continue
                if not check:
                    return result
                raise CheckCondition(
                    f"{self.what}: {what()} failed: {_sense_describe(sense)}", sense, result.sense
                )
            if result.status not in (ScsiStatus.GOOD, ScsiStatus.CONDITION_MET) and check:
                raise CommandFailed(
                    f"{self.what}: {what()} failed with SCSI status {status_name(result.status)}",
                    result.status,
                )
            return result
        raise CommandFailed(
            f"{self.what}: {what()}: still UNIT ATTENTION after {self.options.ua_retries} retries"
        )

    async def test_unit_ready(self, lun: int) -> None:
        await self.execute(lun, C.tur())

    async def inquiry(self, lun: int) -> StandardInquiry:
        r = await self.execute(lun, C.inquiry(alloc=255), read_len=255)
        return parse_standard_inquiry(bytes(r.data))

    async def vpd(self, lun: int, page: int, alloc: int = 4096) -> bytes:
        r = await self.execute(lun, C.inquiry(evpd=True, page=page, alloc=alloc), read_len=alloc)
        return bytes(r.data)

    async def report_luns(self) -> list[int]:
        """All LUNs, re-asking with a larger allocation when the list did not fit."""
        alloc = 4096
        for _ in range(4):
            r = await self.execute(0, C.report_luns(alloc=alloc), read_len=alloc)
            parsed = parse_report_luns(bytes(r.data))
            if parsed.full_length <= alloc:
                return list(parsed.luns)
            alloc = parsed.full_length
        raise RemoteProtocolError(f"{self.what}: REPORT LUNS list keeps growing")

    async def read_capacity16(self, lun: int) -> ReadCapacity16 | None:
        """READ CAPACITY(16), or None when the LUN rejects it as ILLEGAL REQUEST."""
        try:
            r = await self.execute(lun, C.read_capacity16(), read_len=32)
        except CheckCondition as exc:
            if exc.sense_data is None or exc.sense_data.key != 5:
                raise
            return None
        return parse_read_capacity16(bytes(r.data))

    async def read_capacity10(self, lun: int) -> tuple[int, int]:
        """(block count, block length) from READ CAPACITY(10)."""
        r = await self.execute(lun, C.read_capacity10(), read_len=8)
        rc10 = parse_read_capacity10(bytes(r.data))
        if rc10.needs_16:
            raise CommandFailed(
                f"{self.what}: LUN {lun} is too large for READ CAPACITY(10) and rejects (16)"
            )
        return rc10.block_count, rc10.block_length

    async def read_capacity(self, lun: int) -> tuple[int, int]:
        """(block count, block length): READ CAPACITY(16), falling back to (10) if unsupported."""
        rc16 = await self.read_capacity16(lun)
        if rc16 is None:
            return await self.read_capacity10(lun)
        return rc16.block_count, rc16.block_length

    async def read(
        self,
        lun: int,
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

    async def write(self, lun: int, lba: int, data: Buffer, block_size: int) -> None:
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

    async def task_management(self, function: int, lun: int = 0, ref_itt: int = P.NO_TAG) -> int:
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
