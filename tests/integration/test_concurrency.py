"""Concurrent commands against one state directory and one volume (real tgtd).

* Three processes at once define, start, refresh, destroy and undefine the same pool in a
  seeded random order. Afterwards every file in the state directory is valid XML that
  loads, ``pool-list --all`` works, no temporary file is left, and every failure a process
  saw was a clean one-line ``error:`` of the kinds concurrent use legitimately produces.
* A volume being written (vol-upload / vol-wipe) refuses a second writer and readers with
  one line naming the volume and the operation in progress; downloads share the volume.
  The long-running transfers are held open deterministically with named pipes (FIFOs).
* The same holds across pools: one through ``localhost`` and one through ``127.0.0.1`` (own
  initiator names, else a source conflict) share the LUN's lock, keyed on the target.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from poolbackend.errors import StateError
from poolbackend.pool import statefile
from poolbackend.pool.backends.iscsi_direct import ScanReport
from poolbackend.pool.driver import Driver
from poolbackend.pool.model import PoolDef
from poolbackend.pool.store import Store, StorePaths
from poolbackend.pool.targetid import lun_lock_keys
from poolbackend.pool.volumelock import lock_path
from poolbackend.pool.xml.pool import parse_pool_xml
from tests.conftest import ROOT, RunCli
from tests.harness.tgtd import MiB, Tgtd

IQN = "iqn.2026-11.example:conc"
INITIATOR = "iqn.2026-11.example:initiator1"

# Each worker runs the CLI's main() in a loop inside one process (no interpreter start-up
# per command), so the processes really overlap; output is captured per command.
DRIVER = r"""
import contextlib, io, json, random, sys, traceback
from poolbackend.cli.main import main
xml, seed, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
cmds = [["pool-define", xml], ["pool-start", "cp"], ["pool-refresh", "cp"],
        ["pool-destroy", "cp"], ["pool-undefine", "cp"], ["pool-info", "cp"],
        ["pool-list", "--all"], ["vol-list", "cp"], ["pool-dumpxml", "cp"]]
log, seen = [], set()
# At least `steps` commands; then go on (bounded) until this worker itself has seen the
# whole lifecycle succeed once, so a loaded machine cannot turn the run into a vacuous one.
needed = {"pool-define", "pool-start", "pool-refresh", "pool-undefine"}
for step in range(steps * 10):
    if step >= steps and needed <= seen:
        break
    cmd = rng.choice(cmds)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(cmd)
        except SystemExit as exc:
            rc = exc.code
        except BaseException:
            rc, err = "crash", io.StringIO(traceback.format_exc())
    log.append([cmd, rc, err.getvalue()])
    if rc == 0:
        seen.add(cmd[0])
print(json.dumps(log))
"""

ALLOWED = re.compile(
    r"^error: ("
    r"Storage pool not found: no storage pool with matching name 'cp'"
    r"|Requested operation is not valid: .*"
    r"(is already active|is not active( \(it was stopped during the refresh\))?|is still active"
    r"|was (redefined|undefined|restarted) during the (start|refresh); the result of scanning "
    r"its old target was discarded)"
    r"|operation failed: pool 'cp' already exists with uuid .*"
    r")$"
)


@pytest.fixture(scope="module")
def tgt() -> Iterator[Tgtd]:
    with Tgtd.start() as t:
        t.new_target(1, IQN)
        t.add_lun(1, 1, 8 * MiB)
        t.add_lun(1, 2, 4 * MiB)
        yield t


def _pool_xml(tmp: Path, t: Tgtd) -> Path:
    path = tmp / "cp.xml"
    path.write_text(
        "<pool type='iscsi-direct'><name>cp</name>"
        "<uuid>4a1f3c2e-9b7d-4e5f-8a6b-1c2d3e4f5a6b</uuid><source>"
        f"<host name='127.0.0.1' port='{t.port}'/><device path='{IQN}'/>"
        f"<initiator><iqn name='{INITIATOR}'/></initiator></source></pool>"
    )
    return path


@pytest.mark.timeout(180)
def test_parallel_define_start_refresh_undefine(
    tgt: Tgtd, tmp_path: Path, state_dir: Path, run_cli: RunCli
) -> None:
    xml = _pool_xml(tmp_path, tgt)
    env = dict(os.environ, POOLBACKEND_STATE_DIR=str(state_dir), PYTHONPATH=str(ROOT))
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", DRIVER, str(xml), str(seed), "60"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for seed in (1, 2, 3)
    ]
    logs = []
    for w in workers:
        out, err = w.communicate(timeout=150)
        assert w.returncode == 0 and "Traceback" not in err, err
        logs.append(json.loads(out))
    outcomes: dict[str, int] = {}
    for log in logs:
        for cmd, rc, err in log:
            assert rc != "crash", f"{cmd} raised:\n{err}"
            key = f"{cmd[0]}:{'ok' if rc == 0 else 'error'}"
            outcomes[key] = outcomes.get(key, 0) + 1
            if rc == 0:
                continue
            assert rc == 1, (cmd, rc, err)
            lines = err.splitlines()
            assert len(lines) == 1 and ALLOWED.match(lines[0]), f"{cmd}: {err!r}"
    # The runs really interleaved the lifecycle (not all failing or all one command).
    for needed in ("pool-define:ok", "pool-start:ok", "pool-undefine:ok", "pool-refresh:ok"):
        assert outcomes.get(needed, 0) > 0, outcomes

    # Every file is valid and loads; no temporary files are left behind.
    for path in sorted(p for p in state_dir.rglob("*") if p.is_file() or p.is_symlink()):
        assert not path.name.endswith(".tmp") and not path.name.startswith("."), path
        data = path.read_bytes()
        if path.parent.name == "storage" and path.parent.parent.name == "run":
            assert path.suffix == ".json", path
            statefile.loads(data)
        elif path.suffix != ".xml":
            assert path.name == "poolbackend.lock", path
        else:
            parse_pool_xml(data, source_name=path.name)
    rc, out, err = run_cli("pool-list", "--all")
    assert rc == 0 and err == "", err
    rc, out, err = run_cli("pool-list", "--all", "--details")
    assert rc == 0 and err == "", err


def _held(path: Path) -> bool:
    """Whether another process holds the volume lock file (any mode)."""
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _wait_held(path: Path, proc: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not _held(path):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the transfer never took the volume lock"
        time.sleep(0.02)


def _refused(run_cli: RunCli, *args: str, busy: str) -> None:
    rc, out, err = run_cli(*args)
    assert rc == 1, (args, out, err)
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert re.fullmatch(
        rf"error: Requested operation is not valid: volume 'unit:0:0:1' is in use "
        rf"\({busy} in progress \(pid \d+\)\); {args[0]} refused\n",
        err,
    ), err


@pytest.mark.timeout(120)
def test_one_writer_or_many_readers_per_volume(
    tgt: Tgtd, tmp_path: Path, state_dir: Path, run_cli: RunCli
) -> None:
    rc, _, err = run_cli("pool-create", str(_pool_xml(tmp_path, tgt)))
    assert rc == 0, err
    paths = StorePaths.under(state_dir)
    source = Store(paths).get_pool("cp").pool.source
    [key] = lun_lock_keys(source, 1)  # 127.0.0.1: one address, one lock file
    lock = lock_path(paths, key)
    env = dict(os.environ, POOLBACKEND_STATE_DIR=str(state_dir), PYTHONPATH=str(ROOT))
    payload = bytes(range(256)) * 4096  # 1 MiB

    # A writer in progress: the upload reads its source from a FIFO we feed slowly.
    fifo = tmp_path / "up.fifo"
    os.mkfifo(fifo)
    upload = subprocess.Popen(
        [sys.executable, "-m", "poolbackend", "vol-upload", "--pool", "cp", "unit:0:0:1",
         str(fifo), "--length", str(len(payload))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    with open(fifo, "wb") as feed:
        feed.write(payload[:4096])
        feed.flush()
        _wait_held(lock, upload)
        _refused(run_cli, "vol-wipe", "--pool", "cp", "unit:0:0:1", busy="vol-upload")
        _refused(run_cli, "vol-upload", "--pool", "cp", "unit:0:0:1", str(fifo), busy="vol-upload")
        _refused(
            run_cli, "vol-download", "--pool", "cp", "unit:0:0:1", str(tmp_path / "x"),
            busy="vol-upload",
        )  # fmt: skip
        rc, _, err = run_cli("vol-wipe", "--pool", "cp", "unit:0:0:2")  # other volumes are free
        assert rc == 0, err
        feed.write(payload[4096:])
    _, err = upload.communicate(timeout=60)
    assert upload.returncode == 0, err
    assert tgt.backing_path(1, 1).read_bytes()[: len(payload)] == payload

    # Readers share the volume: a download blocked writing into a FIFO we do not drain yet.
    fifo2 = tmp_path / "down.fifo"
    os.mkfifo(fifo2)
    download = subprocess.Popen(
        [sys.executable, "-m", "poolbackend", "vol-download", "--pool", "cp", "unit:0:0:1",
         str(fifo2), "--length", str(len(payload))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    with open(fifo2, "rb") as drain:
        _wait_held(lock, download)
        copy = tmp_path / "copy.bin"
        rc, _, err = run_cli(
            "vol-download", "--pool", "cp", "unit:0:0:1", str(copy), "--length", str(len(payload))
        )
        assert rc == 0, err
        assert copy.read_bytes() == payload
        _refused(run_cli, "vol-wipe", "--pool", "cp", "unit:0:0:1", busy="vol-download")
        assert download.poll() is None  # still holding the lock while we were refused
        got = drain.read()
    _, err = download.communicate(timeout=60)
    assert download.returncode == 0, err
    assert got == payload
    # Released: the volume is writable again.
    rc, _, err = run_cli("vol-wipe", "--pool", "cp", "unit:0:0:1")
    assert rc == 0, err
    assert not _held(lock)


def _interleaved_backend(state_dir: Path, between: Callable[[str], None]) -> Driver:
    """A driver whose scan lets another process's step (*between*) run before it saves."""
    driver = Driver(Store(StorePaths.under(state_dir)))
    backend = driver.backend
    start, refresh = backend.start_pool, backend.refresh_pool

    def start_then_interleave(pool: PoolDef, credentials: object) -> ScanReport:
        result = start(pool, credentials)  # type: ignore[arg-type]
        between(pool.name)
        return result

    def refresh_then_interleave(pool: PoolDef, credentials: object) -> ScanReport:
        result = refresh(pool, credentials)  # type: ignore[arg-type]
        between(pool.name)
        return result

    backend.start_pool = start_then_interleave  # type: ignore[method-assign]
    backend.refresh_pool = refresh_then_interleave  # type: ignore[method-assign]
    return driver


def test_destroy_during_refresh_is_not_undone(
    tgt: Tgtd, tmp_path: Path, state_dir: Path, run_cli: RunCli
) -> None:
    assert run_cli("pool-define", str(_pool_xml(tmp_path, tgt)))[0] == 0
    assert run_cli("pool-start", "cp")[0] == 0

    def destroy(name: str) -> None:
        assert run_cli("pool-destroy", name)[0] == 0

    backend = _interleaved_backend(state_dir, destroy)
    with pytest.raises(StateError, match=r"'cp' is not active \(it was stopped during the refresh"):
        backend.refresh("cp")
    assert not backend.store.get_pool("cp").state.active


def test_second_start_during_start_is_refused(
    tgt: Tgtd, tmp_path: Path, state_dir: Path, run_cli: RunCli
) -> None:
    assert run_cli("pool-define", str(_pool_xml(tmp_path, tgt)))[0] == 0

    def start(name: str) -> None:
        assert run_cli("pool-start", name)[0] == 0

    backend = _interleaved_backend(state_dir, start)
    with pytest.raises(StateError, match="'cp' is already active"):
        backend.start("cp")
    assert [v.name for v in backend.store.get_pool("cp").state.volumes] == [
        "unit:0:0:0",
        "unit:0:0:1",
        "unit:0:0:2",
    ]


def _alias_pool_xml(tmp: Path, t: Tgtd, name: str, host: str, initiator: str) -> Path:
    path = tmp / f"{name}.xml"
    path.write_text(
        f"<pool type='iscsi-direct'><name>{name}</name><source>"
        f"<host name='{host}' port='{t.port}'/><device path='{IQN}'/>"
        f"<initiator><iqn name='{initiator}'/></initiator></source></pool>"
    )
    return path


@pytest.mark.timeout(120)
def test_host_aliases_share_the_volume_lock(
    tgt: Tgtd, tmp_path: Path, state_dir: Path, run_cli: RunCli
) -> None:
    """Pools through ``localhost`` and ``127.0.0.1`` reach one LUN: one writer at a time.

    Same target and initiator would be a source conflict, so the second pool has its own
    initiator name (libvirt's rule lets it exist); the lock is on the target, not the pool.
    """
    via_name = _alias_pool_xml(tmp_path, tgt, "via-name", "localhost", INITIATOR)
    via_ip = _alias_pool_xml(tmp_path, tgt, "via-ip", "127.0.0.1", INITIATOR + "-2")
    same = _alias_pool_xml(tmp_path, tgt, "same", "127.0.0.1", INITIATOR)
    for xml in (via_name, via_ip):
        rc, _, err = run_cli("pool-create", str(xml))
        assert rc == 0, err
    conflict = "error: operation failed: Storage source conflict with pool: 'via-name'\n"
    assert run_cli("pool-define", str(same)) == (1, "", conflict)
    key_name = run_cli("vol-key", "unit:0:0:1", "--pool", "via-name")[1].strip()
    key_ip = run_cli("vol-key", "unit:0:0:1", "--pool", "via-ip")[1].strip()
    assert key_name != key_ip  # libvirt's keys differ; the LUN is the same

    paths = StorePaths.under(state_dir)
    env = dict(os.environ, POOLBACKEND_STATE_DIR=str(state_dir), PYTHONPATH=str(ROOT))
    first, second = bytes([0xA1]) * MiB, bytes([0xB2]) * MiB
    (tmp_path / "second.bin").write_bytes(second)

    fifo = tmp_path / "first.fifo"
    os.mkfifo(fifo)
    upload = subprocess.Popen(
        [sys.executable, "-m", "poolbackend", "vol-upload", key_name, str(fifo),
         "--length", str(len(first))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    with open(fifo, "wb") as feed:
        feed.write(first[:4096])
        feed.flush()
        _wait_volume_lock(paths, upload)
        for vol, pool in ((key_ip, None), ("unit:0:0:1", "via-ip")):
            args = ["--pool", pool] if pool else []
            _refused(
                run_cli, "vol-upload", vol, str(tmp_path / "second.bin"), *args, busy="vol-upload"
            )
            _refused(run_cli, "vol-wipe", vol, *args, busy="vol-upload")
            _refused(run_cli, "vol-download", vol, str(tmp_path / "x"), *args, busy="vol-upload")
        feed.write(first[4096:])
    _, err = upload.communicate(timeout=60)
    assert upload.returncode == 0, err
    assert tgt.backing_path(1, 1).read_bytes()[: len(first)] == first  # only the first writer

    # And the other way round: a reader through 127.0.0.1 keeps a writer through localhost out.
    fifo2 = tmp_path / "down.fifo"
    os.mkfifo(fifo2)
    download = subprocess.Popen(
        [sys.executable, "-m", "poolbackend", "vol-download", "unit:0:0:1", str(fifo2),
         "--pool", "via-ip", "--length", str(len(first))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    with open(fifo2, "rb") as drain:
        _wait_volume_lock(paths, download)
        _refused(
            run_cli, "vol-upload", "unit:0:0:1", str(tmp_path / "second.bin"),
            "--pool", "via-name", busy="vol-download",
        )  # fmt: skip
        got = drain.read()
    _, err = download.communicate(timeout=60)
    assert download.returncode == 0, err
    assert got == first
    rc, _, err = run_cli("vol-upload", key_name, str(tmp_path / "second.bin"))  # free again
    assert rc == 0, err
    assert tgt.backing_path(1, 1).read_bytes()[: len(second)] == second
    store = Store(paths)
    [key] = lun_lock_keys(store.get_pool("via-name").pool.source, 1)
    assert lun_lock_keys(store.get_pool("via-ip").pool.source, 1) == [key]
    assert not _held(lock_path(paths, key))


def _wait_volume_lock(paths: StorePaths, proc: subprocess.Popen[str], timeout: float = 30) -> None:
    """Wait until ``proc`` holds an ``flock`` on some volume lock file (whatever its key)."""
    deadline = time.monotonic() + timeout
    while True:
        inodes = set()
        if paths.volume_locks_dir.is_dir():
            inodes = {f.stat().st_ino for f in paths.volume_locks_dir.iterdir()}
        with open("/proc/locks", encoding="ascii") as table:
            for line in table:
                fields = line.split()  # N: FLOCK ADVISORY READ|WRITE PID MAJ:MIN:INODE ...
                if len(fields) >= 6 and fields[1] == "FLOCK" and fields[4] == str(proc.pid):
                    if int(fields[5].rsplit(":", 1)[1]) in inodes:
                        return
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the transfer never took a volume lock"
        time.sleep(0.02)
