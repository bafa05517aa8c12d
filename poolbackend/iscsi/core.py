"""The sans-IO session core: all session policy, with time as an input (aioquic style).

:class:`SessionCore` owns one iSCSI session over successive connections (each a sans-IO
:class:`~.connection.Connection`): login and redirects, the liveness rule (NOP-Out pings when
a busy connection goes quiet, a silent one is dead, one command is capped), reconnect after a
lost connection with Time2Wait and the same ISID, re-drive of the outstanding requests on the
new connection, and unit-attention draining. It never touches sockets or clocks:

* inputs: :meth:`open`, :meth:`connection_made`, :meth:`connect_failed`,
  :meth:`receive_data` (or :meth:`recv_buffers` / :meth:`recv_done`), :meth:`peer_read`,
  :meth:`connection_lost`, :meth:`handle_timer`, ``submit_*`` and :meth:`logout`, each
  given ``now`` (seconds of one monotonic clock);
* outputs: :meth:`data_to_send` (buffers for the current connection), :meth:`events`
  (:class:`Connect`, :class:`Close`, :class:`Ready`, :class:`Done`, :class:`Failed`,
  :class:`Down`) and :meth:`get_timer` (the one deadline at which :meth:`handle_timer` must
  be called, or None); the target's Asynchronous Messages are kept in :attr:`async_events`.

An adapter only moves bytes, opens and closes sockets when told, turns Done/Failed into its
futures and arms one timer at :meth:`get_timer`. The session's phases change only through
:data:`TRANSITIONS` (h11's ``_state.py`` style).

About 790 lines, on purpose: it is one state machine. Login, liveness, reconnect, re-drive
and unit-attention draining are steps of the same phases (:data:`TRANSITIONS`) over the
same request table, so split apart each part would reach into the others' state.
"""

from __future__ import annotations

import enum
import heapq
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from poolbackend.iscsi.chap import ChapInitiator
from poolbackend.iscsi.connection import Connection, State
from poolbackend.iscsi.digest import Buffer
from poolbackend.iscsi.errors import (
    ConnectionFailed,
    InvalidAddress,
    ISCSIError,
    ISCSITimeout,
    LocalProtocolError,
    LoginFailed,
    RemoteProtocolError,
)
from poolbackend.iscsi.events import (
    AsyncEvent,
    Event,
    LoginComplete,
    LoginRedirected,
    LogoutReply,
    TaskCompleted,
)
from poolbackend.iscsi.liveness import Action, Liveness, command_cap
from poolbackend.iscsi.login import LoginConfig, SessionParams
from poolbackend.iscsi.options import SessionOptions
from poolbackend.iscsi.portal import Credentials, Portal
from poolbackend.scsi import cdb as C
from poolbackend.scsi.lun import LunRef
from poolbackend.scsi.sense import is_unit_attention, parse_sense
from poolbackend.scsi.status import ScsiStatus
from poolbackend.text import printable

MAX_REDIRECTS = 5
_In = TypeVar("_In")


# -- events out -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Connect:
    """Open a TCP connection to ``portal``; then call connection_made or connect_failed."""

    portal: Portal


@dataclass(frozen=True, slots=True)
class Close:
    """Close the current TCP connection (no connection_lost call is expected for it)."""


@dataclass(frozen=True, slots=True)
class Ready:
    """Logged in (first time or again); ``params`` are the negotiated ones."""

    params: SessionParams


@dataclass(frozen=True, slots=True)
class Done:
    """Request ``rid`` finished with the target's answer (a SCSI status may still be bad)."""

    rid: int
    event: Event


@dataclass(frozen=True, slots=True)
class Failed:
    """Request ``rid`` failed; ``error`` is a one-line ISCSIError."""

    rid: int
    error: ISCSIError


@dataclass(frozen=True, slots=True)
class Down:
    """The session is unusable for good (login refused, reconnect failed or not allowed)."""

    error: ISCSIError


CoreEvent = Connect | Close | Ready | Done | Failed | Down


# -- phases -----------------------------------------------------------------------------
class Phase(enum.Enum):
    IDLE = "idle"
    CONNECTING = "connecting"
    LOGIN = "login"
    READY = "logged in"
    DISCONNECTED = "disconnected"  # lost with nothing outstanding: reconnect on demand
    WAITING = "waiting Time2Wait"
    LOGGING_OUT = "logging out"
    CLOSED = "closed"
    DEAD = "failed"


P_ = Phase
#: every allowed (phase, input) -> phase; anything else is a LocalProtocolError
TRANSITIONS: dict[tuple[Phase, str], Phase] = {
    (P_.IDLE, "open"): P_.CONNECTING,
    (P_.CONNECTING, "connected"): P_.LOGIN,
    (P_.LOGIN, "logged in"): P_.READY,
    (P_.LOGIN, "redirected"): P_.CONNECTING,
    (P_.LOGIN, "failed"): P_.DEAD,
    (P_.READY, "lost, busy"): P_.WAITING,
    (P_.READY, "lost, idle"): P_.DISCONNECTED,
    (P_.READY, "failed"): P_.DEAD,
    (P_.DISCONNECTED, "demand"): P_.WAITING,
    (P_.WAITING, "time2wait over"): P_.CONNECTING,
    (P_.READY, "logout"): P_.LOGGING_OUT,
    (P_.LOGGING_OUT, "logged out"): P_.CLOSED,
    (P_.LOGGING_OUT, "failed"): P_.CLOSED,
}
for _p in Phase:
    if _p is not P_.CLOSED:
        TRANSITIONS[(_p, "close")] = P_.CLOSED
    if _p not in (P_.CLOSED, P_.DEAD, P_.IDLE):
        TRANSITIONS.setdefault((_p, "failed"), P_.DEAD)


class ReqKind(enum.Enum):
    SCSI = "scsi"
    TEXT = "text"
    NOP = "nop"
    TMF = "tmf"
    LOGOUT = "logout"
    PING = "ping"  # our own liveness or keep-alive ping: no event out


@dataclass(slots=True)
class _Request:
    rid: int
    kind: ReqKind
    what: str  # for messages; "" for a SCSI command, named by its CDB and LUN
    cap: float
    deadline: float
    itt: int | None = None
    gen: int = -1
    # SCSI
    lun: LunRef = 0
    cdb: bytes = b""
    read_len: int = 0
    write_data: Buffer | None = None
    read_into: bytearray | memoryview | None = None
    ua_left: int = 0
    # others
    pairs: list[tuple[str, str]] | None = None
    data: bytes = b""
    function: int = 0
    ref_rid: int | None = None
    ref_itt: int = 0xFFFFFFFF


# enum members as module constants for the per-command paths (each ``Phase.X`` lookup
# costs ~0.3 µs on Python 3.11)
_SCSI = ReqKind.SCSI
_PING = ReqKind.PING
_LOGOUT = ReqKind.LOGOUT
_READY = Phase.READY
_LOGGING_OUT = Phase.LOGGING_OUT
_IN_LOGIN = frozenset((Phase.CONNECTING, Phase.LOGIN))
_WAITING = Phase.WAITING
_CHECK_CONDITION = int(ScsiStatus.CHECK_CONDITION)


def describe(lun: LunRef, cdb: bytes) -> str:
    """A SCSI command, for messages: 'READ(16) on LUN 1'."""
    return f"{C.cdb_name(cdb)} on LUN {lun}"


def _describe(req: _Request) -> str:
    return req.what or describe(req.lun, req.cdb)


class SessionCore:
    """One iSCSI session (normal or discovery) as a sans-IO state machine."""

    def __init__(
        self,
        portal: Portal,
        target: str | None,
        options: SessionOptions | None = None,
        credentials: Credentials | None = None,
        *,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self.portal = portal
        self.target = target
        self.options = o = options or SessionOptions()
        self.credentials = credentials
        self._random_bytes = random_bytes
        # Random-format ISID (top bits 10), fixed for the session's life so that a
        # reconnect reinstates the old session on the target instead of leaking it.
        self.isid = o.isid or bytes([0x80]) + random_bytes(5)
        self.phase = Phase.IDLE
        self.params = SessionParams()
        self.conn: Connection | None = None
        self.generation = 0
        #: reconnects over the session's whole life (statistics)
        self.reconnects = 0
        self.reconnects_without_progress = 0
        self.redirects = 0
        self._connect_portal = portal
        self._events: list[CoreEvent] = []
        self._requests: dict[int, _Request] = {}
        self._by_itt: dict[int, _Request] = {}
        self._caps: list[tuple[float, int]] = []  # heap of (deadline, rid)
        self._next_rid = 1
        self._liveness: Liveness | None = None
        self._ping_rid: int | None = None
        self._login_deadline: float | None = None
        self._wait_until: float | None = None
        self._keepalive_at: float | None = None
        self._last_error: ISCSIError | None = None
        self.default_cap = command_cap(o.timeout)
        self.async_events: list[AsyncEvent] = []

    # -- naming ---------------------------------------------------------------------------
    @property
    def what(self) -> str:
        where = f"portal {printable(str(self.portal))}"
        return where + (f" target {printable(self.target)}" if self.target else "")

    def within(self, limit: float) -> str:
        hint = self.options.timeout_hint
        return f"within {limit:g} s" + (f" ({hint})" if hint else "")

    # -- transitions ----------------------------------------------------------------------
    def _go(self, what: str) -> None:
        nxt = TRANSITIONS.get((self.phase, what))
        if nxt is None:
            raise LocalProtocolError(f"session cannot '{what}' while {self.phase.value}")
        self.phase = nxt

    # -- outputs --------------------------------------------------------------------------
    @property
    def has_events(self) -> bool:
        return bool(self._events)

    def events(self) -> list[CoreEvent]:
        out, self._events = self._events, []
        return out

    def data_to_send(self) -> list[Buffer]:
        conn = self.conn
        return conn.data_to_send() if conn is not None else []

    def get_timer(self) -> float | None:
        """The next instant :meth:`handle_timer` has something to decide, or None."""
        phase = self.phase
        if phase is not _READY:
            if phase in _IN_LOGIN:
                return self._login_deadline
            if phase is _WAITING:
                return self._wait_until
            if phase is not _LOGGING_OUT:
                return None
        if not self._requests:
            return self._keepalive_at
        live = self._liveness
        due = live.due() if live is not None else None
        caps, reqs = self._caps, self._requests
        while caps and caps[0][1] not in reqs:
            heapq.heappop(caps)
        if caps and (due is None or caps[0][0] < due):
            return caps[0][0]
        return due

    # -- connection life ------------------------------------------------------------------
    def open(self, now: float) -> None:
        """Start the first connection: a :class:`Connect` follows."""
        self._go("open")
        self._connect(now, self.portal)

    def _connect(self, now: float, portal: Portal) -> None:
        self._connect_portal = portal
        self._login_deadline = now + self.options.timeout
        self._events.append(Connect(portal))

    def connection_made(self, now: float) -> None:
        """The TCP connection asked for by the last :class:`Connect` is up: log in."""
        self._go("connected")
        self._login_deadline = now + self.options.timeout  # connect and login bounded apart
        o = self.options
        chap = None
        if self.credentials is not None:
            c = self.credentials
            chap = ChapInitiator(
                c.username,
                c.secret,
                o.chap_algorithms,
                c.target_username,
                c.target_secret,
                random_bytes=self._random_bytes,
            )
        config = LoginConfig(o, self.target, isid=self.isid, chap=chap)
        initial = int.from_bytes(self._random_bytes(4), "big") % (1 << 31) + 1
        self.generation += 1
        self.conn = Connection(config, initial_cmd_sn=initial)
        self._by_itt = {}
        self.conn.start_login()

    def connect_failed(self, now: float, error: ISCSIError) -> None:
        """The TCP connection could not be opened (the adapter's one-line error)."""
        self._login_deadline = None
        self._die(error)

    def connection_lost(self, now: float, error: BaseException | None = None) -> None:
        """The TCP connection ended: EOF (None), a socket error or bad data from the core."""
        phase = self.phase
        if phase in (Phase.CLOSED, Phase.DEAD, Phase.IDLE, Phase.DISCONNECTED, Phase.WAITING):
            return
        conn = self.conn
        if phase is Phase.LOGGING_OUT or (conn is not None and conn.state is State.LOGGED_OUT):
            self._finish_logout()
            return
        err: ISCSIError
        if error is None:
            err = ConnectionFailed(f"{self.what}: target closed the connection")
        elif isinstance(error, ISCSIError):
            error.args = (f"{self.what}: {error}",)  # name the portal, keep the error class
            err = error
        else:
            reason = error.strerror if isinstance(error, OSError) and error.strerror else error
            err = ConnectionFailed(f"{self.what}: connection lost: {reason}")
        if phase in (Phase.CONNECTING, Phase.LOGIN):
            self._login_deadline = None
            self._die(err)
            return
        self._lose(now, err)

    def _lose(self, now: float, err: ISCSIError) -> None:
        """The connection of a logged-in session is gone: reconnect if allowed and needed."""
        self._last_error = err
        self._drop()
        for req in self._requests.values():
            req.itt = None
        if not any(r.kind is not ReqKind.PING for r in self._requests.values()):
            self._requests.clear()
            self._ping_rid = None
            self._go("lost, idle")
            return
        self._go("lost, busy")
        self._reconnect(now, err)

    def _reconnect(self, now: float, err: ISCSIError) -> None:
        """In WAITING: fail all when the budget is spent, else wait Time2Wait."""
        o = self.options
        message = str(err)
        if not o.reconnect:
            self._die(ConnectionFailed(message))
            return
        if self.reconnects_without_progress >= o.max_reconnects:
            n = self.reconnects_without_progress
            self._die(
                ConnectionFailed(
                    f"{message} (gave up after {n} reconnects without progress: "
                    f"max_reconnects={o.max_reconnects})"
                    if n
                    else message
                )
            )
            return
        self.reconnects += 1
        self.reconnects_without_progress += 1
        self._wait_until = now + min(self.params.default_time2wait, 2, o.timeout)

    def _drop(self) -> None:
        if self.conn is not None:
            self.conn = None
            self._events.append(Close())
        self._liveness = None
        self._by_itt = {}

    def _die(self, error: ISCSIError) -> None:
        """The session is unusable: every request fails with ``error``."""
        self._drop()
        self._last_error = error
        if self.phase not in (Phase.DEAD, Phase.CLOSED):
            self._go("failed")
        self._fail_all(error)
        self._events.append(Down(error))

    def _fail_all(self, error: ISCSIError) -> None:
        reqs, self._requests = self._requests, {}
        self._ping_rid = None
        for req in reqs.values():
            if req.kind is not ReqKind.PING:
                self._events.append(Failed(req.rid, error))

    # -- receive --------------------------------------------------------------------------
    def receive_data(self, data: Buffer, now: float) -> None:
        conn = self.conn
        if conn is not None:
            self._received(conn.receive_data, data, now)

    def recv_buffers(self) -> list[memoryview]:
        assert self.conn is not None
        return self.conn.recv_buffers()

    def recv_done(self, nbytes: int, now: float) -> None:
        """Zero-copy receive: ``nbytes`` landed in the last :meth:`recv_buffers`."""
        conn = self.conn
        if conn is not None:
            self._received(conn.recv_done, nbytes, now)

    def _received(self, feed: Callable[[_In], list[Event]], data: _In, now: float) -> None:
        """Bytes arrived (a sign of life): ``feed(data)`` gives the connection's events."""
        if self._liveness is not None:
            self._liveness.progress(now)
        try:
            events = feed(data)
        except ISCSIError as exc:  # a protocol violation or a refused login
            self.connection_lost(now, exc)
            return
        self._handle(events, now)

    def peer_read(self, now: float) -> None:
        """The peer took some of the bytes we queued: a sign of life (a long write)."""
        if self._liveness is not None:
            self._liveness.progress(now)

    def _handle(self, events: list[Event], now: float) -> None:
        for ev in events:
            if type(ev) is TaskCompleted:
                self._answer(ev, now)
            elif isinstance(ev, LoginComplete):
                self._logged_in(ev, now)
            elif isinstance(ev, LoginRedirected):
                self._redirected(ev, now)
            elif isinstance(ev, AsyncEvent):
                self.async_events.append(ev)
                if ev.event in (1, 2, 3, 4) and self.phase is Phase.READY:
                    # ERL 0: the target wants us gone; treat as a lost connection.
                    self._lose(
                        now,
                        ConnectionFailed(
                            f"{self.what}: target requested logout (async event {ev.event})"
                        ),
                    )
                    return
            else:
                self._answer(ev, now)

    def _logged_in(self, ev: LoginComplete, now: float) -> None:
        self._go("logged in")
        self._login_deadline = None
        self.params = ev.params
        self._liveness = Liveness(self.options.timeout, last_progress=now)
        self._ping_rid = None
        self._touch_keepalive(now)
        self._events.append(Ready(ev.params))
        # re-drive what was outstanding on the lost connection, in submission order
        for req in sorted(self._requests.values(), key=lambda r: r.rid):
            if req.kind is ReqKind.PING:
                del self._requests[req.rid]
                continue
            self._send(req, now)

    def _redirected(self, ev: LoginRedirected, now: float) -> None:
        self.conn = None  # the target closes it; we close our end too
        self._events.append(Close())
        self.redirects += 1
        if self.redirects > MAX_REDIRECTS:
            self._login_deadline = None
            self._die(
                LoginFailed(f"{self.what}: more than {MAX_REDIRECTS} login redirections", 1, 0)
            )
            return
        try:
            portal = Portal.parse(ev.address, tpgt=True)
        except InvalidAddress:
            self._login_deadline = None
            self._die(
                RemoteProtocolError(
                    f"{self.what}: target redirected to an invalid address {ev.address!r}"
                )
            )
            return
        if ev.permanent:
            self.portal = portal
        self._go("redirected")
        self._connect(now, portal)

    def _answer(self, ev: Event, now: float) -> None:
        itt = getattr(ev, "itt", None)
        req = self._by_itt.pop(itt, None) if itt is not None else None
        if req is None or self._requests.get(req.rid) is not req:
            return
        if req.gen == self.generation:
            self.reconnects_without_progress = 0  # progress: the budget counts failures in a row
        if req.kind is _PING:
            del self._requests[req.rid]
            if req.rid == self._ping_rid:
                self._ping_rid = None
                if self._liveness is not None:
                    self._liveness.ping_answered(now)
            self._touch_keepalive(now)
            return
        if (
            type(ev) is TaskCompleted
            and ev.result.status == _CHECK_CONDITION
            and is_unit_attention(parse_sense(ev.result.sense))
            and req.ua_left > 0
        ):
            req.ua_left -= 1  # UNIT ATTENTION: not executed; drained here, sent again
            self._send(req, now)
            return
        del self._requests[req.rid]
        if req.kind is _LOGOUT and isinstance(ev, LogoutReply):
            self._events.append(Done(req.rid, ev))
            self._finish_logout()
            return
        interval = self.options.nop_interval  # _touch_keepalive, inlined (every command)
        self._keepalive_at = now + interval if interval else None
        self._events.append(Done(req.rid, ev))

    def _touch_keepalive(self, now: float) -> None:
        interval = self.options.nop_interval
        self._keepalive_at = now + interval if interval else None

    # -- submit ---------------------------------------------------------------------------
    def _new(self, kind: ReqKind, what: str, timeout: float | None, now: float) -> _Request:
        if self.phase in (Phase.CLOSED, Phase.LOGGING_OUT, Phase.IDLE):
            raise ISCSIError(f"{self.what}: session is closed")
        if self.phase is Phase.DEAD:
            raise self._last_error or ISCSIError(f"{self.what}: session is closed")
        rid = self._next_rid
        self._next_rid += 1
        cap = self.default_cap if timeout is None else timeout
        req = _Request(rid, kind, what, cap, now + cap)
        if not self._requests and self._liveness is not None:
            self._liveness.busy(now)  # silence counts from the first request, not before
        self._requests[rid] = req
        heapq.heappush(self._caps, (req.deadline, rid))
        return req

    def _submit(self, req: _Request, now: float) -> int:
        if self.phase is Phase.READY:
            try:
                self._send(req, now)
            except LocalProtocolError:
                del self._requests[req.rid]
                raise
        elif self.phase is Phase.DISCONNECTED:
            self._go("demand")
            err = self._last_error or ConnectionFailed(f"{self.what}: connection lost")
            self._reconnect(now, err)
        return req.rid

    def submit_scsi(
        self,
        lun: LunRef,
        cdb: bytes,
        now: float,
        *,
        read_len: int = 0,
        write_data: Buffer | None = None,
        read_into: bytearray | memoryview | None = None,
        timeout: float | None = None,
    ) -> int:
        conn = self.conn
        if self.phase is not _READY or conn is None:
            req = self._new(ReqKind.SCSI, "", timeout, now)
            req.lun, req.cdb, req.read_len = lun, cdb, read_len
            req.write_data, req.read_into = write_data, read_into
            req.ua_left = self.options.ua_retries
            return self._submit(req, now)
        # the hot path (logged in): _new, _submit and _send in one, one object built
        rid = self._next_rid
        self._next_rid = rid + 1
        cap = self.default_cap if timeout is None else timeout
        deadline = now + cap
        req = _Request(
            rid, _SCSI, "", cap, deadline, None, -1, lun, cdb, read_len, write_data, read_into,
            self.options.ua_retries,
        )  # fmt: skip
        reqs = self._requests
        if not reqs and self._liveness is not None:
            self._liveness.busy(now)  # silence counts from the first request, not before
        itt = conn.scsi_command(
            lun, cdb, read_len=read_len, write_data=write_data, read_into=read_into
        )
        reqs[rid] = req
        heapq.heappush(self._caps, (deadline, rid))
        req.itt, req.gen = itt, self.generation
        self._by_itt[itt] = req
        return rid

    def submit_text(
        self, pairs: list[tuple[str, str]], now: float, what: str = "SendTargets"
    ) -> int:
        req = self._new(ReqKind.TEXT, what, None, now)
        req.pairs = pairs
        return self._submit(req, now)

    def submit_nop(self, now: float, data: bytes = b"", what: str = "NOP-Out ping") -> int:
        req = self._new(ReqKind.NOP, what, None, now)
        req.data = data
        return self._submit(req, now)

    def submit_tmf(
        self,
        function: int,
        lun: LunRef,
        now: float,
        ref_rid: int | None = None,
        ref_itt: int = 0xFFFFFFFF,
    ) -> int:
        """A task management request; ABORT TASK names its task by request id (or raw ITT)."""
        req = self._new(ReqKind.TMF, "task management request", None, now)
        req.function, req.lun, req.ref_rid, req.ref_itt = function, lun, ref_rid, ref_itt
        return self._submit(req, now)

    def logout(self, now: float) -> int | None:
        """Log out (a :class:`Done` with the LogoutReply, then :class:`Close`); None when there
        is no logged-in connection (the session is just closed)."""
        if self.phase is not Phase.READY:
            self.close()
            return None
        req = self._new(ReqKind.LOGOUT, "Logout", None, now)
        self._go("logout")
        self._send(req, now)
        return req.rid

    def close(self) -> None:
        """Forget everything: outstanding requests fail as 'session is closed'."""
        if self.phase is Phase.CLOSED:
            return
        self._drop()
        self._go("close")
        self._fail_all(ISCSIError(f"{self.what}: session is closed"))

    def _finish_logout(self) -> None:
        self._drop()
        self._go("logged out" if self.phase is Phase.LOGGING_OUT else "close")
        self._fail_all(ISCSIError(f"{self.what}: session is closed"))

    def _send(self, req: _Request, now: float) -> None:
        conn = self.conn
        assert conn is not None
        kind = req.kind
        if kind is ReqKind.SCSI:
            itt = conn.scsi_command(
                req.lun,
                req.cdb,
                read_len=req.read_len,
                write_data=req.write_data,
                read_into=req.read_into,
            )
        elif kind is ReqKind.TEXT:
            assert req.pairs is not None
            itt = conn.text_request(req.pairs)
        elif kind in (ReqKind.NOP, ReqKind.PING):
            itt = conn.nop_ping(req.data)
        elif kind is ReqKind.TMF:
            ref = self._requests.get(req.ref_rid) if req.ref_rid is not None else None
            ref_itt = ref.itt if ref is not None and ref.itt is not None else req.ref_itt
            itt = conn.task_management(req.function, req.lun, ref_itt)
        else:
            itt = conn.logout(0)
        req.itt, req.gen = itt, self.generation
        self._by_itt[itt] = req

    # -- time -----------------------------------------------------------------------------
    def handle_timer(self, now: float) -> None:
        phase = self.phase
        if phase in (Phase.CONNECTING, Phase.LOGIN):
            if self._login_deadline is not None and now >= self._login_deadline:
                self._login_deadline = None
                if phase is Phase.CONNECTING:
                    msg = (
                        f"portal {printable(str(self._connect_portal))}: TCP connect did not "
                        f"complete {self.within(self.options.timeout)}"
                    )
                else:
                    msg = f"{self.what}: no answer to login {self.within(self.options.timeout)}"
                self._die(ISCSITimeout(msg))
            return
        if phase is Phase.WAITING:
            if self._wait_until is not None and now >= self._wait_until:
                self._wait_until = None
                self._go("time2wait over")
                self._connect(now, self.portal)
            return
        if phase not in (Phase.READY, Phase.LOGGING_OUT):
            return
        if not self._requests:
            if (
                self._keepalive_at is not None
                and now >= self._keepalive_at
                and phase is Phase.READY
            ):
                req = self._new(ReqKind.PING, "keep-alive NOP-Out", None, now)
                self._send(req, now)
                self._keepalive_at = None
            return
        # one command over its cap on a live target: its result can't be trusted at ERL 0,
        # so it fails and the connection goes; the others are re-driven after a reconnect
        caps = self._caps
        expired: list[_Request] = []
        while caps and caps[0][0] <= now:
            _, rid = heapq.heappop(caps)
            late = self._requests.get(rid)
            if late is not None and late.deadline <= now:
                expired.append(late)
        if expired:
            for req in expired:
                del self._requests[req.rid]
                if req.kind is not ReqKind.PING:
                    self._events.append(Failed(req.rid, ISCSITimeout(self._cap_message(req))))
            if phase is Phase.LOGGING_OUT:
                self._finish_logout()
            elif self._requests:
                self._lose(now, ConnectionFailed(self._cap_message(expired[0])))
            else:
                self._lose(now, ISCSITimeout(self._cap_message(expired[0])))
            return
        live = self._liveness
        if live is None:
            return
        action = live.check(now)
        if action is Action.PING:
            live.pinged(now)
            if self._ping_rid is None and self.conn is not None and phase is Phase.READY:
                req = self._new(ReqKind.PING, "NOP-Out ping", None, now)
                self._ping_rid = req.rid
                self._send(req, now)
        elif action is Action.DEAD:
            within = self.within(self.options.timeout)
            reqs, self._requests = self._requests, {}
            self._ping_rid = None
            for req in reqs.values():
                if req.kind is not ReqKind.PING:
                    text = _describe(req)
                    self._events.append(
                        Failed(
                            req.rid,
                            ISCSITimeout(
                                f"{self.what}: no answer to {text} nor to a NOP-Out ping {within}"
                            ),
                        )
                    )
            err = ConnectionFailed(f"{self.what}: no answer nor to a NOP-Out ping {within}")
            self._last_error = err
            self._drop()
            self._go("lost, idle" if self.phase is Phase.READY else "failed")

    def _cap_message(self, req: _Request) -> str:
        hint = self.options.timeout_hint
        why = "3 x the timeout, at least 30 s" + (f"; {hint}" if hint else "")
        return (
            f"{self.what}: no answer to {_describe(req)} within {req.cap:g} s, the limit for "
            f"one command on a target that is alive ({why})"
        )
