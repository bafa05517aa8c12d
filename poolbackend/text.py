"""Making outside text safe to print: the one escaping rule of every message.

Names, paths, URLs and values read from files or the network may contain newlines, escape
sequences or bidirectional overrides. Put into an error line raw, they could forge a second
``error:`` line or repaint the terminal. Every such string goes through :func:`printable`
before it enters a message; the CLI's error printer applies :func:`printable_line` to each
line as the last safety net.
"""

from __future__ import annotations

import re
import sys

__all__ = ["emit", "printable", "printable_line"]

# C0 and C1 controls, DEL, line/paragraph separators, the bidirectional controls
# (embeddings, overrides, isolates, marks), zero-width joiners and the byte order mark, and
# lone surrogates (undecodable bytes kept by ``surrogateescape``).
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ud800-\udfff]"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group(0)
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte kept by surrogateescape
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: str, limit: int = 200) -> str:
    """Return ``text`` made safe for a one-line message.

    Control and invisible formatting characters (newlines, ESC, bidi overrides, undecodable
    bytes) become ``\\n``/``\\xNN``/``\\uNNNN`` escapes and text longer than ``limit``
    characters is cut with ``...``, so that a value from outside can never split, forge or
    flood an error line.
    """
    if len(text) > limit:
        text = text[:limit] + "..."
    return _UNSAFE.sub(_escape, text)


def printable_line(text: str) -> str:
    """``text`` with every unsafe character escaped and no length limit (for whole lines)."""
    return _UNSAFE.sub(_escape, text)


def emit(kind: str, text: str) -> None:
    """Print ``<kind>: <text>`` to stderr as exactly one line (``error``/``warning``).

    The last safety net of the CLI: whatever a message holds, control characters are
    escaped here, so nothing from outside can add lines or send terminal sequences.
    """
    print(f"{kind}: {printable_line(text)}", file=sys.stderr)
