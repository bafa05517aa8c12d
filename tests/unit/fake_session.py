"""A fake iSCSI session factory for the driver and backend unit tests: no sockets, no asyncio
waits, each answer built from bytes by the real SCSI parsers.

A :class:`FakeTarget` holds LUNs (number -> block count, block length, device type) that a
test changes between commands; a LUN in ``failing`` fails its TEST UNIT READY (NOT READY);
``unreachable`` makes the login fail. :meth:`FakeTarget.factory` is what
:class:`~poolbackend.pool.backends.iscsi_direct.IscsiDirectBackend` takes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from poolbackend.iscsi.aio import SessionOptions
from poolbackend.iscsi.errors import CommandFailed, ConnectionFailed, ISCSIError
from poolbackend.iscsi.events import Event, ScsiResult, TaskCompleted
from poolbackend.iscsi.portal import Credentials, Portal
from poolbackend.scsi.capacity import ReadCapacity16, parse_read_capacity16
from poolbackend.scsi.inquiry import StandardInquiry, parse_standard_inquiry
from poolbackend.scsi.lun import Lun, LunRef
from poolbackend.scsi.reportluns import ReportLuns


@dataclass
class FakeLun:
    blocks: int = 2048
    block_length: int = 512
    device_type: int = 0  # 0 disk, 0x0C storage array controller (tgt's LUN 0)


def inquiry_bytes(device_type: int) -> bytes:
    data = bytearray(36)
    data[0] = device_type & 0x1F
    data[2], data[3], data[4] = 5, 2, 31
    data[8:16] = b"FAKE    "
    data[16:32] = b"FAKE-DISK       "
    data[32:36] = b"0001"
    return bytes(data)


def read_capacity16_bytes(blocks: int, block_length: int) -> bytes:
    data = bytearray(32)
    data[0:8] = (blocks - 1).to_bytes(8, "big")
    data[8:12] = block_length.to_bytes(4, "big")
    return bytes(data)


@dataclass
class FakeTarget:
    iqn: str = "iqn.2026-11.example:fake"
    luns: dict[int, FakeLun] = field(default_factory=dict)
    failing: set[int] = field(default_factory=set)
    unreachable: bool = False
    logins: list[tuple[Portal, str | None, SessionOptions, Credentials | None]] = field(
        default_factory=list
    )
    on_report_luns: Callable[[], None] | None = None  # runs inside a scan (a race's window)

    async def factory(
        self,
        portal: Portal,
        target: str | None,
        options: SessionOptions,
        credentials: Credentials | None = None,
    ) -> FakeSession:
        self.logins.append((portal, target, options, credentials))
        if self.unreachable:
            raise ConnectionFailed(f"portal {portal}: connection refused")
        return FakeSession(self)


class FakeSession:
    """What the pool layer asks of :class:`poolbackend.iscsi.aio.Session`."""

    def __init__(self, target: FakeTarget) -> None:
        self.target = target
        self.closed = False
        self.rid = 0

    def _lun(self, lun: LunRef) -> FakeLun:
        number = lun.number if isinstance(lun, Lun) else int(lun)
        found = self.target.luns.get(number)
        if found is None:
            raise CommandFailed(f"LUN {number}: ILLEGAL REQUEST: logical unit not supported")
        return found

    async def report_luns_data(self) -> ReportLuns:
        if self.target.on_report_luns is not None:
            self.target.on_report_luns()
        entries = tuple(Lun.of(n) for n in sorted(self.target.luns))
        return ReportLuns(entries, 8 + 8 * len(entries))

    def _ready(self, lun: LunRef) -> None:
        self._lun(lun)
        if (lun.number if isinstance(lun, Lun) else int(lun)) in self.target.failing:
            raise CommandFailed(
                f"LUN {lun}: NOT READY: logical unit not ready, cause not reportable"
            )

    async def test_unit_ready(self, lun: LunRef) -> None:
        self._ready(lun)

    async def inquiry(self, lun: LunRef) -> StandardInquiry:
        return parse_standard_inquiry(inquiry_bytes(self._lun(lun).device_type))

    async def read_capacity16(self, lun: LunRef) -> ReadCapacity16 | None:
        found = self._lun(lun)
        return parse_read_capacity16(read_capacity16_bytes(found.blocks, found.block_length))

    async def read_capacity10(self, lun: LunRef) -> tuple[int, int]:
        found = self._lun(lun)
        return found.blocks, found.block_length

    # -- the callback API the scan uses (Session.submit and the answers' parsers) -----------
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
        """Answers as the async methods do: from the event loop, an error as the outcome."""
        outcome: Event | ISCSIError
        try:
            if cdb[0] == 0x00:
                self._ready(lun)
                data = b""
            elif cdb[0] == 0x12:
                data = inquiry_bytes(self._lun(lun).device_type)
            elif cdb[0] == 0x9E:
                found = self._lun(lun)
                data = read_capacity16_bytes(found.blocks, found.block_length)
            else:
                raise AssertionError(f"the fake session does not answer CDB {cdb.hex()}")
            outcome = TaskCompleted(0, ScsiResult(0, data))
        except CommandFailed as exc:
            outcome = exc
        self.rid += 1
        asyncio.get_running_loop().call_soon(callback, self.rid, outcome)
        return self.rid

    @staticmethod
    def result_of(
        lun: LunRef, cdb: bytes, outcome: Event | ISCSIError, check: bool = True
    ) -> ScsiResult:
        if isinstance(outcome, ISCSIError):
            raise outcome
        assert isinstance(outcome, TaskCompleted)
        return outcome.result

    @staticmethod
    def inquiry_data(lun: LunRef, r: ScsiResult) -> StandardInquiry:
        return parse_standard_inquiry(bytes(r.data))

    def read_capacity16_of(self, lun: LunRef, outcome: Event | ISCSIError) -> ReadCapacity16:
        return parse_read_capacity16(bytes(self.result_of(lun, b"", outcome).data))

    async def send_targets(self) -> list[tuple[str, list[str]]]:
        return [(self.target.iqn, [])]

    async def close(self) -> None:
        self.closed = True

    async def __aenter__(self) -> FakeSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
