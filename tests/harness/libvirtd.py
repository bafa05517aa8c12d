"""A private libvirtd for compatibility tests (libvirt's own iscsi-direct backend).

Debian 12 ships only the monolithic ``libvirtd`` (no ``virtstoraged``). Run as
root ("system" mode) it keeps pool definitions in the compiled-in
``/etc/libvirt/storage``, pool state in ``/run/libvirt/storage`` and secrets in
``/etc/libvirt/secrets`` -- ``--config`` only moves the config *file* and the
socket directory, not those driver directories. So we never run it as root:

* If the test runs as root, libvirtd is started as user ``nobody`` (uid/gid
  65534, supplementary groups cleared); otherwise as the current user. An
  unprivileged libvirtd runs in **session mode**, where every driver keeps its
  files under the XDG directories, which we point into a private temp dir:

  ========================  =============================================
  ``$XDG_CONFIG_HOME``      ``libvirt/storage/*.xml`` (persistent pools),
                            ``libvirt/secrets/*.xml|*.base64``,
                            ``libvirt/libvirtd.conf`` is not used: we pass
                            ``--config <dir>/libvirtd.conf``
  ``$XDG_RUNTIME_DIR``      ``libvirt/libvirt-sock`` (the socket),
                            ``libvirt/storage/run/*.xml`` (pool state)
  ``$XDG_CACHE_HOME``       caches; the log goes to ``<dir>/libvirtd.log``
  ========================  =============================================

  Nothing outside the temp dir is read or written, and the machine's system
  libvirtd (if any) is never contacted: clients connect to the private socket
  only, via ``?socket=`` in the URI (which also disables client autostart of
  a session daemon).
* **URI**: ``qemu:///session?socket=<dir>/runtime/libvirt/libvirt-sock``. The
  ``qemu`` driver is only the connection's "hypervisor" driver; the storage
  and secret drivers hang off it. ``storage:///session`` works for pools but
  has no secret driver (``virSecretDefineXML`` "not supported"), and
  ``secret:///session`` has no storage driver, so use the qemu URI for
  everything. (``libvirt-daemon`` depends on ``libvirt-daemon-driver-qemu``.)
* Root can connect to the nobody-owned 0700 socket (DAC override); the daemon
  does not check the peer uid in session mode.
* The temp dir is created with ``tempfile.mkdtemp`` directly in ``/tmp`` (not
  pytest's ``tmp_path``, which is 0700 root-owned and would be unreachable for
  ``nobody``, and whose paths can exceed the 108-byte socket-path limit).
* Harmless start-up errors in the log: no dnsmasq, no D-Bus, no /dev/kvm.
* libvirt's iscsi-direct backend has **no timeouts**: a virsh command against
  a silent target blocks until the peer closes. :meth:`Libvirtd.virsh` kills
  virsh after ``timeout`` seconds, but the daemon's worker stays blocked until
  the target goes away -- stop the fake target first, then the daemon.
* Stopping: SIGTERM by PID, bounded wait, SIGKILL by PID as a last resort.
* :class:`tests.harness.vmhost.VmHost` extends this class to run QEMU domains (its own
  virtlogd beside the daemon); the start-up is split into ``_prepare_workdir``,
  ``_popen_daemon`` and ``_launch_libvirtd`` and the shutdown into ``_shutdown`` for it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid as uuid_mod
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.harness import HarnessError, require_tool

NOBODY_UID = 65534
NOBODY_GID = 65534

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class Libvirtd:
    """A private session-mode libvirtd; use :meth:`start` (also a context manager)."""

    #: prefix of the temp dir in /tmp
    WORKDIR_PREFIX = "pb-libvirtd-"

    def __init__(self, workdir: Path, *, debug: bool = False, keep_workdir: bool = False) -> None:
        self.workdir = workdir
        self.debug = debug
        self.keep_workdir = keep_workdir
        self.config_home = workdir / "config"
        self.runtime_dir = workdir / "runtime"
        self.cache_home = workdir / "cache"
        self.data_home = workdir / "data"
        self.home = workdir / "home"
        self.conf_path = workdir / "libvirtd.conf"
        self.log_path = workdir / "libvirtd.log"
        self.stdout_path = workdir / "libvirtd.stdout"
        self.socket_path = self.runtime_dir / "libvirt" / "libvirt-sock"
        self._libvirtd = require_tool("libvirtd", "libvirt-daemon")
        self._virsh = require_tool("virsh", "libvirt-clients")
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopped = False

    @property
    def uri(self) -> str:
        """``qemu:///session?socket=...`` -- pools, volumes and secrets."""
        return f"qemu:///session?socket={self.socket_path}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    # ------------------------------------------------------------------ start

    @classmethod
    def start(
        cls, *, timeout: float = 30.0, debug: bool = False, keep_workdir: bool | None = None
    ) -> Self:
        """Start libvirtd (as nobody when root) and wait until virsh can connect.

        ``debug=True`` logs the storage and secret drivers at debug level.
        ``keep_workdir`` (default: environment ``POOLBACKEND_KEEP_LIBVIRTD=1``)
        keeps the temp dir (config, state, log) after :meth:`stop`.
        """
        if keep_workdir is None:
            keep_workdir = os.environ.get("POOLBACKEND_KEEP_LIBVIRTD") == "1"
        workdir = Path(tempfile.mkdtemp(prefix=cls.WORKDIR_PREFIX, dir="/tmp"))
        inst = cls(workdir, debug=debug, keep_workdir=keep_workdir)
        try:
            inst._spawn(timeout)
        except BaseException:
            inst.stop()
            raise
        return inst

    @property
    def as_nobody(self) -> bool:
        """Whether the daemons run as ``nobody`` (the test runs as root)."""
        return os.geteuid() == 0

    def _spawn(self, timeout: float) -> None:
        self._prepare_workdir()
        self._launch_libvirtd(timeout)

    def _prepare_workdir(self) -> None:
        """Create the XDG directories and libvirtd.conf; hand them to ``nobody`` if root."""
        for d in (self.config_home, self.runtime_dir, self.cache_home, self.data_home, self.home):
            d.mkdir(mode=0o700)
        if self.debug:
            filters = 'log_filters = "1:storage 1:secret 3:*"\n'
            outputs = f'log_outputs = "1:file:{self.log_path}"\n'
        else:
            filters = ""
            outputs = f'log_outputs = "3:file:{self.log_path}"\n'
        self.conf_path.write_text(filters + outputs)
        self.log_path.touch()
        if self.as_nobody:
            os.chmod(self.workdir, 0o755)
        self._give_to_daemon_user()

    def _give_to_daemon_user(self) -> None:
        """chown everything under the workdir to ``nobody`` (no-op unless root)."""
        if not self.as_nobody:
            return
        for root, dirs, files in os.walk(self.workdir):
            os.chown(root, NOBODY_UID, NOBODY_GID)
            for name in dirs + files:
                os.chown(os.path.join(root, name), NOBODY_UID, NOBODY_GID, follow_symlinks=False)

    def _daemon_env(self) -> dict[str, str]:
        """The environment of every daemon: XDG directories inside the workdir."""
        return {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(self.home),
            "LANG": "C",
            "XDG_CONFIG_HOME": str(self.config_home),
            "XDG_RUNTIME_DIR": str(self.runtime_dir),
            "XDG_CACHE_HOME": str(self.cache_home),
            "XDG_DATA_HOME": str(self.data_home),
            "XDG_STATE_HOME": str(self.data_home),
        }

    def _popen_daemon(self, argv: list[str], output: Path) -> subprocess.Popen[bytes]:
        """Start *argv* in the foreground as the daemon user, output appended to *output*."""
        as_nobody = self.as_nobody
        with open(output, "ab") as out:
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=self._daemon_env(),
                user=NOBODY_UID if as_nobody else None,
                group=NOBODY_GID if as_nobody else None,
                extra_groups=[] if as_nobody else None,
                preexec_fn=_die_with_parent,
            )

    def _launch_libvirtd(self, timeout: float) -> None:
        self._proc = self._popen_daemon(
            [self._libvirtd, "--config", str(self.conf_path)], self.stdout_path
        )
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            if self._proc.poll() is not None:
                raise HarnessError(
                    f"libvirtd exited with code {self._proc.returncode} during start-up:\n"
                    + self.log_tail()
                )
            if self.socket_path.exists():
                r = self.virsh("uri", timeout=10)
                if r.returncode == 0:
                    return
                last = r.stderr.strip()
            if time.monotonic() > deadline:
                raise HarnessError(
                    f"libvirtd not reachable within {timeout}s: {last}\n" + self.log_tail()
                )
            time.sleep(0.05)

    # ----------------------------------------------------------------- virsh

    def virsh(
        self,
        *args: str,
        input: str | None = None,
        timeout: float = 60.0,
        check: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``virsh -c URI ARGS`` (LANG=C) with a timeout.

        Never raises on a non-zero exit unless *check*. On timeout virsh is
        killed and a CompletedProcess with returncode -9 and stderr
        ``"timeout after Ns"`` is returned.
        """
        cmd = [self._virsh, "-c", self.uri, *args]
        env = dict(os.environ)
        env.pop("LIBVIRT_DEFAULT_URI", None)
        env["LANG"] = "C"
        env["LC_ALL"] = "C"
        try:
            r = subprocess.run(
                cmd,
                input=input,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=env,
                stdin=None if input is not None else subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            r = subprocess.CompletedProcess(cmd, -9, out, f"timeout after {timeout}s")
        if check and r.returncode != 0:
            raise HarnessError(
                f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip() or r.stdout.strip()}"
            )
        return r

    def define_file(self, name: str, text: str) -> Path:
        """Write *text* to ``<workdir>/files/<name>`` (for ``pool-define FILE`` etc.)."""
        d = self.workdir / "files"
        d.mkdir(exist_ok=True)
        p = d / name
        p.write_text(text)
        return p

    def define_iscsi_secret(self, usage: str, value: bytes, *, uuid: str | None = None) -> str:
        """``secret-define`` an iscsi-usage secret and set its raw value; return the UUID.

        Uses ``secret-set-value UUID --file F --plain`` (virsh 9.0), so the value
        is stored byte for byte; libvirt passes it to libiscsi as the CHAP password.
        """
        uid = uuid or str(uuid_mod.uuid4())
        xml = (
            "<secret ephemeral='no' private='no'>\n"
            f"  <uuid>{uid}</uuid>\n"
            f"  <usage type='iscsi'>\n    <target>{_xml_text(usage)}</target>\n  </usage>\n"
            "</secret>\n"
        )
        self.virsh("secret-define", str(self.define_file(f"secret-{uid}.xml", xml)), check=True)
        vf = self.workdir / "files" / f"secret-{uid}.value"
        fd = os.open(vf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(value)
        try:
            self.virsh("secret-set-value", uid, "--file", str(vf), "--plain", check=True)
        finally:
            vf.unlink()
        return uid

    # ---------------------------------------------------------------- logs

    def log_text(self) -> str:
        parts = []
        for p in (self.stdout_path, self.log_path):
            with contextlib.suppress(OSError):
                parts.append(p.read_text(errors="replace"))
        return "\n".join(parts)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # ------------------------------------------------------------- shutdown

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM by PID, wait (bounded), SIGKILL by PID; remove the temp dir."""
        if self._stopped:
            return
        self._stopped = True
        try:
            self._shutdown(timeout)
        finally:
            if not self.keep_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def _shutdown(self, timeout: float) -> None:
        """Stop the daemon(s); subclasses stop what they started around it."""
        _terminate(self._proc, timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Libvirtd pid={self.pid} uri={self.uri}>"


def _terminate(proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """SIGTERM *proc* (a child we started) by PID, wait (bounded), then SIGKILL."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)


def _xml_text(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def quoteattr(s: str) -> str:
    """A single-quoted XML attribute value (libvirt's own formatting style)."""
    return "'" + _xml_text(s).replace("'", "&apos;") + "'"


def iscsi_direct_pool_xml(
    name: str,
    *,
    host: str,
    port: int | None,
    target: str,
    initiator: str,
    auth_user: str | None = None,
    secret_usage: str | None = None,
    secret_uuid: str | None = None,
) -> str:
    """Pool XML for ``type='iscsi-direct'`` (libvirt's formatting, single quotes)."""
    host_attrs = f"name={quoteattr(host)}" + (f" port='{port}'" if port is not None else "")
    lines = [
        "<pool type='iscsi-direct'>",
        f"  <name>{_xml_text(name)}</name>",
        "  <source>",
        f"    <host {host_attrs}/>",
        f"    <device path={quoteattr(target)}/>",
        "    <initiator>",
        f"      <iqn name={quoteattr(initiator)}/>",
        "    </initiator>",
    ]
    if auth_user is not None:
        if secret_uuid is not None:
            ref = f"uuid={quoteattr(secret_uuid)}"
        elif secret_usage is not None:
            ref = f"usage={quoteattr(secret_usage)}"
        else:
            raise ValueError("auth_user needs secret_usage or secret_uuid")
        lines += [
            f"    <auth type='chap' username={quoteattr(auth_user)}>",
            f"      <secret {ref}/>",
            "    </auth>",
        ]
    lines += ["  </source>", "</pool>", ""]
    return "\n".join(lines)


__all__ = ["Libvirtd", "iscsi_direct_pool_xml"]
