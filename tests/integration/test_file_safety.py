"""vol-download and vol-upload never destroy the user's files (issue 10, issue 16).

Against real tgtd. An existing output file holds :data:`OLD`; after every failure it must
still hold exactly that, with no temporary file left in its directory:

* refused before the output is touched: CHAP login refused, target gone, unknown volume,
  offset/length beyond the end or not a number (``test_failure_leaves_file_unchanged``);
* stopped in the middle of the transfer -- caught there deterministically by
  :class:`~tests.harness.stallrelay.StallRelay`, which holds the target's bytes back after a
  few MiB: tgtd killed, the target gone, SIGINT, SIGTERM (``test_stopped_mid_transfer``), the
  LUN replaced by a smaller, an empty or a larger one (``test_lun_resized_mid_transfer``);
* a full disk: a 1 MiB tmpfs, and ``/dev/full`` written in place (``test_disk_full``);
* a LUN whose backing file became empty while the pool is active: tgt then reports 2^64
  blocks; one line, and the download runs under a 1 GiB address-space limit
  (``test_lun_emptied_while_pool_active``).

Success replaces the file atomically (new inode, the old mode kept; a symlink is followed and
stays), ``-`` is standard output/input, ``--sparse`` into a pipe gives the same bytes and into
a block device (a loop device) writes the zeros, and
a qcow2 image on standard input is refused unless ``--force``.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import RunCli
from tests.harness.stallrelay import StallRelay
from tests.harness.tgtd import MiB, Tgtd

ROOT = Path(__file__).resolve().parents[2]
IQN = "iqn.2026-11.example:filesafe"
CHAP_IQN = "iqn.2026-11.example:filesafe-chap"
INITIATOR = "iqn.2026-11.example:initiator1"
BIG = 32 * MiB  # LUN 1: random data
SPARSE = 4 * MiB  # LUN 2: data, a long run of zeros, data
UPLOAD = 8 * MiB  # LUN 3: uploads
STALL_AFTER = 4 * MiB  # target -> initiator bytes passed on before the relay stalls
OLD = b"the user's only backup of something precious\n" * 2000
CHAP_SECRET = "filesafe-chap-secret"


@dataclass
class Target:
    tgtd: Tgtd
    big: bytes
    sparse: bytes


def _fill(t: Tgtd, lun: int, data: bytes) -> None:
    t.backing_path(1, lun).write_bytes(data)


@pytest.fixture(scope="module")
def tgt() -> Iterator[Target]:
    with Tgtd.start() as t:
        t.new_target(1, IQN)
        t.add_lun(1, 1, BIG)
        t.add_lun(1, 2, SPARSE)
        t.add_lun(1, 3, UPLOAD)
        big = os.urandom(BIG)
        _fill(t, 1, big)
        sparse = os.urandom(MiB) + bytes(SPARSE - MiB - 4096) + os.urandom(4096)
        _fill(t, 2, sparse)
        t.new_target(2, CHAP_IQN)
        t.add_lun(2, 1, MiB)
        t.add_account("fsuser", CHAP_SECRET)
        t.bind_account(2, "fsuser")
        yield Target(t, big, sparse)


def pool_xml(tmp: Path, name: str, port: int, iqn: str = IQN, auth: str = "") -> Path:
    path = tmp / f"{name}.xml"
    path.write_text(
        "<pool type='iscsi-direct' xmlns:pb='https://poolbackend.dev/xmlns/pool/1'>"
        f"<name>{name}</name><source><host name='127.0.0.1' port='{port}'/>"
        f"<device path='{iqn}'/><initiator><iqn name='{INITIATOR}'/></initiator>{auth}"
        "</source><pb:iscsi><pb:timeout seconds='30'/></pb:iscsi></pool>"
    )
    return path


def env_for(state_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["POOLBACKEND_STATE_DIR"] = str(state_dir)
    pp = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + pp if pp else "")
    return env


def spawn(state_dir: Path, *args: str, **kw: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # type: ignore[call-overload,no-any-return]
        [sys.executable, "-m", "poolbackend", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env_for(state_dir),
        **kw,
    )


def run_bytes(
    state_dir: Path, *args: str, input: bytes | None = None, **kw: object
) -> tuple[int, bytes, str]:
    """The CLI with binary stdin/stdout (bounded)."""
    p = spawn(state_dir, *args, stdin=subprocess.PIPE if input is not None else None, **kw)
    out, err = p.communicate(input, timeout=120)
    return p.returncode, out, err.decode()


def ok(run_cli: RunCli, *args: str) -> str:
    rc, out, err = run_cli(*args, timeout=120)
    assert rc == 0, f"{args}: rc={rc} {err}"
    return str(out)


def one_error_line(err: str) -> str:
    assert "Traceback" not in err and "MemoryError" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), f"not one error line: {err!r}"
    return lines[0]


def precious(directory: Path, name: str = "backup.raw") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(OLD)
    path.chmod(0o640)
    return path


def assert_untouched(path: Path) -> None:
    """The old file byte for byte, and nothing else new in its directory."""
    assert path.read_bytes() == OLD, "the existing output file was changed"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    left = sorted(p.name for p in path.parent.iterdir() if p.name != path.name)
    assert left == [], f"left behind next to {path.name}: {left}"


def temp_files(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.name.endswith(".part")]


def wait_for(predicate: object, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.01)


# ------------------------------------------------------------------ refused up front


def _chap_pool(run_cli: RunCli, tmp: Path, t: Target) -> list[str]:
    """A CHAP pool that started, then its password changed: the next login is refused."""
    secret = tmp / "secret.xml"
    secret.write_text(
        "<secret ephemeral='no' private='yes'><usage type='iscsi'><target>fs-chap</target>"
        "</usage></secret>"
    )
    ok(run_cli, "secret-define", str(secret))
    value = tmp / "value"
    value.write_text(CHAP_SECRET)
    ok(run_cli, "secret-set-value", "fs-chap", "--file", str(value), "--plain")
    auth = "<auth type='chap' username='fsuser'><secret usage='fs-chap'/></auth>"
    ok(run_cli, "pool-create", str(pool_xml(tmp, "chap", t.tgtd.port, CHAP_IQN, auth)))
    value.write_text("not-the-password")
    ok(run_cli, "secret-set-value", "fs-chap", "--file", str(value), "--plain")
    return ["--pool", "chap", "unit:0:0:1"]


CASES = {
    "chap-login-refused": (None, [], "authentication"),
    "target-gone": (None, [], "127.0.0.1"),
    "unknown-volume": (["--pool", "fs", "unit:0:0:9"], [], "unit:0:0:9"),
    "offset-beyond-end": (["--pool", "fs", "unit:0:0:1"], ["--offset", str(BIG + 1)], "beyond"),
    "length-beyond-end": (
        ["--pool", "fs", "unit:0:0:1"],
        ["--offset", "512", "--length", str(BIG)],
        "exceeds",
    ),
    "offset-not-a-number": (["--pool", "fs", "unit:0:0:1"], ["--offset", "1x"], "--offset"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_failure_leaves_file_unchanged(
    case: str, tgt: Target, run_cli: RunCli, tmp_path: Path
) -> None:
    vol_args, extra, needle = CASES[case]
    if case == "chap-login-refused":
        vol_args = _chap_pool(run_cli, tmp_path, tgt)
        relay = None
    elif case == "target-gone":
        relay = StallRelay((tgt.tgtd.host, tgt.tgtd.port))
        ok(run_cli, "pool-create", str(pool_xml(tmp_path, "gone", relay.port)))
        relay.stop()  # the target is gone; the pool is still active
        vol_args = ["--pool", "gone", "unit:0:0:1"]
    else:
        ok(run_cli, "pool-create", str(pool_xml(tmp_path, "fs", tgt.tgtd.port)))
    assert vol_args is not None
    out = precious(tmp_path / "out")
    rc, _, err = run_cli("vol-download", *vol_args, str(out), *extra, timeout=120)
    assert rc == 1
    assert "Traceback" not in err
    assert all(line.startswith("error: ") for line in err.splitlines()), err  # virsh: 2 lines
    assert needle in err, err
    assert_untouched(out)


# ------------------------------------------------------------------ stopped mid-transfer


@dataclass
class Stalled:
    proc: subprocess.Popen[bytes]
    relay: StallRelay
    tgtd: Tgtd
    out: Path


@pytest.fixture
def lone_tgtd() -> Iterator[Tgtd]:
    """A private tgtd with LUN 1 (BIG bytes of random data), for tests that break it."""
    with Tgtd.start() as t:
        t.new_target(1, IQN)
        t.add_lun(1, 1, BIG)
        _fill(t, 1, os.urandom(BIG))
        yield t


@contextlib.contextmanager
def stalled_download(t: Tgtd, run_cli: RunCli, state_dir: Path, tmp: Path) -> Iterator[Stalled]:
    """A vol-download into an existing file, held in the middle by the relay."""
    with StallRelay((t.host, t.port)) as relay:
        ok(run_cli, "pool-create", str(pool_xml(tmp, "mid", relay.port)))
        relay.stall_after = relay.forwarded + STALL_AFTER
        out = precious(tmp / "out")
        proc = spawn(state_dir, "vol-download", "--pool", "mid", "unit:0:0:1", str(out))
        try:
            relay.wait_stalled()
            wait_for(lambda: temp_files(out.parent), "the temporary file")
            assert proc.poll() is None
            yield Stalled(proc, relay, t, out)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def finish(s: Stalled) -> tuple[int, str]:
    _, err = s.proc.communicate(timeout=120)
    return s.proc.returncode, err.decode()


@pytest.mark.parametrize("how", ["sigint", "sigterm", "tgtd-killed", "target-closes"])
def test_stopped_mid_transfer(
    how: str, lone_tgtd: Tgtd, run_cli: RunCli, state_dir: Path, tmp_path: Path
) -> None:
    with stalled_download(lone_tgtd, run_cli, state_dir, tmp_path) as s:
        if how in ("sigint", "sigterm"):
            # The signal is pending before the connection closes: the CLI handles it first.
            s.proc.send_signal(signal.SIGINT if how == "sigint" else signal.SIGTERM)
            s.relay.drop()
            rc, err = finish(s)
            assert rc == 130, err
            assert one_error_line(err) == "error: interrupted"
        else:
            if how == "tgtd-killed":
                s.tgtd.kill()
            s.relay.drop()
            rc, err = finish(s)
            assert rc == 1, err
            one_error_line(err)
    assert_untouched(s.out)


def _replace_lun(t: Tgtd, size: int) -> None:
    """LUN 1 deleted and added again with ``size`` bytes (retried while tgt says busy)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            t.delete_lun(1, 1)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    t.add_lun(1, 1, size)


@pytest.mark.parametrize("size", [MiB, 0, 2 * BIG], ids=["smaller", "empty", "larger"])
def test_lun_resized_mid_transfer(
    size: int, lone_tgtd: Tgtd, run_cli: RunCli, state_dir: Path, tmp_path: Path
) -> None:
    with stalled_download(lone_tgtd, run_cli, state_dir, tmp_path) as s:
        _replace_lun(lone_tgtd, size)
        s.relay.resume()
        rc, err = finish(s)
    assert rc == 1, err
    line = one_error_line(err)
    assert "LUN 1 changed size during the transfer" in line, line
    assert_untouched(s.out)


def _limit_memory() -> None:  # pragma: no cover - runs in the child
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


def test_lun_emptied_while_pool_active(
    lone_tgtd: Tgtd, run_cli: RunCli, state_dir: Path, tmp_path: Path
) -> None:
    ok(run_cli, "pool-create", str(pool_xml(tmp_path, "shrunk", lone_tgtd.port)))
    _replace_lun(lone_tgtd, 0)  # tgt now answers READ CAPACITY with 2^64 blocks
    out = precious(tmp_path / "out")
    rc, _, err = run_bytes(
        state_dir,
        "vol-download",
        "--pool",
        "shrunk",
        "unit:0:0:1",
        str(out),
        preexec_fn=_limit_memory,
    )
    assert rc == 1, err
    assert "LUN 1" in one_error_line(err)
    assert_untouched(out)


# ------------------------------------------------------------------ a full disk


@contextlib.contextmanager
def small_tmpfs(where: Path) -> Iterator[Path]:
    where.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if r.returncode != 0:
        pytest.fail(f"cannot mount a 1 MiB tmpfs (needs root): {r.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True, timeout=30)


def test_disk_full(tgt: Target, run_cli: RunCli, tmp_path: Path) -> None:
    ok(run_cli, "pool-create", str(pool_xml(tmp_path, "fs", tgt.tgtd.port)))
    with small_tmpfs(tmp_path / "small") as small:
        out = precious(small)
        rc, _, err = run_cli("vol-download", "--pool", "fs", "unit:0:0:1", str(out), timeout=120)
        assert rc == 1
        line = one_error_line(err)
        assert line == f"error: cannot write '{out}': No space left on device"
        assert_untouched(out)
    # A device is written in place, and says the same.
    rc, _, err = run_cli("vol-download", "--pool", "fs", "unit:0:0:1", "/dev/full", timeout=120)
    assert rc == 1
    assert one_error_line(err) == "error: cannot write '/dev/full': No space left on device"


# ------------------------------------------------------------------ success


def test_success_replaces_atomically(
    tgt: Target, run_cli: RunCli, state_dir: Path, tmp_path: Path
) -> None:
    ok(run_cli, "pool-create", str(pool_xml(tmp_path, "fs", tgt.tgtd.port)))
    out = precious(tmp_path / "out")
    inode = out.stat().st_ino
    ok(run_cli, "vol-download", "--pool", "fs", "unit:0:0:1", str(out))
    assert out.read_bytes() == tgt.big
    assert out.stat().st_ino != inode  # renamed into place, not rewritten
    assert stat.S_IMODE(out.stat().st_mode) == 0o640  # the old file's mode
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]
    # A new name gets 0666 minus the umask; a symlink is followed and stays a link.
    fresh = tmp_path / "out" / "fresh.raw"
    rc, _, err = run_bytes(
        state_dir,
        "vol-download",
        "--pool",
        "fs",
        "unit:0:0:2",
        str(fresh),
        "--sparse",
        preexec_fn=lambda: os.umask(0o027),
    )
    assert rc == 0, err
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o640
    assert fresh.read_bytes() == tgt.sparse
    assert fresh.stat().st_blocks * 512 < SPARSE  # holes where the LUN is zero
    link = tmp_path / "out" / "link.raw"
    link.symlink_to(out.name)
    ok(run_cli, "vol-download", "--pool", "fs", "unit:0:0:2", str(link))
    assert link.is_symlink() and out.read_bytes() == tgt.sparse


@pytest.mark.parametrize("sparse", [False, True], ids=["plain", "sparse"])
def test_download_to_stdout_and_pipes(
    sparse: bool, tgt: Target, run_cli: RunCli, state_dir: Path, tmp_path: Path
) -> None:
    ok(run_cli, "pool-create", str(pool_xml(tmp_path, "fs", tgt.tgtd.port)))
    flags = ["--sparse"] if sparse else []
    rc, data, err = run_bytes(
        state_dir, "vol-download", "--pool", "fs", "unit:0:0:2", "-", *flags, cwd=tmp_path
    )
    assert rc == 0, err
    assert data == tgt.sparse
    assert not (tmp_path / "-").exists()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    proc = spawn(state_dir, "vol-download", "--pool", "fs", "unit:0:0:2", str(fifo), *flags)
    try:
        with open(fifo, "rb") as f:
            got = f.read()
    finally:
        _, err_b = proc.communicate(timeout=120)
    assert proc.returncode == 0, err_b
    assert got == tgt.sparse


@contextlib.contextmanager
def loop_device(backing: Path) -> Iterator[Path]:
    r = subprocess.run(
        ["losetup", "--find", "--show", str(backing)], capture_output=True, text=True, timeout=30
    )
    if r.returncode != 0:
        pytest.fail(f"cannot set up a loop device (needs root): {r.stderr.strip()}")
    device = Path(r.stdout.strip())
    try:
        yield device
    finally:
        subprocess.run(["losetup", "--detach", str(device)], check=True, timeout=30)


def test_sparse_to_a_block_device_writes_zeros(
    tgt: Target, run_cli: RunCli, tmp_path: Path
) -> None:
    """A device is written in place and keeps no old data where the LUN has zeros."""
    ok(run_cli, "pool-create", str(pool_xml(tmp_path, "fs", tgt.tgtd.port)))
    backing = tmp_path / "device.img"
    backing.write_bytes(b"\xff" * SPARSE)
    with loop_device(backing) as device:
        ok(run_cli, "vol-download", "--pool", "fs", "unit:0:0:2", str(device), "--sparse")
        assert device.is_block_device()
        with open(device, "rb") as f:
            assert f.read() == tgt.sparse


def test_upload_from_stdin(tgt: Target, run_cli: RunCli, state_dir: Path, tmp_path: Path) -> None:
    ok(run_cli, "pool-create", str(pool_xml(tmp_path, "fs", tgt.tgtd.port)))
    payload = os.urandom(3 * MiB + 100)
    rc, _, err = run_bytes(
        state_dir, "vol-upload", "--pool", "fs", "unit:0:0:3", "-", "--offset", "4096",
        input=payload,
    )  # fmt: skip
    assert rc == 0, err
    backing = tgt.tgtd.backing_path(1, 3).read_bytes()
    assert backing[4096 : 4096 + len(payload)] == payload
    rc, _, err = run_bytes(
        state_dir, "vol-upload", "--pool", "fs", "unit:0:0:3", "-", input=bytes(UPLOAD + 1)
    )
    assert rc == 1
    assert "larger than LUN 3" in one_error_line(err)


# ------------------------------------------------------------------ image files


def test_upload_refuses_an_image_on_stdin(
    tgt: Target, run_cli: RunCli, state_dir: Path, tmp_path: Path
) -> None:
    """test_upload_sources.py covers every format from a file and /dev/stdin; this is ``-``."""
    qemu_img = shutil.which("qemu-img")
    if qemu_img is None:
        pytest.fail("qemu-img is not installed (Debian package 'qemu-utils')")
    image = tmp_path / "disk.qcow2"
    subprocess.run([qemu_img, "create", "-q", "-f", "qcow2", str(image), "1M"], check=True)
    ok(run_cli, "pool-create", str(pool_xml(tmp_path, "fs", tgt.tgtd.port)))
    backing = tgt.tgtd.backing_path(1, 3)
    before = backing.read_bytes()
    args = ["vol-upload", "--pool", "fs", "unit:0:0:3", "-"]
    rc, _, err = run_bytes(state_dir, *args, input=image.read_bytes())
    assert rc == 1
    assert one_error_line(err) == (
        "error: standard input is a qcow2 image, not a raw disk: its bytes are not the disk it "
        "describes; convert it first (qemu-img convert -f qcow2 -O raw IMAGE disk.raw) or "
        "upload it as it is with --force"
    )
    assert backing.read_bytes() == before
    rc, _, err = run_bytes(state_dir, *args, "--force", input=image.read_bytes())
    assert rc == 0, err
    data = image.read_bytes()
    assert backing.read_bytes()[: len(data)] == data
