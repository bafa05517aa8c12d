"""Naming rules of libvirt's iscsi-direct backend.

libvirt builds every externally visible identifier of an iscsi-direct pool from the pool's
single ``<host>`` (verbatim, never resolved), its port and the target IQN
(``src/storage/storage_backend_iscsi_direct.c``):

* portal string: ``host:3260`` when the port is absent or 0 (no brackets, even for an IPv6
  literal), ``[host]:port`` when a port is given and the host contains ``:``, otherwise
  ``host:port``;
* volume name: ``unit:0:0:<lun>``;
* volume key and volume path (the same string): ``ip-<portal>-iscsi-<target IQN>-lun-<lun>``.

:func:`connect_address` is the poolbackend addition: the ``(host, port)`` pair to hand to a
socket, which libiscsi derives by splitting the portal at its last ``:``.
"""

from __future__ import annotations

from poolbackend.errors import ConfigError
from poolbackend.iscsi.portal import DEFAULT_PORT as DEFAULT_PORT  # the one default port
from poolbackend.iscsi.portal import bare_host, is_port
from poolbackend.numbers import is_ascii_uint
from poolbackend.text import printable as printable  # the one escaping rule, re-exported

# DEFAULT_PORT: the iSCSI well-known port, used when ``<host>`` has no port or port 0

VOLUME_NAME_PREFIX = "unit:0:0:"
"""Prefix of every iscsi-direct volume name; the LUN number follows in decimal."""

_MAX_LUN_FROM_NAME = 2**31 - 1  # libvirt parses the suffix as a C int


def portal_string(host: str, port: int | None) -> str:
    """Return libvirt's portal string for ``host`` and ``port``.

    ``port`` ``None`` or ``0`` means the default port and gives ``host:3260`` unbracketed,
    even for an IPv6 literal (libvirt's behaviour, see the module doc); a given port and a
    host containing ``:`` gives ``[host]:port``.
    """
    if not port:
        return f"{host}:{DEFAULT_PORT}"
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def volume_name(lun: int) -> str:
    """Return the volume name of ``lun``: ``unit:0:0:<lun>``."""
    if lun < 0:
        raise ValueError(f"LUN must not be negative: {lun}")
    return f"{VOLUME_NAME_PREFIX}{lun}"


def lun_from_volume_name(name: str) -> int:
    """Return the LUN encoded in an iscsi-direct volume name ``unit:0:0:<lun>``.

    Raises :class:`ConfigError` ``Invalid volume name <name>`` (libvirt's text) when the
    name does not have the prefix or the rest is not a decimal number.
    """
    rest = name[len(VOLUME_NAME_PREFIX) :] if name.startswith(VOLUME_NAME_PREFIX) else ""
    if not is_ascii_uint(rest) or int(rest) > _MAX_LUN_FROM_NAME:
        raise ConfigError(f"Invalid volume name {printable(name)}")
    return int(rest)


def volume_key(host: str, port: int | None, target_iqn: str, lun: int) -> str:
    """Return the volume key ``ip-<portal>-iscsi-<target IQN>-lun-<lun>``.

    The key is also the volume's target path (libvirt uses the same string for both).
    """
    if lun < 0:
        raise ValueError(f"LUN must not be negative: {lun}")
    return f"ip-{portal_string(host, port)}-iscsi-{target_iqn}-lun-{lun}"


volume_path = volume_key
"""The volume path: the same string as the key."""


def connect_address(host: str, port: int | None) -> tuple[str, int]:
    """Return the ``(host, port)`` to connect a TCP socket to.

    The host is returned without brackets (an IPv6 literal stays a bare literal suitable for
    :func:`socket.getaddrinfo`); port ``None`` or ``0`` becomes 3260. A port outside
    1..65535 raises :class:`ConfigError`.
    """
    address = bare_host(host)
    number = port if port else DEFAULT_PORT
    if not is_port(number):
        raise ConfigError(
            f"invalid port {number} for host '{printable(host)}': expected 1-65535 "
            f"(or no port for {DEFAULT_PORT})"
        )
    if not address:
        raise ConfigError("missing storage pool source host name")
    return address, number
