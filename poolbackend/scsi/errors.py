"""Errors of the SCSI layer.

Every parser raises only :class:`ScsiParseError` for malformed or short data, so callers can
catch one type; its message names the structure and the problem. It is also a
:class:`~poolbackend.errors.PoolBackendError`, so one that escapes every caller still reaches
the user as one ``error:`` line, never a traceback (it stays a ``ValueError`` for callers
that treat it as bad data).
"""

from __future__ import annotations

from poolbackend.errors import PoolBackendError


class ScsiParseError(PoolBackendError, ValueError):
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
