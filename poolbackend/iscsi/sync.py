"""Synchronous facade over :class:`~poolbackend.iscsi.aio.Session`, like libiscsi's sync layer.

The asyncio session runs on a private event-loop thread, so target NOP pings are answered
even while the caller is busy elsewhere; every call blocks with an outer time bound.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from poolbackend.iscsi.aio import Session, SessionOptions
from poolbackend.iscsi.digest import Buffer
from poolbackend.iscsi.errors import ISCSITimeout
from poolbackend.iscsi.events import ScsiResult
from poolbackend.iscsi.liveness import command_cap
from poolbackend.iscsi.portal import Credentials, Portal
from poolbackend.scsi.inquiry import StandardInquiry
from poolbackend.scsi.lun import LunRef
from poolbackend.text import printable

T = TypeVar("T")


class LoopThread:
    """A private event-loop thread that blocking callers submit coroutines to (this facade,
    the conformance tests), each call with an outer time bound."""

    def __init__(self, name: str = "iscsi-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], bound: float, what: str | None = None) -> T:
        """The coroutine's result, or :class:`ISCSITimeout` (``WHAT: did not finish within N
        s``, without ``what`` ``no answer within N s``) when it has none after ``bound`` s."""
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(bound)
        except TimeoutError:
            fut.cancel()
            late = f"{what}: did not finish" if what else "no answer"
            raise ISCSITimeout(f"{late} within {bound:g} s") from None

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self.loop.close()


class SyncSession:
    """A blocking iSCSI session; use as a context manager or call :meth:`close`."""

    def __init__(self, session: Session, runner: LoopThread) -> None:
        self.session = session
        self._runner = runner

    @classmethod
    def open(
        cls,
        portal: Portal,
        target: str | None,
        options: SessionOptions | None = None,
        credentials: Credentials | None = None,
    ) -> SyncSession:
        options = options or SessionOptions()
        runner = LoopThread()
        try:
            session = runner.run(
                Session.open(portal, target, options, credentials),
                options.timeout * 8 + 5,
                f"login to portal {printable(str(portal))}",
            )
        except BaseException:
            runner.stop()
            raise
        return cls(session, runner)

    def __enter__(self) -> SyncSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def _bound(self) -> float:
        o = self.session.options
        return command_cap(o.timeout) + o.timeout * (o.max_reconnects + 2) * 2 + 5

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._runner.run(coro, self._bound, self.session.what)

    def execute(
        self, lun: LunRef, cdb: bytes, *, read_len: int = 0, write_data: Buffer | None = None
    ) -> ScsiResult:
        return self._run(self.session.execute(lun, cdb, read_len=read_len, write_data=write_data))

    def test_unit_ready(self, lun: LunRef) -> None:
        self._run(self.session.test_unit_ready(lun))

    def inquiry(self, lun: LunRef) -> StandardInquiry:
        return self._run(self.session.inquiry(lun))

    def vpd(self, lun: LunRef, page: int) -> bytes:
        return self._run(self.session.vpd(lun, page))

    def report_luns(self) -> list[int]:
        return self._run(self.session.report_luns())

    def read_capacity(self, lun: LunRef) -> tuple[int, int]:
        return self._run(self.session.read_capacity(lun))

    def read(self, lun: LunRef, lba: int, blocks: int, block_size: int) -> bytes:
        return bytes(self._run(self.session.read(lun, lba, blocks, block_size)))

    def write(self, lun: LunRef, lba: int, data: Buffer, block_size: int) -> None:
        self._run(self.session.write(lun, lba, data, block_size))

    def send_targets(self, value: str = "All") -> list[tuple[str, list[str]]]:
        return self._run(self.session.send_targets(value))

    def ping(self, data: bytes = b"") -> bytes:
        return self._run(self.session.ping(data))

    def close(self) -> None:
        try:
            self._run(self.session.close())
        finally:
            self._runner.stop()
