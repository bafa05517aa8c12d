"""The embedded initiator against a real tgtd: login, CHAP, digests, LUN addressing, I/O."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from poolbackend.iscsi.aio import Session, SessionOptions
from poolbackend.iscsi.errors import (
    AuthenticationFailed,
    ConnectionFailed,
    ISCSITimeout,
    LoginFailed,
)
from poolbackend.iscsi.portal import Credentials, Portal
from poolbackend.iscsi.sync import SyncSession
from tests.harness.faketarget import FakeTarget
from tests.harness.load import slack
from tests.harness.tgtd import Tgtd

MiB = 1 << 20
IQN = "iqn.2026-11.example:target1"
CHAP_IQN = "iqn.2026-11.example:chap"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tgt() -> Iterator[Tgtd]:
    with Tgtd.start() as t:
        t.new_target(1, IQN)
        t.add_lun(1, 1, 64 * MiB)
        t.add_lun(1, 2, 8 * MiB, blocksize=4096)
        t.add_lun(1, 3, 2049 * 512)
        t.new_target(2, CHAP_IQN)
        t.add_lun(2, 1, 32 * MiB)
        t.add_account("inuser", "insecret12345")
        t.bind_account(2, "inuser")
        t.add_account("outuser", "outsecret12345")
        t.bind_account(2, "outuser", outgoing=True)
        yield t


def portal(t: Tgtd) -> Portal:
    return Portal(t.host, t.port)


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_login_report_luns_and_exact_capacities(tgt: Tgtd) -> None:
    async def go() -> None:
        async with await Session.open(portal(tgt), IQN) as s:
            assert await s.report_luns() == [0, 1, 2, 3]
            assert (await s.inquiry(0)).device_type == 0x0C
            assert await s.read_capacity(1) == (131072, 512)  # 64 MiB exactly
            assert await s.read_capacity(2) == (2048, 4096)  # 8 MiB with 4 KiB blocks
            assert await s.read_capacity(3) == (2049, 512)

    run(go())


def test_chap_md5_and_mutual(tgt: Tgtd) -> None:
    async def go(creds: Credentials) -> int:
        async with await Session.open(portal(tgt), CHAP_IQN, credentials=creds) as s:
            return (await s.read_capacity(1))[0] * 512

    assert run(go(Credentials("inuser", b"insecret12345"))) == 32 * MiB
    mutual = Credentials("inuser", b"insecret12345", "outuser", b"outsecret12345")
    assert run(go(mutual)) == 32 * MiB
    with pytest.raises(AuthenticationFailed, match="mutual CHAP failed"):
        run(go(Credentials("inuser", b"insecret12345", "outuser", b"wrong-target-pw")))


def test_wrong_password_is_a_clear_authentication_error(tgt: Tgtd) -> None:
    async def go() -> None:
        await Session.open(
            portal(tgt), CHAP_IQN, credentials=Credentials("inuser", b"nope-nope-nope")
        )

    with pytest.raises(AuthenticationFailed) as info:
        run(go())
    assert "authentication failed" in str(info.value)
    assert tgt.portal in str(info.value)
    assert "nope" not in str(info.value)
    # And with no credentials at all against a CHAP target.
    with pytest.raises(LoginFailed, match="authentication failed"):
        run(Session.open(portal(tgt), CHAP_IQN))


def test_digests_r2t_and_many_data_in_pdus() -> None:
    """HeaderDigest+DataDigest CRC32C, small MRDSL: many Data-In PDUs and R2T-driven writes."""
    with Tgtd.start() as t:
        t.new_target(1, IQN)
        t.add_lun(1, 1, 16 * MiB)
        t.set_param(1, "HeaderDigest", "CRC32C")
        t.set_param(1, "DataDigest", "CRC32C")
        opts = SessionOptions(data_digest="None,CRC32C", max_recv_data_segment_length=4096)

        async def go() -> None:
            async with await Session.open(portal(t), IQN, opts) as s:
                assert s.params.header_digest and s.params.data_digest
                assert s.params.initial_r2t  # tgt insists: writes past immediate data need R2T
                payload = os.urandom(3 * MiB + 4096)
                await s.write(1, 17, payload, 512)  # > FirstBurstLength and > MaxBurstLength
                back = await s.read(1, 17, len(payload) // 512, 512)  # ~800 Data-In PDUs
                assert bytes(back) == payload
                # Several commands in flight at once, checked individually.
                chunks = [os.urandom(64 * 1024) for _ in range(16)]
                await asyncio.gather(
                    *(s.write(1, 10000 + i * 128, c, 512) for i, c in enumerate(chunks))
                )
                got = await asyncio.gather(
                    *(s.read(1, 10000 + i * 128, 128, 512) for i in range(16))
                )
                assert [bytes(g) for g in got] == chunks

        run(go())
        assert t.backing_path(1, 1).read_bytes()[17 * 512 : 17 * 512 + 16] != bytes(16)


def test_discovery_of_many_targets_split_over_pdus() -> None:
    with Tgtd.start() as t:
        names = [f"iqn.2026-11.example:disc-{i:02d}-{'x' * 40}" for i in range(33)]
        for tid, name in enumerate(names, start=1):
            t.new_target(tid, name)
        # MRDSL 512 makes tgt split the SendTargets reply (mid key=value, with C=0).
        opts = SessionOptions(max_recv_data_segment_length=512)

        async def go() -> list[tuple[str, list[str]]]:
            async with await Session.open(portal(t), None, opts) as s:
                return await s.send_targets()

        found = run(go())
        assert [n for n, _ in found] == names  # type: ignore[union-attr]
        assert all(addrs == [f"{t.portal},1"] for _, addrs in found)  # type: ignore[union-attr]


def test_luns_above_255() -> None:
    with Tgtd.start() as t:
        t.new_target(1, IQN)
        luns = [*range(1, 301), 1000, 16383]
        t.add_luns(1, luns, 1 * MiB)

        async def go() -> None:
            async with await Session.open(portal(t), IQN) as s:
                assert await s.report_luns() == [0, *luns]
                for lun in (255, 256, 300, 1000, 16383):
                    assert await s.read_capacity(lun) == (2048, 512)
                await s.write(300, 0, b"L300" * 128, 512)

        run(go())
        assert t.backing_path(1, 300).read_bytes()[:4] == b"L300"
        assert t.backing_path(1, 44).read_bytes()[:4] == bytes(4)  # libiscsi's mix-up


def test_target_nop_pings_are_answered() -> None:
    """tgt pings every second and drops an initiator that ignores 2 pings: pings must reach
    the session and be answered, counted by the connection, with no reconnect."""
    with Tgtd.start() as t:
        t.new_target(1, IQN)
        t.add_lun(1, 1, 1 * MiB)
        t.set_param(1, "nop_interval", 1)
        t.set_param(1, "nop_count", 2)
        with SyncSession.open(portal(t), IQN) as s:
            s.test_unit_ready(1)
            conn = s.session._conn
            assert conn is not None and conn.pings_answered == 0
            deadline = time.monotonic() + 30
            while conn.pings_answered < 4 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert conn.pings_answered >= 4, "tgt's NOP-In pings were not answered"
            assert s.session._conn is conn and s.session.reconnects == 0
            assert s.read_capacity(1) == (2048, 512)
            assert s.ping(b"hello") == b"hello"


def test_ipv6_portal() -> None:
    if not socket.has_ipv6:
        pytest.fail("IPv6 loopback is required")
    with Tgtd.start("::1") as t:
        t.new_target(1, IQN)
        t.add_lun(1, 1, 4 * MiB)

        async def go() -> int:
            async with await Session.open(Portal("::1", t.port), IQN) as s:
                blocks, size = await s.read_capacity(1)
                return blocks * size

        assert run(go()) == 4 * MiB


def test_unit_attention_after_lun_added_is_drained(tgt: Tgtd) -> None:
    async def go() -> list[int]:
        async with await Session.open(portal(tgt), IQN) as s:
            await s.test_unit_ready(1)
            await asyncio.to_thread(tgt.add_lun, 1, 9, 1 * MiB)  # -> UA 3F/0E on this nexus
            try:
                await s.test_unit_ready(1)  # would fail with UNIT ATTENTION without draining
                return await s.report_luns()
            finally:
                await asyncio.to_thread(tgt.delete_lun, 1, 9)

    assert run(go()) == [0, 1, 2, 3, 9]


def test_reconnect_after_connection_deleted_on_target(tgt: Tgtd) -> None:
    async def go() -> None:
        async with await Session.open(portal(tgt), IQN) as s:
            payload = os.urandom(256 * 1024)
            await s.write(1, 4096, payload, 512)
            sessions = await asyncio.to_thread(tgt.sessions, 1)
            for sid, cid in sessions:
                await asyncio.to_thread(tgt.delete_connection, 1, sid, cid)
            assert bytes(await s.read(1, 4096, 512, 512)) == payload
            assert s.reconnects == 1

    run(go())


def test_silent_target_times_out_with_clear_error() -> None:
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(srv.accept()[0]), daemon=True).start()
    start = time.monotonic()
    with pytest.raises(
        ISCSITimeout, match=rf"portal 127.0.0.1:{port} target {IQN}: no answer to login within 1 s"
    ):
        run(Session.open(Portal("127.0.0.1", port), IQN, SessionOptions(timeout=1)))
    assert time.monotonic() - start < 1 + slack(2)
    srv.close()


def test_refused_connection() -> None:
    with FakeTarget("refuse") as fake:  # a held port nothing listens on
        with pytest.raises(ConnectionFailed, match="Connection refused"):
            run(Session.open(Portal("127.0.0.1", fake.port), IQN))


@pytest.mark.parametrize("example", ["async_example.py", "sync_example.py"])
def test_library_examples_run(tgt: Tgtd, example: str) -> None:
    url = f"iscsi://{tgt.portal}/{IQN}/1"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "examples" / example), url],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=True,
    ).stdout
    assert "read back equal: True" in out
    assert "67108864" in out
