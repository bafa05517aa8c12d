"""Opening a libvirt connection with one-line errors and without libvirt's stderr chatter.

libvirt-python is an optional dependency: only the commands that talk to a libvirt daemon
(secrets read from libvirt, attach/detach) import it, and they say how to install it.
"""

from __future__ import annotations

from typing import Any

from poolbackend.errors import PoolBackendError
from poolbackend.text import printable


def import_libvirt() -> Any:
    """The ``libvirt`` module, or a one-line error saying how to get it."""
    try:
        import libvirt
    except ImportError:
        raise PoolBackendError(
            "libvirt-python is not installed (pip install 'poolbackend[libvirt]'; it builds "
            "against Debian's libvirt-dev)"
        ) from None
    libvirt.registerErrorHandler(lambda *_: None, None)  # we report errors ourselves
    return libvirt


def libvirt_message(exc: Exception) -> str:
    """libvirt's own one-line text of a libvirtError (it quotes names we passed, escaped)."""
    getter = getattr(exc, "get_error_message", None)
    text = getter() if getter else None
    return printable(" ".join(str(text or exc).split()), 1000)


def open_connection(uri: str | None) -> Any:
    """A read-write ``virConnect`` to *uri* (``None``: libvirt's default URI)."""
    libvirt = import_libvirt()
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as exc:
        where = printable(uri) if uri else "the default URI"
        raise PoolBackendError(
            f"cannot connect to libvirt at {where}: {libvirt_message(exc)}"
        ) from None
