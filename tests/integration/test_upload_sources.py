"""vol-upload sources: image files that are not raw disks are refused without --force (their
bytes are not the disk they describe), pipes are read to the end with their first bytes
checked too, and the progress bar has an unknown total for them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import RunCli
from tests.harness.tgtd import Tgtd

ROOT = Path(__file__).resolve().parents[2]
IQN = "iqn.2026-11.example:upload"
INITIATOR = "iqn.2026-11.example:initiator1"
MiB = 1 << 20
FORMATS = ["qcow2", "qed", "vmdk", "vhdx", "vpc", "vdi", "parallels"]


@pytest.fixture
def pool(run_cli: RunCli, tgtd: Tgtd, tmp_path: Path) -> Tgtd:
    tgtd.new_target(1, IQN)
    tgtd.add_lun(1, 1, 16 * MiB)
    xml = tmp_path / "pool.xml"
    xml.write_text(
        f"""<pool type='iscsi-direct'><name>up</name><source>
  <host name='{tgtd.host}' port='{tgtd.port}'/><device path='{IQN}'/>
  <initiator><iqn name='{INITIATOR}'/></initiator></source></pool>"""
    )
    for args in (("pool-define", str(xml)), ("pool-start", "up")):
        rc, _, err = run_cli(*args)
        assert rc == 0, err
    return tgtd


def _cli(state_dir: Path, *args: str, data: bytes | None = None) -> tuple[int, bytes, str]:
    env = dict(os.environ, POOLBACKEND_STATE_DIR=str(state_dir), PYTHONPATH=str(ROOT))
    r = subprocess.run(
        [sys.executable, "-m", "poolbackend", *args],
        input=data,
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )
    return r.returncode, r.stdout, r.stderr.decode()


@pytest.mark.parametrize("fmt", FORMATS)
def test_image_files_are_refused_without_force(
    pool: Tgtd, state_dir: Path, tmp_path: Path, fmt: str
) -> None:
    image = tmp_path / f"disk.{fmt}"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", fmt, str(image), "1M"], check=True, timeout=60
    )
    backing = pool.backing_path(1, 1)
    before = backing.read_bytes()
    rc, out, err = _cli(state_dir, "vol-upload", "--pool", "up", "unit:0:0:1", str(image))
    assert (rc, out) == (1, b"")
    assert err == (
        f"error: '{image}' is a {fmt} image, not a raw disk: its bytes are not the disk it "
        f"describes; convert it first (qemu-img convert -f {fmt} -O raw {image} disk.raw) "
        "or upload it as it is with --force\n"
    )
    assert backing.read_bytes() == before
    # Through a pipe: the same check on the first bytes.
    rc, _, err = _cli(
        state_dir,
        "vol-upload",
        "--pool",
        "up",
        "unit:0:0:1",
        "/dev/stdin",
        data=image.read_bytes(),
    )
    assert rc == 1 and f"is a {fmt} image" in err
    assert backing.read_bytes() == before
    # --force: byte for byte.
    rc, _, err = _cli(state_dir, "vol-upload", "--pool", "up", "unit:0:0:1", str(image), "--force")
    assert rc == 0, err
    data = image.read_bytes()
    assert backing.read_bytes()[: len(data)] == data


def test_a_pipe_is_read_to_the_end(pool: Tgtd, state_dir: Path) -> None:
    data = os.urandom(3 * MiB + 1000)
    data = b"\0" * 512 + data[512:]  # raw-looking start
    rc, _, err = _cli(
        state_dir, "vol-upload", "--pool", "up", "unit:0:0:1", "/dev/stdin", data=data
    )
    assert rc == 0, err
    assert pool.backing_path(1, 1).read_bytes()[: len(data)] == data


def test_progress_bar_with_an_unknown_total(capsys: pytest.CaptureFixture[str]) -> None:
    from poolbackend.cli.volume import _Bar

    bar = _Bar("Uploading")
    bar.enabled = True
    bar(100, 0)
    bar(5 * MiB + 7, 0)
    bar(5 * MiB + 9, 0)  # same MiB: not printed again
    bar.close()
    err = capsys.readouterr().err
    assert err.count("\r") == 2
    assert "Uploading 100.00 B" in err and "Uploading 5.00 MiB" in err
    assert "%" not in err


def test_a_device_is_read_to_the_end_not_taken_as_empty(pool: Tgtd, state_dir: Path) -> None:
    """A device's st_size is 0; it used to be taken as the source size, so nothing was
    written and the command succeeded. /dev/zero never ends: the LUN fills, then one error."""
    backing = pool.backing_path(1, 1)
    backing.write_bytes(b"\xff" * backing.stat().st_size)
    rc, _, err = _cli(state_dir, "vol-upload", "--pool", "up", "unit:0:0:1", "/dev/zero")
    assert rc == 1 and "larger than LUN 1" in err and len(err.splitlines()) == 1, err
    rc, _, err = _cli(
        state_dir, "vol-upload", "--pool", "up", "unit:0:0:1", "/dev/zero", "--length", "4096"
    )
    assert rc == 0, err
    assert backing.read_bytes()[:4096] == bytes(4096)
