"""The one options type of an iSCSI session: :class:`SessionOptions`.

Everything a user can set for a session (initiator name, timeout, digest offers, CHAP
algorithms, the lengths offered at login, reconnect and liveness settings) lives here, once.
The session core (:mod:`.core`) keeps it for reconnects and hands the same object to each
login (:class:`~.login.LoginConfig` holds it and adds only what the core picks per
connection: target, ISID, TSIH, the CHAP responder), so no field is copied from one type to
another. The pool layer fills it from a pool definition in one function
(:func:`poolbackend.pool.backends.iscsi_direct.session_options`), the tools from their
command-line options (:func:`poolbackend.cli.initiator_opts.session_options`).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from poolbackend.iscsi.chap import MD5

DIGEST_OFFER = "None,CRC32C"
"""Default HeaderDigest and DataDigest offer: the target chooses. Targets that do not insist
(tgt's default) answer None; targets configured to require CRC32C get it."""


def default_initiator_name() -> str:
    """A stable IQN for this host, like open-iscsi's generated InitiatorName."""
    host = socket.gethostname().split(".")[0].lower() or "localhost"
    safe = "".join(c if c.isalnum() or c in "-." else "-" for c in host)
    return f"iqn.2026-11.dev.poolbackend:{safe}"


@dataclass
class SessionOptions:
    """What a session is asked to be; no secrets (credentials travel apart)."""

    initiator_name: str = field(default_factory=default_initiator_name)
    timeout: float = 10.0
    #: offered at login of a normal session (a discovery session always offers "None")
    header_digest: str = DIGEST_OFFER
    data_digest: str = DIGEST_OFFER
    chap_algorithms: tuple[int, ...] = (MD5,)
    max_recv_data_segment_length: int = 262144
    max_burst_length: int = 16776192
    first_burst_length: int = 262144
    reconnect: bool = True
    max_reconnects: int = 3
    ua_retries: int = 16
    nop_interval: float | None = None
    isid: bytes | None = None
    #: how the user sets ``timeout``, named in timeout errors: "<pb:timeout seconds='10'/>"
    #: for pools, "--timeout 10" for the tools
    timeout_hint: str | None = None
