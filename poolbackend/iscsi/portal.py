"""Portal addresses and credentials shared by the initiator layers."""

from __future__ import annotations

from dataclasses import dataclass, field

from poolbackend.numbers import ascii_int

DEFAULT_PORT = 3260


@dataclass(frozen=True)
class Portal:
    host: str
    port: int = DEFAULT_PORT

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str, default_port: int = DEFAULT_PORT) -> Portal:
        """'host', 'host:port', '[v6]:port', 'v6' and SendTargets' 'addr:port,tpgt' forms."""
        text = text.strip().split(",", 1)[0]
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            port_text = rest[1:] if rest.startswith(":") else ""
        elif text.count(":") == 1:
            host, _, port_text = text.partition(":")
        else:
            host, port_text = text, ""
        if not host:
            raise ValueError(f"portal {text!r} has no host")
        port = default_port
        if port_text:
            try:
                port = ascii_int(port_text, low=1, high=65535)
            except ValueError:
                raise ValueError(f"portal {text!r} has an invalid port {port_text!r}") from None
        return cls(host, port)


@dataclass(frozen=True)
class Credentials:
    """CHAP credentials; secrets are bytes and are never shown by repr()."""

    username: str
    secret: bytes = field(repr=False)
    target_username: str | None = None
    target_secret: bytes | None = field(default=None, repr=False)
