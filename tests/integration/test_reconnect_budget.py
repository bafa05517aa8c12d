"""The reconnect budget limits consecutive failures without progress, not a session's life.

A long download used to die on its 4th transient connection drop however far apart the
drops were (``max_reconnects`` was never reset), with an error that did not say why. Now a
completed command resets the budget; only ``max_reconnects`` reconnects in a row without
one completing end the session, with an error naming the limit.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
from collections.abc import Iterator

import pytest

from poolbackend.iscsi.aio import Session, SessionOptions
from poolbackend.iscsi.errors import ConnectionFailed
from poolbackend.iscsi.portal import Portal
from poolbackend.pool.transfer import READ_DEPTH, download, geometry
from tests.harness.faketarget import FakeTarget
from tests.harness.tgtd import Tgtd

IQN = "iqn.2026-11.example:budget"
MiB = 1 << 20
SIZE = 48 * MiB


@pytest.fixture(scope="module")
def tgt() -> Iterator[Tgtd]:
    with Tgtd.start() as t:
        t.new_target(1, IQN)
        t.add_lun(1, 1, SIZE)
        yield t


def test_download_survives_more_drops_than_max_reconnects(tgt: Tgtd) -> None:
    """Seven connection deletes during one download, each followed by progress: the data
    arrives complete and correct (the old lifetime budget failed at the 4th)."""
    data = os.urandom(SIZE)
    portal = Portal("127.0.0.1", tgt.port)
    deletes = 0
    # A chunk started after a delete completes on the new connection: wait for one.
    every = READ_DEPTH + 2

    def drop(done: int, total: int) -> None:
        nonlocal deletes
        if done // MiB % every == 0 and done < total:
            for sid, cid in tgt.sessions(1):
                tgt.delete_connection(1, sid, cid)
                deletes += 1

    async def go() -> tuple[bytes, int]:
        options = SessionOptions(max_reconnects=3)
        async with await Session.open(portal, IQN, options) as s:
            for lba in range(0, SIZE // 512, 8192):
                await s.write(1, lba, data[lba * 512 : (lba + 8192) * 512], 512)
            geo = await geometry(s, 1)
            out = io.BytesIO()
            await download(s, geo, out, progress=drop)
            return out.getvalue(), s.reconnects

    received, reconnects = asyncio.run(go())
    assert deletes >= 4, deletes
    assert reconnects >= 4, reconnects
    assert hashlib.sha256(received).digest() == hashlib.sha256(data).digest()


def test_consecutive_failures_without_progress_name_the_limit() -> None:
    """A target that logs us in and then drops every command: the initial failure and
    three reconnects, then one line naming the limit."""
    with FakeTarget("slow", delay=0) as fake:

        async def go() -> None:
            options = SessionOptions(max_reconnects=3, timeout=5)
            async with await Session.open(Portal(fake.host, fake.port), IQN, options) as s:
                await s.test_unit_ready(0)

        with pytest.raises(ConnectionFailed) as info:
            asyncio.run(go())
        message = str(info.value)
        assert "\n" not in message
        assert message.endswith(
            "(gave up after 3 reconnects without progress: max_reconnects=3)"
        ), message
        assert fake.logins_completed == 4
