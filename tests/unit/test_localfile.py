"""localfile.Output refuses to replace a file its user may not write, as cp would (the
download would otherwise rename over a read-only file in a writable directory)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from poolbackend.cli.localfile import Output
from poolbackend.errors import PoolBackendError

NOBODY = 65534


def _as_nobody(path: Path) -> str:
    """What Output(path) says in a child process running with nobody's effective ids."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read_end)
            os.setegid(NOBODY)
            os.seteuid(NOBODY)
            try:
                Output(str(path))
                answer = "accepted"
            except PoolBackendError as exc:
                answer = str(exc)
            os.write(write_end, answer.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        answer = f.read().decode()
    os.waitpid(pid, 0)
    return answer


@pytest.mark.skipif(os.geteuid() != 0, reason="switches to user nobody (needs root)")
def test_a_read_only_file_is_not_replaced() -> None:
    shared = Path(tempfile.mkdtemp(prefix="pb-localfile-"))
    try:
        shared.chmod(0o777)  # nobody may create files here ...
        locked = shared / "locked.raw"
        locked.write_bytes(b"old")
        locked.chmod(0o444)  # ... but not write this one
        free = shared / "free.raw"
        free.write_bytes(b"old")
        os.chown(free, NOBODY, NOBODY)
        assert _as_nobody(locked) == f"cannot write '{locked}': Permission denied"
        assert _as_nobody(free) == "accepted"
        assert _as_nobody(shared / "new.raw") == "accepted"
        shared.chmod(0o755)
        assert "its directory is not writable" in _as_nobody(shared / "new.raw")
        assert locked.read_bytes() == b"old"
    finally:
        shutil.rmtree(shared)
