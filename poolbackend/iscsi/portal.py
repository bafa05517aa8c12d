"""Portal addresses and credentials shared by the initiator layers.

The one parser of ``host[:port]`` text (:meth:`Portal.parse`) and the one
:data:`DEFAULT_PORT`: URLs (:mod:`poolbackend.iscsi.url`), a target's ``TargetAddress``
(login redirects, SendTargets: ``addr[:port],tpgt``), the CLI's port arguments and the pool
layer's ``<host name port>`` all go through here. The grammar:

* ``host`` or ``host:port``, ``host`` a DNS name or an IPv4 address;
* ``[v6]`` or ``[v6]:port`` (an IPv6 literal, optionally with a ``%zone``);
* a bare IPv6 literal (more than one ``:``), which cannot carry a port;
* with ``tpgt=True`` a ``,N`` portal group tag after it (0-65535, dropped);
* a port is ASCII digits 1-65535; absent means :data:`DEFAULT_PORT`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from poolbackend.iscsi.errors import InvalidAddress
from poolbackend.numbers import ascii_int

DEFAULT_PORT = 3260
"""The iSCSI well-known port (RFC 7143), used wherever no port is given."""

_LABEL = r"[A-Za-z0-9_][A-Za-z0-9_-]{0,62}"
_HOST_NAME = re.compile(rf"{_LABEL}(\.{_LABEL})*\.?")
_IPV6 = re.compile(r"[0-9A-Fa-f:.]+(%[A-Za-z0-9_.-]+)?")


def parse_port(text: str) -> int:
    """A TCP port: ASCII digits only, 1-65535; :class:`InvalidAddress` otherwise."""
    try:
        return ascii_int(text, low=1, high=65535)
    except ValueError:
        raise InvalidAddress("invalid port '{}' (expected 1-65535)", text) from None


def is_port(number: int) -> bool:
    """True for a usable TCP port number (1-65535)."""
    return 1 <= number <= 65535


def bare_host(host: str) -> str:
    """``host`` without the brackets of a bracketed IPv6 literal (``[::1]`` -> ``::1``)."""
    if host.startswith("[") and host.endswith("]") and ":" in host:
        return host[1:-1]
    return host


@dataclass(frozen=True)
class Portal:
    host: str
    port: int = DEFAULT_PORT

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str, *, tpgt: bool = False) -> Portal:
        """The portal ``text`` names (see the module's grammar); :class:`InvalidAddress`
        naming the problem otherwise. ``tpgt``: accept (and drop) a ``,N`` portal group tag,
        as a target's ``TargetAddress`` carries."""
        if tpgt and "," in text:
            text, _, tag = text.partition(",")
            try:
                ascii_int(tag, high=65535)
            except ValueError:
                raise InvalidAddress(
                    "invalid portal group tag '{}' (expected 0-65535)", tag
                ) from None
        port_text: str | None
        if text.startswith("["):
            host, bracket, rest = text[1:].partition("]")
            if not bracket:
                raise InvalidAddress("unclosed '[' in '{}'", text)
            if rest and not rest.startswith(":"):
                raise InvalidAddress("unexpected '{}' after ']' (expected ]:port)", rest)
            if not host:
                raise InvalidAddress("empty IPv6 address in brackets")
            if not _IPV6.fullmatch(host) or ":" not in host:
                raise InvalidAddress("'{}' in brackets is not an IPv6 address", host)
            port_text = rest[1:] if rest else None
        elif text.count(":") > 1:
            host, port_text = text, None
            if not _IPV6.fullmatch(host):
                raise InvalidAddress("invalid host '{}'", host)
        else:
            host, colon, after = text.partition(":")
            port_text = after if colon else None
            if not host:
                raise InvalidAddress("missing host")
            if len(host) > 253 or not _HOST_NAME.fullmatch(host):
                raise InvalidAddress(
                    "invalid host '{}' (expected a DNS name, an IPv4 address or [IPv6])", host
                )
        if port_text is None:
            return cls(host, DEFAULT_PORT)
        if not port_text:
            raise InvalidAddress("empty port after ':'")
        return cls(host, parse_port(port_text))


@dataclass(frozen=True)
class Credentials:
    """CHAP credentials; secrets are bytes and are never shown by repr()."""

    username: str
    secret: bytes = field(repr=False)
    target_username: str | None = None
    target_secret: bytes | None = field(default=None, repr=False)
