"""``poolbackend iscsi-perf`` against real tgtd: libiscsi's output, SIGINT, bad input.

Only the shape of the output is checked (no timed assertions); the figures themselves are
benchmarks (bench/run.py).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, RunCli
from tests.harness.tgtd import MiB, Tgtd

IQN = "iqn.2026-11.example:perf"
PROGRESS = re.compile(
    r"\d\d:\d\d:\d\d - lba \d+, iops current \d+ \(\d+ MB/s\), "
    r"iops average \d+ \(\d+ MB/s\), in_flight \d+, busy \d+ *"
)
FINAL = re.compile(r"iops average (\d+) \((\d+) MB/s\) *")


@pytest.fixture(scope="module")
def tgt() -> Iterator[Tgtd]:
    with Tgtd.start() as t:
        t.new_target(1, IQN)
        t.add_lun(1, 1, 16 * MiB)
        t.add_account("perfuser", "perfsecret12345")
        t.bind_account(1, "perfuser")
        yield t


def _url(tgt: Tgtd, lun: int = 1) -> str:
    return f"iscsi://perfuser%perfsecret12345@{tgt.portal}/{IQN}/{lun}"


def _check_header(lines: list[str], tgt: Tgtd, kind: str, m: int, b: int) -> None:
    assert lines[0] == f"connected to iscsi://perfuser%***@{tgt.portal}/{IQN}/1"
    assert lines[1] == "capacity is 32768 blocks or 16777216 byte (16 MB)"
    assert lines[2] == f"performing {kind} READ with {m} parallel requests"
    assert lines[3] == f"FIXED transfer size of {b} blocks ({b * 512} byte)"


def test_iscsi_perf_runs_for_seconds_and_prints_libiscsi_lines(tgt: Tgtd, run_cli: RunCli) -> None:
    rc, out, err = run_cli(
        "iscsi-perf", "-r", "-l", "-m", "4", "-b", "8", "--seconds", "2", _url(tgt)
    )
    assert rc == 0, err
    assert "perfsecret" not in out + err
    lines = out.split("\n")
    _check_header(lines, tgt, "RANDOM", 4, 8)
    assert lines[4:6] == ["will run for 2 seconds.", ""]
    body = [ln.lstrip("\r") for ln in lines[6:] if ln]
    assert body[-1] == "finished."
    final = FINAL.fullmatch(body[-2])
    assert final is not None, body
    assert int(final.group(1)) > 0
    # MB/s as libiscsi computes it: average IOPS x blocks x block length, shifted by 20
    assert int(final.group(2)) == (int(final.group(1)) * 8 * 512) >> 20
    assert all(PROGRESS.fullmatch(ln) for ln in body[:-2]), body


def test_iscsi_perf_stops_on_sigint_with_the_average(tgt: Tgtd, state_dir: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT), POOLBACKEND_STATE_DIR=str(state_dir))
    proc = subprocess.Popen(
        [sys.executable, "-m", "poolbackend", "iscsi-perf", "-m", "2", "-b", "64", _url(tgt)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert proc.stdout is not None
        seen = ""
        while "infinite runtime - press CTRL-C to abort." not in seen:
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else ""
            seen += line
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    lines = (seen + out).split("\n")
    _check_header(lines, tgt, "SEQUENTIAL", 2, 64)
    tail = [ln for part in lines[6:] for ln in part.split("\r") if ln]
    assert tail[-1] == "finished."
    assert FINAL.fullmatch(tail[-2]), tail
    assert err == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-m", "0"], "-m/--max must be a whole number from 1 to 4096, not '0'"),
        (["-b", "x"], "-b/--blocks must be a whole number from 1 to 16777216, not 'x'"),
        (["--seconds", "-1"], "--seconds must be a whole number from 1 to 86400, not '-1'"),
        (["-x", "1e3"], "-x/--max-reconnects must be a whole number from 0 to 1000, not '1e3'"),
        (["-t", "0"], "--timeout must be a positive number of seconds"),
    ],
)
def test_iscsi_perf_refuses_bad_options_in_one_line(
    run_cli: RunCli, args: list[str], message: str
) -> None:
    rc, out, err = run_cli("iscsi-perf", *args, "iscsi://127.0.0.1:1/iqn.2026-11.example:x/1")
    assert rc == 1
    assert out == ""
    assert err.startswith(f"error: {message}"), err
    assert len(err.splitlines()) == 1


def test_iscsi_perf_needs_a_lun_and_names_the_missing_part(run_cli: RunCli) -> None:
    rc, _out, err = run_cli("iscsi-perf", "iscsi://127.0.0.1:1/iqn.2026-11.example:x")
    assert rc == 1
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert "Traceback" not in err


def test_iscsi_perf_with_a_too_large_read_is_refused(tgt: Tgtd, run_cli: RunCli) -> None:
    rc, _out, err = run_cli("iscsi-perf", "-b", "1048576", "--seconds", "1", _url(tgt))
    assert rc == 1
    assert err.strip().splitlines()[-1] == (
        "error: -b/--blocks: 1048576 blocks of 512 bytes is more than 256 MiB per read"
    )
