"""CRC32C (Castagnoli) for iSCSI header and data digests.

A pure-Python loop runs at ~10 MB/s, so a C implementation is required. The default is
google-crc32c when it is installed (hardware CRC32 instructions: ~15-20 GB/s here, even with
the copy its ``bytes``-only API needs for views), else crcmod's C extension (a hard
dependency; table-driven, ~0.45 GB/s, which caps digest-enabled reads below 450 MiB/s).
``POOLBACKEND_CRC32C=crcmod`` or ``=google-crc32c`` forces one (``bench/run.py`` compares
them). Both continue a CRC over several buffers, so data and padding are digested without
joining them.
"""

from __future__ import annotations

import os
from collections.abc import Callable

Buffer = bytes | bytearray | memoryview
_Extend = Callable[[int, Buffer], int]
IMPLEMENTATIONS = ("google-crc32c", "crcmod")


def _google() -> tuple[_Extend, str] | None:
    try:
        import google_crc32c  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    ext = google_crc32c.extend

    def extend_google(crc: int, data: Buffer) -> int:
        # Its C API takes only immutable bytes; a copy at memory speed is still far
        # cheaper than any table-driven CRC.
        return int(ext(crc, data if type(data) is bytes else bytes(data)))

    return extend_google, f"google-crc32c ({google_crc32c.implementation})"


def _crcmod() -> tuple[_Extend, str]:
    import crcmod.predefined

    fn = crcmod.predefined.mkPredefinedCrcFun("crc-32c")

    def extend_crcmod(crc: int, data: Buffer) -> int:
        return int(fn(data, crc))

    try:
        import crcmod._crcfunext

        name = "crcmod (C extension)"
    except ImportError:  # pragma: no cover - depends on the install
        name = "crcmod (pure Python, slow)"
    return extend_crcmod, name


def use(preferred: str | None = None) -> str:
    """Select the implementation (``None``: the fastest installed); returns its name."""
    global _extend, IMPLEMENTATION
    loaded = None
    if preferred not in (None, "", *IMPLEMENTATIONS):
        raise ValueError(f"unknown CRC32C implementation {preferred!r}")
    if preferred != "crcmod":
        loaded = _google()
        if loaded is None and preferred == "google-crc32c":
            raise ImportError("google-crc32c is not installed")
    if loaded is None:
        loaded = _crcmod()
    _extend, IMPLEMENTATION = loaded
    return IMPLEMENTATION


_extend: _Extend
IMPLEMENTATION = ""
use(os.environ.get("POOLBACKEND_CRC32C") or None)


def crc32c(*parts: Buffer) -> int:
    """CRC32C over the concatenation of ``parts``."""
    crc = 0
    for part in parts:
        crc = _extend(crc, part)
    return crc


def digest_bytes(*parts: Buffer) -> bytes:
    """The 4 wire bytes of a digest over ``parts``; iSCSI sends the CRC least-significant first."""
    return crc32c(*parts).to_bytes(4, "little")
