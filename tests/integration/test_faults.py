"""Faults tgt cannot produce, from the scripted fake target, and TMFs against tgt.

Every case must end within its bound with one clear error naming the portal.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from poolbackend.iscsi.aio import Session, SessionOptions
from poolbackend.iscsi.errors import (
    ConnectionFailed,
    ISCSIError,
    ISCSITimeout,
    LoginFailed,
    RemoteProtocolError,
)
from poolbackend.iscsi.portal import Portal
from tests.conftest import BasicTarget
from tests.harness.faketarget import FakeTarget
from tests.harness.load import slack

IQN = "iqn.2026-11.example:target1"


def open_session(fake: FakeTarget, timeout: float = 2.0) -> None:
    async def go() -> None:
        s = await Session.open(Portal(fake.host, fake.port), IQN, SessionOptions(timeout=timeout))
        await s.close()

    asyncio.run(go())


def test_redirect_is_followed_to_the_real_target(tgt_basic: BasicTarget) -> None:
    addr = f"127.0.0.1:{tgt_basic.port},1"
    with FakeTarget("login_status", status_class=1, status_detail=1, target_address=addr) as fake:

        async def go() -> tuple[int, int]:
            async with await Session.open(Portal(fake.host, fake.port), tgt_basic.iqn) as s:
                assert s.portal == Portal(fake.host, fake.port)  # temporary: portal unchanged
                return await s.read_capacity(1)

        assert asyncio.run(go()) == (131072, 512)
        assert fake.connections == 1


@pytest.mark.parametrize(
    ("mode", "exc", "text"),
    [
        ("garbage", RemoteProtocolError, ""),
        ("close_mid_pdu", ConnectionFailed, "target closed the connection"),
        ("hostile_length", RemoteProtocolError, "above our MaxRecvDataSegmentLength"),
        ("silent", ISCSITimeout, "no answer to login within 2 s"),
    ],
)
def test_hostile_targets_fail_fast_and_clearly(mode: str, exc: type[ISCSIError], text: str) -> None:
    with FakeTarget(mode) as fake:
        start = time.monotonic()
        with pytest.raises(exc) as info:
            open_session(fake)
        assert time.monotonic() - start < 2 + slack(3)  # the 2 s login timeout at most
        assert fake.connections == 1  # failed at the first login, no retry loop
        message = str(info.value)
        assert message.startswith(f"portal {fake.host}:{fake.port}") and text in message
        assert "\n" not in message


def test_login_status_target_not_found() -> None:
    with FakeTarget("login_status", status_class=2, status_detail=3) as fake:
        with pytest.raises(LoginFailed, match=r"target not found \(status 0x0203\)"):
            open_session(fake)


def test_slow_login_within_the_timeout_succeeds_and_beyond_it_fails() -> None:
    with FakeTarget("slow", delay=0.5) as fake:
        open_session(fake, timeout=3)
    with FakeTarget("slow", delay=3) as fake:
        with pytest.raises(ISCSITimeout, match="within 1 s"):
            open_session(fake, timeout=1)


def test_lun_reset_and_abort_of_unknown_task(tgt_basic: BasicTarget) -> None:
    async def go() -> tuple[int, int]:
        async with await Session.open(Portal(tgt_basic.host, tgt_basic.port), tgt_basic.iqn) as s:
            await s.test_unit_ready(1)
            reset = await s.task_management(5, lun=1)  # LOGICAL UNIT RESET
            await s.test_unit_ready(1)  # the UA 29/00 that follows is drained
            abort = await s.task_management(1, lun=1, ref_itt=0x1234)  # ABORT TASK, no such task
            return reset, abort

    assert asyncio.run(go()) == (0, 1)
