"""What a pool's target really is: its resolved addresses, port and target IQN.

libvirt names iscsi-direct volumes after the pool's host string, so pools through
``localhost`` and ``127.0.0.1`` give different keys to the same LUN. Two places need the
target itself: the volume locks (one writer per LUN, whichever pool it goes through) and
the source-conflict check of ``pool-define``/``pool-create``. The rules, in one place:

* the host is resolved with the call the connection makes (``getaddrinfo(host, port,
  SOCK_STREAM)`` on :func:`~poolbackend.pool.naming.connect_address`'s pair); every address
  it returns counts, because the connection may end up on any of them;
* addresses are compared in canonical form: an IPv4-mapped IPv6 address as IPv4, without an
  IPv6 scope, and every loopback address (127.0.0.0/8, ``::1``) as one: they all reach this
  host, where one daemon normally listens on both;
* a host that does not resolve stands for itself (its name, case-insensitively);
* the port is the one connected to (absent or 0 = 3260); target IQNs compare
  case-insensitively (iSCSI names are, RFC 3722).
"""

from __future__ import annotations

import ipaddress
import socket

from poolbackend.errors import ConfigError
from poolbackend.iscsi.portal import DEFAULT_PORT, bare_host
from poolbackend.pool.model import PoolSource
from poolbackend.pool.naming import connect_address

__all__ = ["canonical_address", "host_addresses", "lun_lock_keys", "same_target"]

LOOPBACK = "loopback"


def canonical_address(text: str) -> str:
    """The comparable form of one address (``loopback`` for every loopback address)."""
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return "name:" + text.casefold()
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return LOOPBACK if ip.is_loopback else ip.compressed


def _endpoint(source: PoolSource) -> tuple[str, int]:
    """``(host, port)`` as the connection uses them, also for a port it would refuse."""
    try:
        return connect_address(source.host, source.port)
    except ConfigError:
        return bare_host(source.host), source.port or DEFAULT_PORT


def host_addresses(source: PoolSource) -> frozenset[str]:
    """The canonical addresses the pool's connection can reach (its name if unresolvable)."""
    host, port = _endpoint(source)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        infos = []
    found = frozenset(canonical_address(str(info[4][0])) for info in infos)
    return found or frozenset({canonical_address(host)})


def same_target(a: PoolSource, b: PoolSource) -> bool:
    """True when both sources reach the same target: same IQN and port, a shared address."""
    if a.target_iqn.casefold() != b.target_iqn.casefold():
        return False
    (host_a, port_a), (host_b, port_b) = _endpoint(a), _endpoint(b)
    if port_a != port_b:
        return False
    if host_a.casefold() == host_b.casefold():
        return True  # no lookup needed (and none wanted for a name that does not resolve)
    return not host_addresses(a).isdisjoint(host_addresses(b))


def lun_lock_keys(source: PoolSource, lun: int) -> list[str]:
    """The volume-lock keys of ``lun``: one per address the connection can reach.

    A pool through a name that resolves to several addresses holds all of them, so a pool
    through any one of those addresses finds the LUN busy.
    """
    _, port = _endpoint(source)
    iqn = source.target_iqn.casefold()
    return sorted(f"{address} {port} {iqn} {lun}" for address in host_addresses(source))
