"""A slow start or refresh must not write over a pool that changed meanwhile (issue 10).

Every race is made deterministic with OUR test tgtd: SIGSTOP it, run the slow command (it
connects, the kernel completes the TCP handshake, and the login hangs), wait until its TCP
connection is established, change the pool through the CLI, then SIGCONT (or SIGKILL, for
a refresh that must fail). Each command is the real CLI in a subprocess.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from poolbackend.pool.store import Store, StorePaths
from tests.conftest import ROOT, RunCli
from tests.harness.tgtd import MiB, Tgtd

IQN_A = "iqn.2026-11.example:stale-a"
IQN_B = "iqn.2026-11.example:stale-b"
INITIATOR = "iqn.2026-11.example:initiator1"
UUID = "6b1f3c2e-9b7d-4e5f-8a6b-1c2d3e4f5a70"
WAIT = 60.0  # bound of every wait in this module (never reached when things work)


@pytest.fixture
def two_targets() -> Iterator[tuple[Tgtd, Tgtd]]:
    """Two private tgtds: A (to be stopped) with 1 LUN of 8 MiB, B with 2 LUNs of 4 MiB."""
    with Tgtd.start() as a, Tgtd.start() as b:
        a.new_target(1, IQN_A)
        a.add_lun(1, 1, 8 * MiB)
        b.new_target(1, IQN_B)
        b.add_lun(1, 1, 4 * MiB)
        b.add_lun(1, 2, 4 * MiB)
        try:
            yield a, b
        finally:
            for t in (a, b):  # never leave a stopped daemon behind
                if t.pid is not None and t.is_running():
                    os.kill(t.pid, signal.SIGCONT)


def _xml(tmp: Path, name: str, t: Tgtd, iqn: str) -> str:
    path = tmp / f"{name}-{t.port}.xml"
    path.write_text(
        f"<pool type='iscsi-direct'><name>{name}</name><uuid>{UUID}</uuid><source>"
        f"<host name='127.0.0.1' port='{t.port}'/><device path='{iqn}'/>"
        f"<initiator><iqn name='{INITIATOR}'/></initiator></source>"
        "<pb:iscsi xmlns:pb='https://poolbackend.dev/xmlns/pool/1'>"
        f"<pb:timeout seconds='{WAIT:g}'/></pb:iscsi></pool>"
    )
    return str(path)


def _established(port: int) -> int:
    """Client-side TCP connections to 127.0.0.1:port that are ESTABLISHED."""
    count = 0
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            remote, state = fields[2], fields[3]
            if state == "01" and remote == f"0100007F:{port:04X}":
                count += 1
    return count


class Slow:
    """A CLI command started in the background while tgtd is stopped."""

    def __init__(self, state_dir: Path, *args: str) -> None:
        env = dict(os.environ, POOLBACKEND_STATE_DIR=str(state_dir), PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "poolbackend", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
        )

    def result(self) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=WAIT)
        return self.proc.returncode, out, err


def _stopped_then(t: Tgtd, state_dir: Path, *commands: tuple[str, ...]) -> list[Slow]:
    """SIGSTOP ``t``, start ``commands`` and wait until each has connected to it."""
    assert t.pid is not None
    before = _established(t.port)
    os.kill(t.pid, signal.SIGSTOP)
    slow = [Slow(state_dir, *args) for args in commands]
    deadline = time.monotonic() + WAIT
    while _established(t.port) < before + len(slow):
        for s in slow:
            assert s.proc.poll() is None, s.result()
        assert time.monotonic() < deadline, "the slow command never connected"
        time.sleep(0.02)
    return slow


def _cont(t: Tgtd) -> None:
    assert t.pid is not None
    os.kill(t.pid, signal.SIGCONT)


def _store(state_dir: Path) -> Store:
    return Store(StorePaths.under(state_dir))


def _keys(state_dir: Path, name: str) -> list[str]:
    return [v.key for v in _store(state_dir).get_pool(name).state.volumes]


def _ok(result: tuple[int, str, str]) -> str:
    rc, out, err = result
    assert rc == 0, err
    return out


@pytest.mark.timeout(180)
def test_start_vs_define(
    two_targets: tuple[Tgtd, Tgtd], tmp_path: Path, state_dir: Path, run_cli: RunCli
) -> None:
    """A start that hangs at login while p3 is redefined to another target saves nothing."""
    a, b = two_targets
    _ok(run_cli("pool-define", _xml(tmp_path, "p3", a, IQN_A)))
    (start,) = _stopped_then(a, state_dir, ("pool-start", "p3"))
    _ok(run_cli("pool-define", _xml(tmp_path, "p3", b, IQN_B)))
    _cont(a)
    rc, out, err = start.result()
    assert (rc, out) == (1, ""), (rc, out, err)
    assert err == (
        "error: Requested operation is not valid: storage pool 'p3' was redefined during the "
        "start; the result of scanning its old target was discarded\n"
    )
    assert not _store(state_dir).get_pool("p3").state.active
    # Started again, it is the new target's volumes, and a write lands on target B.
    _ok(run_cli("pool-start", "p3"))
    assert _keys(state_dir, "p3") == [
        f"ip-127.0.0.1:{b.port}-iscsi-{IQN_B}-lun-{n}" for n in (0, 1, 2)
    ]
    payload = tmp_path / "payload"
    payload.write_bytes(b"B" * 4096)
    _ok(run_cli("vol-upload", "--pool", "p3", "unit:0:0:1", str(payload)))
    assert b.backing_path(1, 1).read_bytes()[:4096] == b"B" * 4096
    assert a.backing_path(1, 1).read_bytes()[:4096] == bytes(4096)


@pytest.mark.timeout(180)
def test_refresh_vs_destroy(
    two_targets: tuple[Tgtd, Tgtd], tmp_path: Path, state_dir: Path, run_cli: RunCli
) -> None:
    a, _ = two_targets
    _ok(run_cli("pool-define", _xml(tmp_path, "p3", a, IQN_A)))
    _ok(run_cli("pool-start", "p3"))
    (refresh,) = _stopped_then(a, state_dir, ("pool-refresh", "p3"))
    _ok(run_cli("pool-destroy", "p3"))
    _cont(a)
    rc, out, err = refresh.result()
    assert (rc, out) == (1, ""), (rc, out, err)
    assert err == (
        "error: Requested operation is not valid: storage pool 'p3' is not active "
        "(it was stopped during the refresh)\n"
    )
    assert not _store(state_dir).get_pool("p3").state.active


@pytest.mark.timeout(180)
def test_refresh_vs_destroy_and_start(
    two_targets: tuple[Tgtd, Tgtd], tmp_path: Path, state_dir: Path, run_cli: RunCli
) -> None:
    """The pool is stopped, redefined and started on B while a refresh of A hangs: the stale
    result is discarded and the new activation keeps B's volumes."""
    a, b = two_targets
    _ok(run_cli("pool-define", _xml(tmp_path, "p3", a, IQN_A)))
    _ok(run_cli("pool-start", "p3"))
    (refresh,) = _stopped_then(a, state_dir, ("pool-refresh", "p3"))
    _ok(run_cli("pool-destroy", "p3"))
    _ok(run_cli("pool-define", _xml(tmp_path, "p3", b, IQN_B)))
    _ok(run_cli("pool-start", "p3"))
    new_state = _store(state_dir).state_path("p3").read_bytes()
    _cont(a)
    rc, out, err = refresh.result()
    assert (rc, out) == (1, ""), (rc, out, err)
    assert err == (
        "error: Requested operation is not valid: storage pool 'p3' was restarted during the "
        "refresh; the result of scanning its old target was discarded\n"
    )
    assert _store(state_dir).state_path("p3").read_bytes() == new_state


@pytest.mark.timeout(180)
def test_failed_stale_refresh_does_not_deactivate_the_new_activation(
    two_targets: tuple[Tgtd, Tgtd], tmp_path: Path, state_dir: Path, run_cli: RunCli
) -> None:
    a, b = two_targets
    _ok(run_cli("pool-define", _xml(tmp_path, "p3", a, IQN_A)))
    _ok(run_cli("pool-start", "p3"))
    (refresh,) = _stopped_then(a, state_dir, ("pool-refresh", "p3"))
    _ok(run_cli("pool-destroy", "p3"))
    _ok(run_cli("pool-define", _xml(tmp_path, "p3", b, IQN_B)))
    _ok(run_cli("pool-start", "p3"))
    new_state = _store(state_dir).state_path("p3").read_bytes()
    a.kill()  # the stale refresh fails: its target is gone
    rc, out, err = refresh.result()
    assert (rc, out) == (1, ""), (rc, out, err)
    assert err.startswith(f"error: portal 127.0.0.1:{a.port}"), err
    assert err.endswith("(pool 'p3' was restarted during the refresh and stays active)\n"), err
    assert err.count("\n") == 1, err
    assert _store(state_dir).state_path("p3").read_bytes() == new_state
    assert "p3" in _ok(run_cli("pool-list"))


@pytest.mark.timeout(180)
def test_refresh_vs_define(
    two_targets: tuple[Tgtd, Tgtd], tmp_path: Path, state_dir: Path, run_cli: RunCli
) -> None:
    """Redefining an active pool changes the next start, not the live pool (as in libvirt):
    the refresh scanned the live definition, so it is saved under that definition."""
    a, b = two_targets
    _ok(run_cli("pool-define", _xml(tmp_path, "p3", a, IQN_A)))
    _ok(run_cli("pool-start", "p3"))
    (refresh,) = _stopped_then(a, state_dir, ("pool-refresh", "p3"))
    _ok(run_cli("pool-define", _xml(tmp_path, "p3", b, IQN_B)))
    _cont(a)
    assert _ok(refresh.result()) == "Pool p3 refreshed\n\n"
    record = _store(state_dir).get_pool("p3")
    assert record.live is not None and record.live.source.target_iqn == IQN_A
    assert record.definition is not None and record.definition.source.target_iqn == IQN_B
    assert _keys(state_dir, "p3") == [
        f"ip-127.0.0.1:{a.port}-iscsi-{IQN_A}-lun-{n}" for n in (0, 1)
    ]


@pytest.mark.timeout(180)
def test_two_autostart_runs_both_succeed(
    two_targets: tuple[Tgtd, Tgtd], tmp_path: Path, state_dir: Path, run_cli: RunCli
) -> None:
    """Two concurrent autostart-pools: the one that loses the race reports success."""
    a, _ = two_targets
    _ok(run_cli("pool-define", _xml(tmp_path, "p3", a, IQN_A)))
    _ok(run_cli("pool-autostart", "p3"))
    runs = _stopped_then(a, state_dir, ("autostart-pools",), ("autostart-pools",))
    _cont(a)
    results = [run.result() for run in runs]
    assert [rc for rc, _, _ in results] == [0, 0], results
    assert [err for _, _, err in results] == ["", ""], results
    assert sorted(out for _, out, _ in results) == [
        "Pool p3 started\n",
        "Pool p3 was started by another command\n",
    ]
    assert _keys(state_dir, "p3") == [
        f"ip-127.0.0.1:{a.port}-iscsi-{IQN_A}-lun-{n}" for n in (0, 1)
    ]


@pytest.mark.timeout(120)
def test_refresh_vs_restart_with_the_same_definition(
    two_targets: tuple[Tgtd, Tgtd], tmp_path: Path, state_dir: Path, run_cli: RunCli
) -> None:
    """Only the activation id tells this restart apart: same definition, same target."""
    from poolbackend.pool.driver import Driver

    a, _ = two_targets
    _ok(run_cli("pool-define", _xml(tmp_path, "p3", a, IQN_A)))
    _ok(run_cli("pool-start", "p3"))
    backend = Driver(_store(state_dir))
    refresh = backend.backend.refresh_pool
    restarted: list[bytes] = []

    def refresh_then_restart(pool: object, credentials: object) -> object:
        result = refresh(pool, credentials)  # type: ignore[arg-type]
        _ok(run_cli("pool-destroy", "p3"))
        _ok(run_cli("pool-start", "p3"))
        restarted.append(_store(state_dir).state_path("p3").read_bytes())
        return result

    backend.backend.refresh_pool = refresh_then_restart  # type: ignore[assignment,method-assign]
    from poolbackend.errors import StateError

    with pytest.raises(StateError, match="'p3' was restarted during the refresh; the result"):
        backend.refresh("p3")
    assert _store(state_dir).state_path("p3").read_bytes() == restarted[0]


def test_activation_id_is_kept_in_the_state_file(state_dir: Path) -> None:
    """Whatever the state file format, the activation id survives a save and a load."""
    from poolbackend.pool.model import PoolState
    from poolbackend.pool.xml.pool import parse_pool_xml

    pool = parse_pool_xml(
        f"<pool type='iscsi-direct'><name>p</name><uuid>{UUID}</uuid><source>"
        f"<host name='127.0.0.1'/><device path='{IQN_A}'/>"
        f"<initiator><iqn name='{INITIATOR}'/></initiator></source></pool>"
    )
    store = _store(state_dir)
    store.create_transient(pool)
    first = store.get_pool("p").state.activation
    assert len(first) == 16 and int(first, 16) >= 0
    store.save_state("p", PoolState(active=True, persistent=False, activation="00ff12"))
    assert _store(state_dir).get_pool("p").state.activation == "00ff12"
    store.clear_state("p")
    store.create_transient(pool)
    assert store.get_pool("p").state.activation not in (first, "00ff12")
