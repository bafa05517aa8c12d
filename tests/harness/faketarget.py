"""A scripted fake iSCSI target for fault injection (what tgt cannot do).

Use tgt (:mod:`tests.harness.tgtd`) for everything a real target does; use
this only for misbehaving peers::

    with FakeTarget("silent") as fake:
        ...connect to fake.host, fake.port; expect a timeout...
        assert fake.connections == 1

Modes (``FakeTarget(mode, **kw)``):

``refuse``
    Nothing listens: a port bound without listen() and held until stop() (connection
    refused, and no other process can take the port meanwhile).
``silent``
    Accepts, reads and discards everything, never answers.
``garbage``
    Answers every received PDU with random bytes (``seed=`` for reproducibility).
``close_mid_pdu``
    Reads the first Login Request, sends the first 24 bytes of a valid Login
    Response BHS, then closes.
``slow``
    Answers every Login Request after ``delay`` seconds (only the first one of
    each connection is delayed) with a minimal *valid* login negotiation:
    AuthMethod=None, operational keys answered per RFC 7143 result functions,
    TSIH=1 on the final response. After the login only NOP-Out (answered with
    NOP-In) and Logout (answered, then close) are understood; any other PDU
    closes the connection. ``slow`` with ``delay=0`` is a login-only target.
``login_status``
    Answers the first Login Request of every connection with
    ``status_class``/``status_detail``; for redirects (class 1, e.g. 0x0101
    or 0x0102) the data segment carries ``TargetAddress=<target_address>``
    (``host:port,1`` -- ``,1`` is appended when no tag is given), so an
    initiator can follow the redirect to e.g. a real tgtd. Then closes.
``require_data_digest``
    ``slow`` without delay, but insisting on DataDigest=CRC32C: an offer
    without CRC32C is answered ``DataDigest=Reject``.
``scsi``
    A slow but alive target after the ``slow`` login: SCSI commands without data complete
    GOOD strictly one at a time, ``cmd_interval`` seconds apart, however many are queued;
    NOP-Out pings are answered after ``nop_delay`` seconds (``None``: never). ``completed``
    and ``pings`` count them.
``luns``
    The ``slow`` login (no delay), then a target with data: SCSI commands and
    SendTargets are served from ``luns`` (``{lun: FakeLun}``): TEST UNIT READY,
    INQUIRY, REPORT LUNS, READ CAPACITY(10)/(16), READ(16), WRITE(16) (immediate
    data and R2T), SYNCHRONIZE CACHE, GET LBA STATUS (``FakeLun.lba_status``, scripted
    answers, with ``lbpme``/``lbprz`` in READ CAPACITY(16)); everything else (VPD pages,
    WRITE SAME) is ILLEGAL REQUEST. Each :class:`FakeLun` can answer with hostile values
    (``HOSTILE_LUN`` presets: impossible capacities and block lengths, short
    INQUIRY and READ CAPACITY data) and ``report_luns=`` rewrites the REPORT LUNS
    data (``HOSTILE_REPORT_LUNS``: cut off, lying lengths, duplicates). Both can
    be changed while the target runs (the next command sees the change);
    ``commands`` lists every CDB received.
``hostile_length``
    Answers the first Login Request with a Login Response whose
    DataSegmentLength is 0xFFFFFF, followed by 4 KiB of filler, and then keeps
    the connection open without sending more (the initiator must bound what
    it is willing to read).

Every fake target is bounded: it stops accepting and closes all connections
after ``lifetime`` seconds (default 60) and each connection read times out
after ``io_timeout`` seconds (default 30). Only loopback addresses are allowed.

Attributes: ``host``, ``port``, ``portal``, ``connections`` (accepted TCP
connections), ``login_requests`` (every Login Request received, parsed, see
:class:`Pdu`), ``logins_completed`` (final login responses sent in ``slow``).
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import ClassVar

from tests.harness import HarnessError, format_portal

BHS_LEN = 48

OP_NOP_OUT = 0x00
OP_SCSI_CMD = 0x01
OP_LOGIN_REQ = 0x03
OP_TEXT_REQ = 0x04
OP_LOGOUT_REQ = 0x06
OP_NOP_IN = 0x20
OP_LOGIN_RSP = 0x23
OP_LOGOUT_RSP = 0x26
OP_SCSI_RSP = 0x21

FLAG_T = 0x80  # login: transit
FLAG_C = 0x40  # login: continue
FLAG_F = 0x80  # final

MAX_ACCEPTED_DSL = 1 << 20  # the fake target never reads larger data segments

MODES = (
    "refuse",
    "silent",
    "garbage",
    "close_mid_pdu",
    "slow",
    "login_status",
    "hostile_length",
    "require_data_digest",
    "scsi",
    "luns",
)


# ----------------------------------------------------------------- PDU codec


def pad4(data: bytes) -> bytes:
    """Pad *data* with NULs to a multiple of 4 bytes."""
    return data + b"\0" * (-len(data) % 4)


def encode_keys(pairs: dict[str, str] | list[tuple[str, str]]) -> bytes:
    """``key=value\\0`` for every pair (unpadded)."""
    items = pairs.items() if isinstance(pairs, dict) else pairs
    return b"".join(f"{k}={v}".encode() + b"\0" for k, v in items)


def decode_keys(data: bytes) -> dict[str, str]:
    """Parse NUL-separated ``key=value`` pairs (padding and junk ignored)."""
    out: dict[str, str] = {}
    for item in data.split(b"\0"):
        if b"=" in item:
            k, _, v = item.partition(b"=")
            out[k.decode(errors="replace")] = v.decode(errors="replace")
    return out


def pack_bhs(
    opcode: int,
    flags: int = 0,
    *,
    byte2: int = 0,
    byte3: int = 0,
    dsl: int = 0,
    isid: bytes = b"\0" * 6,
    tsih: int = 0,
    itt: int = 0,
    word20: int = 0,
    stat_sn: int = 0,
    exp_cmd_sn: int = 0,
    max_cmd_sn: int = 0,
    status_class: int = 0,
    status_detail: int = 0,
) -> bytes:
    """Build a 48-byte BHS in the Login Response layout.

    Byte 0 opcode, 1 flags, 2-3 version max/active, 4 TotalAHSLength (0),
    5-7 DataSegmentLength, 8-13 ISID, 14-15 TSIH, 16-19 ITT, 20-23 (TTT for
    NOP-In), 24 StatSN, 28 ExpCmdSN, 32 MaxCmdSN, 36 status class, 37 detail.
    """
    if not 0 <= dsl <= 0xFFFFFF:
        raise ValueError("DataSegmentLength must fit in 24 bits")
    bhs = bytearray(BHS_LEN)
    bhs[0] = opcode & 0x7F  # 0x40 = immediate bit (requests only)
    bhs[1] = flags & 0xFF
    bhs[2] = byte2 & 0xFF
    bhs[3] = byte3 & 0xFF
    bhs[4] = 0
    bhs[5:8] = dsl.to_bytes(3, "big")
    bhs[8:14] = isid[:6].ljust(6, b"\0")
    struct.pack_into(">H", bhs, 14, tsih & 0xFFFF)
    struct.pack_into(">IIIII", bhs, 16, itt, word20, stat_sn, exp_cmd_sn, max_cmd_sn)
    bhs[36] = status_class & 0xFF
    bhs[37] = status_detail & 0xFF
    return bytes(bhs)


def login_response(
    req: Pdu,
    *,
    keys: dict[str, str] | None = None,
    transit: bool = False,
    csg: int = 0,
    nsg: int = 0,
    tsih: int = 0,
    stat_sn: int = 0,
    status_class: int = 0,
    status_detail: int = 0,
) -> bytes:
    """A complete Login Response PDU (BHS + padded data) answering *req*."""
    data = encode_keys(keys or {})
    flags = (FLAG_T if transit else 0) | ((csg & 3) << 2) | (nsg & 3 if transit else 0)
    bhs = pack_bhs(
        OP_LOGIN_RSP,
        flags,
        dsl=len(data),
        isid=req.isid,
        tsih=tsih,
        itt=req.itt,
        stat_sn=stat_sn,
        exp_cmd_sn=req.cmd_sn,
        max_cmd_sn=(req.cmd_sn + 31) & 0xFFFFFFFF,
        status_class=status_class,
        status_detail=status_detail,
    )
    return bhs + pad4(data)


def login_request(
    keys: dict[str, str],
    *,
    itt: int = 1,
    csg: int = 0,
    nsg: int = 1,
    transit: bool = True,
    cmd_sn: int = 0,
    exp_stat_sn: int = 0,
    isid: bytes = b"\x80\x00\x00\x00\x00\x01",
    tsih: int = 0,
    cid: int = 0,
) -> bytes:
    """Client side, for harness self-tests: a Login Request PDU (opcode 0x43)."""
    data = encode_keys(keys)
    flags = (FLAG_T if transit else 0) | ((csg & 3) << 2) | (nsg & 3 if transit else 0)
    bhs = pack_bhs(
        0x40 | OP_LOGIN_REQ,
        flags,
        dsl=len(data),
        isid=isid,
        tsih=tsih,
        itt=itt,
        word20=(cid & 0xFFFF) << 16,
        stat_sn=cmd_sn,  # bytes 24-27 are CmdSN in a request
        exp_cmd_sn=exp_stat_sn,  # bytes 28-31 are ExpStatSN in a request
    )
    return bhs + pad4(data)


@dataclass
class Pdu:
    """A received PDU: raw BHS and (unpadded) data segment."""

    bhs: bytes
    data: bytes

    @property
    def opcode(self) -> int:
        return self.bhs[0] & 0x3F

    @property
    def immediate(self) -> bool:
        return bool(self.bhs[0] & 0x40)

    @property
    def flags(self) -> int:
        return self.bhs[1]

    @property
    def transit(self) -> bool:
        return bool(self.flags & FLAG_T)

    @property
    def cont(self) -> bool:
        return bool(self.flags & FLAG_C)

    @property
    def csg(self) -> int:
        return (self.flags >> 2) & 3

    @property
    def nsg(self) -> int:
        return self.flags & 3

    @property
    def dsl(self) -> int:
        return int.from_bytes(self.bhs[5:8], "big")

    @property
    def isid(self) -> bytes:
        return self.bhs[8:14]

    @property
    def tsih(self) -> int:
        return int(struct.unpack_from(">H", self.bhs, 14)[0])

    @property
    def itt(self) -> int:
        return int(struct.unpack_from(">I", self.bhs, 16)[0])

    @property
    def cid(self) -> int:
        return int(struct.unpack_from(">H", self.bhs, 20)[0])

    @property
    def cmd_sn(self) -> int:
        return int(struct.unpack_from(">I", self.bhs, 24)[0])

    @property
    def exp_stat_sn(self) -> int:
        return int(struct.unpack_from(">I", self.bhs, 28)[0])

    @property
    def keys(self) -> dict[str, str]:
        return decode_keys(self.data)


class _Closed(Exception):
    pass


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 65536))
        if not chunk:
            raise _Closed
        buf += chunk
    return bytes(buf)


def recv_pdu(sock: socket.socket) -> Pdu:
    """Read one PDU (BHS, AHS, padded data; no digests). Raises on EOF/timeout."""
    bhs = _recv_exact(sock, BHS_LEN)
    ahs_len = bhs[4] * 4
    dsl = int.from_bytes(bhs[5:8], "big")
    if dsl > MAX_ACCEPTED_DSL:
        raise _Closed
    if ahs_len:
        _recv_exact(sock, ahs_len)
    data = _recv_exact(sock, dsl + (-dsl % 4))[:dsl] if dsl else b""
    return Pdu(bhs, data)


# ------------------------------------------------------- login negotiation

_TARGET_MRDSL = 8192


def _scsi_response(pdu: Pdu, stat_sn: int) -> bytes:
    """SCSI Response, GOOD, for a command without data (the window stays 32 wide)."""
    return pack_bhs(
        OP_SCSI_RSP,
        FLAG_F,
        itt=pdu.itt,
        stat_sn=stat_sn,
        exp_cmd_sn=pdu.cmd_sn + 1,
        max_cmd_sn=pdu.cmd_sn + 32,
    )


def _negotiate(keys: dict[str, str], require_data_digest: bool = False) -> dict[str, str]:
    """Answer operational keys with RFC 7143 result functions (minimal target).

    ``require_data_digest``: a target configured to insist on DataDigest=CRC32C (as LIO can
    be); an offer without CRC32C gets ``Reject`` (RFC 7143 §6.2: no acceptable value)."""
    out: dict[str, str] = {}
    declarative = {
        "InitiatorName", "InitiatorAlias", "TargetName", "SessionType", "TargetAlias",
        "MaxRecvDataSegmentLength", "AuthMethod",
    }  # fmt: skip
    for k, v in keys.items():
        if k in declarative or k.startswith("CHAP_"):
            continue
        try:
            if k == "DataDigest" and require_data_digest:
                out[k] = "CRC32C" if "CRC32C" in v.split(",") else "Reject"
            elif k in ("HeaderDigest", "DataDigest"):
                out[k] = "None"
            elif k == "MaxConnections":
                out[k] = "1"
            elif k == "InitialR2T":
                out[k] = "Yes"
            elif k == "ImmediateData":
                out[k] = "Yes" if v == "Yes" else "No"
            elif k == "MaxBurstLength":
                out[k] = str(min(int(v), 262144))
            elif k == "FirstBurstLength":
                out[k] = str(min(int(v), 65536))
            elif k == "DefaultTime2Wait":
                out[k] = str(max(int(v), 2))
            elif k == "DefaultTime2Retain":
                out[k] = "0"
            elif k == "MaxOutstandingR2T":
                out[k] = "1"
            elif k in ("DataPDUInOrder", "DataSequenceInOrder"):
                out[k] = "Yes"
            elif k == "ErrorRecoveryLevel":
                out[k] = "0"
            elif k in ("IFMarker", "OFMarker"):
                out[k] = "No"
            else:
                out[k] = "NotUnderstood"
        except ValueError:
            out[k] = "Reject"
    return out


# ----------------------------------------------------------------- the target


class FakeTarget:
    """Scripted misbehaving iSCSI target on a loopback port (background threads).

    A handler that crashes records the exception in :attr:`errors`; every instance is kept
    in :attr:`instances` so tests/conftest.py fails any test during which one did (a crashed
    fault handler must not pass for the fault it was meant to inject).
    """

    instances: ClassVar[list[FakeTarget]] = []

    def __init__(
        self,
        mode: str,
        *,
        host: str = "127.0.0.1",
        delay: float = 0.0,
        status_class: int = 0,
        status_detail: int = 0,
        target_address: str | None = None,
        seed: int = 0,
        lifetime: float = 60.0,
        io_timeout: float = 30.0,
        cmd_interval: float = 0.0,
        nop_delay: float | None = 0.0,
        luns: dict[int, FakeLun] | None = None,
        iqn: str = "iqn.2026-12.example:fake",
        report_luns: Callable[[bytes], bytes] | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
        if host not in ("127.0.0.1", "::1", "localhost") and not host.startswith("127."):
            raise HarnessError(f"FakeTarget may only listen on loopback, not {host!r}")
        if mode == "login_status" and status_class == 1 and target_address is None:
            raise ValueError("a redirect (status class 1) needs target_address='host:port'")
        self.mode = mode
        self.host = host
        self.delay = delay
        self.status_class = status_class
        self.status_detail = status_detail
        self.target_address = target_address
        self.lifetime = lifetime
        self.io_timeout = io_timeout
        self.cmd_interval = cmd_interval
        self.nop_delay = nop_delay
        self.completed = 0  # scsi: commands completed
        self.pings = 0  # scsi: NOP-Out pings received
        self.port = 0
        self.login_requests: list[Pdu] = []
        self.logins_completed = 0
        self._connections = 0
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._conn_threads: list[threading.Thread] = []
        self._conn_socks: list[socket.socket] = []
        self._deadline = 0.0
        self.errors: list[BaseException] = []
        self.luns: dict[int, FakeLun] = dict(luns or {})  # luns: the LUNs served
        self.iqn = iqn
        self.report_luns = report_luns  # luns: given the honest data, returns what is sent
        self.commands: list[bytes] = []  # luns: every CDB received
        FakeTarget.instances.append(self)

    # ------------------------------------------------------------ lifecycle

    @property
    def portal(self) -> str:
        return format_portal(self.host, self.port)

    @property
    def connections(self) -> int:
        """Number of TCP connections accepted so far."""
        with self._lock:
            return self._connections

    def start(self) -> FakeTarget:
        self._deadline = time.monotonic() + self.lifetime
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        if self.mode == "refuse":
            # Bound but never listening, and held until stop(): a connection is refused
            # (RST) and no other process can take the port meanwhile (a port that was
            # merely free a moment ago could be anyone's by the time the test connects).
            holder = socket.socket(family, socket.SOCK_STREAM)
            holder.bind((self.host, 0))
            self._listener = holder
            self.port = holder.getsockname()[1]
            return self
        lst = socket.socket(family, socket.SOCK_STREAM)
        lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lst.bind((self.host, 0))
        lst.listen(16)
        lst.settimeout(0.1)
        self._listener = lst
        self.port = lst.getsockname()[1]
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"faketarget-{self.mode}-{self.port}", daemon=True
        )
        self._accept_thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, close every connection, join the threads (bounded)."""
        self._stop.set()
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            socks = list(self._conn_socks)
            threads = list(self._conn_threads)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        deadline = time.monotonic() + timeout
        for t in [self._accept_thread, *threads]:
            if t is not None:
                t.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> FakeTarget:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<FakeTarget {self.mode} {self.portal} connections={self.connections}>"

    # ----------------------------------------------------------- internals

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            conn.settimeout(self.io_timeout)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            with self._lock:
                self._connections += 1
                self._conn_socks.append(conn)
                self._conn_threads.append(t)
            t.start()
        if not self._stop.is_set():  # lifetime over: close everything
            self._stop.set()
            with self._lock:
                socks = list(self._conn_socks)
            for s in socks:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _serve(self, conn: socket.socket) -> None:
        try:
            handler = getattr(self, f"_mode_{self.mode}")
            handler(conn)
        except (_Closed, OSError):
            pass
        except BaseException as exc:  # recorded for the test to inspect
            self.errors.append(exc)
        finally:
            conn.close()

    def _recv_login(self, conn: socket.socket) -> Pdu:
        pdu = recv_pdu(conn)
        if pdu.opcode == OP_LOGIN_REQ:
            with self._lock:
                self.login_requests.append(pdu)
        return pdu

    def _drain_until_closed(self, conn: socket.socket, limit: float = 5.0) -> None:
        """Read until the peer closes (bounded), so our close sends FIN, not RST."""
        end = min(time.monotonic() + limit, self._deadline)
        conn.settimeout(0.1)
        while not self._stop.is_set() and time.monotonic() < end:
            try:
                if not conn.recv(65536):
                    return
            except TimeoutError:
                continue

    def _mode_silent(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            try:
                if not conn.recv(65536):
                    return
            except TimeoutError:
                continue

    def _mode_garbage(self, conn: socket.socket) -> None:
        while not self._stop.is_set():
            pdu = recv_pdu(conn)
            if pdu.opcode == OP_LOGIN_REQ:
                with self._lock:
                    self.login_requests.append(pdu)
            with self._lock:
                junk = self._rng.randbytes(BHS_LEN + self._rng.randrange(0, 208))
            conn.sendall(junk)

    def _mode_close_mid_pdu(self, conn: socket.socket) -> None:
        req = self._recv_login(conn)
        rsp = login_response(req, keys={"AuthMethod": "None"}, transit=True, csg=0, nsg=1)
        conn.sendall(rsp[: BHS_LEN // 2])
        conn.shutdown(socket.SHUT_WR)

    def _mode_hostile_length(self, conn: socket.socket) -> None:
        req = self._recv_login(conn)
        bhs = pack_bhs(
            OP_LOGIN_RSP,
            FLAG_T | (req.csg << 2) | 1,
            dsl=0xFFFFFF,
            isid=req.isid,
            itt=req.itt,
            exp_cmd_sn=req.cmd_sn,
            max_cmd_sn=req.cmd_sn,
        )
        conn.sendall(bhs + b"A" * 4096)
        self._mode_silent(conn)

    def _mode_login_status(self, conn: socket.socket) -> None:
        req = self._recv_login(conn)
        keys: dict[str, str] = {}
        if self.status_class == 1 and self.target_address is not None:
            addr = self.target_address
            if "," not in addr.rsplit("]", 1)[-1]:
                addr += ",1"
            keys["TargetAddress"] = addr
        rsp = login_response(
            req,
            keys=keys,
            csg=req.csg,
            status_class=self.status_class,
            status_detail=self.status_detail,
        )
        conn.sendall(rsp)
        conn.shutdown(socket.SHUT_WR)
        self._drain_until_closed(conn)

    def _mode_slow(self, conn: socket.socket) -> None:
        stat_sn = self._login_phase(conn)
        while stat_sn is not None and not self._stop.is_set():
            pdu = recv_pdu(conn)
            # full feature phase: NOP and Logout only
            if pdu.opcode == OP_NOP_OUT:
                if pdu.itt != 0xFFFFFFFF:
                    conn.sendall(self._nop_in(pdu, stat_sn))
                    stat_sn += 1
                continue
            if pdu.opcode == OP_LOGOUT_REQ:
                self._logout(conn, pdu, stat_sn)
                return
            return  # anything else: not supported, close

    @staticmethod
    def _nop_in(pdu: Pdu, stat_sn: int) -> bytes:
        return pack_bhs(
            OP_NOP_IN,
            FLAG_F,
            itt=pdu.itt,
            word20=0xFFFFFFFF,
            stat_sn=stat_sn,
            exp_cmd_sn=pdu.cmd_sn + (0 if pdu.immediate else 1),
            max_cmd_sn=pdu.cmd_sn + 32,
        )

    def _logout(self, conn: socket.socket, pdu: Pdu, stat_sn: int) -> None:
        conn.sendall(
            pack_bhs(
                OP_LOGOUT_RSP,
                FLAG_F,
                itt=pdu.itt,
                stat_sn=stat_sn,
                exp_cmd_sn=pdu.cmd_sn + (0 if pdu.immediate else 1),
                max_cmd_sn=pdu.cmd_sn + 32,
            )
        )
        conn.shutdown(socket.SHUT_WR)
        self._drain_until_closed(conn)

    def _login_phase(self, conn: socket.socket) -> int | None:
        """The ``slow`` login (``delay`` before the first answer); the next StatSN, or None."""
        stat_sn = 0x100
        first = True
        while not self._stop.is_set():
            pdu = self._recv_login(conn)
            if pdu.opcode != OP_LOGIN_REQ:
                return None
            if first and self.delay > 0 and self._stop.wait(self.delay):
                return None
            keys_out: dict[str, str] = {}
            if first:
                keys_out["TargetPortalGroupTag"] = "1"
            first = False
            if pdu.cont:  # partial key set: acknowledge, wait for the rest
                conn.sendall(login_response(pdu, csg=pdu.csg, stat_sn=stat_sn))
                stat_sn += 1
                continue
            keys = pdu.keys
            if pdu.csg == 0:
                methods = keys.get("AuthMethod", "None").split(",")
                if "None" not in methods:
                    conn.sendall(
                        login_response(pdu, csg=0, stat_sn=stat_sn, status_class=2, status_detail=1)
                    )
                    conn.shutdown(socket.SHUT_WR)
                    self._drain_until_closed(conn)
                    return None
                if "AuthMethod" in keys:
                    keys_out["AuthMethod"] = "None"
            keys_out.update(_negotiate(keys, self.mode == "require_data_digest"))
            if pdu.csg == 1 or (pdu.transit and pdu.nsg == 3):
                keys_out.setdefault("MaxRecvDataSegmentLength", str(_TARGET_MRDSL))
            final = pdu.transit and pdu.nsg == 3
            if final:  # count before sending, so a client that got the reply sees it
                with self._lock:
                    self.logins_completed += 1
            conn.sendall(
                login_response(
                    pdu,
                    keys=keys_out,
                    transit=pdu.transit,
                    csg=pdu.csg,
                    nsg=pdu.nsg,
                    tsih=1 if final else 0,
                    stat_sn=stat_sn,
                )
            )
            stat_sn += 1
            if final:
                return stat_sn
        return None

    def _mode_scsi(self, conn: socket.socket) -> None:
        """A slow but alive target: SCSI commands (no data) complete GOOD one at a time,
        ``cmd_interval`` s apart, in arrival order, however many are queued; NOP-Out pings
        are answered after ``nop_delay`` s (None: never). Counts in ``completed``/``pings``."""
        stat_sn = self._login_phase(conn)
        if stat_sn is None:
            return
        send_lock = threading.Lock()
        sn = [stat_sn]
        queue: list[Pdu] = []
        ready = threading.Condition()

        def send(pdu: Pdu, build: Callable[[int], bytes]) -> None:
            with send_lock:
                data = build(sn[0])
                sn[0] += 1
                conn.sendall(data)

        def worker() -> None:
            while not self._stop.is_set():
                with ready:
                    while not queue and not self._stop.is_set():
                        ready.wait(0.1)
                    if self._stop.is_set():
                        return
                    pdu = queue.pop(0)
                if self._stop.wait(self.cmd_interval):
                    return
                with contextlib.suppress(OSError):
                    send(pdu, lambda n, p=pdu: _scsi_response(p, n))
                    with self._lock:
                        self.completed += 1

        def answer_ping(pdu: Pdu) -> None:
            if self.nop_delay is None:
                return
            if self.nop_delay and self._stop.wait(self.nop_delay):
                return
            with contextlib.suppress(OSError):
                send(pdu, lambda n: self._nop_in(pdu, n))

        threading.Thread(target=worker, daemon=True).start()
        while not self._stop.is_set():
            pdu = recv_pdu(conn)
            if pdu.opcode == OP_SCSI_CMD:
                with ready:
                    queue.append(pdu)
                    ready.notify()
            elif pdu.opcode == OP_NOP_OUT and pdu.itt != 0xFFFFFFFF:
                with self._lock:
                    self.pings += 1
                threading.Thread(target=answer_ping, args=(pdu,), daemon=True).start()
            elif pdu.opcode == OP_LOGOUT_REQ:
                with send_lock:
                    self._logout(conn, pdu, sn[0])
                return
            elif pdu.opcode != OP_NOP_OUT:
                return

    def _mode_luns(self, conn: socket.socket) -> None:
        """A target with LUNs holding data (see :class:`FakeLun`), answering what they say."""
        stat_sn = self._login_phase(conn)
        if stat_sn is None:
            return
        _ScsiConnection(self, conn, _TARGET_MRDSL).serve(recv_pdu(conn), stat_sn)

    def _mode_require_data_digest(self, conn: socket.socket) -> None:
        """Like ``slow`` (no delay), but DataDigest must be CRC32C. Only NOP-Out and Logout
        follow, which carry no data segment, so no data digest is ever on the wire."""
        self._mode_slow(conn)


# --------------------------------------------------------- LUNs with data (mode "luns")

OP_DATA_OUT = 0x05
OP_DATA_IN = 0x25
OP_TEXT_RSP = 0x24
OP_R2T = 0x31
GOOD = 0x00
CHECK_CONDITION = 0x02
ILLEGAL_REQUEST = 0x05
NOT_READY = 0x02


@dataclass
class FakeLun:
    """One LUN of a ``luns`` fake target, with a real (in-memory) backing store.

    ``blocks`` x ``block_size`` bytes are readable and writable. The answers to INQUIRY and
    READ CAPACITY are built from these unless overridden: ``inquiry`` (raw standard INQUIRY
    data), ``rc16``/``rc10`` (raw READ CAPACITY data), ``rc16_unsupported`` (ILLEGAL REQUEST,
    so the initiator falls back to READ CAPACITY(10)); ``not_ready`` fails TEST UNIT READY.
    """

    blocks: int = 128
    block_size: int = 512
    device_type: int = 0
    inquiry: bytes | None = None
    rc16: bytes | None = None
    rc10: bytes | None = None
    rc16_unsupported: bool = False
    not_ready: bool = False
    data: bytearray = field(default_factory=bytearray)
    #: scripted answers: ``hook(cdb, data_out)`` is asked first; it returns the Data-In
    #: bytes, None for the built-in answer, or raises :class:`FakeCheckCondition`
    hook: Callable[[bytes, bytes], bytes | None] | None = None
    lbpme: bool = False  # READ CAPACITY(16) says thin (with LBPRZ=1 when lbprz)
    lbprz: bool = False
    # GET LBA STATUS(16): (starting LBA, allocation length) -> the parameter data sent
    # (cut to the allocation length); None: ILLEGAL REQUEST
    lba_status: Callable[[int, int], bytes] | None = None

    def __post_init__(self) -> None:
        if not self.data and self.device_type == 0:
            self.data = bytearray(self.blocks * self.block_size)

    def standard_inquiry(self) -> bytes:
        if self.inquiry is not None:
            return self.inquiry
        return (
            bytes((self.device_type, 0, 5, 2, 31, 0, 0, 0x02))
            + b"FAKE    "
            + b"HOSTILE-DISK    "
            + b"0001"
        )

    def read_capacity16(self) -> bytes:
        if self.rc16 is not None:
            return self.rc16
        flags = (0x80 if self.lbpme else 0) | (0x40 if self.lbprz else 0)
        return (
            (self.blocks - 1).to_bytes(8, "big")
            + self.block_size.to_bytes(4, "big")
            + bytes((0, 0, flags))
            + bytes(17)
        )

    def read_capacity10(self) -> bytes:
        if self.rc10 is not None:
            return self.rc10
        last = min(self.blocks - 1, 0xFFFFFFFF)
        return last.to_bytes(4, "big") + self.block_size.to_bytes(4, "big")


def _rc16(last_lba: int, block_length: int) -> bytes:
    return last_lba.to_bytes(8, "big") + block_length.to_bytes(4, "big") + bytes(20)


def _rc10(last_lba: int, block_length: int) -> bytes:
    return last_lba.to_bytes(4, "big") + block_length.to_bytes(4, "big")


def _rc10_only(lun: FakeLun, rc10: bytes) -> None:
    lun.rc16_unsupported = True
    lun.rc10 = rc10


HOSTILE_LUN: dict[str, Callable[[FakeLun], None]] = {
    # tgt's answer for an empty backing file: 0 blocks - 1, wrapped
    "last LBA 2^64-1": lambda lun: setattr(lun, "rc16", _rc16(2**64 - 1, 512)),
    "capacity 0": lambda lun: setattr(lun, "rc16", _rc16(0, 0)),
    "capacity 2^64": lambda lun: setattr(lun, "rc16", _rc16(2**55 - 1, 512)),
    "block length 0": lambda lun: setattr(lun, "rc16", _rc16(127, 0)),
    "block length 3": lambda lun: setattr(lun, "rc16", _rc16(127, 3)),
    "block length 1 MiB": lambda lun: setattr(lun, "rc16", _rc16(127, 1 << 20)),
    "READ CAPACITY of 4 bytes": lambda lun: setattr(lun, "rc16", bytes(4)),
    "READ CAPACITY(10) of 4 bytes": lambda lun: _rc10_only(lun, bytes(4)),
    "READ CAPACITY(10) block length 3": lambda lun: _rc10_only(lun, _rc10(127, 3)),
    "INQUIRY of 5 bytes": lambda lun: setattr(lun, "inquiry", lun.standard_inquiry()[:5]),
    "INQUIRY of 35 bytes": lambda lun: setattr(lun, "inquiry", lun.standard_inquiry()[:35]),
}
"""Per-LUN hostile values: name -> how to make a :class:`FakeLun` answer with it."""

INQUIRY_HOSTILE = frozenset(name for name in HOSTILE_LUN if name.startswith("INQUIRY"))


def _entries(data: bytes) -> bytes:
    return data[8:]


HOSTILE_REPORT_LUNS: dict[str, Callable[[bytes], bytes]] = {
    # the list is cut off in the middle of its last entry (the length field is honest)
    "cut mid-entry": lambda d: d[:-4],
    # the length field claims 1000 entries more than are sent
    "length larger": lambda d: (len(d) - 8 + 8000).to_bytes(4, "big") + d[4:],
    # the length field claims one entry less than is sent
    "length smaller": lambda d: (len(d) - 16).to_bytes(4, "big") + d[4:],
    "length 4 GiB": lambda d: (0xFFFFFFF8).to_bytes(4, "big") + d[4:],
    "length not a multiple of 8": lambda d: (len(d) - 8 + 4).to_bytes(4, "big") + d[4:] + bytes(4),
    "duplicated LUNs": lambda d: (2 * (len(d) - 8)).to_bytes(4, "big") + d[4:] + _entries(d),
}
"""Hostile REPORT LUNS answers: name -> function of the honest data."""


def _sense(key: int, asc: int, ascq: int = 0) -> bytes:
    return bytes((0x70, 0, key, 0, 0, 0, 0, 10, 0, 0, 0, 0, asc, ascq, 0, 0, 0, 0))


class _CheckCondition(Exception):
    def __init__(self, key: int, asc: int, ascq: int = 0) -> None:
        super().__init__(key, asc, ascq)
        self.sense = _sense(key, asc, ascq)


FakeCheckCondition = _CheckCondition
"""Raise from a :attr:`FakeLun.hook` to answer CHECK CONDITION (fixed-format sense)."""


def _bhs(
    opcode: int,
    flags: int,
    *,
    byte2: int = 0,
    byte3: int = 0,
    dsl: int = 0,
    lun: bytes = bytes(8),
    words: tuple[int, ...] = (),
) -> bytes:
    """A BHS: opcode, flags, bytes 2-3, DataSegmentLength, LUN, then 32-bit words 16..44."""
    bhs = bytearray(BHS_LEN)
    bhs[0] = opcode
    bhs[1] = flags
    bhs[2] = byte2
    bhs[3] = byte3
    bhs[5:8] = dsl.to_bytes(3, "big")
    bhs[8:16] = lun
    for i, word in enumerate(words):
        struct.pack_into(">I", bhs, 16 + 4 * i, word & 0xFFFFFFFF)
    return bytes(bhs)


def _decode_lun(raw: bytes) -> int:
    if raw[0] >> 6 == 0b01:
        return (raw[0] & 0x3F) << 8 | raw[1]
    return raw[1]


def _encode_lun(lun: int) -> bytes:
    first = 0x00 if lun <= 0xFF else 0x40 | (lun >> 8)
    return bytes((first, lun & 0xFF)) + bytes(6)


class _ScsiConnection:
    """The full feature phase of one ``luns`` connection (commands handled in order)."""

    def __init__(self, target: FakeTarget, conn: socket.socket, initiator_mrdsl: int) -> None:
        self.target = target
        self.conn = conn
        self.mrdsl = max(512, initiator_mrdsl)
        self.stat_sn = 0
        self.exp_cmd_sn = 0
        self.deferred: deque[Pdu] = deque()

    def _window(self, pdu: Pdu) -> None:
        if pdu.opcode in (OP_SCSI_CMD, OP_TEXT_REQ, OP_NOP_OUT, OP_LOGOUT_REQ):
            nxt = pdu.cmd_sn + (0 if pdu.immediate else 1)
            if (nxt - self.exp_cmd_sn) & 0x80000000 == 0:
                self.exp_cmd_sn = nxt & 0xFFFFFFFF

    def _sns(self, advance: bool) -> tuple[int, int, int]:
        stat_sn = self.stat_sn
        if advance:
            self.stat_sn = (self.stat_sn + 1) & 0xFFFFFFFF
        return stat_sn, self.exp_cmd_sn, self.exp_cmd_sn + 31

    def _next(self) -> Pdu:
        if self.deferred:
            return self.deferred.popleft()
        return recv_pdu(self.conn)

    def serve(self, first: Pdu, stat_sn: int) -> int:
        self.stat_sn = stat_sn
        self.exp_cmd_sn = first.cmd_sn
        pdu = first
        while not self.target._stop.is_set():
            self._window(pdu)
            if pdu.opcode == OP_SCSI_CMD:
                self._command(pdu)
            elif pdu.opcode == OP_TEXT_REQ:
                self._text(pdu)
            elif pdu.opcode == OP_NOP_OUT:
                if pdu.itt != 0xFFFFFFFF:
                    sn = self._sns(True)
                    words = (pdu.itt, 0xFFFFFFFF, *sn)
                    self.conn.sendall(_bhs(OP_NOP_IN, FLAG_F, words=words))
            elif pdu.opcode == OP_LOGOUT_REQ:
                sn = self._sns(True)
                self.conn.sendall(_bhs(OP_LOGOUT_RSP, FLAG_F, words=(pdu.itt, 0, *sn)))
                self.conn.shutdown(socket.SHUT_WR)
                self.target._drain_until_closed(self.conn)
                return self.stat_sn
            elif pdu.opcode == OP_DATA_OUT:
                pass  # data for a command already answered (e.g. refused): dropped
            else:
                return self.stat_sn
            pdu = self._next()
        return self.stat_sn

    def _text(self, pdu: Pdu) -> None:
        keys = pdu.keys
        pairs: list[tuple[str, str]] = []
        if "SendTargets" in keys:
            host, port = self.conn.getsockname()[:2]
            address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            pairs = [("TargetName", self.target.iqn), ("TargetAddress", f"{address},1")]
        data = encode_keys(pairs)
        sn = self._sns(True)
        self.conn.sendall(
            _bhs(OP_TEXT_RSP, FLAG_F, dsl=len(data), words=(pdu.itt, 0xFFFFFFFF, *sn)) + pad4(data)
        )

    def _collect(self, pdu: Pdu, lun_raw: bytes, length: int) -> bytes:
        """The command's Data-Out: immediate data, then R2T for the rest (one at a time)."""
        data = bytearray(pdu.data)
        r2t_sn = 0
        ttt = 0x1000
        max_burst = 262144
        while len(data) < length:
            want = min(length - len(data), max_burst)
            sn = self._sns(False)
            words = (pdu.itt, ttt, *sn, r2t_sn, len(data), want)
            self.conn.sendall(_bhs(OP_R2T, FLAG_F, lun=lun_raw, words=words))
            r2t_sn += 1
            end = len(data) + want
            while len(data) < end:
                nxt = recv_pdu(self.conn)
                if nxt.opcode != OP_DATA_OUT or nxt.itt != pdu.itt:
                    self.deferred.append(nxt)
                    continue
                offset = int(struct.unpack_from(">I", nxt.bhs, 40)[0])
                if offset != len(data):
                    raise _Closed
                data += nxt.data
            ttt += 1
        return bytes(data[:length])

    def _command(self, pdu: Pdu) -> None:
        flags = pdu.bhs[1]
        lun_raw = pdu.bhs[8:16]
        edtl = int(struct.unpack_from(">I", pdu.bhs, 20)[0])
        cdb = pdu.bhs[32:48]
        with self.target._lock:
            self.target.commands.append(cdb)
        out = b""
        if flags & 0x20:  # W
            out = self._collect(pdu, lun_raw, edtl)
        try:
            data = self._execute(_decode_lun(lun_raw), cdb, out)
        except _CheckCondition as exc:
            self._respond(pdu, lun_raw, CHECK_CONDITION, sense=exc.sense)
            return
        if not flags & 0x40 or (not data and not edtl):  # no Data-In
            self._respond(pdu, lun_raw, GOOD)
            return
        self._data_in(pdu, lun_raw, data, edtl)

    def _respond(self, pdu: Pdu, lun_raw: bytes, status: int, sense: bytes = b"") -> None:
        data = (len(sense).to_bytes(2, "big") + sense) if sense else b""
        sn = self._sns(True)
        words = (pdu.itt, 0, *sn, 0, 0, 0)
        self.conn.sendall(
            _bhs(OP_SCSI_RSP, FLAG_F, byte3=status, dsl=len(data), words=words) + pad4(data)
        )

    def _data_in(self, pdu: Pdu, lun_raw: bytes, data: bytes, edtl: int) -> None:
        residual_flag, residual = 0, 0
        if len(data) < edtl:
            residual_flag, residual = 0x02, edtl - len(data)
        elif len(data) > edtl:
            residual_flag, residual = 0x04, len(data) - edtl
            data = data[:edtl]
        pos = 0
        data_sn = 0
        while True:
            chunk = data[pos : pos + self.mrdsl]
            last = pos + len(chunk) >= len(data)
            if last:
                sn = self._sns(True)
                flags = FLAG_F | 0x01 | residual_flag
                words = (pdu.itt, 0xFFFFFFFF, *sn, data_sn, pos, residual)
            else:
                _, exp, mx = self._sns(False)
                flags = 0
                words = (pdu.itt, 0xFFFFFFFF, 0, exp, mx, data_sn, pos, 0)
            self.conn.sendall(
                _bhs(OP_DATA_IN, flags, byte3=GOOD if last else 0, dsl=len(chunk), lun=lun_raw,
                     words=words)
                + pad4(chunk)
            )  # fmt: skip
            if last:
                return
            pos += len(chunk)
            data_sn += 1

    def _execute(self, lun: int, cdb: bytes, out: bytes) -> bytes:
        op = cdb[0]
        target = self.target
        if op == 0xA0:  # REPORT LUNS (well-known: any LUN)
            alloc = int.from_bytes(cdb[6:10], "big")
            with target._lock:
                luns = sorted(target.luns)
                hostile = target.report_luns
            entries = b"".join(_encode_lun(n) for n in luns)
            honest = len(entries).to_bytes(4, "big") + bytes(4) + entries
            return (hostile(honest) if hostile else honest)[:alloc]
        with target._lock:
            fake = target.luns.get(lun)
        if fake is None:
            if op == 0x12 and not cdb[1] & 1:  # INQUIRY of a missing LUN: qualifier 3
                return bytes((0x7F, 0, 5, 2, 31)) + bytes(31)
            raise _CheckCondition(ILLEGAL_REQUEST, 0x25)  # LOGICAL UNIT NOT SUPPORTED
        if fake.hook is not None:
            scripted = fake.hook(bytes(cdb), out)
            if scripted is not None:
                return scripted
        if op == 0x00:
            if fake.not_ready:
                raise _CheckCondition(NOT_READY, 0x04, 0x00)
            return b""
        if op == 0x12:
            if cdb[1] & 1:
                raise _CheckCondition(ILLEGAL_REQUEST, 0x24)  # no VPD pages here
            return fake.standard_inquiry()
        if op == 0x25:
            return fake.read_capacity10()
        if op == 0x9E and cdb[1] & 0x1F == 0x10:
            if fake.rc16_unsupported:
                raise _CheckCondition(ILLEGAL_REQUEST, 0x20)
            return fake.read_capacity16()
        if op == 0x9E and cdb[1] & 0x1F == 0x12:  # GET LBA STATUS(16)
            if fake.lba_status is None:
                raise _CheckCondition(ILLEGAL_REQUEST, 0x24)
            alloc = int.from_bytes(cdb[10:14], "big")
            return fake.lba_status(int.from_bytes(cdb[2:10], "big"), alloc)[:alloc]
        if op in (0x35, 0x91):
            return b""
        if op in (0x88, 0x8A):
            lba = int.from_bytes(cdb[2:10], "big")
            count = int.from_bytes(cdb[10:14], "big")
            size = fake.block_size
            if lba + count > fake.blocks:
                raise _CheckCondition(ILLEGAL_REQUEST, 0x21)  # LBA OUT OF RANGE
            start, end = lba * size, (lba + count) * size
            if op == 0x88:
                return bytes(fake.data[start:end])
            if len(out) != end - start:
                raise _CheckCondition(ILLEGAL_REQUEST, 0x24)
            fake.data[start:end] = out
            return b""
        raise _CheckCondition(ILLEGAL_REQUEST, 0x20)  # INVALID COMMAND OPERATION CODE


__all__ = [
    "BHS_LEN",
    "HOSTILE_LUN",
    "HOSTILE_REPORT_LUNS",
    "INQUIRY_HOSTILE",
    "MODES",
    "FakeCheckCondition",
    "FakeLun",
    "FakeTarget",
    "Pdu",
    "decode_keys",
    "encode_keys",
    "login_request",
    "login_response",
    "pack_bhs",
    "pad4",
    "recv_pdu",
]
