"""Errors of the SCSI layer.

Every parser raises only :class:`ScsiParseError` for malformed or short data, so callers can
catch one type; its message names the structure and the problem. The package has its own
tree (:class:`ScsiError` derives from :class:`Exception` only, nothing here imports the
application); the application maps an error that escapes every caller to one ``error:`` line
in one place (:func:`poolbackend.errors.user_error`).
"""

from __future__ import annotations


class ScsiError(Exception):
    """Base of all errors of the SCSI package; ``str(err)`` is one user-readable line."""


class ScsiParseError(ScsiError):
    """Data-in (or a LUN field) from the target could not be parsed or is impossible."""


class UnsupportedLunFormat(ScsiParseError):
    """A LUN uses an address method other than single-level peripheral or flat space, or more
    than two bytes (see :func:`poolbackend.scsi.lun.refusal`).

    ``raw`` keeps the 8-byte entry so callers can log it or skip it; ``reason`` says why.
    """

    def __init__(self, raw: bytes, reason: str) -> None:
        super().__init__(f"unsupported LUN address {raw.hex()}: {reason}")
        self.raw = raw
        self.reason = reason
