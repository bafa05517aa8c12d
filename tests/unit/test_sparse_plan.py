"""Sparse transfer planning from bytes and files: which pieces a download reads and which
an upload turns into zero runs; the trim refusal without LBPU."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from poolbackend.errors import ConfigError
from poolbackend.pool.sparse import Job, jobs, pieces
from poolbackend.pool.transfer import Geometry
from poolbackend.pool.wipe import wipe
from poolbackend.scsi.lbastatus import Extent, ProvisioningStatus

M, D, A = ProvisioningStatus.MAPPED, ProvisioningStatus.DEALLOCATED, ProvisioningStatus.ANCHORED
MiB = 1 << 20


def test_download_jobs_read_mapped_extents_only() -> None:
    mapped = (Extent(0, 10, D), Extent(10, 5, M), Extent(15, 3, A), Extent(18, 7, M))
    assert list(jobs(0, 25, 4, mapped)) == [
        Job(0, 10, False),
        Job(10, 4, True),
        Job(14, 1, True),
        Job(15, 3, False),
        Job(18, 4, True),
        Job(22, 3, True),
    ]
    assert list(jobs(3, 11, 4, None)) == [Job(3, 4, True), Job(7, 4, True)]


def _sparse_file(path: Path) -> bytes:
    with open(path, "wb") as f:
        f.truncate(8 * MiB)
        f.seek(1 * MiB)
        f.write(os.urandom(4096))
        f.seek(3 * MiB)
        f.write(bytes(MiB))  # allocated zeros
        f.seek(8 * MiB - 700)
        f.write(b"x" * 700)
    return path.read_bytes()


def _replay(found: list[tuple[int, bytes | int]], size: int) -> bytes:
    out = bytearray()
    for at, data in found:
        assert at == len(out)
        out += bytes(data) if isinstance(data, int) else data
    assert len(out) == size
    return bytes(out)


def test_upload_pieces_of_a_file_with_holes(tmp_path: Path) -> None:
    path = tmp_path / "f"
    want = _sparse_file(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        found = list(pieces(lambda at, n: os.pread(fd, n, at), fd, 0, len(want), 512, MiB))
    finally:
        os.close(fd)
    assert _replay(found, len(want)) == want
    zero = sum(d for _, d in found if isinstance(d, int))
    data = [(at, len(d)) for at, d in found if not isinstance(d, int)]
    assert zero >= len(want) - 2 * 4096 - MiB  # holes and the zero MiB, up to fs blocks
    assert all(isinstance(d, int) for at, d in found if 3 * MiB <= at < 4 * MiB)
    assert data[0][0] <= 1 * MiB < data[0][0] + data[0][1]
    assert all(d % 512 == 0 for at, d in found[:-1] if isinstance(d, int))
    assert found[-1][0] + len(found[-1][1]) == len(want)  # type: ignore[arg-type]


def test_upload_pieces_of_a_stream_find_zero_chunks(tmp_path: Path) -> None:
    want = bytes(3 * MiB) + b"a" * 1000 + bytes(MiB) + b"tail"
    pos = [0]

    def read(at: int, n: int) -> bytes:
        assert at == pos[0]
        pos[0] += len(want[at : at + n])
        return want[at : at + n]

    found = list(pieces(read, None, 0, None, 512, MiB))
    assert _replay(found, len(want)) == want
    assert [type(d).__name__ for _, d in found] == ["int", "int", "int", "bytes", "bytes"]


def test_trim_refused_without_lbpu() -> None:
    geo = Geometry(1, 512, 2048, 0, 0, thin=True, lbprz=True, lbpws=True, lbpu=False)
    with pytest.raises(ConfigError, match=r"LUN 1 does not support UNMAP \(VPD page 0xB2"):
        asyncio.run(wipe(None, geo, "trim"))  # type: ignore[arg-type]


def test_is_zero() -> None:
    from poolbackend.pool.sparse import is_zero

    assert is_zero(b"") and is_zero(bytes(4096)) and is_zero(memoryview(bytearray(1000)))
    for at in (0, 1, 2047, 2048, 4095):
        data = bytearray(4096)
        data[at] = 1
        assert not is_zero(bytes(data)) and not is_zero(memoryview(data)), at
