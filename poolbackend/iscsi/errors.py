"""Error types of the initiator.

Split like h11: :class:`LocalProtocolError` means *we* asked for something invalid in the
current state (a bug in the caller); :class:`RemoteProtocolError` means the target broke the
protocol. Both, like every other error here, render as one user-readable line.

The package has its own tree: :class:`ISCSIError` derives from :class:`Exception` only and
nothing here imports the application (``poolbackend.errors``, ``pool``, ``cli``). The
application maps these errors to its user errors in one place
(:func:`poolbackend.errors.user_error`).
"""

from __future__ import annotations

from poolbackend.text import printable


class ISCSIError(Exception):
    """Base of all errors of the iSCSI package; ``str(err)`` is one user-readable line."""


class InvalidAddress(ISCSIError):
    """A portal address (``host``, ``host:port``, ``[v6]:port``) or a port is malformed.

    ``why`` holds ``{}`` placeholders for the ``pieces`` of the address it quotes, so that a
    caller quoting a larger text (a URL with a password) can mask the pieces it must not show;
    ``str()`` shows them escaped.
    """

    def __init__(self, why: str, *pieces: str) -> None:
        super().__init__(why.format(*(printable(piece, 300) for piece in pieces)))
        self.why = why
        self.pieces = pieces


class InvalidURL(ISCSIError):
    """An iSCSI URL given by the user is malformed; its text never shows a password."""


class LocalProtocolError(ISCSIError):
    """The caller misused the protocol core (wrong state, bad argument)."""


class RemoteProtocolError(ISCSIError):
    """The target sent something the protocol does not allow; the connection is unusable."""


class ConnectionFailed(ISCSIError):
    """TCP-level failure: refused, reset, closed by the target, unresolvable host."""


class ISCSITimeout(ISCSIError):
    """A bounded wait ran out (connect, login, command, logout)."""


class LoginFailed(ISCSIError):
    """The target answered a Login Request with a non-success status."""

    def __init__(self, message: str, status_class: int, status_detail: int) -> None:
        super().__init__(message)
        self.status_class = status_class
        self.status_detail = status_detail


class AuthenticationFailed(LoginFailed):
    """CHAP failed in either direction (wrong credentials, bad mutual answer)."""


class CommandFailed(ISCSIError):
    """A SCSI command completed with a non-GOOD status or an iSCSI-level failure."""

    def __init__(
        self, message: str, status: int | None = None, sense: bytes = b"", response: int = 0
    ) -> None:
        super().__init__(message)
        self.status = status
        self.sense = sense
        self.response = response


class BadTargetData(CommandFailed):
    """A command completed but its data is short or impossible (a ``ScsiParseError`` from the
    SCSI layer, with the portal, target and LUN added). Like any failed command it leaves
    that one LUN out of a scan."""
