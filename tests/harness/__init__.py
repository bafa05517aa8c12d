"""Test harness: private tgtd, scripted fake iSCSI target, private libvirtd.

Everything here starts its own processes on loopback addresses, bounds every
wait with a timeout and stops only the processes it started (by PID).

* :mod:`tests.harness.tgtd` -- :class:`Tgtd`, a private tgt daemon.
* :mod:`tests.harness.faketarget` -- :class:`FakeTarget`, fault injection.
* :mod:`tests.harness.libvirtd` -- :class:`Libvirtd`, a private libvirtd.
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

#: Directories searched in addition to ``$PATH`` (tgtd and libvirtd live in
#: /usr/sbin, which is not on every non-root PATH).
_EXTRA_BIN_DIRS = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")


class HarnessError(RuntimeError):
    """A harness process could not be started, configured or stopped."""


def find_tool(name: str) -> str | None:
    """Return the absolute path of executable *name*, or ``None``."""
    found = shutil.which(name)
    if found:
        return found
    for d in _EXTRA_BIN_DIRS:
        cand = Path(d) / name
        if cand.is_file():
            return str(cand)
    return None


def require_tool(name: str, package: str) -> str:
    """Return the path of *name* or raise :class:`HarnessError` naming the package."""
    path = find_tool(name)
    if path is None:
        raise HarnessError(
            f"{name!r} is not installed (Debian package {package!r}); "
            "run scripts/install-deps.sh as root"
        )
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on *host* that was free a moment ago.

    The port is found by binding port 0 and closing the socket again, so
    another process may take it before the caller binds it; callers that start
    a server on it must detect a failed bind and retry with a new port.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
    return port


def format_portal(host: str, port: int) -> str:
    """``127.0.0.1:3260`` / ``[::1]:3260``."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


__all__ = ["HarnessError", "find_tool", "format_portal", "free_port", "require_tool"]
