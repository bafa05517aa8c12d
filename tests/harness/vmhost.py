"""A private libvirtd that runs QEMU domains, for hot-plug tests: :class:`VmHost`.

Usage::

    with VmHost.start() as vm:                       # libvirtd + virtlogd, private
        vm.define_paused_domain("d1")                # OS-less TCG guest, paused
        vm.virsh("attach-device", "d1", "disk.xml", "--live", check=True)
        vm.disk_capacity("d1", "sda")                # virsh domblkinfo: Capacity
        vm.block_sources("d1")["sda"].url            # query-block: iscsi://HOST:PORT/IQN/LUN

How it runs (measured on Debian 12, libvirt 9.0, QEMU 7.2, 2 cores)
--------------------------------------------------------------------

* **Session mode as ``nobody``**, exactly like :class:`~tests.harness.libvirtd.Libvirtd`
  (this class extends it): every file -- domain definitions, QEMU's monitor sockets, pid
  files, domain logs, the capability cache, secrets -- lives under the XDG directories in
  a private temp dir in ``/tmp``; nothing in ``/etc/libvirt`` or ``/run/libvirt`` is read
  or written and no system libvirtd is contacted (clients use ``?socket=``). A session
  libvirtd starts QEMU itself, as its own user (``nobody``), with no cgroups, no
  namespaces and no security driver; that is all an OS-less test guest needs. System mode
  as root was not used: its driver directories are compiled in (``/etc/libvirt/qemu``,
  ``/run/libvirt/qemu``, ``/var/lib/libvirt``) and ``--config`` does not move them.
* **virtlogd**: a session libvirtd that finds no ``$XDG_RUNTIME_DIR/libvirt/virtlogd-sock``
  auto-spawns ``virtlogd --timeout=120`` *daemonized* (re-parented to init, outliving the
  test by two minutes). So we start our own ``virtlogd`` first, in the foreground, as
  ``nobody``, with the same XDG environment; libvirtd connects to its socket and spawns
  nothing. It is stopped by PID after libvirtd.
* **/dev/kvm is left alone.** A libvirtd for which ``/dev/kvm`` exists but is not usable
  has been seen to re-probe QEMU's capabilities on every domain call (8 s to 90+ s
  each); libvirt drops its capability cache whenever its check "can the QEMU user open
  /dev/kvm read-write" disagrees with whether the cached probe found KVM. Here QEMU and
  the probe run as ``nobody``, who cannot open the root-only ``/dev/kvm`` (``crw-------
  root root``, left as it is): both say "no KVM", and the cache stays valid. Measured
  with the capability code at debug level: one probe per daemon (~1.5 s, on its first
  domain call), none later, domain calls 15-40 ms. Domains are ``type='qemu'`` (TCG) and
  paused, so they never execute guest code. Were ``/dev/kvm`` usable by ``nobody``
  (mode 0666), probe and check would both say "KVM" and the cache would stay valid too.
* **Timings** (typical): libvirtd + virtlogd start 0.12 s; first ``define`` + ``start
  --paused`` 1.7 s (one capability probe per daemon; later domain calls never re-probe),
  later ones 0.3-0.4 s; ``attach-device --live`` of an iSCSI network disk 25 ms (QEMU logs
  in to the target during the call); ``domblkinfo`` / ``query-block`` 15-35 ms;
  ``detach-device --live`` on a virtio-scsi bus 70 ms; :meth:`stop` 25 ms. ``virsh
  destroy`` takes 1.5-2 s: QEMU exits in milliseconds, but libvirt polls until the
  process is *reaped*, and the orphaned QEMU's new parent, this machine's PID 1, reaps
  slowly -- so prefer sharing one domain (detaching disks between tests) over a fresh
  domain per test, and let :meth:`stop` kill the domains.
* **Hot-unplug without a guest OS**: a disk on a ``virtio-scsi`` controller is removed by
  QEMU at once (the SCSI bus needs no guest cooperation). A ``virtio`` (virtio-blk, PCI)
  disk is never released by an OS-less guest: ``virsh detach-device`` waits 5 s and then
  still prints "Device detached successfully" although the disk stays attached. ``sata``
  needs an AHCI controller the default ``pc`` machine lacks and cannot be hot-plugged
  anyway. Tests that detach therefore use ``bus='scsi'``; :meth:`domain_xml` includes a
  ``virtio-scsi`` controller and ``<acpi/>``.
* **What QEMU reports**: ``query-block`` names a ``-blockdev`` iSCSI source as a ``json:``
  pseudo-filename (``{"driver": "raw", "file": {"driver": "iscsi", "portal":
  "127.0.0.1:PORT", "target": IQN, "lun": N, "initiator-name": ..., "user": ...,
  "password-secret": ...}}``); :meth:`block_sources` turns it into the libiscsi URL
  ``iscsi://127.0.0.1:PORT/IQN/N`` (what :meth:`Tgtd.url` returns) and keys it by the
  disk's target dev (``query-block``'s ``qdev`` is the disk's alias, e.g.
  ``scsi0-0-0-0``).
* **Stopping** (:meth:`stop`): libvirtd is stopped first (a session libvirtd leaves its
  QEMU processes running when it exits), then every QEMU whose pid file is in our workdir
  and whose command line names our workdir is SIGKILLed by PID, then virtlogd is stopped
  by PID, and the workdir is removed. If the test process itself is SIGKILLed, libvirtd
  and virtlogd die with it (PDEATHSIG) but a QEMU survives (libvirt daemonizes it); it
  is paused and uses no CPU.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.harness import HarnessError, require_tool
from tests.harness.libvirtd import Libvirtd, _terminate, _xml_text


@dataclass(frozen=True)
class BlockSource:
    """One entry of ``query-block``, keyed to the libvirt disk it belongs to."""

    #: the disk's ``<target dev=...>`` (``sda``)
    dev: str
    #: QEMU's device id (libvirt's alias, e.g. ``scsi0-0-0-0``)
    qdev: str
    #: ``inserted.image.filename`` as QEMU reports it
    filename: str
    #: ``inserted.image.virtual-size`` in bytes
    virtual_size: int
    #: ``iscsi://HOST:PORT/IQN/LUN`` for an iSCSI source, else ``None``
    url: str | None
    #: the CHAP user and initiator name QEMU was given (``None`` if not)
    user: str | None
    initiator: str | None


def _iscsi_fields(filename: str) -> dict[str, Any] | None:
    """The iSCSI options of a query-block filename (``json:{...}`` or an iscsi URL)."""
    if filename.startswith("json:"):
        try:
            spec = json.loads(filename[5:])
        except ValueError:
            return None
        while isinstance(spec, dict):
            if spec.get("driver") == "iscsi":
                return spec
            spec = spec.get("file")
        return None
    m = re.match(r"^iscsi://(?:([^@/]*)@)?([^/]+)/([^/]+)/(\d+)", filename)
    if m is None:
        return None
    user = m.group(1).split("%", 1)[0] if m.group(1) else None
    return {"portal": m.group(2), "target": m.group(3), "lun": int(m.group(4)), "user": user}


def qemu_iscsi_driver() -> Path | None:
    """QEMU's libiscsi block driver module (Debian: ``qemu-block-extra``), or ``None``."""
    for d in (Path("/usr/lib/x86_64-linux-gnu/qemu"), *Path("/usr/lib").glob("*/qemu")):
        if (d / "block-iscsi.so").is_file():
            return d / "block-iscsi.so"
    return None


class VmHost(Libvirtd):
    """A private session-mode libvirtd plus virtlogd that runs QEMU domains.

    Use :meth:`start` (also a context manager); see the module docstring.
    """

    WORKDIR_PREFIX = "pb-vmhost-"

    def __init__(self, workdir: Path, *, debug: bool = False, keep_workdir: bool = False) -> None:
        super().__init__(workdir, debug=debug, keep_workdir=keep_workdir)
        self.virtlogd_conf_path = workdir / "virtlogd.conf"
        self.virtlogd_log_path = workdir / "virtlogd.log"
        self.virtlogd_stdout_path = workdir / "virtlogd.stdout"
        self.virtlogd_socket_path = self.runtime_dir / "libvirt" / "virtlogd-sock"
        #: QEMU's stdout/stderr per domain (written by virtlogd)
        self.qemu_log_dir = self.cache_home / "libvirt" / "qemu" / "log"
        self._virtlogd_bin = require_tool("virtlogd", "libvirt-daemon")
        require_tool("qemu-system-x86_64", "qemu-system-x86")
        self._virtlogd: subprocess.Popen[bytes] | None = None

    @property
    def virtlogd_pid(self) -> int | None:
        return self._virtlogd.pid if self._virtlogd is not None else None

    # ------------------------------------------------------------------ start

    def _spawn(self, timeout: float) -> None:
        self._prepare_workdir()
        self.virtlogd_conf_path.write_text(f'log_outputs = "3:file:{self.virtlogd_log_path}"\n')
        self.virtlogd_log_path.touch()
        self._give_to_daemon_user()
        self._virtlogd = self._popen_daemon(
            [self._virtlogd_bin, "--config", str(self.virtlogd_conf_path)],
            self.virtlogd_stdout_path,
        )
        deadline = time.monotonic() + timeout
        while not self.virtlogd_socket_path.exists():
            if self._virtlogd.poll() is not None:
                raise HarnessError(
                    f"virtlogd exited with code {self._virtlogd.returncode} during start-up:\n"
                    + self.log_tail()
                )
            if time.monotonic() > deadline:
                raise HarnessError(
                    f"virtlogd socket {self.virtlogd_socket_path} missing after {timeout}s:\n"
                    + self.log_tail()
                )
            time.sleep(0.02)
        self._launch_libvirtd(max(1.0, deadline - time.monotonic()))

    # ---------------------------------------------------------------- domains

    @staticmethod
    def domain_xml(name: str, *, memory_mib: int = 64, extra_devices: str = "") -> str:
        """An OS-less TCG guest: ACPI (hot-plug), one virtio-scsi controller, nothing else."""
        return (
            "<domain type='qemu'>\n"
            f"  <name>{_xml_text(name)}</name>\n"
            f"  <memory unit='MiB'>{memory_mib}</memory>\n"
            "  <vcpu>1</vcpu>\n"
            "  <os><type arch='x86_64'>hvm</type></os>\n"
            "  <features><acpi/></features>\n"
            "  <on_poweroff>destroy</on_poweroff>\n"
            "  <on_reboot>destroy</on_reboot>\n"
            "  <on_crash>destroy</on_crash>\n"
            "  <devices>\n"
            "    <controller type='scsi' index='0' model='virtio-scsi'/>\n"
            "    <memballoon model='none'/>\n"
            f"{extra_devices}"
            "  </devices>\n"
            "</domain>\n"
        )

    def define_paused_domain(
        self, name: str, *, persistent: bool = True, memory_mib: int = 64, timeout: float = 60.0
    ) -> str:
        """Define (or, not *persistent*, create) domain *name* and start it paused.

        Returns *name*. Raises :class:`HarnessError` (with the log tail) on failure.
        """
        path = self.define_file(f"domain-{name}.xml", self.domain_xml(name, memory_mib=memory_mib))
        try:
            if persistent:
                self.virsh("define", str(path), check=True, timeout=timeout)
                self.virsh("start", "--paused", name, check=True, timeout=timeout)
            else:
                self.virsh("create", "--paused", str(path), check=True, timeout=timeout)
        except HarnessError as exc:
            raise HarnessError(f"{exc}\n{self.log_tail()}") from exc
        state = self.virsh("domstate", name, check=True).stdout.strip()
        if state != "paused":
            raise HarnessError(f"domain {name} is {state!r} after start --paused")
        return name

    def remove_domain(self, name: str, *, timeout: float = 30.0) -> None:
        """Destroy domain *name* if it runs and undefine it if it is persistent (quietly)."""
        self.virsh("destroy", name, timeout=timeout)
        self.virsh("undefine", name, timeout=timeout)

    def domains(self, *, inactive: bool = True) -> list[str]:
        """Names of the running domains (and, *inactive*, of the defined ones)."""
        args = ["list", "--name"] + (["--all"] if inactive else [])
        out = self.virsh(*args, check=True, timeout=20).stdout
        return [line.strip() for line in out.splitlines() if line.strip()]

    def dumpxml(self, domain: str, *, inactive: bool = False) -> str:
        args = ["dumpxml", domain] + (["--inactive"] if inactive else [])
        return self.virsh(*args, check=True).stdout

    def disks(self, domain: str, *, inactive: bool = False) -> list[ET.Element]:
        """The ``<disk>`` elements of the live (or, *inactive*, persistent) definition."""
        root = ET.fromstring(self.dumpxml(domain, inactive=inactive))
        return root.findall("./devices/disk")

    def disk_targets(self, domain: str, *, inactive: bool = False) -> list[str]:
        """The ``<target dev=...>`` of every disk (live or, *inactive*, persistent)."""
        return [
            t.get("dev", "")
            for d in self.disks(domain, inactive=inactive)
            if (t := d.find("target")) is not None
        ]

    def disk(self, domain: str, dev: str, *, inactive: bool = False) -> ET.Element | None:
        """The ``<disk>`` whose target is *dev*, or ``None``."""
        for d in self.disks(domain, inactive=inactive):
            t = d.find("target")
            if t is not None and t.get("dev") == dev:
                return d
        return None

    # --------------------------------------------------------- what QEMU has

    def domblkinfo(self, domain: str, dev: str) -> dict[str, int]:
        """``virsh domblkinfo DOMAIN DEV`` as ``{"Capacity": n, "Allocation": n, ...}``."""
        r = self.virsh("domblkinfo", domain, dev, check=True)
        info: dict[str, int] = {}
        for line in r.stdout.splitlines():
            key, sep, value = line.partition(":")
            if sep and value.strip().isdigit():
                info[key.strip()] = int(value.strip())
        return info

    def disk_capacity(self, domain: str, dev: str) -> int:
        """The capacity QEMU reports for disk *dev* (bytes; ``domblkinfo`` Capacity)."""
        return self.domblkinfo(domain, dev)["Capacity"]

    def qmp(self, domain: str, command: str, **arguments: Any) -> Any:
        """Run a QMP command through ``virsh qemu-monitor-command``; return its ``return``."""
        msg: dict[str, Any] = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        r = self.virsh("qemu-monitor-command", domain, json.dumps(msg), check=True)
        reply = json.loads(r.stdout)
        if "error" in reply:
            raise HarnessError(f"QMP {command} on {domain}: {reply['error']}")
        return reply["return"]

    def query_block(self, domain: str) -> list[dict[str, Any]]:
        """QMP ``query-block`` of *domain* (every block backend QEMU has open)."""
        result = self.qmp(domain, "query-block")
        assert isinstance(result, list)
        return result

    def block_sources(self, domain: str) -> dict[str, BlockSource]:
        """``query-block`` entries with an inserted medium, keyed by the disk's target dev."""
        alias_to_dev: dict[str, str] = {}
        for d in self.disks(domain):
            target, alias = d.find("target"), d.find("alias")
            if target is not None and alias is not None:
                alias_to_dev[alias.get("name", "")] = target.get("dev", "")
        result: dict[str, BlockSource] = {}
        for entry in self.query_block(domain):
            inserted = entry.get("inserted")
            if not inserted:
                continue
            qdev = str(entry.get("qdev", ""))
            dev = alias_to_dev.get(qdev)
            if dev is None:  # virtio-blk: /machine/peripheral/<alias>/virtio-backend
                dev = next((v for k, v in alias_to_dev.items() if f"/{k}/" in qdev), qdev)
            image = inserted.get("image", {})
            filename = str(image.get("filename", inserted.get("file", "")))
            fields = _iscsi_fields(filename)
            url = None
            if fields is not None:
                url = f"iscsi://{fields.get('portal')}/{fields.get('target')}/{fields.get('lun')}"
            result[dev] = BlockSource(
                dev=dev,
                qdev=qdev,
                filename=filename,
                virtual_size=int(image.get("virtual-size", -1)),
                url=url,
                user=(fields or {}).get("user"),
                initiator=(fields or {}).get("initiator-name"),
            )
        return result

    # ----------------------------------------------------------------- waits

    @staticmethod
    def wait_for(
        predicate: Callable[[], bool], what: str, *, timeout: float = 10.0, interval: float = 0.1
    ) -> None:
        """Poll *predicate* until it is true; :class:`HarnessError` after *timeout* s."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise HarnessError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(interval)

    # --------------------------------------------------------------- secrets

    def secret_uuids(self) -> list[str]:
        """UUIDs of every secret libvirt holds."""
        out = self.virsh("secret-list", check=True).stdout.splitlines()[2:]
        return [line.split()[0] for line in out if line.strip()]

    def secret_usage(self, uuid: str) -> str | None:
        """The iscsi usage target of secret *uuid*."""
        xml = self.virsh("secret-dumpxml", uuid, check=True).stdout
        node = ET.fromstring(xml).find("./usage/target")
        return node.text if node is not None else None

    def secret_value(self, uuid: str) -> bytes:
        """The raw value of secret *uuid* (``secret-get-value`` prints base64)."""
        import base64

        out = self.virsh("secret-get-value", uuid, check=True).stdout.strip()
        return base64.b64decode(out)

    # ------------------------------------------------------------------ logs

    def log_text(self) -> str:
        parts = [super().log_text()]
        for p in (self.virtlogd_stdout_path, self.virtlogd_log_path):
            with contextlib.suppress(OSError):
                parts.append(p.read_text(errors="replace"))
        with contextlib.suppress(OSError):
            for p in sorted(self.qemu_log_dir.glob("*.log")):
                with contextlib.suppress(OSError):
                    parts.append(f"--- {p.name}\n" + p.read_text(errors="replace"))
        return "\n".join(parts)

    def qemu_log(self, domain: str) -> str:
        """QEMU's own log of *domain* (command line, stderr)."""
        try:
            return (self.qemu_log_dir / f"{domain}.log").read_text(errors="replace")
        except OSError:
            return ""

    # ------------------------------------------------------------- shutdown

    def _is_our_qemu(self, pid: int) -> bool:
        """Whether *pid* is a live QEMU whose command line names our workdir."""
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        return b"qemu-system" in cmdline and str(self.workdir).encode() in cmdline

    def _qemu_pids(self) -> set[int]:
        """PIDs from the QEMU pid files in our workdir that are our QEMUs."""
        pids = set()
        for pidfile in self.workdir.rglob("*.pid"):
            if pidfile.name in ("libvirtd.pid", "virtlogd.pid"):
                continue
            with contextlib.suppress(OSError, ValueError):
                pid = int(pidfile.read_text().strip())
                if self._is_our_qemu(pid):
                    pids.add(pid)
        return pids

    def _shutdown(self, timeout: float) -> None:
        # Not `virsh destroy`: libvirt waits until the killed QEMU is *reaped*, and on
        # machines whose PID 1 reaps orphans slowly that takes 1.5-2 s per domain. A
        # session libvirtd leaves its domains running when it exits, so: stop libvirtd,
        # then SIGKILL our QEMUs by PID, then stop virtlogd.
        qemu = self._qemu_pids()
        try:
            super()._shutdown(timeout)
        finally:
            try:
                for pid in qemu | self._qemu_pids():
                    if self._is_our_qemu(pid):
                        _kill_pid(pid)
            finally:
                _terminate(self._virtlogd, timeout)

    def __repr__(self) -> str:
        return f"<VmHost pid={self.pid} virtlogd={self.virtlogd_pid} uri={self.uri}>"


def _kill_pid(pid: int, timeout: float = 10.0) -> None:
    """SIGKILL a leftover QEMU of ours by PID; wait (bounded) until it is dead.

    QEMU is not our child (libvirt daemonizes it), so "dead" is "gone or a zombie".
    """
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return
        if stat.rpartition(")")[2].split()[0] in ("Z", "X"):
            return
        time.sleep(0.02)


__all__ = ["BlockSource", "VmHost", "qemu_iscsi_driver"]
