"""Numbers typed by users or sent by targets: ASCII digits only, in one place.

Python's ``int()`` accepts far more than a command line or an iSCSI key should: other
scripts' digits (fullwidth digits; ``'²'`` even passes ``str.isdigit()`` and then makes
``int()`` raise), ``'1_000'``, surrounding spaces, a sign. Every number that comes from
outside goes through :func:`ascii_int` (or :func:`seconds` for timeouts), which takes plain
ASCII decimal (and ``0x`` hex where asked) and nothing else.
"""

from __future__ import annotations

import re

__all__ = ["MAX_SECONDS", "ascii_int", "is_ascii_uint", "seconds"]

_DECIMAL = re.compile(r"[0-9]+")
_HEX = re.compile(r"0[xX][0-9a-fA-F]+")
_SECONDS = re.compile(r"[0-9]+(\.[0-9]*)?|\.[0-9]+")


def is_ascii_uint(text: str) -> bool:
    """True for a non-empty string of ASCII digits ``0-9`` only."""
    return _DECIMAL.fullmatch(text) is not None


def ascii_int(text: str, *, low: int = 0, high: int | None = None, allow_hex: bool = False) -> int:
    """``text`` as a non-negative integer in ``low..high``; :class:`ValueError` otherwise.

    Only ASCII decimal digits (and ``0x``/``0X`` followed by hex digits with ``allow_hex``)
    are accepted: no sign, no spaces, no underscores, no other scripts' digits. Callers turn
    the ValueError into their own one-line message.
    """
    if _DECIMAL.fullmatch(text):
        value = int(text, 10)
    elif allow_hex and _HEX.fullmatch(text):
        value = int(text, 16)
    else:
        raise ValueError(f"not a number: {text!r}")
    if value < low or (high is not None and value > high):
        raise ValueError(f"out of range: {value}")
    return value


MAX_SECONDS = 24 * 3600.0


def seconds(text: str) -> float:
    """A timeout in seconds: ASCII decimal, greater than 0 and at most a day (so never
    ``nan``, ``inf``, 0 or negative); :class:`ValueError` otherwise."""
    if not _SECONDS.fullmatch(text):
        raise ValueError(f"not a number of seconds: {text!r}")
    value = float(text)
    if not 0 < value <= MAX_SECONDS:
        raise ValueError(f"out of range: {value}")
    return value
