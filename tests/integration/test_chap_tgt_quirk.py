"""CHAP against real tgt: MD5 logs in; tgt's non-standard CHAP_A=7 (it computes SHA-1,
tgt-and-libiscsi.md §5.1) does not accept our standard SHA-256 answer, which is why the
default offer is MD5 alone."""

from __future__ import annotations

import asyncio

import pytest

from poolbackend.iscsi.aio import Session, SessionOptions
from poolbackend.iscsi.errors import LoginFailed
from poolbackend.iscsi.portal import Credentials, Portal
from tests.harness.tgtd import MiB, Tgtd

IQN = "iqn.2026-11.example:chap-quirk"
CREDS = Credentials("chapuser", b"chapsecret12345")


def _login(t: Tgtd, algorithms: tuple[int, ...]) -> tuple[int, int]:
    async def go() -> tuple[int, int]:
        opts = SessionOptions(timeout=10, chap_algorithms=algorithms)
        async with await Session.open(Portal(t.host, t.port), IQN, opts, CREDS) as s:
            return await s.read_capacity(1)

    return asyncio.run(go())


def test_md5_logs_in_and_chap_a_7_is_refused_by_tgt(tgtd: Tgtd) -> None:
    tgtd.new_target(1, IQN)
    tgtd.add_lun(1, 1, 4 * MiB)
    tgtd.add_account("chapuser", "chapsecret12345")
    tgtd.bind_account(1, "chapuser")
    assert _login(tgtd, (5,)) == (8192, 512)
    assert SessionOptions().chap_algorithms == (5,)  # the default avoids the quirk
    with pytest.raises(LoginFailed, match=r"status 0x020[01]"):
        _login(tgtd, (7, 5))  # tgt picks 7, expects SHA-1, gets our SHA-256
