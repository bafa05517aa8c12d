"""Self-tests of the test harness: private tgtd, FakeTarget, private libvirtd, fixtures.

libiscsi-bin's tools (iscsi-ls, iscsi-inq, iscsi-readcapacity16, iscsi-perf)
are the reference client here, so these tests do not depend on poolbackend.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import BasicTarget, RunCli, fake_target_error_counts, fake_target_errors
from tests.harness import HarnessError, find_tool
from tests.harness.faketarget import (
    BHS_LEN,
    OP_LOGIN_RSP,
    FakeTarget,
    login_request,
    recv_pdu,
)
from tests.harness.libvirtd import Libvirtd, iscsi_direct_pool_xml
from tests.harness.load import slack
from tests.harness.tgtd import MiB, TgtadmError, Tgtd, parse_show

INITIATOR = "iqn.2026-11.example:initiator1"


def tool(name: str) -> str:
    path = find_tool(name)
    if path is None:
        pytest.fail(f"{name} missing: install libiscsi-bin (scripts/install-deps.sh)")
    return path


def run(*cmd: str, timeout: float = 30, env: dict[str, str] | None = None) -> tuple[int, str]:
    r = subprocess.run(
        list(cmd),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env=None if env is None else {**os.environ, **env},
    )
    return r.returncode, r.stdout + r.stderr


@contextmanager
def background(*cmd: str) -> Iterator[subprocess.Popen[bytes]]:
    """A client process that is always killed (by its PID) afterwards."""
    p = subprocess.Popen(
        list(cmd), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        yield p
    finally:
        if p.poll() is None:
            p.kill()  # libiscsi tools ignore SIGTERM while reconnecting
        p.wait(timeout=10)


def readcap_bytes(url: str) -> int:
    rc, out = run(tool("iscsi-readcapacity16"), "-s", url)
    assert rc == 0, out
    return int(out.strip())


# ----------------------------------------------------------------- tgtd


def test_tgtd_starts_quickly_on_private_ports() -> None:
    t0 = time.monotonic()
    with Tgtd.start() as t:
        elapsed = time.monotonic() - t0
        assert elapsed < slack(5), f"tgtd start took {elapsed:.2f}s"
        assert t.is_running()
        assert re.fullmatch(r"127\.0\.0\.1:\d+", t.portal)
        assert t.portal == f"{t.host}:{t.port}"
        assert t.port != 3260
        assert 0 <= t.control_port <= 32767
        assert str(t.ipc_prefix).startswith(str(t.workdir))
        assert (t.workdir / f"ipc.{t.control_port}").exists()
        assert t.targets() == {}
        pid = t.pid
        workdir = t.workdir
    assert pid is not None
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    assert not workdir.exists()


def test_tgtd_ipv6(tgtd_ipv6: Tgtd) -> None:
    t = tgtd_ipv6
    assert t.portal == f"[::1]:{t.port}"
    t.new_target(1, "iqn.2026-11.example:v6")
    t.add_lun(1, 1, 4 * MiB)
    rc, out = run(tool("iscsi-ls"), "-s", f"iscsi://{t.portal}")
    assert rc == 0, out
    assert f"Target:iqn.2026-11.example:v6 Portal:[::1]:{t.port},1" in out
    assert readcap_bytes(t.url(1, 1)) == 4 * MiB


def test_tgt_basic_target(tgt_basic: BasicTarget) -> None:
    t = tgt_basic.tgtd
    assert tgt_basic.iqn == "iqn.2026-11.example:target1"
    assert t.targets() == {1: tgt_basic.iqn}
    assert t.luns(1) == [0, 1, 2, 3]
    for lun, (size, _bs) in tgt_basic.luns.items():
        assert t.backing_path(1, lun).stat().st_size == size
        assert readcap_bytes(tgt_basic.url(lun)) == size
    assert tgt_basic.luns == {1: (64 * MiB, 512), 2: (128 * MiB, 512), 3: (8 * MiB, 4096)}
    rc, out = run(tool("iscsi-readcapacity16"), tgt_basic.url(3))
    assert rc == 0, out
    assert "LOGICAL BLOCK LENGTH IN BYTES:4096" in out
    rc, out = run(tool("iscsi-ls"), "-s", f"iscsi://{tgt_basic.portal}")
    assert rc == 0, out
    assert "Lun:1    Type:DIRECT_ACCESS (Size:63M)" in out  # libiscsi's off-by-one
    assert "Lun:3    Type:DIRECT_ACCESS (Size:7M)" in out


def test_add_lun_fill_thin_params_and_delete(tgtd: Tgtd) -> None:
    t = tgtd
    t.new_target(1, "iqn.2026-11.example:t")
    p = t.add_lun(1, 1, 1 * MiB + 512, fill=b"\xff")
    data = p.read_bytes()
    assert len(data) == 1 * MiB + 512 and data == b"\xff" * len(data)
    p2 = t.add_lun(1, 2, 3 * MiB, fill=b"ABC")
    assert p2.read_bytes()[:7] == b"ABCABCA" and p2.stat().st_size == 3 * MiB
    t.add_lun(1, 3, 2 * MiB, thin=True)
    rc, out = run(tool("iscsi-readcapacity16"), t.url(1, 3))
    assert rc == 0 and "LBPME:1" in out, out
    assert readcap_bytes(t.url(1, 1)) == 1 * MiB + 512
    t.lun_params(1, 2, online=0)
    assert "Online: No" in t.show()
    t.set_param(1, "nop_interval", 1)
    t.set_param(1, "HeaderDigest", "CRC32C")
    assert "HeaderDigest=CRC32C" in t.tgtadm("--mode", "target", "--op", "show", "--tid", "1")
    t.delete_lun(1, 2)
    assert t.luns(1) == [0, 1, 3]
    with pytest.raises(TgtadmError):
        t.delete_lun(1, 2)


def test_300_luns_including_ids_256_300_1000(tgtd: Tgtd) -> None:
    t = tgtd
    t.new_target(1, "iqn.2026-11.example:many")
    ids = [*range(1, 299), 300, 1000]
    assert len(ids) == 300 and 256 in ids
    t0 = time.monotonic()
    t.add_luns(1, ids, 1 * MiB)
    elapsed = time.monotonic() - t0
    print(f"300 LUNs created in {elapsed:.2f}s")
    assert elapsed < slack(30)
    assert t.luns(1) == [0, *ids]
    assert t.backing_path(1, 1000).stat().st_size == 1 * MiB


@pytest.mark.slow
def test_1000_luns_within_a_minute() -> None:
    with Tgtd.start() as t:
        t.new_target(1, "iqn.2026-11.example:lots")
        t0 = time.monotonic()
        t.add_luns(1, range(1, 1001), 1 * MiB)
        created = time.monotonic() - t0
        assert len(t.luns(1)) == 1001
        rc, out = run(tool("iscsi-ls"), f"iscsi://{t.portal}")
        assert rc == 0 and "iqn.2026-11.example:lots" in out, out
        t1 = time.monotonic()
    stopped = time.monotonic() - t1
    print(f"1000 LUNs created in {created:.2f}s, clean stop in {stopped:.2f}s")
    assert created < slack(60)
    assert stopped < slack(15)


def test_sessions_parsing_delete_connection_and_stop_with_live_session() -> None:
    t = Tgtd.start()
    try:
        t.new_target(1, "iqn.2026-11.example:sess")
        t.add_lun(1, 1, 16 * MiB)
        assert t.sessions(1) == []
        # iscsi-inq logs in and out: no session remains
        rc, out = run(tool("iscsi-inq"), t.url(1, 1))
        assert rc == 0 and "Peripheral Device Type:DIRECT_ACCESS" in out, out
        assert t.sessions(1) == []
        with background(tool("iscsi-perf"), "-t", "30", t.url(1, 1)):
            sessions = t.wait_sessions(1, timeout=15)
            assert len(sessions) == 1
            sid, cid = sessions[0]
            assert cid == 0
            (nexus,) = t.nexuses(1)
            assert nexus.sid == sid
            assert nexus.initiator == "iqn.2010-11.libiscsi:iscsi-perf"
            assert nexus.connections == [(0, "127.0.0.1")]
            t.delete_connection(1, sid, cid)
            deadline = time.monotonic() + 10
            while (sid, cid) in t.sessions(1):
                assert time.monotonic() < deadline, "connection not deleted"
                time.sleep(0.05)
            # clean stop while a libiscsi client is connected / reconnecting
            t0 = time.monotonic()
            t.stop()
            assert time.monotonic() - t0 < slack(15)
            assert not t.is_running()
    finally:
        t.stop()


def test_parse_show_sample() -> None:
    sample = """Target 1: iqn.2026-11.example:target1
    System information:
        Driver: iscsi
        State: ready
    I_T nexus information:
        I_T nexus: 3
            Initiator: iqn.2010-11.libiscsi:iscsi-perf alias: none
            Connection: 0
                IP Address: 127.0.0.1
        I_T nexus: 7
            Initiator: iqn.x:y alias: none
            Connection: 0
                IP Address: ::1
    LUN information:
        LUN: 0
            Type: controller
        LUN: 300
            Type: disk
    Account information:
        inuser
    ACL information:
        ALL
Target 2: iqn.2026-11.example:chap
    System information:
        Driver: iscsi
        State: ready
    I_T nexus information:
    LUN information:
        LUN: 0
            Type: controller
"""
    info = parse_show(sample)
    assert sorted(info) == [1, 2]
    assert [(n.sid, n.initiator, n.connections) for n in info[1].nexuses] == [
        (3, "iqn.2010-11.libiscsi:iscsi-perf", [(0, "127.0.0.1")]),
        (7, "iqn.x:y", [(0, "::1")]),
    ]
    assert info[1].luns == [0, 300]
    assert info[2].nexuses == [] and info[2].luns == [0]


def test_kill_makes_the_portal_refuse(tgtd: Tgtd) -> None:
    tgtd.new_target(1, "iqn.2026-11.example:k")
    tgtd.kill()
    assert not tgtd.is_running()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((tgtd.host, tgtd.port), timeout=2).close()


def test_acl_and_chap(tgtd: Tgtd) -> None:
    t = tgtd
    t.new_target(1, "iqn.2026-11.example:acl", bind_all=False)
    t.add_lun(1, 1, 1 * MiB)
    t.bind_initiator(1, INITIATOR)
    rc, out = run(tool("iscsi-inq"), t.url(1, 1))
    assert rc != 0 and "Target not found(515)" in out, out
    rc, out = run(tool("iscsi-inq"), "-i", INITIATOR, t.url(1, 1))
    assert rc == 0, out

    t.new_target(2, "iqn.2026-11.example:chap")
    t.add_lun(2, 1, 1 * MiB)
    t.add_account("inuser", "insecret12345")
    t.bind_account(2, "inuser")
    t.add_account("outuser", "outsecret12345")
    t.bind_account(2, "outuser", outgoing=True)
    rc, out = run(tool("iscsi-inq"), t.url(2, 1))
    assert rc != 0 and "Authentication failure(513)" in out, out
    rc, out = run(tool("iscsi-inq"), t.url(2, 1, user="inuser", password="wrong"))
    assert rc != 0 and "Authentication failure(513)" in out, out
    rc, out = run(tool("iscsi-inq"), t.url(2, 1, user="inuser", password="insecret12345"))
    assert rc == 0, out
    mutual = t.url(2, 1, user="inuser", password="insecret12345")
    rc, out = run(tool("iscsi-inq"), mutual + "?target_user=outuser&target_password=outsecret12345")
    assert rc == 0, out
    assert "outuser (outgoing)" in t.show()


# ------------------------------------------------------------ FakeTarget


def _connect(fake: FakeTarget, timeout: float = 5) -> socket.socket:
    return socket.create_connection((fake.host, fake.port), timeout=timeout)


def _read_all(s: socket.socket, limit: int = 1 << 20) -> bytes:
    buf = b""
    try:
        while len(buf) < limit:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    except TimeoutError:
        pass
    return buf


LOGIN_KEYS = {
    "InitiatorName": INITIATOR,
    "TargetName": "iqn.2026-11.example:target1",
    "SessionType": "Normal",
    "AuthMethod": "None",
}


def test_fake_refuse() -> None:
    with FakeTarget("refuse") as fake:
        assert fake.port > 0
        with pytest.raises(ConnectionRefusedError):
            _connect(fake).close()
        assert fake.connections == 0


def test_crashed_fake_target_handler_is_reported() -> None:
    """The autouse check in conftest.py sees a handler's exception (then we clear it, or
    this test itself would fail, which is the point of the check)."""
    since = fake_target_error_counts()

    def crash(conn: socket.socket) -> None:
        raise RuntimeError("handler bug")

    with FakeTarget("silent") as fake:
        fake._mode_silent = crash  # type: ignore[method-assign]
        with _connect(fake, timeout=5) as s:
            assert s.recv(1) == b""  # the handler died and closed the connection
    assert fake.connections == 1
    found = fake_target_errors(since)
    fake.errors.clear()
    assert found == [f"{fake!r}: RuntimeError: handler bug"]


def test_fake_silent() -> None:
    with FakeTarget("silent") as fake, _connect(fake, timeout=0.5) as s:
        s.sendall(login_request(LOGIN_KEYS))
        with pytest.raises(TimeoutError):
            s.recv(1)
        assert fake.connections == 1


def test_fake_garbage_is_random_and_reproducible() -> None:
    outs = []
    for _ in range(2):
        with FakeTarget("garbage", seed=7) as fake, _connect(fake, timeout=0.5) as s:
            s.sendall(login_request(LOGIN_KEYS))
            outs.append(_read_all(s))
            assert fake.connections == 1
            assert len(fake.login_requests) == 1
    assert outs[0] == outs[1]
    assert len(outs[0]) >= BHS_LEN


def test_fake_close_mid_pdu() -> None:
    with FakeTarget("close_mid_pdu") as fake, _connect(fake) as s:
        s.sendall(login_request(LOGIN_KEYS))
        data = _read_all(s)
        assert len(data) == BHS_LEN // 2
        assert data[0] == OP_LOGIN_RSP


def test_fake_hostile_length() -> None:
    with FakeTarget("hostile_length") as fake, _connect(fake, timeout=1) as s:
        s.sendall(login_request(LOGIN_KEYS))
        data = _read_all(s)
        assert data[0] == OP_LOGIN_RSP
        assert data[5:8] == b"\xff\xff\xff"
        assert len(data) == BHS_LEN + 4096  # then nothing more; connection stays open


def test_fake_slow_login_completes_after_delay() -> None:
    with FakeTarget("slow", delay=0.5) as fake, _connect(fake) as s:
        t0 = time.monotonic()
        s.sendall(login_request(LOGIN_KEYS, itt=5, csg=0, nsg=1))
        r1 = recv_pdu(s)
        assert time.monotonic() - t0 >= 0.45
        assert r1.opcode == OP_LOGIN_RSP and r1.itt == 5 and r1.bhs[36:38] == b"\0\0"
        assert r1.transit and (r1.csg, r1.nsg) == (0, 1)
        assert r1.keys["AuthMethod"] == "None"
        assert r1.keys["TargetPortalGroupTag"] == "1"
        ops = {"HeaderDigest": "None,CRC32C", "MaxBurstLength": "262144", "X-Foo": "1"}
        s.sendall(login_request(ops, itt=6, csg=1, nsg=3))
        r2 = recv_pdu(s)
        assert r2.transit and (r2.csg, r2.nsg) == (1, 3) and r2.tsih == 1
        assert r2.keys["HeaderDigest"] == "None"
        assert r2.keys["X-Foo"] == "NotUnderstood"
        assert fake.logins_completed == 1
        assert fake.login_requests[0].keys["InitiatorName"] == INITIATOR


def test_fake_lifetime_is_bounded() -> None:
    with FakeTarget("silent", lifetime=0.5) as fake, _connect(fake) as s:
        t0 = time.monotonic()
        assert _read_all(s) == b""  # closed by the fake after its lifetime
        assert time.monotonic() - t0 < 0.5 + slack(4.5)


def test_fake_login_status_with_libiscsi(tgt_basic: BasicTarget) -> None:
    inq = tool("iscsi-inq")
    with FakeTarget("login_status", status_class=2, status_detail=3) as fake:
        rc, out = run(inq, f"iscsi://{fake.portal}/{tgt_basic.iqn}/1")
        assert rc != 0 and "Target not found(515)" in out, out
        assert fake.connections == 1
    # 0x0101 "moved temporarily": libiscsi follows TargetAddress to the real tgtd
    with FakeTarget(
        "login_status", status_class=1, status_detail=1, target_address=tgt_basic.portal
    ) as fake:
        rc, out = run(inq, f"iscsi://{fake.portal}/{tgt_basic.iqn}/1")
        assert rc == 0 and "Peripheral Device Type:DIRECT_ACCESS" in out, out
        assert fake.connections == 1
        assert fake.login_requests[0].keys["TargetName"] == tgt_basic.iqn


def test_fake_ipv6() -> None:
    with FakeTarget("close_mid_pdu", host="::1") as fake:
        assert fake.portal == f"[::1]:{fake.port}"
        with socket.create_connection(("::1", fake.port), timeout=5) as s:
            s.sendall(login_request(LOGIN_KEYS))
            assert len(_read_all(s)) == BHS_LEN // 2


def test_harness_refuses_non_loopback() -> None:
    with pytest.raises(HarnessError):
        FakeTarget("silent", host="10.0.0.1")
    with pytest.raises(HarnessError):
        Tgtd.start(host="0.0.0.0")


# -------------------------------------------------------------- libvirtd


def _pool_info(lv: Libvirtd, name: str) -> dict[str, str]:
    r = lv.virsh("pool-info", "--bytes", name, check=True)
    return dict(
        (k.strip(), v.strip())
        for k, v in (ln.split(":", 1) for ln in r.stdout.splitlines() if ":" in ln)
    )


def test_libvirtd_is_private(libvirtd: Libvirtd) -> None:
    lv = libvirtd
    assert lv.uri.startswith("qemu:///session?socket=")
    assert str(lv.socket_path).startswith(str(lv.workdir))
    r = lv.virsh("uri", check=True)
    assert r.stdout.strip() == lv.uri
    if os.geteuid() == 0:
        assert Path(f"/proc/{lv.pid}/status").read_text().count("\t65534") >= 2  # uid+gid
    r = lv.virsh("pool-capabilities", check=True)
    assert "<pool type='iscsi-direct' supported='yes'>" in r.stdout


def test_libvirt_iscsi_direct_pool_and_chap(
    libvirtd: Libvirtd, tgt_basic: BasicTarget, tgtd: Tgtd
) -> None:
    """libvirt's own C backend against private tgtds: plain pool, then a CHAP pool."""
    lv = libvirtd
    xml = iscsi_direct_pool_xml(
        "p1", host="127.0.0.1", port=tgt_basic.port, target=tgt_basic.iqn, initiator=INITIATOR
    )
    r = lv.virsh("pool-define", str(lv.define_file("p1.xml", xml)), check=True)
    assert "Pool p1 defined from" in r.stdout
    r = lv.virsh("pool-start", "p1", check=True)
    assert r.stdout.strip() == "Pool p1 started"
    info = _pool_info(lv, "p1")
    assert info["State"] == "running"
    # one block short per LUN: 64 MiB-512 + 128 MiB-512 + 8 MiB-4096
    assert info["Capacity"] == str(67108352 + 134217216 + 8384512) == "209710080"
    assert info["Allocation"] == "209710080"
    assert info["Available"] == "0"
    r = lv.virsh("vol-list", "--details", "p1", check=True)
    print(r.stdout)
    rows = [ln.split() for ln in r.stdout.splitlines()[2:] if ln.strip()]
    key = f"ip-127.0.0.1:{tgt_basic.port}-iscsi-{tgt_basic.iqn}-lun-"
    assert rows == [
        ["unit:0:0:0", key + "0", "network", "0.00", "B", "0.00", "B"],
        ["unit:0:0:1", key + "1", "network", "64.00", "MiB", "64.00", "MiB"],
        ["unit:0:0:2", key + "2", "network", "128.00", "MiB", "128.00", "MiB"],
        ["unit:0:0:3", key + "3", "network", "8.00", "MiB", "8.00", "MiB"],
    ]
    # pool state and definitions live in the private dirs only
    assert (lv.config_home / "libvirt" / "storage" / "p1.xml").exists()
    assert (lv.runtime_dir / "libvirt" / "storage" / "run" / "p1.xml").exists()
    # libvirt keeps no session open
    assert tgt_basic.tgtd.sessions(1) == []

    # CHAP: a second private tgtd with an incoming account
    tgtd.new_target(1, "iqn.2026-11.example:chap")
    tgtd.add_lun(1, 1, 32 * MiB)
    tgtd.add_account("inuser", "insecret12345")
    tgtd.bind_account(1, "inuser")
    uid = lv.define_iscsi_secret("chap-secret", b"insecret12345")
    r = lv.virsh("secret-list", check=True)
    assert re.search(rf"^\s*{uid}\s+iscsi chap-secret\s*$", r.stdout, re.M), r.stdout
    chap_xml = iscsi_direct_pool_xml(
        "pchap",
        host="127.0.0.1",
        port=tgtd.port,
        target="iqn.2026-11.example:chap",
        initiator=INITIATOR,
        auth_user="inuser",
        secret_usage="chap-secret",
    )
    lv.virsh("pool-define", str(lv.define_file("pchap.xml", chap_xml)), check=True)
    lv.virsh("pool-start", "pchap", check=True)
    assert _pool_info(lv, "pchap")["Capacity"] == str(32 * MiB - 512)
    r = lv.virsh("vol-list", "--details", "pchap", check=True)
    print(r.stdout)
    assert "unit:0:0:1" in r.stdout and "32.00 MiB" in r.stdout

    # the wrong password is rejected by tgt -> the pool cannot start
    lv.virsh("pool-destroy", "pchap", check=True)
    lv.virsh("secret-set-value", uid, "--base64", "d3JvbmdwYXNzd29yZA==", check=True)
    r = lv.virsh("pool-start", "pchap")
    assert r.returncode != 0
    assert "Authentication failure(513)" in r.stderr, r.stderr


# ------------------------------------------------------- CLI fixtures


def test_state_dir_and_run_cli(state_dir: Path, run_cli: RunCli) -> None:
    assert os.environ["POOLBACKEND_STATE_DIR"] == str(state_dir)
    assert state_dir.is_dir() and not any(state_dir.iterdir())
    rc, out, err = run_cli("--help")
    assert rc == 0, err
    assert "usage" in out.lower()
    rc, out, err = run_cli("no-such-command-xyz")
    assert rc != 0
    assert err


def test_missing_tool_fails_loudly() -> None:
    from tests.conftest import _need

    with pytest.raises(pytest.fail.Exception, match=r"not installed.*install-deps\.sh"):
        _need("no-such-tool-for-poolbackend", "no-such-package")
