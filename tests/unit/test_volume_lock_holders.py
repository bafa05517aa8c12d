"""The "volume in use" message names the live holders of the lock, never an exited one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from poolbackend.errors import StateError
from poolbackend.pool.store import StorePaths
from poolbackend.pool.volumelock import lock_path, volume_lock

ROOT = Path(__file__).resolve().parents[2]
KEY = "ip-127.0.0.1:3260-iscsi-iqn.2026-11.example:t-lun-1"
HOLDER = """
import sys
from poolbackend.pool.store import StorePaths
from poolbackend.pool.volumelock import volume_lock
with volume_lock(StorePaths.under(sys.argv[1]), sys.argv[2], "unit:0:0:1", "vol-download",
                 exclusive=False):
    print("held", flush=True)
    sys.stdin.read()  # hold until the test closes our stdin
"""


def _reader(root: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(root), KEY],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={"PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "held\n"
    return proc


def _release(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0


def _refusal(root: Path) -> str:
    with pytest.raises(StateError) as info:
        with volume_lock(StorePaths.under(root), KEY, "unit:0:0:1", "vol-wipe", exclusive=True):
            pass
    return str(info.value)


def test_busy_message_names_live_readers_only(tmp_path: Path) -> None:
    first = _reader(tmp_path)
    second = _reader(tmp_path)  # wrote its note last
    try:
        both = _refusal(tmp_path)
        assert f"(pid {first.pid})" in both and f"(pid {second.pid})" in both, both
        _release(second)  # the reader whose note is the newest exits
        message = _refusal(tmp_path)
        assert message == (
            "Requested operation is not valid: volume 'unit:0:0:1' is in use "
            f"(vol-download in progress (pid {first.pid})); vol-wipe refused"
        ), message
    finally:
        for proc in (first, second):
            if proc.poll() is None:
                _release(proc)
    # Nobody holds it any more: the writer gets it.
    with volume_lock(StorePaths.under(tmp_path), KEY, "unit:0:0:1", "vol-wipe", exclusive=True):
        pass


def test_busy_message_with_no_live_holder_names_nobody(tmp_path: Path) -> None:
    """A holder that is gone by the time we look (kernel table empty) is not named."""
    from poolbackend.pool import volumelock

    path = lock_path(StorePaths.under(tmp_path), KEY)
    path.parent.mkdir(parents=True)
    path.write_text(f"{os.getpid() + 100000} vol-download\n")
    fd = os.open(path, os.O_RDONLY)
    try:
        assert volumelock._busy(fd) == "by another operation"
    finally:
        os.close(fd)
