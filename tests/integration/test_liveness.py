"""Slow is not dead: the session tells a busy target from a dead one (issue 10 / issue 11).

First the real case: tgtd with a 512 MiB LUN whose backing file is not in the page cache, and
a 1 s timeout. Then the scripted fake target's ``scsi`` mode for what tgt cannot do on cue:
commands complete strictly one at a time, ``cmd_interval`` apart, and NOP-Out pings are
answered after ``nop_delay`` (or never). The timeout is 1 s throughout.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from poolbackend.iscsi.aio import Session, SessionOptions
from poolbackend.iscsi.errors import ISCSITimeout
from poolbackend.iscsi.portal import Portal
from tests.conftest import RunCli
from tests.harness.faketarget import FakeTarget
from tests.harness.load import slack
from tests.harness.tgtd import MiB, Tgtd

IQN = "iqn.2026-11.example:fake"  # the fake target takes any name
TIMEOUT = 1.0
SIZE = 512 * MiB
MARGIN = 4.0  # idle machine, scaled by slack(); only an upper bound on a failure, never on success


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_lun_not_in_the_page_cache_wipes_completely_with_a_1s_timeout(
    tgtd: Tgtd, tmp_path: Path, run_cli: RunCli
) -> None:
    """tgt writes WRITE SAME block by block; with its backing file out of the page cache each
    block is a read-modify-write of a page from disk, and a 32 MiB command takes seconds.
    Before liveness this failed after a few seconds with "no answer to WRITE SAME(16) on LUN
    1 within 1 s", half-wiped. What matters is each command's time, not the LUN's size:
    512 MiB is 16 such commands, several seconds each (2 GiB, as first reported, took 56 s)."""
    tgtd.new_target(1, IQN)
    backing = tgtd.add_lun(1, 1, SIZE, fill=b"\xa5")  # allocated, every byte non-zero
    fd = os.open(backing, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # out of the page cache
    finally:
        os.close(fd)
    xml = tmp_path / "slow.xml"
    xml.write_text(
        f"<pool type='iscsi-direct'><name>slow</name><source>"
        f"<host name='127.0.0.1' port='{tgtd.port}'/><device path='{IQN}'/>"
        "<initiator><iqn name='iqn.2026-11.example:initiator1'/></initiator></source>"
        "<pb:iscsi xmlns:pb='https://poolbackend.dev/xmlns/pool/1'>"
        "<pb:timeout seconds='1'/></pb:iscsi></pool>"
    )
    assert run_cli("pool-create", str(xml))[0] == 0
    rc, out, err = run_cli("vol-wipe", "--pool", "slow", "unit:0:0:1", timeout=800)
    assert (rc, err) == (0, ""), err
    assert out == "Vol unit:0:0:1 wiped\n\n"
    zero = bytes(16 * MiB)
    with open(backing, "rb") as f:
        for offset in range(0, SIZE, len(zero)):
            assert f.read(len(zero)) == zero, f"not zero at byte {offset}"
        assert f.read() == b""


def _options() -> SessionOptions:
    return SessionOptions(timeout=TIMEOUT, timeout_hint="<pb:timeout seconds='1'/>")


async def _queue(fake: FakeTarget, n: int, timeout: float | None = None) -> None:
    async with await Session.open(Portal(fake.host, fake.port), IQN, _options()) as s:
        await asyncio.gather(*(s.execute(0, bytes(6), timeout=timeout) for _ in range(n)))


@pytest.mark.parametrize("nop_delay", [0.0, None], ids=["pings answered", "pings ignored"])
def test_slow_but_alive_target_with_a_deep_queue_succeeds(nop_delay: float | None) -> None:
    """8 commands queued, one completed every 0.5 s: the last waits 4 s, four timeouts.

    The target is alive either way: it answers pings, or it keeps completing commands.
    """
    with FakeTarget("scsi", cmd_interval=0.5, nop_delay=nop_delay) as fake:
        asyncio.run(_queue(fake, 8))
        assert fake.completed == 8


def test_one_long_command_is_kept_alive_by_answered_pings() -> None:
    """A single command that takes 2.5 timeouts, on a target that answers pings at once."""
    with FakeTarget("scsi", cmd_interval=2.5, nop_delay=0.0) as fake:
        asyncio.run(_queue(fake, 1))
        assert fake.completed == 1
        assert fake.pings >= 2  # kept alive by pings, not by a longer stopwatch


@pytest.mark.parametrize(
    "nop_delay", [None, 2.0], ids=["silent", "ping answered after the timeout"]
)
def test_silent_target_fails_within_the_timeout(nop_delay: float | None) -> None:
    with FakeTarget("scsi", cmd_interval=60.0, nop_delay=nop_delay) as fake:
        start = time.monotonic()
        with pytest.raises(ISCSITimeout) as info:
            asyncio.run(_queue(fake, 3))
        elapsed = time.monotonic() - start
        assert str(info.value) == (
            f"portal {fake.portal} target {IQN}: no answer to TEST UNIT READY on LUN 0 "
            "nor to a NOP-Out ping within 1 s (<pb:timeout seconds='1'/>)"
        )
        assert fake.pings == 1 and fake.completed == 0
        assert TIMEOUT <= elapsed < TIMEOUT + slack(MARGIN)


def test_one_command_on_a_live_target_is_capped() -> None:
    """Pings are answered but the command never completes: its own cap ends it."""
    with FakeTarget("scsi", cmd_interval=60.0, nop_delay=0.0) as fake:
        with pytest.raises(ISCSITimeout) as info:
            asyncio.run(_queue(fake, 1, timeout=2.5))
        assert str(info.value) == (
            f"portal {fake.portal} target {IQN}: no answer to TEST UNIT READY on LUN 0 within "
            "2.5 s, the limit for one command on a target that is alive (3 x the timeout, at "
            "least 30 s; <pb:timeout seconds='1'/>)"
        )
        assert fake.pings >= 2


@pytest.mark.timeout(120)
def test_stopped_tgtd_mid_write_fails_within_the_timeout(tgtd: Tgtd) -> None:
    """SIGSTOP the real target with 64 MiB of writes queued: the socket buffers fill, the
    ping waits behind the data, nothing arrives -- dead after the timeout, send queue or not."""
    import signal

    tgtd.new_target(1, IQN)
    tgtd.add_lun(1, 1, 128 * MiB)
    assert tgtd.pid is not None
    data = bytes(4 * MiB)

    async def go() -> float:
        opts = SessionOptions(timeout=TIMEOUT, timeout_hint="--timeout 1")
        async with await Session.open(Portal(tgtd.host, tgtd.port), IQN, opts) as s:
            await s.write(1, 0, data, 512)  # logged in and working
            os.kill(tgtd.pid, signal.SIGSTOP)  # type: ignore[arg-type]
            start = time.monotonic()
            try:
                with pytest.raises(ISCSITimeout) as info:
                    await asyncio.gather(*(s.write(1, i * 8192, data, 512) for i in range(16)))
            finally:
                os.kill(tgtd.pid, signal.SIGCONT)  # type: ignore[arg-type]
            assert str(info.value) == (
                f"portal {tgtd.portal} target {IQN}: no answer to WRITE(16) on LUN 1 nor to a "
                "NOP-Out ping within 1 s (--timeout 1)"
            )
            return time.monotonic() - start

    elapsed = asyncio.run(go())
    assert TIMEOUT <= elapsed < TIMEOUT + slack(MARGIN)
