"""A deliberately minimal, blocking iSCSI connection for the protocol tests.

The session layer never sends a wrong CmdSN or DataSN, so the iSCSI family builds its PDUs
here: login through the initiator's sans-IO :class:`~poolbackend.iscsi.login.LoginMachine`
(CHAP included), no digests, then PDUs exactly as a test wants them.
"""

from __future__ import annotations

import socket
import time

from poolbackend.iscsi import pdu as P
from poolbackend.iscsi.chap import MD5, ChapInitiator
from poolbackend.iscsi.login import (
    LoginConfig,
    LoginMachine,
    LoginRedirect,
    LoginStep,
    LoginSuccess,
    encode_login_request,
)
from poolbackend.iscsi.options import SessionOptions
from poolbackend.iscsi.url import IscsiUrl
from poolbackend.scsi.lun import encode_lun


class RawClosed(Exception):
    """The target closed the connection."""


class RawConnection:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = P.PDUReader(1 << 24)
        self.pending: list[P.PDU] = []
        self.cmd_sn = 1
        self.exp_stat_sn = 0
        self.max_cmd_sn = 1
        self.itt = 0x100
        self.max_xmit = 8192
        self.immediate_data = False
        self.first_burst = 0

    @classmethod
    def login(
        cls,
        url: IscsiUrl,
        initiator: str,
        timeout: float,
        *,
        immediate_data: bool = False,
        discovery: bool = False,
        chap_algorithms: tuple[int, ...] | None = None,
    ) -> RawConnection:
        """Log in to the URL's target (``discovery``: a discovery session, no target)."""
        assert url.target is not None
        sock = socket.create_connection((url.portal.host, url.portal.port), timeout=timeout)
        conn = cls(sock)
        creds = url.credentials
        chap = None
        if creds is not None and not discovery:
            chap = ChapInitiator(
                creds.username,
                creds.secret,
                chap_algorithms or url.chap_algorithms or (MD5,),
                creds.target_username,
                creds.target_secret,
            )
        config = LoginConfig(
            SessionOptions(initiator_name=initiator, header_digest="None", data_digest="None"),
            target_name=None if discovery else url.target,
            isid=b"\x80\x12\x34\x56\x00\x01",
            chap=chap,
            initial_r2t=True,
            immediate_data=immediate_data,
        )
        machine = LoginMachine(config)
        out: LoginStep | LoginSuccess | LoginRedirect = machine.start()
        exp_stat_sn = 0
        while isinstance(out, LoginStep):
            sock.sendall(encode_login_request(config, out, 1, exp_stat_sn))
            pdu = conn.recv(timeout)
            if pdu.opcode == P.Op.LOGIN_RSP and pdu.bhs[36] == 0:
                exp_stat_sn = (pdu.field32(24) + 1) & 0xFFFFFFFF
            out = machine.receive(pdu)
        if isinstance(out, LoginRedirect):
            raise RawClosed("the target redirected the login")
        conn.exp_stat_sn = out.stat_sn
        conn.cmd_sn = out.exp_cmd_sn
        conn.max_cmd_sn = out.max_cmd_sn
        conn.max_xmit = out.params.max_xmit_data_segment_length
        conn.immediate_data = out.params.immediate_data
        conn.first_burst = out.params.first_burst_length
        return conn

    def recv(self, timeout: float) -> P.PDU:
        """The next PDU; TimeoutError when none arrives in time, RawClosed on EOF."""
        deadline = time.monotonic() + timeout
        while not self.pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                raise
            except OSError as exc:
                raise RawClosed(str(exc)) from None
            if not data:
                raise RawClosed("connection closed by the target")
            self.pending += self.reader.feed(data)
        pdu = self.pending.pop(0)
        if pdu.opcode in (
            P.Op.SCSI_RSP,
            P.Op.NOP_IN,
            P.Op.TEXT_RSP,
            P.Op.TMF_RSP,
            P.Op.LOGOUT_RSP,
            P.Op.REJECT,
        ) or (pdu.opcode == P.Op.DATA_IN and pdu.flags & P.F_STATUS):
            self.exp_stat_sn = (pdu.field32(24) + 1) & 0xFFFFFFFF
        if pdu.opcode != P.Op.LOGIN_RSP and len(pdu.bhs) >= 36:
            self.max_cmd_sn = pdu.field32(32)
        return pdu

    def _send(self, bhs: bytearray, data: bytes = b"") -> None:
        self.sock.sendall(b"".join(bytes(b) for b in P.encode(bhs, data)))

    def next_itt(self) -> int:
        self.itt += 1
        return self.itt

    def scsi(
        self,
        lun: int,
        cdb: bytes,
        *,
        edtl: int = 0,
        read: bool = False,
        write: bool = False,
        cmd_sn: int | None = None,
        data: bytes = b"",
    ) -> int:
        itt = self.next_itt()
        flags = P.F_FINAL | (P.F_READ if read else 0) | (P.F_WRITE if write else 0) | 1
        bhs = P.new_bhs(P.Op.SCSI_CMD, flags)
        bhs[8:16] = encode_lun(lun)
        P.put32(bhs, 16, itt)
        P.put32(bhs, 20, edtl)
        P.put32(bhs, 24, self.cmd_sn if cmd_sn is None else cmd_sn)
        P.put32(bhs, 28, self.exp_stat_sn)
        bhs[32:48] = cdb.ljust(16, b"\0")
        if cmd_sn is None:
            self.cmd_sn = (self.cmd_sn + 1) & 0xFFFFFFFF
        self._send(bhs, data)
        return itt

    def data_out(
        self, lun: int, itt: int, ttt: int, data_sn: int, offset: int, data: bytes, final: bool
    ) -> None:
        bhs = P.new_bhs(P.Op.DATA_OUT, P.F_FINAL if final else 0)
        bhs[8:16] = encode_lun(lun)
        P.put32(bhs, 16, itt)
        P.put32(bhs, 20, ttt)
        P.put32(bhs, 28, self.exp_stat_sn)
        P.put32(bhs, 36, data_sn)
        P.put32(bhs, 40, offset)
        self._send(bhs, data)

    def text(self, data: bytes, timeout: float) -> P.PDU:
        """One Text Request carrying ``data`` (raw key=value bytes); the whole answer, its
        continuations followed (the returned PDU's data is the concatenation) or a Reject."""
        itt = self.next_itt()
        ttt = P.NO_TAG
        collected = b""
        while True:
            bhs = P.new_bhs(P.Op.TEXT_REQ, P.F_FINAL)
            P.put32(bhs, 16, itt)
            P.put32(bhs, 20, ttt)
            P.put32(bhs, 24, self.cmd_sn)
            P.put32(bhs, 28, self.exp_stat_sn)
            self.cmd_sn = (self.cmd_sn + 1) & 0xFFFFFFFF
            self._send(bhs, data)
            pdu = self.wait_any(itt, timeout)
            if pdu.opcode != P.Op.TEXT_RSP:
                return pdu
            collected += bytes(pdu.data)
            if pdu.flags & P.F_FINAL and not pdu.flags & P.F_CONTINUE:
                return P.PDU(pdu.bhs, memoryview(collected))
            ttt, data = pdu.ttt, b""

    def wait_any(self, itt: int, timeout: float) -> P.PDU:
        """The next PDU for ``itt`` of any kind (or a Reject)."""
        deadline = time.monotonic() + timeout
        while True:
            pdu = self.recv(max(0.0, deadline - time.monotonic()))
            if pdu.opcode == P.Op.REJECT or pdu.itt == itt:
                return pdu

    def nop(self, data: bytes, timeout: float) -> P.PDU:
        """A NOP-Out ping (immediate) carrying ``data``; the NOP-In answer."""
        itt = self.next_itt()
        bhs = P.new_bhs(P.Op.NOP_OUT, P.F_FINAL, immediate=True)
        P.put32(bhs, 16, itt)
        P.put32(bhs, 20, P.NO_TAG)
        P.put32(bhs, 24, self.cmd_sn)
        P.put32(bhs, 28, self.exp_stat_sn)
        self._send(bhs, data)
        return self.wait_any(itt, timeout)

    def tmf(self, function: int, lun: int, ref_itt: int, ref_cmd_sn: int) -> int:
        itt = self.next_itt()
        bhs = P.new_bhs(P.Op.TMF_REQ, 0x80 | function, immediate=True)
        bhs[8:16] = encode_lun(lun)
        P.put32(bhs, 16, itt)
        P.put32(bhs, 20, ref_itt)
        P.put32(bhs, 24, self.cmd_sn)
        P.put32(bhs, 28, self.exp_stat_sn)
        P.put32(bhs, 32, ref_cmd_sn)
        P.put32(bhs, 36, self.exp_stat_sn)
        self._send(bhs)
        return itt

    def wait(self, itt: int, timeout: float) -> P.PDU:
        """The final PDU of task ``itt`` (SCSI Response, Data-In with status, TMF response,
        Reject naming it); other PDUs are dropped. TimeoutError / RawClosed pass through."""
        deadline = time.monotonic() + timeout
        while True:
            pdu = self.recv(max(0.0, deadline - time.monotonic()))
            if pdu.opcode == P.Op.REJECT:
                # a Reject carries the rejected BHS: its ITT is at byte 16
                if len(pdu.data) >= 20 and int.from_bytes(pdu.data[16:20], "big") == itt:
                    return pdu
                continue
            if pdu.itt != itt:
                continue
            if pdu.opcode in (P.Op.SCSI_RSP, P.Op.TMF_RSP, P.Op.NOP_IN, P.Op.R2T):
                return pdu
            if pdu.opcode == P.Op.DATA_IN and pdu.flags & P.F_STATUS:
                return pdu

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
