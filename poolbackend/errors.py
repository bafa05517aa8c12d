"""Errors shown to users.

Every failure a user can cause or meet (bad XML, bad URL, unreachable portal, target refusal)
reaches the user as a :class:`PoolBackendError` whose ``str()`` is one self-contained line; the
CLI prints it as ``error: <line>`` and exits non-zero, never with a traceback.

The iSCSI and SCSI packages (:mod:`poolbackend.iscsi`, :mod:`poolbackend.scsi`) have error
trees of their own (``ISCSIError``, ``ScsiError``) and import nothing from here.
:func:`user_error` is the one mapping from theirs to this tree (same text): the pool backend
applies it where the pool layer enters the initiator (:func:`library_errors`), the CLI where
a tool's error reaches ``main``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


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


class TargetError(PoolBackendError):
    """An error of the iSCSI or SCSI package (unreachable portal, refused login, failed
    command, impossible data) as a user error; its ``__cause__`` is the original."""


def user_error(exc: BaseException) -> PoolBackendError | None:
    """``exc`` as a user error with the same one line, or None when it is not one (a bug).

    An invalid iSCSI URL or portal address becomes a :class:`ConfigError` (the user's input
    is wrong), any other ``ISCSIError``/``ScsiError`` a :class:`TargetError`. The packages are
    imported here only when needed: an instance of their errors implies they are loaded, so
    commands that never touch a target do not pay for importing them.
    """
    if isinstance(exc, PoolBackendError):
        return exc
    from poolbackend.iscsi.errors import InvalidAddress, InvalidURL, ISCSIError
    from poolbackend.scsi.errors import ScsiError

    if not isinstance(exc, (ISCSIError, ScsiError)):
        return None
    kind = ConfigError if isinstance(exc, (InvalidURL, InvalidAddress)) else TargetError
    err = kind(str(exc))
    err.__cause__ = exc
    return err


@contextmanager
def library_errors() -> Iterator[None]:
    """Re-raise an error of the iSCSI or SCSI package as its :func:`user_error`."""
    from poolbackend.iscsi.errors import ISCSIError
    from poolbackend.scsi.errors import ScsiError

    try:
        yield
    except (ISCSIError, ScsiError) as exc:
        err = user_error(exc)
        assert err is not None
        raise err from exc


NOT_VALID = "Requested operation is not valid: "
"""libvirt's VIR_ERR_OPERATION_INVALID prefix."""


def not_valid(what: str) -> StateError:
    """libvirt's "Requested operation is not valid: <what>" (VIR_ERR_OPERATION_INVALID)."""
    return StateError(NOT_VALID + what)
