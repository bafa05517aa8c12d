"""Errors shown to users.

Every failure a user can cause or meet (bad XML, bad URL, unreachable portal, target refusal)
is raised as a :class:`PoolBackendError` whose ``str()`` is one self-contained line; the CLI
prints it as ``error: <line>`` and exits non-zero, never with a traceback.
"""


class PoolBackendError(Exception):
    """Base of every user-facing error; ``str(err)`` is a single line.

    ``lead`` is the line virsh prints before libvirt's message for the same failure (e.g.
    ``failed to get vol 'x'`` before ``Storage volume not found: ...``); the CLI prints it
    as its own ``error:`` line first. ``str(err)`` stays libvirt's message alone.
    """

    def __init__(self, *args: object, lead: str | None = None) -> None:
        super().__init__(*args)
        self.lead = lead


class ConfigError(PoolBackendError):
    """A definition (pool, volume, secret XML) or an argument is invalid."""


class NotFoundError(PoolBackendError):
    """A named pool, volume or secret does not exist."""


class StateError(PoolBackendError):
    """The operation is not valid in the current state (e.g. pool not active)."""


class FileError(PoolBackendError):
    """A local file or directory could not be read, written, listed or locked."""


class DataError(PoolBackendError):
    """Data read back from a volume is not what was written (a wipe's verification)."""


NOT_VALID = "Requested operation is not valid: "
"""libvirt's VIR_ERR_OPERATION_INVALID prefix."""


def not_valid(what: str) -> StateError:
    """libvirt's "Requested operation is not valid: <what>" (VIR_ERR_OPERATION_INVALID)."""
    return StateError(NOT_VALID + what)
