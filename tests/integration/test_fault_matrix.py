"""The fault matrix: every network-facing command against every way a target can misbehave.

Each cell runs the real CLI in a subprocess (``run_cli``), measures the wall time and checks

* exit status 1 and stderr of exactly one line ``error: portal HOST:PORT…: <cause>``, no
  traceback, within the configured timeout plus a margin (``LIMIT_MARGIN`` on an idle
  machine, scaled by the run queue's length per CPU on a loaded one:
  :func:`tests.harness.load.slack`; the timeout is ``TIMEOUT`` = 2 s: ``<pb:timeout
  seconds='2'/>`` in the pool XML, ``--timeout 2`` for find-storage-pool-sources-as and
  iscsi-ls), after exactly one connection to a scripted fake target (no retry loop);
* the pool definition file byte-identical afterwards;
* the runtime state consistent: a failed ``pool-start`` leaves the pool inactive; a failed
  ``pool-refresh`` makes it inactive and drops its volume list (``vol-list`` then fails with
  one line "is not active"), like libvirt; a failed ``vol-download``/``vol-upload``/``vol-wipe``
  leaves the pool active with exactly the volume list it had (and, for an upload or wipe whose
  login failed, the LUN untouched; a successful upload leaves the file's bytes on the LUN);
  discovery commands write nothing.

A login *redirect* is not an error: the initiator follows it (here to the real tgtd), so those
cells assert success with correct results. So does "slow but within the timeout". "Target not
found" and "authentication failed" are also sent to the discovery sessions of
find-storage-pool-sources-as and iscsi-ls (a real target would rather refuse a discovery login
with 0x0201/0x0202); the initiator's error path is the same.

Setting ``POOLBACKEND_FAULT_MATRIX_OUT`` (a path, or ``1`` for ``bench/fault-matrix.md``) writes
the measured times as a Markdown matrix when the module finishes.

How the faults reach each command
---------------------------------

``pool-start``, ``find-storage-pool-sources-as`` and ``iscsi-ls`` talk to the faulty portal
directly (a :class:`~tests.harness.faketarget.FakeTarget`, or a free port for "refused").

``pool-refresh``, ``vol-download``, ``vol-upload`` and ``vol-wipe`` need an *active* pool, and
the portal is part of the pool definition. So the pool points at a :class:`Relay`: a transparent TCP
forwarder on a fixed loopback port. The pool is started through the relay against the real
tgtd; then the relay is switched, which models "the target at that address started to
misbehave after the pool was started":

=================  ==========================================================================
fault              what the relay does for every new connection
=================  ==========================================================================
refused            its listener is closed: nothing listens on the pool's port any more
silent, garbage,   forwards to a FakeTarget in that mode (the fault appears at the login of
close mid PDU,     the command's own session, exactly as in the direct cases)
slow (beyond),
redirect, not
found, auth failed,
hostile length
slow (within)      forwards to the real tgtd but holds the first answer of each connection for
                   ``SLOW_WITHIN`` s (< timeout); FakeTarget's ``slow`` mode cannot be used here
                   because after the login it understands only NOP-Out and Logout
=================  ==========================================================================

The mid-operation faults are separate tests against a real tgtd:

* ``test_tgtd_killed_mid_refresh_of_1000_luns``: the pool points at a relay in front of a tgtd
  with 1000 LUNs; the relay parses the initiator's PDUs (digests are off) and, once REPORT LUNS
  and ``KILL_AFTER_PROBES`` per-LUN probe commands went by, tgtd is SIGKILLed and the relay's
  listener closed (so reconnects see "connection refused", as with a dead daemon).
* ``test_tgtd_killed_mid_wipe``: the same kill after 16 WRITE(16) of a ``vol-wipe``.
* ``test_connection_deleted_mid_download_reconnects``: ``tgtadm --mode connection --op
  delete`` while a 128 MiB ``vol-download`` runs (triggered when the output file has grown past
  ``DELETE_AFTER_BYTES``); the download must reconnect and finish with the right SHA-256.

Cells that are not run, and why
-------------------------------

=============================  ===============================================================
command                        mid-operation fault not run for it
=============================  ===============================================================
pool-start                     tgtd killed mid-refresh: same code path as pool-refresh
                               (``Backend._refresh``), covered there; connection deleted
                               mid-download: no download
pool-refresh                   connection deleted mid-download: no download (a dropped
                               connection during a refresh is the tgtd-kill case minus the
                               refused reconnect, and is recovered by the same reconnect code)
find-storage-pool-sources-as,  both: a single SendTargets round trip, there is no "middle"
iscsi-ls                       to hit deterministically; the login faults cover them
vol-download                   tgtd killed mid-refresh: no refresh (a target killed during a
                               download was not requested; it takes the reconnect path of
                               ``test_tgtd_killed_mid_wipe``)
vol-wipe                       connection deleted mid-download: not requested (a dropped
                               connection is recovered by the same reconnect code as the
                               download). tgtd killed mid-operation IS run for it, as
                               ``test_tgtd_killed_mid_wipe`` (``--algorithm random``: pipelined
                               WRITE(16)); a failed reconnect fails every waiting command
                               at once (the session is dead at ERL 0)
=============================  ===============================================================
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import RunCli
from tests.harness.faketarget import FakeTarget
from tests.harness.load import slack
from tests.harness.tgtd import MiB, Tgtd

ROOT = Path(__file__).resolve().parents[2]
IQN = "iqn.2026-11.example:target1"
INITIATOR = "iqn.2026-11.example:initiator1"
POOL = "iscsi-pool"
TIMEOUT = 2.0
LIMIT_MARGIN = 3.0  # python start-up and the command's own work, idle; scaled by slack()
SLOW_WITHIN = 0.5  # "slower but within the timeout": a quarter of it, the rest is for the load
SLOW_BEYOND = 6.0  # "slower than the timeout"
KILL_AFTER_PROBES = 300
DELETE_AFTER_BYTES = 8 * MiB
MATRIX_ENV = "POOLBACKEND_FAULT_MATRIX_OUT"

COMMANDS = (
    "pool-start",
    "pool-refresh",
    "find-storage-pool-sources-as",
    "vol-download",
    "vol-upload",
    "vol-wipe",
    "iscsi-ls",
)
NEEDS_ACTIVE_POOL = {"pool-refresh", "vol-download", "vol-upload", "vol-wipe"}


@dataclass(frozen=True)
class Fault:
    id: str
    title: str
    mode: str  # FakeTarget mode, "refuse", or "relay-slow" (real tgtd behind a delaying relay)
    kwargs: tuple[tuple[str, object], ...] = ()
    cause: str = ""  # regex the error line must match after the portal; "" = success expected

    @property
    def succeeds(self) -> bool:
        return not self.cause


FAULTS = (
    Fault("refused", "connection refused", "refuse", cause=r"cannot connect: Connection refused"),
    Fault("silent", "accepts, never answers", "silent", cause=r"no answer to login within 2 s"),
    Fault(
        "garbage",
        "garbage bytes",
        "garbage",
        # A protocol violation; which one depends on the random bytes.
        cause=r"(unknown or initiator-only opcode|data segment|protocol|invalid|unexpected)",
    ),
    Fault(
        "close-mid-pdu",
        "closes mid PDU",
        "close_mid_pdu",
        cause=r"target closed the connection",
    ),
    Fault(
        "slow-beyond",
        f"slow ({SLOW_BEYOND:g} s > timeout)",
        "slow",
        (("delay", SLOW_BEYOND),),
        cause=r"no answer to login within 2 s",
    ),
    Fault("slow-within", f"slow ({SLOW_WITHIN:g} s < timeout)", "relay-slow"),
    Fault(
        "redirect",
        "login redirect (0x0101)",
        "login_status",
        (("status_class", 1), ("status_detail", 1)),
    ),
    Fault(
        "target-not-found",
        "target not found (0x0203)",
        "login_status",
        (("status_class", 2), ("status_detail", 3)),
        cause=r"login failed: target not found \(status 0x0203\)",
    ),
    Fault(
        "auth-failed",
        "authentication failed (0x0201)",
        "login_status",
        (("status_class", 2), ("status_detail", 1)),
        cause=r"login failed: authentication failed \(status 0x0201\)",
    ),
    Fault(
        "hostile-length",
        "hostile DataSegmentLength",
        "hostile_length",
        cause=r"16777215-byte data segment, above our MaxRecvDataSegmentLength",
    ),
)


# ------------------------------------------------------------------ results


@dataclass
class Cell:
    ok: bool  # expectation met (error or success as expected)
    outcome: str  # "error", "ok", …
    seconds: float
    detail: str = ""


RESULTS: dict[tuple[str, str], Cell] = {}
SPECIAL: dict[str, tuple[str, str]] = {}  # title -> (result, time text)


def _write_matrix(path: Path) -> None:
    lines = [
        "# Fault matrix",
        "",
        f"Wall time of the CLI command (python start-up included) until it exited; timeout "
        f"{TIMEOUT:g} s (`<pb:timeout seconds='2'/>`, `--timeout 2`). `error` = exit 1 with one "
        "line naming the portal and the cause; `ok` = success (redirects are followed, a slow "
        "answer within the timeout is waited for). Generated by "
        f"`{MATRIX_ENV}=1 pytest tests/integration/test_fault_matrix.py`.",
        "",
        "| command | " + " | ".join(f.title for f in FAULTS) + " |",
        "|---|" + "---:|" * len(FAULTS),
    ]
    for cmd in COMMANDS:
        cells = []
        for f in FAULTS:
            c = RESULTS.get((cmd, f.id))
            if c is None:
                cells.append("not run")
            else:
                mark = "" if c.ok else " **FAILED**"
                cells.append(f"{c.outcome} {c.seconds:.2f} s{mark}")
        lines.append(f"| `{cmd}` | " + " | ".join(cells) + " |")
    lines += ["", "Mid-operation faults against a real tgtd:", ""]
    lines += ["| case | result | time |", "|---|---|---:|"]
    for title, (result, when) in SPECIAL.items():
        lines.append(f"| {title} | {result} | {when} |")
    lines.append("")
    path.write_text("\n".join(lines))


@pytest.fixture(scope="module", autouse=True)
def _matrix_report() -> Iterator[None]:
    yield
    target = os.environ.get(MATRIX_ENV)
    if target:
        path = ROOT / "bench" / "fault-matrix.md" if target == "1" else Path(target)
        _write_matrix(path)


# -------------------------------------------------------------------- relay


class PduSniffer:
    """Splits the initiator's byte stream into PDUs (no digests) and reports SCSI CDBs."""

    def __init__(self, on_cdb: Callable[[int], None]) -> None:
        self.buf = bytearray()
        self.on_cdb = on_cdb

    def feed(self, data: bytes) -> None:
        self.buf += data
        while len(self.buf) >= 48:
            dsl = int.from_bytes(self.buf[5:8], "big")
            total = 48 + self.buf[4] * 4 + dsl + (-dsl % 4)
            if len(self.buf) < total:
                return
            if self.buf[0] & 0x3F == 0x01:  # SCSI Command: CDB at byte 32
                self.on_cdb(self.buf[32])
            del self.buf[:total]


class Relay:
    """A transparent TCP forwarder on a fixed loopback port, switchable at run time.

    ``upstream`` gets every new connection; ``delay`` holds the first upstream answer of each
    connection; ``sniffer`` (a factory) sees the initiator's bytes; :meth:`refuse` closes the
    listener (new connections are refused) and every open connection.
    """

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.delay = 0.0
        self.sniffer: Callable[[], PduSniffer] | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(0.1)
        self.host, self.port = "127.0.0.1", self._listener.getsockname()[1]
        self._spawn(self._accept_loop)

    @property
    def portal(self) -> str:
        return f"{self.host}:{self.port}"

    def switch(self, upstream: tuple[str, int], delay: float = 0.0) -> None:
        self.upstream, self.delay = upstream, delay

    def _spawn(self, fn: Callable[..., None], *args: object) -> None:
        t = threading.Thread(target=fn, args=args, daemon=True)
        with self._lock:
            self._threads.append(t)
        t.start()

    def _accept_loop(self) -> None:
        lst = self._listener
        assert lst is not None
        while not self._stop.is_set():
            try:
                client, _ = lst.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                up = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._socks += [client, up]
            sniffer = self.sniffer() if self.sniffer else None
            self._spawn(self._copy, client, up, 0.0, sniffer)
            self._spawn(self._copy, up, client, self.delay, None)

    def _copy(
        self, src: socket.socket, dst: socket.socket, delay: float, sniffer: PduSniffer | None
    ) -> None:
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([src], [], [], 0.2)
                if not ready:
                    continue
                data = src.recv(1 << 16)
                if not data:
                    dst.shutdown(socket.SHUT_WR)  # pass the FIN on
                    return
                if delay:
                    if self._stop.wait(delay):
                        break
                    delay = 0.0
                if sniffer is not None:
                    sniffer.feed(data)
                dst.sendall(data)
        except (OSError, ValueError):
            pass
        for s in (src, dst):  # an error on one side: drop both
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def _close_connections(self) -> None:
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def refuse(self) -> None:
        """Nothing listens on the port any more; open connections are dropped."""
        lst, self._listener = self._listener, None
        if lst is not None:
            # close() alone leaves the port listening while the accept thread is blocked
            # in accept(): a quick client then gets a connection (and a reset), not a refusal
            with contextlib.suppress(OSError):
                lst.shutdown(socket.SHUT_RDWR)
            lst.close()
        self._close_connections()

    def stop(self) -> None:
        self._stop.set()
        self.refuse()
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            t.join(2)


@contextlib.contextmanager
def relay_to(upstream: tuple[str, int]) -> Iterator[Relay]:
    r = Relay(upstream)
    try:
        yield r
    finally:
        r.stop()


# -------------------------------------------------------------- the target


@dataclass
class Target:
    tgtd: Tgtd
    download: bytes  # content of LUN 1
    wipe_lun: int = 2


@pytest.fixture(scope="module")
def tgt() -> Iterator[Target]:
    """target1: LUN1 1 MiB of known random data (downloads), LUN2 1 MiB (wipes)."""
    with Tgtd.start() as t:
        t.new_target(1, IQN)
        t.add_lun(1, 1, 1 * MiB)
        t.add_lun(1, 2, 1 * MiB)
        data = os.urandom(1 * MiB)
        t.backing_path(1, 1).write_bytes(data)
        yield Target(t, data)


def pool_xml(tmp: Path, port: int) -> Path:
    xml = (ROOT / "xml-examples" / "pool.xml").read_text()
    xml = xml.replace("port='3260'", f"port='{port}'")
    xml = xml.replace(
        "<pool type='iscsi-direct'>",
        "<pool type='iscsi-direct' xmlns:pb='https://poolbackend.dev/xmlns/pool/1'>",
    )
    xml = xml.replace(
        "</pool>",
        "  <pb:iscsi>\n    <pb:digest header='None' data='None'/>\n"
        f"    <pb:timeout seconds='{TIMEOUT:g}'/>\n  </pb:iscsi>\n</pool>",
    )
    path = tmp / "pool.xml"
    path.write_text(xml)
    return path


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under *root* (relative path -> bytes), lock files excluded."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.endswith(".lock")
    }


def one_error_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), f"not one error line: {err!r}"
    return lines[0]


class Cli:
    """run_cli with the checks every cell needs."""

    def __init__(self, run_cli: RunCli, state: Path) -> None:
        self.run_cli = run_cli
        self.state = state

    def ok(self, *args: str) -> str:
        rc, out, err = self.run_cli(*args, timeout=60)
        assert rc == 0, f"{args}: rc={rc} {err}"
        return str(out)

    def timed(self, *args: str) -> tuple[int, str, str, float]:
        start = time.monotonic()
        rc, out, err = self.run_cli(*args, timeout=60)
        return rc, str(out), str(err), time.monotonic() - start

    def is_active(self) -> bool:
        return "State:          running" in self.ok("pool-info", POOL)


def command_args(cmd: str, host: str, port: int, tmp: Path) -> list[str]:
    t = f"{TIMEOUT:g}"
    if cmd in ("pool-start", "pool-refresh"):
        return [cmd, POOL]
    if cmd == "find-storage-pool-sources-as":
        return [cmd, "iscsi-direct", host, str(port), "--initiator", INITIATOR, "--timeout", t]
    if cmd == "iscsi-ls":
        return [cmd, "-s", "--timeout", t, "-i", INITIATOR, f"iscsi://{host}:{port}"]
    if cmd == "vol-download":
        return [cmd, "--pool", POOL, "unit:0:0:1", str(tmp / "download.bin")]
    if cmd == "vol-wipe":
        return [cmd, "--pool", POOL, "unit:0:0:2"]
    if cmd == "vol-upload":
        return [cmd, "--pool", POOL, "unit:0:0:2", str(tmp / "upload.bin")]
    raise AssertionError(cmd)


@contextlib.contextmanager
def fault_portal(
    fault: Fault, real: tuple[str, int], fakes: list[FakeTarget] | None = None
) -> Iterator[tuple[str, int]]:
    """A portal showing *fault* (for the commands that talk to it directly); a fake target
    behind it is appended to *fakes*."""
    if fault.mode == "relay-slow":
        with relay_to(real) as r:
            r.switch(real, SLOW_WITHIN)
            yield r.host, r.port
        return
    kwargs = dict(fault.kwargs)
    if fault.mode == "login_status" and kwargs.get("status_class") == 1:
        kwargs["target_address"] = f"{real[0]}:{real[1]}"
    with FakeTarget(fault.mode, **kwargs) as fake:  # type: ignore[arg-type]
        if fakes is not None:
            fakes.append(fake)
        yield fake.host, fake.port


# --------------------------------------------------------------- the matrix


@pytest.mark.timeout(60)
@pytest.mark.parametrize("fault", FAULTS, ids=[f.id for f in FAULTS])
@pytest.mark.parametrize("cmd", COMMANDS)
def test_fault_matrix(
    cmd: str, fault: Fault, tgt: Target, run_cli: RunCli, state_dir: Path, tmp_path: Path
) -> None:
    cli = Cli(run_cli, state_dir)
    real = (tgt.tgtd.host, tgt.tgtd.port)
    definitions = state_dir / "config"
    fakes: list[FakeTarget] = []
    with contextlib.ExitStack() as stack:
        volumes_before = ""
        if cmd in NEEDS_ACTIVE_POOL:
            relay = stack.enter_context(relay_to(real))
            host, port = relay.host, relay.port
            cli.ok("pool-define", str(pool_xml(tmp_path, port)))
            cli.ok("pool-start", POOL)  # through the relay, against the real tgtd
            volumes_before = cli.ok("vol-list", "--details", POOL)
            if fault.mode == "refuse":
                relay.refuse()
            elif fault.mode == "relay-slow":
                relay.switch(real, SLOW_WITHIN)
            else:
                relay.switch(stack.enter_context(fault_portal(fault, real, fakes)))
        elif fault.mode == "refuse":
            host, port = "127.0.0.1", stack.enter_context(FakeTarget("refuse")).port
        else:
            host, port = stack.enter_context(fault_portal(fault, real, fakes))
        if cmd == "pool-start":
            cli.ok("pool-define", str(pool_xml(tmp_path, port)))
        if cmd in ("vol-wipe", "vol-upload"):
            tgt.tgtd.backing_path(1, tgt.wipe_lun).write_bytes(b"\xa5" * MiB)
        if cmd == "vol-upload":
            (tmp_path / "upload.bin").write_bytes(os.urandom(MiB))
        before = snapshot(definitions)
        whole_before = snapshot(state_dir)

        rc, out, err, seconds = cli.timed(*command_args(cmd, host, port, tmp_path))
        connections = [f.connections for f in fakes]

    portal = f"{host}:{port}"
    if fault.succeeds:
        RESULTS[cmd, fault.id] = Cell(False, "ok" if rc == 0 else "error", seconds, err)
        assert rc == 0, f"{cmd} against {fault.title}: rc={rc} {err}"
        assert "Traceback" not in err and err == "", err
        check_success(cmd, fault, cli, tgt, out, tmp_path, volumes_before)
        if fault.mode == "relay-slow":
            assert seconds >= SLOW_WITHIN, "the relay did not delay the answer"
        RESULTS[cmd, fault.id] = Cell(True, "ok", seconds)
        return

    RESULTS[cmd, fault.id] = Cell(False, f"rc={rc}", seconds, err)
    assert rc == 1, f"{cmd} against {fault.title}: rc={rc} out={out!r} err={err!r}"
    line = one_error_line(err)
    assert line.startswith(f"error: portal {portal}"), f"portal {portal} not named: {line}"
    assert re.search(fault.cause, line), f"cause {fault.cause!r} not in {line!r}"
    # One login attempt, then the error: a retry loop would show here whatever the load.
    assert connections in ([], [1]), f"{cmd} connected {connections} times to {fault.title}"
    limit = TIMEOUT + slack(LIMIT_MARGIN)
    assert seconds <= limit, f"{cmd} took {seconds:.2f} s (limit {limit:.3g} s): {line}"
    RESULTS[cmd, fault.id] = Cell(False, "error", seconds, line)

    # The definition is untouched, whatever the command.
    assert snapshot(definitions) == before
    check_state_after_failure(cmd, cli, state_dir, whole_before, volumes_before, tgt)
    RESULTS[cmd, fault.id] = Cell(True, "error", seconds, line)


def check_state_after_failure(
    cmd: str,
    cli: Cli,
    state_dir: Path,
    whole_before: dict[str, bytes],
    volumes_before: str,
    tgt: Target,
) -> None:
    if cmd in ("find-storage-pool-sources-as", "iscsi-ls"):
        assert snapshot(state_dir) == whole_before, "a discovery command wrote state"
        return
    if cmd in ("pool-start", "pool-refresh"):
        # A failed start leaves, a failed refresh makes, the pool inactive without volumes.
        assert not cli.is_active()
        assert not (state_dir / "run" / "storage" / f"{POOL}.json").exists()
        rc, _, err = cli.run_cli("vol-list", POOL)
        assert rc == 1
        assert one_error_line(err) == (
            f"error: Requested operation is not valid: storage pool '{POOL}' is not active"
        )
        return
    # vol-download / vol-upload / vol-wipe: the pool stays active with the same volumes; a
    # login that failed wrote nothing.
    assert cli.is_active()
    if cmd in ("vol-upload", "vol-wipe"):
        assert tgt.tgtd.backing_path(1, tgt.wipe_lun).read_bytes() == b"\xa5" * MiB
    assert cli.ok("vol-list", "--details", POOL) == volumes_before


def check_success(
    cmd: str, fault: Fault, cli: Cli, tgt: Target, out: str, tmp: Path, volumes_before: str
) -> None:
    if cmd in ("pool-start", "pool-refresh"):
        assert cli.is_active()
        listing = cli.ok("vol-list", "--details", POOL)
        assert all(f"unit:0:0:{n} " in listing for n in (0, 1, 2)), listing
        if volumes_before:
            assert listing == volumes_before
    elif cmd == "find-storage-pool-sources-as":
        assert f"<device path='{IQN}'/>" in out, out
    elif cmd == "iscsi-ls":
        assert f"Target:{IQN} " in out and "Lun:1    Type:DIRECT_ACCESS (Size:1M)" in out, out
    elif cmd == "vol-download":
        got = (tmp / "download.bin").read_bytes()
        assert hashlib.sha256(got).digest() == hashlib.sha256(tgt.download).digest()
    elif cmd == "vol-upload":
        assert out == ""
        uploaded = (tmp / "upload.bin").read_bytes()
        assert tgt.tgtd.backing_path(1, tgt.wipe_lun).read_bytes() == uploaded
    elif cmd == "vol-wipe":
        assert out == "Vol unit:0:0:2 wiped\n\n"
        assert tgt.tgtd.backing_path(1, tgt.wipe_lun).read_bytes() == bytes(MiB)


# ------------------------------------------------------- mid-operation faults


def spawn_cli(state_dir: Path, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env["POOLBACKEND_STATE_DIR"] = str(state_dir)
    pp = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + pp if pp else "")
    return subprocess.Popen(
        [sys.executable, "-m", "poolbackend", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_tgtd_killed_mid_refresh_of_1000_luns(
    run_cli: RunCli, state_dir: Path, tmp_path: Path
) -> None:
    cli = Cli(run_cli, state_dir)
    with Tgtd.start() as t, relay_to((t.host, t.port)) as relay:
        t.new_target(1, IQN)
        t.add_luns(1, range(1, 1001), 1 * MiB)
        cli.ok("pool-define", str(pool_xml(tmp_path, relay.port)))
        cli.ok("pool-start", POOL)
        assert cli.ok("vol-list", POOL).count("unit:0:0:") == 1001
        definition = snapshot(state_dir / "config")

        # Arm: count the per-LUN probes that follow REPORT LUNS on the refresh's session.
        fired = threading.Event()

        def make_sniffer() -> PduSniffer:
            seen = {"report": False, "probes": 0}

            def on_cdb(op: int) -> None:
                if op == 0xA0:
                    seen["report"] = True
                elif seen["report"]:
                    seen["probes"] += 1
                    if seen["probes"] == KILL_AFTER_PROBES:
                        fired.set()

            return PduSniffer(on_cdb)

        relay.sniffer = make_sniffer
        killed_at: list[float] = []

        def killer() -> None:
            if fired.wait(60):
                t.kill()  # SIGKILL by PID: the target vanishes mid-scan
                relay.refuse()  # and nothing listens on its port any more
                killed_at.append(time.monotonic())

        k = threading.Thread(target=killer, daemon=True)
        k.start()
        proc = spawn_cli(state_dir, "pool-refresh", POOL)
        try:
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        ended = time.monotonic()
        k.join(5)
        assert fired.is_set() and killed_at, "the refresh never reached the probes"
        seconds = ended - killed_at[0]
        SPECIAL["tgtd SIGKILLed during `pool-refresh` of 1000 LUNs (after REPORT LUNS + "
                f"{KILL_AFTER_PROBES} probes)"] = (
            f"rc={proc.returncode}: `{err.strip()}`",
            f"{seconds:.2f} s after the kill",
        )  # fmt: skip
        assert proc.returncode == 1, (out, err)
        line = one_error_line(err)
        assert line.startswith(f"error: portal {relay.portal}"), line
        assert re.search(r"Connection refused|closed the connection|connection lost", line), line
        limit = TIMEOUT + slack(LIMIT_MARGIN)
        assert seconds <= limit, f"{seconds:.2f} s after the kill (limit {limit:.3g} s): {line}"
        assert snapshot(state_dir / "config") == definition
        assert not cli.is_active()
        rc, _, err = run_cli("vol-list", POOL)
        assert rc == 1 and "is not active" in one_error_line(err)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_connection_deleted_mid_download_reconnects(
    run_cli: RunCli, state_dir: Path, tmp_path: Path
) -> None:
    cli = Cli(run_cli, state_dir)
    size = 128 * MiB
    with Tgtd.start() as t:
        t.new_target(1, IQN)
        backing = t.add_lun(1, 1, size)
        digest = hashlib.sha256()
        with open(backing, "r+b") as f:
            for _ in range(size // (8 * MiB)):
                chunk = os.urandom(8 * MiB)
                digest.update(chunk)
                f.write(chunk)
        cli.ok("pool-define", str(pool_xml(tmp_path, t.port)))
        cli.ok("pool-start", POOL)
        out_path = tmp_path / "big.bin"
        definition = snapshot(state_dir / "config")
        start = time.monotonic()
        proc = spawn_cli(state_dir, "vol-download", "--pool", POOL, "unit:0:0:1", str(out_path))
        deleted: list[tuple[int, int, float]] = []
        done = 0
        try:
            deadline = time.monotonic() + 60
            sessions: list[tuple[int, int]] = []
            while not deleted and proc.poll() is None and time.monotonic() < deadline:
                # The download writes a temporary file next to big.bin until it succeeded.
                partial = next(tmp_path.glob(".big.bin.*.part"), None)
                if not sessions:  # learn the download's connection early (tgtadm is slow);
                    if partial is not None:  # the file is created just after its login
                        sessions = t.sessions(1)
                    continue
                with contextlib.suppress(OSError):
                    done = partial.stat().st_size if partial is not None else 0
                if done >= DELETE_AFTER_BYTES:
                    sid, cid = sessions[0]
                    t.delete_connection(1, sid, cid)
                    deleted.append((sid, cid, done))
                time.sleep(0.002)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        seconds = time.monotonic() - start
        ok = proc.returncode == 0 and out_path.exists()
        same = ok and _sha256(out_path) == digest.digest()
        SPECIAL[
            "`tgtadm --mode connection --op delete` during `vol-download` of a 128 MiB LUN"
            + (f" (at {deleted[0][2] / MiB:.0f} MiB)" if deleted else "")
        ] = (
            "reconnected, SHA-256 correct" if same else f"rc={proc.returncode}: `{err.strip()}`",
            f"{seconds:.2f} s total",
        )
        assert deleted, "the download finished before the connection could be deleted"
        assert deleted[0][2] < size, "the connection was deleted after the download"
        assert proc.returncode == 0, err
        assert err == "", err
        assert out_path.stat().st_size == size
        assert same, "downloaded data differs after the reconnect"
        assert snapshot(state_dir / "config") == definition
        assert cli.is_active()


def _sha256(path: Path) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 * MiB):
            h.update(chunk)
    return h.digest()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_tgtd_killed_mid_wipe(run_cli: RunCli, state_dir: Path, tmp_path: Path) -> None:
    """The tgtd-kill fault for vol-wipe (pipelined WRITE(16), 8 in flight)."""
    cli = Cli(run_cli, state_dir)
    with Tgtd.start() as t, relay_to((t.host, t.port)) as relay:
        t.new_target(1, IQN)
        t.add_lun(1, 1, 64 * MiB)
        cli.ok("pool-define", str(pool_xml(tmp_path, relay.port)))
        cli.ok("pool-start", POOL)
        fired = threading.Event()

        def make_sniffer() -> PduSniffer:
            writes = [0]

            def on_cdb(op: int) -> None:
                if op == 0x8A:  # WRITE(16)
                    writes[0] += 1
                    if writes[0] == 16:
                        fired.set()

            return PduSniffer(on_cdb)

        relay.sniffer = make_sniffer
        killed_at: list[float] = []

        def killer() -> None:
            if fired.wait(60):
                t.kill()
                relay.refuse()
                killed_at.append(time.monotonic())

        k = threading.Thread(target=killer, daemon=True)
        k.start()
        proc = spawn_cli(
            state_dir, "vol-wipe", "--pool", POOL, "unit:0:0:1", "--algorithm", "random"
        )
        try:
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        ended = time.monotonic()
        k.join(5)
        assert fired.is_set() and killed_at, "the wipe never reached 16 writes"
        seconds = ended - killed_at[0]
        SPECIAL["tgtd SIGKILLed during `vol-wipe --algorithm random` of 64 MiB (after 16 "
                "WRITE(16))"] = (
            f"rc={proc.returncode}: `{err.strip()}`",
            f"{seconds:.2f} s after the kill",
        )  # fmt: skip
        assert proc.returncode == 1, (out, err)
        line = one_error_line(err)
        assert line.startswith(f"error: portal {relay.portal}"), line
        assert cli.is_active()  # a failed wipe does not deactivate the pool
        limit = TIMEOUT + slack(LIMIT_MARGIN)
        assert seconds <= limit, f"{seconds:.2f} s after the kill (limit {limit:.3g} s): {line}"
