"""A private tgt daemon (``tgtd``) for integration tests.

Usage::

    with Tgtd.start() as t:                      # 127.0.0.1, free port
        t.new_target(1, "iqn.2026-11.example:target1")
        t.add_lun(1, 1, 64 * MiB)
        t.add_lun(1, 2, 8 * MiB, blocksize=4096)
        url = t.url(1, 1)                        # iscsi://127.0.0.1:PORT/iqn.../1

Every instance runs its own ``tgtd -f`` in the foreground with

* a portal on a free loopback port (``--iscsi portal=127.0.0.1:PORT`` or
  ``[::1]:PORT``),
* its own control port (``-C N``) *and* its own IPC socket prefix
  (``TGT_IPC_SOCKET=<tmpdir>/ipc``), so it can never talk to or collide with a
  system-wide tgtd (``/var/run/tgtd/socket.0``) or another test's daemon,
* a private temporary directory holding the IPC socket, the daemon's log
  (``tgtd.log``) and the LUN backing files.

tgt 1.0.85 quirks handled here (see shared/docs/tgt-and-libiscsi.md §3-§6):

* **The control port is not a TCP port.** ``-C N`` only selects the IPC socket
  ``$TGT_IPC_SOCKET.N``; we set ``TGT_IPC_SOCKET`` to a private path, so no
  ``/var/run/tgtd`` directory is needed and ``N`` cannot clash. tgtd rejects
  ``-C`` values above 32767 ("out of range"), so N is derived from the portal
  port as ``1024 + port % 31744``.
* **A failed portal bind does not stop tgtd.** If the port was taken between
  picking it and tgtd binding it, tgtd logs ``failed to create/bind to
  portal`` and keeps running without a portal. :meth:`Tgtd.start` checks the
  log and a TCP connect and retries with a new port (bounded).
* **SIGTERM does not stop tgtd** (observed even with no targets), and ``--op delete --mode
  system`` answers "invalid request" until every target is gone. :meth:`stop`
  deletes every target with ``--force`` (also with live sessions), then the
  system, then waits for the exit; SIGTERM/SIGKILL by PID are only fallbacks.
* **Backing-store paths are resolved relative to tgtd's cwd**; we always pass
  absolute paths.
* **Each LUN's backing store starts ``-t`` I/O threads** (default 16 per LUN,
  i.e. 16 000 threads for 1000 LUNs). We start tgtd with ``-t 4`` by default
  (``iothreads=``), which keeps 1000-LUN targets cheap.
* **tgtd logs every LUN creation to stderr**; it goes to ``tgtd.log``, never to
  the test's output.
* ``--op show --tid N`` prints parameters only; sessions (I_T nexus) are
  parsed from the plain ``--op show``.
* Without a ``bind`` a target refuses every login (``new_target`` binds ALL by
  default); LUN 0 is tgt's automatic controller LU.
* LUN numbers > 255 are accepted by tgtadm (any 64-bit number) but only
  0-16383 are addressable (flat space); libiscsi mis-handles LUN > 255.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from tests.harness import HarnessError, format_portal, free_port, require_tool

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """preexec_fn: SIGKILL the child if the test process dies (no orphans)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class TgtadmError(HarnessError):
    """tgtadm exited non-zero."""

    def __init__(self, cmd: list[str], returncode: int, stdout: str, stderr: str) -> None:
        self.cmd = cmd
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        detail = stderr.strip() or stdout.strip()
        super().__init__(f"{' '.join(cmd)} failed with exit code {returncode}: {detail}")


@dataclass
class Nexus:
    """One I_T nexus (session) as shown by ``tgtadm --op show``."""

    sid: int
    initiator: str
    #: (cid, ip address) per connection
    connections: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class _TargetInfo:
    tid: int
    iqn: str
    nexuses: list[Nexus] = field(default_factory=list)
    luns: list[int] = field(default_factory=list)


_TARGET_RE = re.compile(r"^Target (\d+): (\S+)\s*$")
_NEXUS_RE = re.compile(r"^\s+I_T nexus: (\d+)\s*$")
_INITIATOR_RE = re.compile(r"^\s+Initiator: (\S+)")
_CONN_RE = re.compile(r"^\s+Connection: (\d+)\s*$")
_IP_RE = re.compile(r"^\s+IP Address: (\S+)\s*$")
_LUN_RE = re.compile(r"^\s+LUN: (\d+)\s*$")


def parse_show(text: str) -> dict[int, _TargetInfo]:
    """Parse ``tgtadm --lld iscsi --mode target --op show`` output."""
    targets: dict[int, _TargetInfo] = {}
    cur: _TargetInfo | None = None
    section = ""
    nexus: Nexus | None = None
    for line in text.splitlines():
        m = _TARGET_RE.match(line)
        if m:
            cur = _TargetInfo(int(m.group(1)), m.group(2))
            targets[cur.tid] = cur
            section, nexus = "", None
            continue
        if cur is None:
            continue
        stripped = line.strip()
        if line.startswith("    ") and not line.startswith("     ") and stripped.endswith(":"):
            section = stripped[:-1]
            nexus = None
            continue
        if section == "I_T nexus information":
            if m := _NEXUS_RE.match(line):
                nexus = Nexus(int(m.group(1)), "")
                cur.nexuses.append(nexus)
            elif nexus is not None and (m := _INITIATOR_RE.match(line)):
                nexus.initiator = m.group(1)
            elif nexus is not None and (m := _CONN_RE.match(line)):
                nexus.connections.append((int(m.group(1)), ""))
            elif nexus is not None and nexus.connections and (m := _IP_RE.match(line)):
                cid, _ = nexus.connections[-1]
                nexus.connections[-1] = (cid, m.group(1))
        elif section == "LUN information" and (m := _LUN_RE.match(line)):
            cur.luns.append(int(m.group(1)))
    return targets


class Tgtd:
    """A private tgtd; use :meth:`start` (also as a context manager)."""

    #: per tgtadm call
    TGTADM_TIMEOUT = 30.0

    def __init__(
        self,
        *,
        host: str,
        port: int,
        control_port: int,
        workdir: Path,
        iothreads: int,
        keep_workdir: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self.control_port = control_port
        self.workdir = workdir
        self.iothreads = iothreads
        self.keep_workdir = keep_workdir
        self.log_path = workdir / "tgtd.log"
        self.ipc_prefix = workdir / "ipc"
        self._tgtd = require_tool("tgtd", "tgt")
        self._tgtadm = require_tool("tgtadm", "tgt")
        self._proc: subprocess.Popen[bytes] | None = None
        self._iqns: dict[int, str] = {}
        self._stopped = False

    # ------------------------------------------------------------------ start

    @classmethod
    def start(
        cls,
        host: str = "127.0.0.1",
        *,
        iothreads: int = 4,
        timeout: float = 20.0,
        attempts: int = 5,
        keep_workdir: bool | None = None,
    ) -> Tgtd:
        """Start a private tgtd on *host* (``127.0.0.1`` or ``::1``) and a free port.

        Waits (at most *timeout* seconds per attempt) until tgtadm answers and
        the portal accepts TCP connections; retries with a new port when the
        portal could not be bound. ``keep_workdir`` (default: environment
        ``POOLBACKEND_KEEP_TGTD=1``) keeps the temp dir for post-mortems.
        """
        if host not in ("127.0.0.1", "::1", "localhost") and not host.startswith("127."):
            raise HarnessError(f"tgtd may only listen on loopback, not {host!r}")
        if keep_workdir is None:
            keep_workdir = os.environ.get("POOLBACKEND_KEEP_TGTD") == "1"
        require_tool("tgtd", "tgt")
        require_tool("tgtadm", "tgt")
        last_error: Exception | None = None
        for _ in range(attempts):
            port = free_port(host)
            workdir = Path(tempfile.mkdtemp(prefix=f"tgtd-{port}-"))
            inst = cls(
                host=host,
                port=port,
                control_port=1024 + port % 31744,  # tgtd accepts -C 0..32767 only
                workdir=workdir,
                iothreads=iothreads,
                keep_workdir=keep_workdir,
            )
            try:
                inst._spawn(timeout)
                return inst
            except _PortInUse as exc:
                last_error = exc
                inst.stop()
            except BaseException:
                inst.stop()
                raise
        raise HarnessError(f"could not start tgtd after {attempts} attempts: {last_error}")

    @property
    def env(self) -> dict[str, str]:
        """Environment for tgtd/tgtadm (``TGT_IPC_SOCKET`` set)."""
        env = dict(os.environ)
        env["TGT_IPC_SOCKET"] = str(self.ipc_prefix)
        return env

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _spawn(self, timeout: float) -> None:
        cmd = [
            self._tgtd,
            "-f",
            "-C",
            str(self.control_port),
            "-t",
            str(self.iothreads),
            "--iscsi",
            f"portal={self.portal}",
        ]
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=self.env,
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise HarnessError(
                    f"tgtd exited with code {self._proc.returncode} during start-up:\n"
                    + self.log_tail()
                )
            r = self._run_tgtadm(["--mode", "system", "--op", "show"], check=False, timeout=5)
            if r.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise HarnessError(
                    f"tgtadm did not answer within {timeout}s: {r.stderr.strip()}\n"
                    + self.log_tail()
                )
            time.sleep(0.02)
        log_text = self.log_text()
        if "failed to create/bind to portal" in log_text or "unable to bind" in log_text:
            raise _PortInUse(f"portal {self.portal} could not be bound")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        while True:
            try:
                with socket.socket(family, socket.SOCK_STREAM) as s:
                    s.settimeout(2.0)
                    s.connect((self.host, self.port))
                break
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise _PortInUse(f"portal {self.portal} not reachable: {exc}") from exc
                time.sleep(0.02)

    # --------------------------------------------------------------- basics

    @property
    def portal(self) -> str:
        """``127.0.0.1:PORT`` or ``[::1]:PORT``."""
        return format_portal(self.host, self.port)

    def iqn(self, tid: int) -> str:
        """IQN of a target created through :meth:`new_target`."""
        return self._iqns[tid]

    def url(
        self, tid: int, lun: int = 0, *, user: str | None = None, password: str | None = None
    ) -> str:
        """libiscsi URL ``iscsi://[user%pw@]portal/iqn/lun`` for the tools of libiscsi-bin."""
        cred = ""
        if user is not None:
            cred = user + (f"%{password}" if password is not None else "") + "@"
        return f"iscsi://{cred}{self.portal}/{self.iqn(tid)}/{lun}"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # --------------------------------------------------------------- tgtadm

    def _run_tgtadm(
        self, args: list[str], *, check: bool = True, timeout: float | None = None
    ) -> subprocess.CompletedProcess[str]:
        cmd = [self._tgtadm, "-C", str(self.control_port), *args]
        try:
            r = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                env=self.env,
                timeout=timeout or self.TGTADM_TIMEOUT,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            raise HarnessError(f"{' '.join(cmd)} timed out after {exc.timeout}s") from exc
        if check and r.returncode != 0:
            raise TgtadmError(cmd, r.returncode, r.stdout, r.stderr)
        return r

    def tgtadm(self, *args: str, lld: bool = True, check: bool = True) -> str:
        """Run ``tgtadm -C N [--lld iscsi] ARGS`` against this daemon; return stdout."""
        full = ["--lld", "iscsi", *args] if lld else list(args)
        return self._run_tgtadm(full, check=check).stdout

    # -------------------------------------------------------------- targets

    def new_target(self, tid: int, iqn: str, bind_all: bool = True) -> None:
        """Create target *tid* named *iqn*; ``bind_all`` allows every initiator (ACL ALL)."""
        self.tgtadm("--mode", "target", "--op", "new", "--tid", str(tid), "--targetname", iqn)
        self._iqns[tid] = iqn
        if bind_all:
            self.bind_address(tid, "ALL")

    def delete_target(self, tid: int, force: bool = True) -> None:
        args = ["--mode", "target", "--op", "delete", "--tid", str(tid)]
        if force:
            args.insert(4, "--force")
        self.tgtadm(*args)
        self._iqns.pop(tid, None)

    def bind_address(self, tid: int, address: str) -> None:
        """ACL by initiator address (``ALL``, an IP or a netmask)."""
        self.tgtadm(
            "--mode", "target", "--op", "bind", "--tid", str(tid), "--initiator-address", address
        )

    def unbind_address(self, tid: int, address: str) -> None:
        self.tgtadm(
            "--mode", "target", "--op", "unbind", "--tid", str(tid), "--initiator-address", address
        )

    def bind_initiator(self, tid: int, iqn: str) -> None:
        """ACL by initiator name. Non-matching initiators get login status 0x0203."""
        self.tgtadm("--mode", "target", "--op", "bind", "--tid", str(tid), "--initiator-name", iqn)

    def unbind_initiator(self, tid: int, iqn: str) -> None:
        self.tgtadm(
            "--mode", "target", "--op", "unbind", "--tid", str(tid), "--initiator-name", iqn
        )

    def set_param(self, tid: int, name: str, value: str | int) -> None:
        """Target parameter, e.g. ``HeaderDigest CRC32C``, ``nop_interval 1``."""
        self.tgtadm(
            "--mode", "target", "--op", "update", "--tid", str(tid), "--name", name,
            "--value", str(value),
        )  # fmt: skip

    # ----------------------------------------------------------------- LUNs

    def backing_path(self, tid: int, lun: int) -> Path:
        return self.workdir / f"tid{tid}-lun{lun}.img"

    def add_lun(
        self,
        tid: int,
        lun: int,
        size: int,
        blocksize: int = 512,
        thin: bool = False,
        fill: bytes | None = None,
    ) -> Path:
        """Add LUN *lun* of *size* bytes to target *tid*; return its backing file.

        The backing file is a sparse file of exactly *size* bytes (``truncate``);
        with *fill* the pattern is repeated over the whole file instead (use
        small LUNs then). tgt derives the block count as ``size // blocksize``.
        ``thin`` sets ``thin_provisioning=1`` (UNMAP, GET LBA STATUS, LBPME).
        Costs one tgtadm call (~4 ms) plus one more for ``thin``.
        """
        if size < 0:
            raise ValueError("size must be >= 0")
        path = self.backing_path(tid, lun)
        with open(path, "wb") as f:
            if fill:
                chunk = fill * max(1, (1 * MiB) // len(fill))
                remaining = size
                while remaining > 0:
                    part = chunk[:remaining]
                    f.write(part)
                    remaining -= len(part)
            else:
                f.truncate(size)
        args = [
            "--mode", "logicalunit", "--op", "new", "--tid", str(tid), "--lun", str(lun),
            "--backing-store", str(path),
        ]  # fmt: skip
        if blocksize != 512:
            args.append(f"--blocksize={blocksize}")
        self.tgtadm(*args)
        if thin:
            self.lun_params(tid, lun, thin_provisioning=1)
        return path

    def add_luns(self, tid: int, luns: list[int] | range, size: int, blocksize: int = 512) -> None:
        """Add many sparse LUNs of the same size (1000 LUNs take about 5 s)."""
        for lun in luns:
            self.add_lun(tid, lun, size, blocksize=blocksize)

    def delete_lun(self, tid: int, lun: int) -> None:
        self.tgtadm("--mode", "logicalunit", "--op", "delete", "--tid", str(tid), "--lun", str(lun))

    def lun_params(self, tid: int, lun: int, **params: str | int) -> None:
        """``--op update --params k=v,...``, e.g. ``online=0``, ``thin_provisioning=1``."""
        if not params:
            raise ValueError("no parameters given")
        value = ",".join(f"{k}={v}" for k, v in params.items())
        self.tgtadm(
            "--mode", "logicalunit", "--op", "update", "--tid", str(tid), "--lun", str(lun),
            "--params", value,
        )  # fmt: skip

    # ------------------------------------------------------------- accounts

    def add_account(self, user: str, password: str) -> None:
        self.tgtadm("--mode", "account", "--op", "new", "--user", user, "--password", password)

    def delete_account(self, user: str) -> None:
        self.tgtadm("--mode", "account", "--op", "delete", "--user", user)

    def bind_account(self, tid: int, user: str, outgoing: bool = False) -> None:
        """Incoming CHAP (target checks the initiator) or, with *outgoing*, mutual CHAP."""
        args = ["--mode", "account", "--op", "bind", "--tid", str(tid), "--user", user]
        if outgoing:
            args.append("--outgoing")
        self.tgtadm(*args)

    def unbind_account(self, tid: int, user: str, outgoing: bool = False) -> None:
        args = ["--mode", "account", "--op", "unbind", "--tid", str(tid), "--user", user]
        if outgoing:
            args.append("--outgoing")
        self.tgtadm(*args)

    # ---------------------------------------------------------------- state

    def show(self) -> str:
        """Raw ``--mode target --op show`` (targets, nexuses, LUNs, accounts, ACLs)."""
        return self.tgtadm("--mode", "target", "--op", "show")

    def targets(self) -> dict[int, str]:
        """tid -> IQN of every target the daemon has."""
        return {tid: t.iqn for tid, t in parse_show(self.show()).items()}

    def luns(self, tid: int) -> list[int]:
        """LUN numbers of target *tid* (including the controller LUN 0)."""
        info = parse_show(self.show()).get(tid)
        return list(info.luns) if info else []

    def nexuses(self, tid: int) -> list[Nexus]:
        info = parse_show(self.show()).get(tid)
        return list(info.nexuses) if info else []

    def sessions(self, tid: int) -> list[tuple[int, int]]:
        """(I_T nexus id, cid) for every connection logged in to target *tid*."""
        return [(n.sid, cid) for n in self.nexuses(tid) for cid, _ in n.connections]

    def wait_sessions(
        self, tid: int, predicate: int | None = None, *, timeout: float = 10.0
    ) -> list[tuple[int, int]]:
        """Poll :meth:`sessions` until it has *predicate* entries (default: at least one)."""
        deadline = time.monotonic() + timeout
        while True:
            s = self.sessions(tid)
            if (len(s) == predicate) if predicate is not None else bool(s):
                return s
            if time.monotonic() > deadline:
                raise HarnessError(f"target {tid}: sessions {s} after {timeout}s")
            time.sleep(0.05)

    def delete_connection(self, tid: int, sid: int, cid: int) -> None:
        """Kill one connection (the initiator sees the TCP connection drop)."""
        self.tgtadm(
            "--mode", "connection", "--op", "delete", "--tid", str(tid), "--sid", str(sid),
            "--cid", str(cid),
        )  # fmt: skip

    # ------------------------------------------------------------- shutdown

    def kill(self) -> None:
        """SIGKILL the daemon by PID (fault injection: the target vanishes)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait(timeout=10)

    def stop(self, timeout: float = 15.0) -> None:
        """Clean shutdown: delete every target (--force), delete the system, wait.

        Falls back to SIGTERM and then SIGKILL (by PID) if tgtd does not exit
        in time. Removes the temp dir unless ``keep_workdir``. Idempotent.
        """
        if self._stopped:
            return
        self._stopped = True
        proc = self._proc
        try:
            if proc is not None and proc.poll() is None:
                self._clean_shutdown(proc, timeout)
        finally:
            if proc is not None and proc.poll() is None:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=10)
            if not self.keep_workdir:
                _rmtree(self.workdir)

    def _clean_shutdown(self, proc: subprocess.Popen[bytes], timeout: float) -> None:
        # `delete --force` fails with "this logical unit is still active" while a
        # session has I/O in flight, so targets are deleted in a bounded retry loop.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            tids: list[int] = [-1]  # unknown until show() answers
            with contextlib.suppress(HarnessError):
                tids = sorted(parse_show(self.show()))
                for tid in tids:
                    self._run_tgtadm(
                        ["--lld", "iscsi", "--mode", "target", "--op", "delete", "--force",
                         "--tid", str(tid)],
                        check=False, timeout=10,
                    )  # fmt: skip
                if not tids:
                    self._run_tgtadm(["--mode", "system", "--op", "delete"], check=False, timeout=5)
            try:
                proc.wait(timeout=0.1 if tids else 0.5)
                return
            except subprocess.TimeoutExpired:
                continue
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)

    def __enter__(self) -> Tgtd:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Tgtd pid={self.pid} portal={self.portal} workdir={self.workdir}>"


class _PortInUse(HarnessError):
    pass


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


__all__ = ["GiB", "KiB", "MiB", "Nexus", "TgtadmError", "Tgtd", "parse_show"]
