"""Opening a libvirt connection with one-line errors and without libvirt's stderr chatter.

libvirt-python is an optional dependency: only the commands that talk to a libvirt daemon
(secrets read from libvirt, attach/detach) import it, and they say how to install it.
"""

from __future__ import annotations

from typing import Any

from poolbackend.errors import PoolBackendError


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
    """libvirt's own one-line text of a libvirtError."""
    getter = getattr(exc, "get_error_message", None)
    text = getter() if getter else None
    return " ".join(str(text or exc).split())


def open_connection(uri: str | None) -> Any:
    """A read-write ``virConnect`` to *uri* (``None``: libvirt's default URI)."""
    libvirt = import_libvirt()
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as exc:
        where = uri or "the default URI"
        raise PoolBackendError(
            f"cannot connect to libvirt at {where}: {libvirt_message(exc)}"
        ) from None
