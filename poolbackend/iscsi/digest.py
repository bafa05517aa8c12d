"""CRC32C (Castagnoli) for iSCSI header and data digests.

A pure-Python loop runs at ~10 MB/s, so we use crcmod's C extension (a hard dependency)
and prefer google-crc32c when it is installed (hardware accelerated). Both can continue a
CRC over several buffers, so data and padding are digested without joining them.
"""

from __future__ import annotations

from collections.abc import Callable

Buffer = bytes | bytearray | memoryview
_Extend = Callable[[int, Buffer], int]


def _load() -> tuple[_Extend, int, str]:
    try:
        import google_crc32c  # type: ignore[import-not-found,unused-ignore]

        def extend_google(crc: int, data: Buffer) -> int:
            return int(google_crc32c.extend(crc, bytes(data)))

        return extend_google, 0, "google-crc32c"
    except ImportError:
        pass
    import crcmod.predefined

    fn = crcmod.predefined.mkPredefinedCrcFun("crc-32c")

    def extend_crcmod(crc: int, data: Buffer) -> int:
        return int(fn(data, crc))

    try:
        import crcmod._crcfunext

        name = "crcmod (C extension)"
    except ImportError:  # pragma: no cover - depends on the install
        name = "crcmod (pure Python, slow)"
    return extend_crcmod, 0, name


_extend, _INIT, IMPLEMENTATION = _load()


def crc32c(*parts: Buffer) -> int:
    """CRC32C over the concatenation of ``parts``."""
    crc = _INIT
    for part in parts:
        crc = _extend(crc, part)
    return crc


def digest_bytes(*parts: Buffer) -> bytes:
    """The 4 wire bytes of a digest over ``parts``; iSCSI sends the CRC least-significant first."""
    return crc32c(*parts).to_bytes(4, "little")
