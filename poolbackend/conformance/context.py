"""What a conformance test works with: nexuses to the LUN and expectation helpers.

Every command goes through the initiator's public asyncio API (``Session.execute`` with
``check=False``), so a test sees the status and sense exactly as the target sent them (unit
attentions excepted: the session retries those, as every initiator does). The helpers turn a
wrong answer into a :class:`TestFailed` whose message says, in words, what was sent, what
came back and what the standard requires.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TextIO, TypeVar

from poolbackend.conformance.raw import RawClosed, RawConnection
from poolbackend.conformance.registry import TestFailed, TestSkipped
from poolbackend.iscsi.aio import Session, SessionOptions
from poolbackend.iscsi.digest import Buffer
from poolbackend.iscsi.errors import ISCSIError
from poolbackend.iscsi.sync import LoopThread
from poolbackend.iscsi.url import IscsiUrl
from poolbackend.scsi import cdb_ext as X
from poolbackend.scsi.capacity import parse_read_capacity10
from poolbackend.scsi.errors import ScsiParseError
from poolbackend.scsi.inquiry import StandardInquiry, parse_standard_inquiry
from poolbackend.scsi.sense import SenseData, SenseKey, asc_name, parse_sense, sense_key_name
from poolbackend.scsi.status import ScsiStatus, status_name

T = TypeVar("T")

LBA_OUT_OF_RANGE = (0x21, 0x00)
INVALID_FIELD_IN_CDB = (0x24, 0x00)
INVALID_OPCODE = (0x20, 0x00)
INVALID_FIELD_IN_PARAMETER_LIST = (0x26, 0x00)
PARAMETER_LIST_LENGTH_ERROR = (0x1A, 0x00)
MISCOMPARE_DURING_VERIFY = (0x1D, 0x00)

MANDATORY_OPCODES = frozenset(
    (X.Op.TEST_UNIT_READY, X.Op.INQUIRY, X.Op.READ_CAPACITY_10, X.Op.READ_10, X.Op.REPORT_LUNS)
)
"""Commands every SBC-3 device server implements (SPC-4/SBC-3 command tables): for these an
INVALID COMMAND OPERATION CODE is a failure; for any other it skips the test."""


def command_name(cdb: bytes) -> str:
    if cdb[0] == X.Op.SERVICE_ACTION_IN_16 and len(cdb) > 1:
        sa = cdb[1] & 0x1F
        if sa == X.SA_READ_CAPACITY_16:
            return "READ CAPACITY(16)"
        if sa == X.SA_GET_LBA_STATUS:
            return "GET LBA STATUS"
    if cdb[0] == X.Op.MAINTENANCE_IN and len(cdb) > 1 and cdb[1] & 0x1F == 0x0C:
        return "REPORT SUPPORTED OPERATION CODES"
    return X.command_name(cdb[0])


@dataclass(frozen=True)
class Reply:
    """The outcome of one SCSI command as the target reported it."""

    cdb: bytes
    status: int
    data: bytes = b""
    sense: SenseData | None = None
    residual: int = 0
    underflow: bool = False
    overflow: bool = False

    @property
    def name(self) -> str:
        return command_name(self.cdb)

    @property
    def good(self) -> bool:
        return self.status == ScsiStatus.GOOD

    def is_check(self, key: int, *ascs: tuple[int, int]) -> bool:
        s = self.sense
        if self.status != ScsiStatus.CHECK_CONDITION or s is None or s.key != key:
            return False
        return not ascs or (s.asc, s.ascq) in ascs

    @property
    def not_implemented(self) -> bool:
        return self.is_check(SenseKey.ILLEGAL_REQUEST, INVALID_OPCODE)

    def describe(self) -> str:
        """``GOOD`` or ``CHECK CONDITION, ILLEGAL REQUEST / logical block address ...``."""
        text = status_name(self.status)
        if self.status == ScsiStatus.CHECK_CONDITION:
            if self.sense is None:
                return text + " without sense data"
            s = self.sense
            text += (
                f", {sense_key_name(s.key)} / {asc_name(s.asc, s.ascq)} ({s.asc:02X}/{s.ascq:02X})"
            )
        return text


def expectation_text(key: int, ascs: tuple[tuple[int, int], ...]) -> str:
    what = sense_key_name(key)
    if ascs:
        what += " / " + " or ".join(asc_name(a, q).upper() for a, q in ascs)
    return what


class Nexus:
    """One logged-in session (an I_T nexus) to the LUN under test."""

    def __init__(self, ctx: Context, session: Session, initiator: str) -> None:
        self.ctx = ctx
        self.session = session
        self.initiator = initiator
        self.closed = False

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.ctx.loop.run(coro, self.ctx.bound)

    def cmd(self, cdb: bytes, *, read_len: int = 0, data: Buffer | None = None) -> Reply:
        r = self.run(
            self.session.execute(self.ctx.lun, cdb, read_len=read_len, write_data=data, check=False)
        )
        reply = Reply(
            cdb, r.status, bytes(r.data), parse_sense(r.sense), r.residual, r.underflow, r.overflow
        )
        self.ctx.trace(f"  {reply.name} [{cdb.hex()}] -> {reply.describe()}")
        return reply

    def tmf(self, function: int) -> int:
        """A task management function on the LUN; returns the iSCSI response code."""
        response = self.run(self.session.task_management(function, self.ctx.lun))
        self.ctx.trace(f"  task management function {function} -> response {response}")
        return response

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.run(self.session.close())
        except ISCSIError:
            pass


@dataclass
class RunOptions:
    dataloss: bool = False
    allow_sanitize: bool = False
    verbose: bool = False
    out: TextIO | None = None


@dataclass
class Context:
    """Shared by all tests of a run: the URLs, the main nexus and facts about the LUN."""

    url: IscsiUrl
    options: SessionOptions
    run_options: RunOptions = field(default_factory=RunOptions)
    url2: IscsiUrl | None = None
    initiator2: str | None = None
    loop: LoopThread = field(default_factory=lambda: LoopThread("conformance"))
    _main: Nexus | None = None
    _inquiry: StandardInquiry | None = None
    block_size: int = 512
    num_blocks: int = 0
    _vpd: dict[int, bytes | None] = field(default_factory=dict)
    extra: list[Nexus] = field(default_factory=list)

    @property
    def lun(self) -> int:
        assert self.url.lun is not None
        return self.url.lun

    @property
    def bound(self) -> float:
        return self.options.timeout * 4 + 5

    @property
    def initiator(self) -> str:
        return self.options.initiator_name

    @property
    def second_initiator(self) -> str:
        return self.initiator2 or f"{self.options.initiator_name}-2"

    def trace(self, line: str) -> None:
        out = self.run_options.out
        if self.run_options.verbose and out is not None:
            print(line, file=out)

    # -- nexuses -----------------------------------------------------------------------
    def open_nexus(self, initiator: str | None = None, url: IscsiUrl | None = None) -> Nexus:
        url = url or self.url
        opts = dataclasses.replace(self.options)
        if initiator:
            opts.initiator_name = initiator
        assert url.target is not None
        session = self.loop.run(
            Session.open(url.portal, url.target, opts, url.credentials), self.bound * 2
        )
        nexus = Nexus(self, session, opts.initiator_name)
        self.trace(f"  login as {opts.initiator_name}")
        return nexus

    @property
    def main(self) -> Nexus:
        if self._main is None or self._main.closed:
            self._main = self.open_nexus()
        return self._main

    def reset_main(self) -> None:
        """Forget the main nexus (after an iSCSI error); the next use logs in again."""
        if self._main is not None:
            self._main.close()
        self._main = None

    def second(self) -> Nexus:
        """A second I_T nexus: URL2 if given, else the same URL under the second initiator."""
        nexus = self.open_nexus(self.second_initiator, self.url2)
        self.extra.append(nexus)
        return nexus

    def raw_status(self, conn: RawConnection, cdb: bytes) -> int:
        """Status of a command without data on a raw connection (unit attentions retried)."""
        status: int = ScsiStatus.CHECK_CONDITION
        for _ in range(4):
            pdu = conn.wait(conn.scsi(self.lun, cdb), self.options.timeout)
            status = pdu.bhs[3]
            sense = (
                parse_sense(bytes(pdu.data[2:])) if status == ScsiStatus.CHECK_CONDITION else None
            )
            if sense is None or sense.key != SenseKey.UNIT_ATTENTION:
                break
        self.trace(f"  raw {command_name(cdb)} [{cdb.hex()}] -> {status_name(status)}")
        return status

    def nexus_to_lose(self) -> RawConnection:
        """An I_T nexus of the first initiator that a test can lose by dropping its TCP
        connection without a logout (the session layer always logs out)."""
        try:
            return RawConnection.login(self.url, self.initiator, self.options.timeout)
        except (OSError, RawClosed, ISCSIError) as exc:
            raise TestFailed(f"login for the nexus-loss test failed: {exc}") from None

    def close_extra(self) -> None:
        for nexus in self.extra:
            nexus.close()
        self.extra.clear()

    def close(self) -> None:
        self.close_extra()
        if self._main is not None:
            self._main.close()
        self.loop.stop()

    # -- facts about the LUN ---------------------------------------------------------
    def setup(self) -> None:
        """Log in and learn the LUN's type and size (the tests need both)."""
        inq = self.inquiry
        if inq.peripheral_qualifier != 0:
            raise TestSkipped(f"LUN {self.lun} does not exist (peripheral qualifier 3)")
        r = self.cmd(X.read_capacity10(), read_len=8)
        if inq.is_disk and r.good:
            rc10 = parse_read_capacity10(r.data)
            self.block_size = rc10.block_length
            self.num_blocks = rc10.block_count
            if rc10.needs_16:
                r16 = self.cmd(X.read_capacity16(32), read_len=32)
                if r16.good and len(r16.data) >= 12:
                    self.num_blocks = int.from_bytes(r16.data[0:8], "big") + 1
                    self.block_size = int.from_bytes(r16.data[8:12], "big")

    @property
    def inquiry(self) -> StandardInquiry:
        if self._inquiry is None:
            r = self.main.cmd(X.inquiry(alloc=255), read_len=255)
            if not r.good:
                raise TestFailed(f"standard INQUIRY returned {r.describe()}")
            try:
                self._inquiry = parse_standard_inquiry(r.data)
            except ScsiParseError as exc:
                raise TestFailed(f"standard INQUIRY data cannot be parsed: {exc}") from None
        return self._inquiry

    def require_sbc(self) -> None:
        if not self.inquiry.is_disk:
            raise TestSkipped("the LUN is not a direct-access block device (SBC)")

    def vpd(self, page: int) -> bytes | None:
        """VPD page data, or None when the target does not support the page."""
        if page not in self._vpd:
            r = self.cmd(X.inquiry(evpd=True, page=page, alloc=4096), read_len=4096)
            self._vpd[page] = r.data if r.good and len(r.data) >= 4 and r.data[1] == page else None
        return self._vpd[page]

    @property
    def max_transfer_blocks(self) -> int:
        """MAXIMUM TRANSFER LENGTH from the Block Limits page (0: no limit reported)."""
        b0 = self.vpd(0xB0)
        if b0 is None or len(b0) < 12:
            return 0
        return int.from_bytes(b0[8:12], "big")

    # -- commands and expectations ---------------------------------------------------
    def cmd(
        self,
        cdb: bytes,
        *,
        read_len: int = 0,
        data: Buffer | None = None,
        nexus: Nexus | None = None,
    ) -> Reply:
        return (nexus or self.main).cmd(cdb, read_len=read_len, data=data)

    def skip_if_unimplemented(self, reply: Reply) -> None:
        if reply.not_implemented and reply.cdb[0] not in MANDATORY_OPCODES:
            raise TestSkipped(f"{reply.name} is not implemented by the target")

    def expect(self, reply: Reply, ok: bool, expected: str, why: str = "") -> Reply:
        """``reply`` when ``ok``; else skip (an optional command the target lacks) or fail
        saying what came back and what was ``expected``."""
        if not ok:
            self.skip_if_unimplemented(reply)
            raise TestFailed(f"{reply.name}{why} returned {reply.describe()}, expected {expected}")
        return reply

    def good(
        self,
        cdb: bytes,
        *,
        read_len: int = 0,
        data: Buffer | None = None,
        nexus: Nexus | None = None,
        why: str = "",
    ) -> Reply:
        """Send; anything but GOOD fails (an optional command the target lacks skips)."""
        reply = self.cmd(cdb, read_len=read_len, data=data, nexus=nexus)
        return self.expect(reply, reply.good, "GOOD", why)

    def check(
        self,
        cdb: bytes,
        key: int,
        *ascs: tuple[int, int],
        read_len: int = 0,
        data: Buffer | None = None,
        nexus: Nexus | None = None,
        why: str = "",
    ) -> Reply:
        """Send; anything but CHECK CONDITION with this sense key (and one of ``ascs``) fails."""
        reply = self.cmd(cdb, read_len=read_len, data=data, nexus=nexus)
        return self.expect(reply, reply.is_check(key, *ascs), expectation_text(key, ascs), why)

    def lba_out_of_range(self, cdb: bytes, *, why: str = "", **kw: Any) -> Reply:
        return self.check(cdb, SenseKey.ILLEGAL_REQUEST, LBA_OUT_OF_RANGE, why=why, **kw)

    def invalid_field(self, cdb: bytes, *, why: str = "", **kw: Any) -> Reply:
        return self.check(cdb, SenseKey.ILLEGAL_REQUEST, INVALID_FIELD_IN_CDB, why=why, **kw)

    def status(
        self, cdb: bytes, status: int, *, why: str = "", nexus: Nexus | None = None, **kw: Any
    ) -> Reply:
        reply = self.cmd(cdb, nexus=nexus, **kw)
        return self.expect(reply, reply.status == status, status_name(status), why)

    def supported(self, cdb: bytes, **kw: Any) -> Reply:
        """Send a probe; skip the test when the target does not implement the command."""
        reply = self.cmd(cdb, **kw)
        self.skip_if_unimplemented(reply)
        return reply

    # -- data ------------------------------------------------------------------------
    def require_dataloss(self) -> None:
        if not self.run_options.dataloss:
            raise TestSkipped("this test writes to the LUN: run with --dataloss")

    def read(self, lba: int, blocks: int, nexus: Nexus | None = None) -> bytes:
        """READ(10) where it reaches (READ(16) beyond), so a test of the one does not
        depend on the other."""
        op, size = (X.Op.READ_10, 10) if lba + blocks < 1 << 32 else (X.Op.READ_16, 16)
        r = self.good(
            X.lba_cdb(op, lba, blocks, size=size), read_len=blocks * self.block_size, nexus=nexus
        )
        return r.data

    def write(self, lba: int, data: bytes, nexus: Nexus | None = None) -> None:
        blocks = len(data) // self.block_size
        op, size = (X.Op.WRITE_10, 10) if lba + blocks < 1 << 32 else (X.Op.WRITE_16, 16)
        self.good(X.lba_cdb(op, lba, blocks, size=size), data=data, nexus=nexus)

    def pattern(self, blocks: int, byte: int) -> bytes:
        return bytes((byte,)) * (blocks * self.block_size)


__all__ = [
    "INVALID_FIELD_IN_CDB",
    "LBA_OUT_OF_RANGE",
    "Context",
    "Nexus",
    "Reply",
    "RunOptions",
    "TestFailed",
    "TestSkipped",
]
