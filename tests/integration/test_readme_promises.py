"""README behaviours that had no test: vol-download --sparse leaving holes, vol-pool, the
default initiator IQN, the crcmod CRC32C fallback really used for a digest session, and the
login redirect limit (5)."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from poolbackend.iscsi.aio import SessionOptions, default_initiator_name
from tests.conftest import ROOT, RunCli
from tests.harness.faketarget import FakeTarget
from tests.harness.tgtd import MiB, Tgtd

IQN = "iqn.2026-11.example:promises"
INITIATOR = "iqn.2026-11.example:initiator1"


def _pool(tmp: Path, name: str, t: Tgtd, iqn: str = IQN) -> str:
    path = tmp / f"{name}.xml"
    path.write_text(f"""<pool type='iscsi-direct'>
  <name>{name}</name>
  <source>
    <host name='{t.host}' port='{t.port}'/>
    <device path='{iqn}'/>
    <initiator><iqn name='{INITIATOR}'/></initiator>
  </source>
</pool>
""")
    return str(path)


def test_vol_download_sparse_leaves_holes(tgtd: Tgtd, run_cli: RunCli, tmp_path: Path) -> None:
    """32 MiB LUN with 2 data regions: --sparse allocates about those only, the plain
    download allocates all; both have the LUN's bytes."""
    tgtd.new_target(1, IQN)
    tgtd.add_lun(1, 1, 32 * MiB)
    backing = tgtd.backing_path(1, 1)
    with backing.open("r+b") as f:
        f.seek(1 * MiB)
        f.write(b"\x5a" * (64 * 1024))
        f.seek(20 * MiB + 4096)
        f.write(os.urandom(100 * 1024))
    assert run_cli("pool-create", _pool(tmp_path, "sp", tgtd))[0] == 0
    sparse, full = tmp_path / "sparse.raw", tmp_path / "full.raw"
    for out, extra in ((sparse, ["--sparse"]), (full, [])):
        rc, _, err = run_cli("vol-download", "--pool", "sp", "unit:0:0:1", str(out), *extra)
        assert rc == 0, err
        assert out.read_bytes() == backing.read_bytes()
    allocated = sparse.stat().st_blocks * 512
    assert allocated <= 2 * MiB, f"--sparse allocated {allocated} bytes of 32 MiB"
    assert allocated >= 164 * 1024  # the data regions themselves
    assert full.stat().st_blocks * 512 >= 32 * MiB  # the comparison is meaningful here


def test_vol_pool_names_the_pool_of_a_key_or_path(
    tgtd: Tgtd, run_cli: RunCli, tmp_path: Path
) -> None:
    tgtd.new_target(1, IQN)
    tgtd.add_lun(1, 1, 4 * MiB)
    assert run_cli("pool-create", _pool(tmp_path, "vp", tgtd))[0] == 0
    rc, key, _ = run_cli("vol-key", "--pool", "vp", "unit:0:0:1")
    assert rc == 0
    rc, path, _ = run_cli("vol-path", "--pool", "vp", "unit:0:0:1")
    assert rc == 0
    for ref in (key.strip(), path.strip()):
        assert run_cli("vol-pool", ref) == (0, "vp\n\n", "")
    rc, out, err = run_cli("vol-pool", "no-such-volume-key")
    assert (rc, out) == (1, "")
    assert err.startswith("error: ") and "no-such-volume-key" in err and err.count("\n") <= 2


def test_default_initiator_iqn_is_stable_and_from_the_host_name() -> None:
    host = socket.gethostname().split(".")[0].lower()
    name = default_initiator_name()
    assert name == default_initiator_name() == SessionOptions().initiator_name
    assert re.fullmatch(r"iqn\.2026-11\.dev\.poolbackend:[a-z0-9.-]+", name), name
    expected = "".join(c if c.isalnum() or c in "-." else "-" for c in host) or "localhost"
    assert name.endswith(":" + expected)


def test_default_initiator_iqn_is_what_the_tools_log_in_with(tgtd: Tgtd) -> None:
    """iscsi-ls without -i logs in as the default IQN: tgt shows it as the initiator."""
    tgtd.new_target(1, IQN)
    tgtd.add_lun(1, 1, 4 * MiB)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    url = f"iscsi://{tgtd.host}:{tgtd.port}/{IQN}/1"
    proc = subprocess.Popen(
        [sys.executable, "-c", f"""
import sys
from poolbackend.iscsi.sync import SyncSession
from poolbackend.iscsi.url import parse_url
u = parse_url({url!r})
with SyncSession.open(u.portal, u.target) as s:
    print("up", flush=True)
    sys.stdin.readline()
"""],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline() == "up\n"
        show = tgtd.show()
        assert f"Initiator: {default_initiator_name()}" in show, show
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(60)


def test_crcmod_fallback_is_used_for_a_digest_session(tgtd: Tgtd) -> None:
    """POOLBACKEND_CRC32C=crcmod selects crcmod's C extension, and a session with both
    digests moves data correctly with it (tgt checks every digest)."""
    tgtd.new_target(1, IQN)
    tgtd.add_lun(1, 1, 8 * MiB)
    tgtd.set_param(1, "HeaderDigest", "CRC32C")
    tgtd.set_param(1, "DataDigest", "CRC32C")
    script = f"""
import os
from poolbackend.iscsi import digest
from poolbackend.iscsi.aio import SessionOptions
from poolbackend.iscsi.portal import Portal
from poolbackend.iscsi.sync import SyncSession
assert digest.IMPLEMENTATION == "crcmod (C extension)", digest.IMPLEMENTATION
assert digest._extend.__name__ == "extend_crcmod", digest._extend
calls = 0
inner = digest._extend
def counting(crc, data):
    global calls
    calls += 1
    return inner(crc, data)
digest._extend = counting
opts = SessionOptions(header_digest="CRC32C", data_digest="CRC32C", timeout=20)
payload = os.urandom(3 * 1024 * 1024 + 512)
with SyncSession.open(Portal({tgtd.host!r}, {tgtd.port}), {IQN!r}, opts) as s:
    assert s.session.params.header_digest and s.session.params.data_digest
    s.write(1, 16, payload, 512)
    assert bytes(s.read(1, 16, len(payload) // 512, 512)) == payload
assert calls > 100, calls
print(digest.IMPLEMENTATION)
"""
    env = dict(os.environ, PYTHONPATH=str(ROOT), POOLBACKEND_CRC32C="crcmod")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                       timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout == "crcmod (C extension)\n"
    with tgtd.backing_path(1, 1).open("rb") as f:
        f.seek(16 * 512)
        assert len(f.read(512)) == 512


@pytest.mark.parametrize(("hops", "ok"), [(5, True), (6, False)])
def test_login_redirect_limit(hops: int, ok: bool, tgtd: Tgtd, run_cli: RunCli) -> None:
    """A chain of ``hops`` redirects ending at tgt: 5 are followed, a 6th is refused."""
    tgtd.new_target(1, IQN)
    tgtd.add_lun(1, 1, 4 * MiB)
    fakes: list[FakeTarget] = []
    try:
        nxt = f"{tgtd.host}:{tgtd.port}"
        for _ in range(hops):
            fake = FakeTarget("login_status", status_class=1, status_detail=1,
                              target_address=nxt).start()  # fmt: skip
            fakes.append(fake)
            nxt = f"{fake.host}:{fake.port}"
        first = fakes[-1]
        url = f"iscsi://{first.host}:{first.port}/{IQN}/1"
        rc, out, err = run_cli("iscsi-readcapacity", "-s", url, "--timeout", "10")
        if ok:
            assert (rc, out, err) == (0, f"{4 * MiB}\n", "")
        else:
            assert rc == 1 and out == ""
            assert err.endswith(f"target {IQN}: more than 5 login redirections\n"), err
            assert err.startswith("error: portal ") and err.count("\n") == 1
        # every fake was asked once; with 6, the last one's redirect (to tgt, which would
        # have answered) was not followed
        assert [f.connections for f in fakes] == [1] * hops
    finally:
        for fake in fakes:
            fake.stop()


def test_refresh_probes_the_luns_concurrently(tgtd: Tgtd) -> None:
    """scan() on 24 LUNs: many commands are outstanding on the one connection at once,
    counted where the session hands them to the connection."""
    from poolbackend.iscsi.aio import Session
    from poolbackend.iscsi.portal import Portal
    from poolbackend.pool.scan import scan

    tgtd.new_target(1, IQN)
    tgtd.add_luns(1, list(range(1, 25)), 1 * MiB)
    peak = 0
    issued = 0

    async def go() -> int:
        nonlocal peak, issued
        async with await Session.open(Portal(tgtd.host, tgtd.port), IQN) as s:
            conn = s._conn
            assert conn is not None
            inner = conn.scsi_command

            def counting(*args: object, **kwargs: object) -> int:
                nonlocal peak, issued
                itt = inner(*args, **kwargs)  # type: ignore[arg-type]
                issued += 1
                peak = max(peak, conn.outstanding)
                return itt

            conn.scsi_command = counting  # type: ignore[method-assign]
            result = await scan(s)
            assert s._conn is conn and s.reconnects == 0
            return len(result.luns)

    assert asyncio.run(go()) == 25  # LUN 0 (the controller) + 24 disks
    assert issued >= 24 * 3  # TEST UNIT READY, INQUIRY, READ CAPACITY per disk
    assert peak >= 12, f"at most {peak} commands were outstanding at once"
