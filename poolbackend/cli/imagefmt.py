"""Recognising disk image files that are not raw disks (qcow2, vmdk, vhdx, ...).

vol-upload writes a file's bytes to the LUN as they are; a qcow2 or vmdk file written that way
is not the disk it describes, and a VM booting from it finds garbage. The signatures are the
ones QEMU probes (``block/*.c`` ``*_probe``), read from the first bytes of the file.
"""

from __future__ import annotations

HEAD_BYTES = 512
"""How much of a file :func:`image_format` needs to see."""

_SIGNATURES: tuple[tuple[str, int, bytes], ...] = (
    ("qcow2", 0, b"QFI\xfb"),
    ("qed", 0, b"QED\x00"),
    ("vmdk", 0, b"KDMV"),
    ("vmdk", 0, b"COWD"),
    ("vmdk", 0, b"# Disk DescriptorFile"),
    ("vhdx", 0, b"vhdxfile"),
    ("vpc", 0, b"conectix"),  # VHD with a header copy of its footer (dynamic disks)
    ("vdi", 0x40, b"\x7f\x10\xda\xbe"),  # VDI signature 0xbeda107f, little-endian
    ("parallels", 0, b"WithoutFreeSpace"),
    ("parallels", 0, b"WithouFreSpacExt"),
)


def image_format(head: bytes) -> str | None:
    """The image format whose signature starts ``head`` (a file's first bytes), or None for
    data that looks like a raw disk."""
    for name, offset, magic in _SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return name
    return None
